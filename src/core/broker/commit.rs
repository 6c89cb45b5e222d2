//! When output may leave, with persistence on. An ack (PUBACK, PUBREC, SUBACK, ...) means
//! "on disk", so a connection's output waits for the records this shard made before it
//! (group commit), and for the records other shards make for the QoS 1/2 messages this shard
//! sent them before it: a message forwarded to a durable subscriber on another shard is on
//! disk only once that shard says so ([`ShardMsg::DurableAck`]).
//!
//! Each side counts the QoS 1/2 deliveries between a pair of shards; the receiver answers
//! with its count once the records it made while taking them are committed. A connection
//! waits only for the deliveries its own publishes sent, and a report only for the
//! receiver's own records: were a report to wait for the receiver's sends as well, two shards
//! publishing to each other would each wait for the other's report first, for ever. (So a
//! shared-group message a full shard passes on to a third is acknowledged once the second
//! has it in memory: a gap left open.)

use std::collections::VecDeque;

use super::{Broker, ConnId};
use crate::core::shard_msg::ShardMsg;

/// What must be on disk before something may leave: this shard's records through
/// `records`, and for each peer, the durable deliveries sent to it through `peers[p]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct CommitMark {
    records: u64,
    peers: Vec<u64>,
}

impl CommitMark {
    /// Output made now waits for the records made so far.
    pub fn set_records(&mut self, records: u64) {
        self.records = records;
    }

    /// It waits too for the durable deliveries sent to `peer` through `sent`.
    fn set_peer(&mut self, peer: usize, sent: u64, shards: usize) {
        if self.peers.len() < shards {
            self.peers.resize(shards, 0);
        }
        self.peers[peer] = sent;
    }
}

/// The pairwise counts of durable deliveries between this shard and each peer.
#[derive(Debug, Default)]
pub(super) struct PeerCommits {
    /// QoS 1/2 deliveries sent to each peer.
    sent: Vec<u64>,
    /// How many of those each peer reports committed.
    acked: Vec<u64>,
    /// What this shard last reported to each peer.
    reported: Vec<u64>,
    /// QoS 1/2 deliveries taken from each peer.
    taken: Vec<u64>,
    /// Reports owed to peers: (what must be on disk first, peer, its count to report).
    due: VecDeque<(CommitMark, usize, u64)>,
}

impl PeerCommits {
    pub fn new(shards: usize) -> PeerCommits {
        PeerCommits {
            sent: vec![0; shards],
            acked: vec![0; shards],
            reported: vec![0; shards],
            taken: vec![0; shards],
            due: VecDeque::new(),
        }
    }
}

impl Broker {
    /// Sends a message to another shard, counting it if the receiver must commit it.
    pub(super) fn send_to_shard(&mut self, to: usize, msg: ShardMsg) {
        if self.journal.is_some() && msg.is_durable_delivery() {
            self.peer_commits.sent[to] += 1;
            // The publisher's ack waits for the peer's commit of it.
            if let Some(super::Feeder::Conn(id)) = self.feeder {
                let (sent, shards) = (self.peer_commits.sent[to], self.shards);
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.out_needs.set_peer(to, sent, shards);
                }
            }
        }
        self.router.send(to, msg);
    }

    /// A message taken from shard `from`, before it is handled.
    pub(super) fn taking_from_shard(&mut self, from: usize, msg: &ShardMsg) {
        if self.journal.is_some() && msg.is_durable_delivery() {
            self.peer_commits.taken[from] += 1;
        }
    }

    /// After a batch from `from`: once what it made is on disk, `from` hears how far it is.
    pub(super) fn taken_from_shard(&mut self, from: usize) {
        if self.journal.is_none() {
            return;
        }
        let taken = self.peer_commits.taken[from];
        let reported = self
            .peer_commits
            .due
            .iter()
            .rev()
            .find(|d| d.1 == from)
            .map_or(self.peer_commits.reported[from], |d| d.2);
        if taken > reported {
            let mut mark = CommitMark::default();
            mark.set_records(self.journal_made);
            self.peer_commits.due.push_back((mark, from, taken));
            self.release_committed();
        }
    }

    /// Shard `from` has committed the durable deliveries this one sent it through `through`.
    pub(super) fn peer_committed(&mut self, from: usize, through: u64) {
        let acked = &mut self.peer_commits.acked[from];
        *acked = (*acked).max(through);
        self.release_committed();
    }

    /// The first `through` records are on disk: output waiting for them may leave.
    pub fn committed(&mut self, through: u64) {
        self.journal_committed = self.journal_committed.max(through);
        self.release_committed();
    }

    pub(super) fn reached(&self, mark: &CommitMark) -> bool {
        mark.records <= self.journal_committed
            && mark
                .peers
                .iter()
                .zip(&self.peer_commits.acked)
                .all(|(needed, acked)| needed <= acked)
    }

    /// Lets go what waited for commits that are now in: connections' output and reports to
    /// peers.
    fn release_committed(&mut self) {
        for id in std::mem::take(&mut self.awaiting_commit) {
            let ready = match self.conns.get(&id) {
                Some(conn) => self.reached(&conn.out_needs),
                None => continue,
            };
            if !ready {
                self.awaiting_commit.push(id);
                continue;
            }
            let conn = self.conns.get_mut(&id).expect("looked up above");
            conn.awaiting_commit = false;
            if !std::mem::replace(&mut conn.queued_for_flush, true) {
                self.flush_queue.push(id);
            }
        }
        while let Some((mark, peer, through)) = self.peer_commits.due.front() {
            if !self.reached(mark) {
                break;
            }
            let (peer, through) = (*peer, *through);
            self.peer_commits.due.pop_front();
            self.peer_commits.reported[peer] = through;
            self.router.send_durable_ack(peer, through);
        }
    }

    /// Whether the connection's output must wait for commits; if so it is put on the list of
    /// those waiting.
    pub(super) fn output_waits(&mut self, id: ConnId) -> bool {
        let Some(conn) = self.conns.get(&id) else {
            return false;
        };
        if self.reached(&conn.out_needs) {
            return false;
        }
        let conn = self.conns.get_mut(&id).expect("looked up above");
        conn.queued_for_flush = false;
        if !std::mem::replace(&mut conn.awaiting_commit, true) {
            self.awaiting_commit.push(id);
        }
        true
    }
}
