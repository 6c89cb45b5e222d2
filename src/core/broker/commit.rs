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
//! publishing to each other would each wait for the other's report first, for ever.
//!
//! A shared-group message the receiver passes on (its members had no room) is on disk only
//! where it lands, so the receiver's report waits for that one message: the pass-on carries a
//! token, and the shard it lands on answers [`ShardMsg::PassOnCommitted`] once its records
//! are committed (a shard that passes it on again answers once the next one does). Token
//! answers wait only for records and for the answer of the same message further on, never for
//! a report, so they cannot wait in a circle. A report waits only for the tokens of messages
//! taken from the peer it goes to, and reports to different peers do not wait in line behind
//! each other: one peer holding this shard's answers back (flow control) holds up no other. The same tokens carry the messages a leaving
//! member of a group had not acknowledged to other shards: the member's record that it is
//! done with one waits for the answer.

use std::collections::{BTreeSet, VecDeque};

use ahash::AHashMap;
use bytestring::ByteString;

use super::{Broker, ConnId};
use crate::core::shard_msg::ShardMsg;
use crate::core::store::record::encode_delivered;
use crate::core::store::Record;

/// What must be on disk before something may leave: this shard's records through
/// `records`, and for each peer, the durable deliveries sent to it through `peers[p]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct CommitMark {
    records: u64,
    peers: Vec<u64>,
    /// For a report to a peer: every token through this one given to a message taken from
    /// that peer must be answered (0: none).
    pass_ons: u64,
    /// The peer such a report goes to.
    report_to: usize,
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
    /// Tokens given to messages taken from a peer and passed on, the last one first.
    last_pass_on: u64,
    /// Of those, the ones not answered yet, by the peer the message came from: reports to
    /// that peer wait for them (and only those: a token held up by one peer holds up no
    /// report to another).
    open_pass_ons: BTreeSet<(usize, u64)>,
    /// The peer each open token's message came from.
    open_from: AHashMap<u64, usize>,
    /// Passed on again: the token it went on with -> (the peer it came from, its token there).
    relayed: AHashMap<u64, (usize, u64)>,
    /// Answers owed for messages passed on to this shard that landed here: (records that must
    /// be on disk first, the peer, its token).
    landed: VecDeque<(u64, usize, u64)>,
    /// Messages taken from a leaving member and sent to another shard, by token: the record
    /// that the member is done with one (client id, message id) waits for the token's answer.
    held_removals: AHashMap<u64, (ByteString, u64)>,
    /// How many removals are held per client id.
    held_for: AHashMap<ByteString, usize>,
    /// Ended durable sessions whose end record waits for their held removals.
    ending: ahash::AHashSet<ByteString>,
}

impl PeerCommits {
    pub fn new(shards: usize) -> PeerCommits {
        PeerCommits {
            sent: vec![0; shards],
            acked: vec![0; shards],
            reported: vec![0; shards],
            taken: vec![0; shards],
            due: VecDeque::new(),
            last_pass_on: 0,
            open_pass_ons: BTreeSet::new(),
            open_from: AHashMap::new(),
            relayed: AHashMap::new(),
            landed: VecDeque::new(),
            held_removals: AHashMap::new(),
            held_for: AHashMap::new(),
            ending: ahash::AHashSet::new(),
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
            let mark = CommitMark {
                records: self.journal_made,
                peers: Vec::new(),
                pass_ons: self.peer_commits.last_pass_on,
                report_to: from,
            };
            self.peer_commits.due.push_back((mark, from, taken));
            self.release_committed();
        }
    }

    /// The token for a QoS 1/2 message of a shared group that this shard passes on, taken
    /// from `from` with token `came_with` (0: the first shard it was sent to). 0 when nothing
    /// waits for it: persistence off, or the message is this shard's own publisher's, whose
    /// ack waits for the peer's report of it (`send_to_shard`).
    pub(super) fn pass_on_token(&mut self, from: Option<usize>, came_with: u64) -> u64 {
        let Some(from) = from.filter(|_| self.journal.is_some()) else {
            return 0;
        };
        let commits = &mut self.peer_commits;
        commits.last_pass_on += 1;
        let token = commits.last_pass_on;
        if came_with == 0 {
            commits.open_pass_ons.insert((from, token));
            commits.open_from.insert(token, from);
        } else {
            commits.relayed.insert(token, (from, came_with));
        }
        token
    }

    /// The token for a message of a leaving member being sent to another shard
    /// (`reroute_shared`), 0 when there is none or nothing waits for it: the member's record
    /// that it is done with the message is held back until the message is on disk where it
    /// goes, so that a crash in between leaves it owed to the member, not lost.
    /// Taking `rerouting` is what tells `reroute_shared` that the removal is held.
    pub(super) fn reroute_token(&mut self) -> u64 {
        if self.journal.is_none() {
            return 0;
        }
        let Some((client_id, id)) = self.rerouting.take() else {
            return 0;
        };
        let commits = &mut self.peer_commits;
        commits.last_pass_on += 1;
        let token = commits.last_pass_on;
        *commits.held_for.entry(client_id.clone()).or_default() += 1;
        commits.held_removals.insert(token, (client_id, id));
        token
    }

    /// Whether a snapshot of the live state may be taken: not while a removal is held back,
    /// since the state no longer holds the message the log must keep owing until then.
    pub fn may_snapshot(&self) -> bool {
        self.peer_commits.held_removals.is_empty()
    }

    /// A durable session ends: its record waits while removals of its messages are held
    /// back (the end would drop what it is still owed in the log).
    pub(super) fn journal_session_end(&mut self, client_id: ByteString) {
        if self.peer_commits.held_for.contains_key(&client_id) {
            self.peer_commits.ending.insert(client_id);
        } else {
            self.journal(|| Record::SessionEnd { client_id });
        }
    }

    /// A session with this client id is made again: an end still held back goes first.
    pub(super) fn flush_session_end(&mut self, client_id: &ByteString) {
        if self.peer_commits.ending.remove(client_id) {
            let client_id = client_id.clone();
            self.journal(|| Record::SessionEnd { client_id });
        }
    }

    /// The held removal of message `id` from `client_id`'s log goes in now.
    fn release_removal(&mut self, client_id: ByteString, id: u64) {
        self.journal_encoded(|out| encode_delivered(out, &client_id, id));
        let commits = &mut self.peer_commits;
        if let Some(held) = commits.held_for.get_mut(&client_id) {
            *held -= 1;
            if *held == 0 {
                commits.held_for.remove(&client_id);
                if commits.ending.remove(&client_id) {
                    self.journal(|| Record::SessionEnd { client_id });
                }
            }
        }
    }

    /// A message passed on to this shard with `token` by `from` landed here: it is answered
    /// once the records made for it are on disk.
    pub(super) fn pass_on_landed(&mut self, from: usize, token: u64) {
        self.peer_commits
            .landed
            .push_back((self.journal_made, from, token));
        self.release_committed();
    }

    /// Shard `from` answered for messages this shard passed on to it.
    pub(super) fn pass_ons_committed(&mut self, tokens: Vec<u64>) {
        for token in tokens {
            if let Some(from) = self.peer_commits.open_from.remove(&token) {
                self.peer_commits.open_pass_ons.remove(&(from, token));
                continue;
            }
            if let Some((peer, came_with)) = self.peer_commits.relayed.remove(&token) {
                self.router.send_pass_on_committed(peer, came_with);
            } else if let Some((client_id, id)) = self.peer_commits.held_removals.remove(&token) {
                self.release_removal(client_id, id);
            }
        }
        self.release_committed();
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
            && (mark.pass_ons == 0
                || self
                    .peer_commits
                    .open_pass_ons
                    .range((mark.report_to, 0)..=(mark.report_to, mark.pass_ons))
                    .next()
                    .is_none())
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
        // In order per peer; a report still waiting holds up only later ones to its peer.
        if !self.peer_commits.due.is_empty() {
            let mut waiting = std::mem::take(&mut self.peer_commits.due);
            let mut held = vec![false; self.peer_commits.reported.len()];
            waiting.retain(|(mark, peer, through)| {
                if held[*peer] || !self.reached(mark) {
                    held[*peer] = true;
                    return true;
                }
                self.peer_commits.reported[*peer] = *through;
                self.router.send_durable_ack(*peer, *through);
                false
            });
            self.peer_commits.due = waiting;
        }
        while let Some(&(records, peer, token)) = self.peer_commits.landed.front() {
            if records > self.journal_committed {
                break;
            }
            self.peer_commits.landed.pop_front();
            self.router.send_pass_on_committed(peer, token);
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
