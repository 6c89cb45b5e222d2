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

    /// How many messages may leave with `committed` records on disk.
    pub fn releasable(&self, committed: u64) -> usize {
        let front = self.pushed - self.queue.len() as u64;
        let queued = match self.steps.iter().find(|&&(_, needs)| needs > committed) {
            Some(&(first, _)) => first.saturating_sub(front) as usize,
            None => self.queue.len(),
        };
        queued + usize::from(self.durable_ack.is_some())
    }

    /// Up to `max` of the messages that may leave, oldest first (a durable ack before all).
    pub fn take(&mut self, max: usize, committed: u64) -> Vec<ShardMsg> {
        let ack = self
            .durable_ack
            .take()
            .map(|through| ShardMsg::DurableAck { through });
        let n = (self.releasable(committed)).min(max.saturating_sub(usize::from(ack.is_some())));
        let batch = ack.into_iter().chain(self.queue.drain(..n)).collect();
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
        self.queue.len() + usize::from(self.durable_ack.is_some())
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
