//! Flow control seen from the shell: when not to read a connection (its output piles up, what
//! it publishes waits for a slow shard, or a subscriber of its QoS 1/2 messages is behind) and
//! when not to take a peer shard's batches; and when to look again.

use std::time::{Duration, Instant};

use super::{Broker, ConnId, SessionKey};

/// Messages waiting for another shard past which the connections whose publishes feed them
/// stop being read until they drain below [`OUTBOX_LOW_WATER`].
pub const OUTBOX_HIGH_WATER: usize = 64 * 1024;
pub const OUTBOX_LOW_WATER: usize = OUTBOX_HIGH_WATER / 2;

/// Why the shell should stop reading a connection for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPause {
    /// Its output is over the high-water mark: read again once it is written.
    Output,
    /// What it published waits for another shard: read again once the outboxes drain, or
    /// after `trickle` all the same, so that a PINGREQ it sent meanwhile is answered within
    /// its keep alive.
    Outbox { trickle: Duration },
    /// A subscriber it publishes to is behind: ask again once the broker reports backlogs
    /// eased ([`Broker::take_eased`]), or after `recheck` (the subscriber may have stalled).
    Subscriber { recheck: Duration },
}

/// What a publisher (or a peer shard) is held back for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Hold {
    /// A subscriber's backlog.
    Session(SessionKey),
    /// A shared group whose members here are all behind: any of them catching up will do.
    Group(crate::core::filter::Filter),
}

/// Where the messages being routed come from: whom to hold back if a subscriber is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Feeder {
    Conn(ConnId),
    Peer(usize),
}

impl Broker {
    /// Stops reading from whoever feeds the message being routed, until `hold` eases:
    /// a publisher connection here, or another shard's mesh (whose publishers its filling
    /// outbox then holds).
    pub(super) fn hold_feeder(&mut self, hold: Hold) {
        let newly = match self.feeder {
            Some(Feeder::Conn(id)) => self
                .conns
                .get_mut(&id)
                .is_some_and(|c| c.held_by.replace(hold).is_none()),
            Some(Feeder::Peer(peer)) => self.peer_held[peer].replace(hold).is_none(),
            None => false,
        };
        if newly {
            self.counters.publishers_held += 1;
            if let Some(n) = self.logs.holds.record(1, self.now) {
                tracing::info!(
                    shard = self.shard,
                    held = n,
                    "subscribers behind their QoS 1/2 publishers; the publishers are slowed"
                );
            }
        }
    }

    /// Why not to read more from this connection now, if so: its own output is piling up
    /// (it writes but does not read), or the messages it published wait for a slow shard.
    pub fn read_pause(&mut self, id: ConnId) -> Option<ReadPause> {
        let outbox_len = self.outbox_len();
        let conn = self.conns.get_mut(&id)?;
        if conn.closing {
            return None;
        }
        if conn.outbox_paused && outbox_len <= OUTBOX_LOW_WATER {
            conn.outbox_paused = false;
        }
        if conn.link.out.len() + conn.link.unflushed >= self.limits.read_pause_high_water {
            return Some(ReadPause::Output);
        }
        if self.is_held(id) {
            return Some(ReadPause::Subscriber {
                recheck: self.stall_recheck(),
            });
        }
        let conn = self.conns.get_mut(&id)?;
        // A client pings within its keep alive: a read a quarter of it apart finds the ping.
        let trickle = conn
            .keep_alive_limit
            .map_or(MAX_TRICKLE, |limit| limit / 6)
            .clamp(MIN_TRICKLE, MAX_TRICKLE);
        conn.outbox_paused.then_some(ReadPause::Outbox { trickle })
    }

    /// Whether connection `id`'s PUBLISHes wait for a subscriber's backlog (clearing the
    /// hold once that has drained, gone offline or stalled).
    pub(super) fn is_held(&mut self, id: ConnId) -> bool {
        let Some(hold) = self.conns.get(&id).and_then(|c| c.held_by.clone()) else {
            return false;
        };
        let holds = self.holds(&hold);
        if !holds {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.held_by = None;
            }
        }
        holds
    }

    /// Whether a hold stands: its subscriber (or every member of its group here) is still
    /// over the low-water mark, connected and taking messages.
    fn holds(&self, hold: &Hold) -> bool {
        let behind = |key: SessionKey| {
            self.sessions
                .get(&key)
                .is_some_and(|s| s.keeps_holding(&self.limits, self.now))
        };
        match hold {
            Hold::Session(key) => behind(*key),
            Hold::Group(group) => self
                .router
                .group(group)
                .is_some_and(|g| g.members().all(behind)),
        }
    }

    /// Whether to take the next batch from shard `peer` now; if not, when to ask again (a
    /// subscriber holding it may stall meanwhile). Ask again early once [`Broker::take_eased`].
    pub fn mesh_hold(&mut self, peer: usize, now: Instant) -> Option<Duration> {
        self.now = now;
        let hold = self.peer_held.get(peer)?.as_ref()?;
        if self.holds(hold) {
            return Some(self.stall_recheck());
        }
        self.peer_held[peer] = None;
        None
    }

    /// Whether a backlog that held publishers (or a peer shard) has drained since the last
    /// call: the shell lets them go on, asking [`Broker::read_pause`] / [`Broker::mesh_hold`].
    pub fn take_eased(&mut self) -> bool {
        std::mem::take(&mut self.eased)
    }

    /// How often a hold is looked at again, to release it once its subscriber has stalled.
    fn stall_recheck(&self) -> Duration {
        (self.limits.stall_timeout / 4).max(MIN_RECHECK)
    }

    /// Whether the outboxes have drained enough for publishers paused by them to go on.
    pub fn outbox_drained(&self) -> bool {
        self.outbox_len() <= OUTBOX_LOW_WATER
    }
}

/// The least time between looks at a hold.
const MIN_RECHECK: Duration = Duration::from_millis(10);

/// How often a publisher paused for a slow shard is read all the same, at least and at most.
const MIN_TRICKLE: Duration = Duration::from_millis(100);
const MAX_TRICKLE: Duration = Duration::from_secs(5);
