//! One shard's outbox to one peer. With persistence on, a message that could make a peer act
//! on what this shard could forget in a crash (`ShardMsg::waits_for_records`) leaves only once
//! the records the shard made before it are on disk, and those behind it wait with it: the
//! order between shards is kept. (A QoS 2 message delivered on another shard before its "received" record is
//! committed would, after a crash, be accepted again from the publisher's resend and reach the
//! subscriber twice.)

use std::collections::VecDeque;

use crate::core::shard_msg::ShardMsg;

#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<ShardMsg>,
    /// Where what must be committed first goes up: (index of the first message pushed with
    /// it, records that must be on disk), in push order.
    steps: VecDeque<(u64, u64)>,
    /// Messages pushed since the start (the index of the next one).
    pushed: u64,
    /// A [`ShardMsg::DurableAck`] to send: only the latest count matters, and it depends on
    /// nothing uncommitted, so it leaves first, without waiting.
    durable_ack: Option<u64>,
    /// Tokens of messages the peer passed on, now on disk here or further on: like the
    /// durable ack, they depend on nothing uncommitted and leave first.
    pass_ons_committed: Vec<u64>,
}

impl Outbox {
    /// Queues `msg`, to leave once `needs` records are committed (0: at once).
    pub fn push(&mut self, msg: ShardMsg, needs: u64) {
        if needs > self.steps.back().map_or(0, |&(_, n)| n) {
            self.steps.push_back((self.pushed, needs));
        }
        self.queue.push_back(msg);
        self.pushed += 1;
    }

    /// Reports this shard's commits of the peer's durable deliveries through `through`.
    pub fn durable_ack(&mut self, through: u64) {
        self.durable_ack = Some(self.durable_ack.map_or(through, |n| n.max(through)));
    }

    /// Reports that the message the peer passed on with `token` is on disk.
    pub fn pass_on_committed(&mut self, token: u64) {
        self.pass_ons_committed.push(token);
    }

    /// The acks that leave before the queue (at most two messages).
    fn acks(&self) -> usize {
        usize::from(self.durable_ack.is_some()) + usize::from(!self.pass_ons_committed.is_empty())
    }

    /// How many messages may leave with `committed` records on disk.
    pub fn releasable(&self, committed: u64) -> usize {
        self.releasable_queued(committed) + self.acks()
    }

    /// Of the queue, how many may leave with `committed` records on disk.
    fn releasable_queued(&self, committed: u64) -> usize {
        let front = self.pushed - self.queue.len() as u64;
        match self.steps.iter().find(|&&(_, needs)| needs > committed) {
            Some(&(first, _)) => first.saturating_sub(front) as usize,
            None => self.queue.len(),
        }
    }

    /// Up to `max` of the messages that may leave, oldest first (the acks before all).
    pub fn take(&mut self, max: usize, committed: u64) -> Vec<ShardMsg> {
        let n = self
            .releasable_queued(committed)
            .min(max.saturating_sub(self.acks()));
        let ack = self
            .durable_ack
            .take()
            .map(|through| ShardMsg::DurableAck { through });
        let pass_ons = (!self.pass_ons_committed.is_empty()).then(|| ShardMsg::PassOnCommitted {
            tokens: std::mem::take(&mut self.pass_ons_committed),
        });
        let batch = ack
            .into_iter()
            .chain(pass_ons)
            .chain(self.queue.drain(..n))
            .collect();
        // Needs only go up: the reached ones are at the front.
        while self
            .steps
            .front()
            .is_some_and(|&(_, needs)| needs <= committed)
        {
            self.steps.pop_front();
        }
        batch
    }

    pub fn len(&self) -> usize {
        self.queue.len() + self.acks()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn barrier(sync: u64) -> ShardMsg {
        ShardMsg::Barrier { sync }
    }

    fn syncs(batch: &[ShardMsg]) -> Vec<u64> {
        batch
            .iter()
            .map(|m| match m {
                ShardMsg::Barrier { sync } => *sync,
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn messages_wait_for_the_records_made_before_them() {
        let mut o = Outbox::default();
        o.push(barrier(1), 0);
        o.push(barrier(2), 3);
        o.push(barrier(3), 3);
        o.push(barrier(4), 5);
        assert_eq!(syncs(&o.take(10, 2)), [1]);
        assert_eq!(o.take(10, 2).len(), 0, "still waiting for record 3");
        assert_eq!(syncs(&o.take(1, 4)), [2]);
        assert_eq!(syncs(&o.take(10, 4)), [3]);
        o.push(barrier(5), 5);
        assert_eq!(o.releasable(4), 0);
        assert_eq!(syncs(&o.take(10, 5)), [4, 5]);
        assert!(o.len() == 0 && o.steps.is_empty());
    }

    #[test]
    fn a_durable_ack_leaves_first_and_only_the_latest() {
        let mut o = Outbox::default();
        o.push(barrier(1), 9);
        o.durable_ack(3);
        o.durable_ack(5);
        assert_eq!(o.releasable(0), 1);
        let batch = o.take(10, 0);
        assert!(matches!(batch[..], [ShardMsg::DurableAck { through: 5 }]));
        assert_eq!(syncs(&o.take(10, 9)), [1]);
    }

    #[test]
    fn pass_on_acks_leave_first_in_one_message() {
        let mut o = Outbox::default();
        o.push(barrier(1), 9);
        o.pass_on_committed(4);
        o.pass_on_committed(7);
        o.durable_ack(2);
        assert_eq!(o.releasable(0), 2);
        let batch = o.take(10, 0);
        assert!(matches!(
            &batch[..],
            [ShardMsg::DurableAck { through: 2 }, ShardMsg::PassOnCommitted { tokens }] if tokens == &[4, 7]
        ));
        assert_eq!(o.len(), 1);
        assert_eq!(syncs(&o.take(10, 9)), [1]);
    }

    #[test]
    fn without_persistence_nothing_waits() {
        let mut o = Outbox::default();
        for n in 0..3 {
            o.push(barrier(n), 0);
        }
        assert_eq!(o.releasable(0), 3);
        assert_eq!(o.take(2, 0).len(), 2);
        assert!(o.steps.is_empty());
    }
}
