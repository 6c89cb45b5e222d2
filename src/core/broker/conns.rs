//! The connections of one shard and their counts: attached to a session (what
//! `--max-connections` counts for CONNECT), closing (lingering for the client to read its last
//! words, no longer taking a place), and live (every other socket).

use std::time::{Duration, Instant};

use ahash::AHashMap;

use super::flow::Hold;
use super::{ConnId, SessionKey};
use crate::core::session::Link;
use crate::core::topic_alias::InboundAliases;
use crate::protocol::ProtocolVersion;

#[derive(Debug, Default)]
pub(super) struct Connections {
    /// Boxed, like the sessions: a hash table holds its values in place, so unboxed the
    /// table's spare capacity cost a few hundred bytes per connection.
    map: AHashMap<ConnId, Box<Conn>>,
    last_id: ConnId,
    attached: usize,
    closing: usize,
}

impl std::ops::Index<&ConnId> for Connections {
    type Output = Conn;
    fn index(&self, id: &ConnId) -> &Conn {
        &self.map[id]
    }
}

impl Connections {
    pub fn insert(&mut self, conn: Conn) -> ConnId {
        self.last_id += 1;
        self.map.insert(self.last_id, Box::new(conn));
        self.last_id
    }

    /// Takes a connection out, with its place in the counts.
    pub fn remove(&mut self, id: &ConnId) -> Option<Box<Conn>> {
        let conn = self.map.remove(id)?;
        self.closing -= usize::from(conn.closing);
        self.attached -= usize::from(conn.session.is_some());
        Some(conn)
    }

    pub fn get(&self, id: &ConnId) -> Option<&Conn> {
        self.map.get(id).map(|c| &**c)
    }

    pub fn get_mut(&mut self, id: &ConnId) -> Option<&mut Conn> {
        self.map.get_mut(id).map(|c| &mut **c)
    }

    pub fn contains_key(&self, id: &ConnId) -> bool {
        self.map.contains_key(id)
    }

    /// Marks it closing (once): it no longer takes a place among the live ones.
    pub fn mark_closing(&mut self, id: ConnId) {
        if let Some(conn) = self.map.get_mut(&id) {
            if !std::mem::replace(&mut conn.closing, true) {
                self.closing += 1;
            }
        }
    }

    /// Attaches a session to it.
    pub fn attach(&mut self, id: ConnId, key: SessionKey) {
        if let Some(conn) = self.map.get_mut(&id) {
            if conn.session.replace(key).is_none() {
                self.attached += 1;
            }
        }
    }

    /// Takes its session away; returns it.
    pub fn detach(&mut self, id: ConnId) -> Option<SessionKey> {
        let key = self.map.get_mut(&id)?.session.take()?;
        self.attached -= 1;
        Some(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Connections with a session.
    pub fn attached(&self) -> usize {
        self.attached
    }

    /// Connections not on their way out.
    pub fn live(&self) -> usize {
        self.map.len() - self.closing
    }

    pub fn values(&self) -> impl Iterator<Item = &Conn> {
        self.map.values().map(|c| &**c)
    }

    pub fn ids(&self) -> Vec<ConnId> {
        self.map.keys().copied().collect()
    }
}

#[derive(Debug)]
pub(super) struct Conn {
    pub link: Link,
    /// Changed only through [`Connections::attach`] / [`Connections::detach`] (the counts).
    pub session: Option<SessionKey>,
    /// Boxed: most clients have none. Owns all its bytes (see `keep_will`).
    pub will: Option<Box<crate::protocol::Will>>,
    /// 1.5 x the keep alive in force (MQTT-3.1.2-24); None for 0.
    pub keep_alive_limit: Option<Duration>,
    pub last_seen: Instant,
    pub closing: bool,
    /// Closed at once, without waiting for its output: it made no progress writing.
    pub aborted: bool,
    /// Opened while the shard was at its connection limit: its CONNECT is refused.
    pub over_limit: bool,
    /// Its publishes went to another shard's outbox above the high-water mark: not read until
    /// that drains.
    pub outbox_paused: bool,
    /// A QoS 1/2 message it published was queued for this connected session past its
    /// high-water mark: its PUBLISHes are not read until that backlog drains.
    pub held_by: Option<Hold>,
    pub write: WriteProgress,
    /// The earliest time the broker's timers will look at this connection, if any: one
    /// entry per connection covers its CONNECT deadline, keep alive and stalled output.
    pub timer_armed: Option<Instant>,
    pub queued_for_flush: bool,
    pub inbound_aliases: InboundAliases,
    /// 5.0 Request Problem Information: reason strings on acks allowed.
    pub problem_information: bool,
    /// A bridge (Mosquitto's protocol level with the top bit set): its subscriptions get no
    /// echo of its own messages and the retain flag as published.
    pub bridge: bool,
    /// Session Expiry Interval of the CONNECT: 0 may not become non-zero (MQTT-3.14.2-2).
    pub connect_expiry: u32,
    /// Its first packet is still to be looked at for the home shard of its session.
    pub may_hand_off: bool,
    /// What must be on disk before its output leaves (group commit; nothing without
    /// persistence).
    pub out_needs: super::commit::CommitMark,
    /// On the broker's list of connections waiting for a commit.
    pub awaiting_commit: bool,
}

/// Whether a connection's output keeps moving. What was pending when the clock started must
/// all be written before the deadline: a client that reads a byte now and then does not
/// restart the clock, one that keeps reading always meets it.
#[derive(Debug, Default)]
pub(super) struct WriteProgress {
    /// Bytes written since the connection opened.
    pub written: u64,
    /// The total `written` must reach, and by when.
    pub mark: Option<(u64, Instant)>,
}

impl Conn {
    /// A socket just accepted (or handed over), before its CONNECT.
    pub fn new(now: Instant, over_limit: bool, may_hand_off: bool) -> Conn {
        Conn {
            link: Link::new(ProtocolVersion::V3_1_1),
            session: None,
            will: None,
            keep_alive_limit: None,
            last_seen: now,
            closing: false,
            aborted: false,
            over_limit,
            outbox_paused: false,
            held_by: None,
            write: WriteProgress::default(),
            timer_armed: None,
            queued_for_flush: false,
            inbound_aliases: InboundAliases::default(),
            problem_information: true,
            bridge: false,
            connect_expiry: 0,
            may_hand_off,
            out_needs: Default::default(),
            awaiting_commit: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn {
        Conn::new(Instant::now(), false, false)
    }

    #[test]
    fn the_counts_follow_every_change() {
        let mut conns = Connections::default();
        let (a, b) = (conns.insert(conn()), conns.insert(conn()));
        assert_ne!(a, b);
        conns.attach(a, 7);
        conns.attach(a, 7);
        assert_eq!((conns.len(), conns.attached(), conns.live()), (2, 1, 2));
        conns.mark_closing(a);
        conns.mark_closing(a);
        assert_eq!(conns.live(), 1);
        assert_eq!(conns.detach(a), Some(7));
        assert_eq!(conns.detach(a), None);
        conns.attach(b, 8);
        assert!(conns.remove(&b).is_some());
        assert!(conns.remove(&a).is_some());
        assert_eq!((conns.len(), conns.attached(), conns.live()), (0, 0, 0));
    }
}
