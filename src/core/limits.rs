//! The limits the core enforces: every resource a client can make the broker hold is bounded by
//! one of these.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest packet accepted from a client, in bytes.
    pub max_packet_size: u32,
    /// Outgoing QoS 1/2 messages awaiting acknowledgement per session (lowered to a 5.0
    /// client's Receive Maximum).
    pub max_inflight: u16,
    /// Messages queued per session beyond the inflight window (offline or slow clients).
    pub max_queued_messages: usize,
    /// Bytes of topic, payload and properties queued per session, in memory.
    pub max_queued_bytes: usize,
    /// With persistence on: queued QoS 1/2 messages of a durable session kept in memory; the
    /// ones behind them live in the store only (`broker::spill`) until the queue is down to
    /// half of this. Up to `max_queued_messages` in all.
    pub max_queued_in_memory: usize,
    /// Encoded bytes waiting on one connection's socket before new deliveries queue instead.
    pub write_high_water: usize,
    /// Encoded bytes waiting on one connection's socket past which the broker stops reading
    /// from it: a client that writes but never reads cannot make it pile up acks.
    pub read_pause_high_water: usize,
    /// Sockets per shard, CONNECT sent or not; further CONNECTs are refused (5.0: 0x97).
    pub max_connections: usize,
    /// Levels (`/`-separated) in a topic name or filter.
    pub max_topic_levels: usize,
    /// Subscriptions per session.
    pub max_subscriptions: usize,
    /// Sessions in the whole broker, connected or not (counted by [`super::quota::Quota`]).
    pub max_sessions: usize,
    /// A socket that sends no CONNECT within this time is closed.
    pub connect_timeout: Duration,
    /// A connection whose pending output does not get written within this time is closed.
    pub write_timeout: Duration,
    /// A connected session that takes nothing (no ack, no byte written) for this long while
    /// it has messages waiting is stalled: it no longer slows its publishers, and its messages
    /// queue up to its limits, then drop.
    pub stall_timeout: Duration,
    /// Expiry of sessions that would otherwise never expire (3.x clean session 0, 5.0
    /// 0xFFFFFFFF), in seconds; None: they never do (Mosquitto's
    /// `persistent_client_expiration`).
    pub persistent_client_expiration: Option<u32>,
    /// The longest Session Expiry Interval granted, in seconds.
    pub max_session_expiry: Option<u32>,
    /// Bytes of topics one connection's outbound topic aliases may hold.
    pub max_alias_bytes: usize,
    /// Retained messages (all topics) and their bytes.
    pub max_retained_messages: usize,
    pub max_retained_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

impl Limits {
    /// The defaults, which the command line's defaults are too.
    pub const DEFAULT: Limits = Limits {
        max_packet_size: 1024 * 1024,
        max_inflight: 256,
        max_queued_messages: 10_000,
        max_queued_bytes: 64 * 1024 * 1024,
        max_queued_in_memory: 1000,
        write_high_water: 256 * 1024,
        read_pause_high_water: 512 * 1024,
        max_connections: 100_000,
        max_topic_levels: 128,
        max_subscriptions: 10_000,
        max_sessions: 1_000_000,
        connect_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(30),
        stall_timeout: Duration::from_secs(2),
        persistent_client_expiration: None,
        max_session_expiry: None,
        max_alias_bytes: 16 * 1024,
        max_retained_messages: 1_000_000,
        max_retained_bytes: 512 * 1024 * 1024,
    };

    /// The backlog (messages, bytes) of a connected session past which the publishers of QoS
    /// 1/2 messages for it are no longer read, and past which QoS 0 messages for it drop: the
    /// room above it is for the QoS 1/2 messages already on their way, which must not drop.
    pub fn queue_high_water(&self) -> (usize, usize) {
        (
            (self.max_queued_messages / 2).max(1),
            (self.max_queued_bytes / 2).max(1),
        )
    }

    /// The backlog at or below which the publishers it held are read again.
    pub fn queue_low_water(&self) -> (usize, usize) {
        let (messages, bytes) = self.queue_high_water();
        (messages / 2, bytes / 2)
    }

    /// The Session Expiry Interval a session gets for the one it asked for (`u32::MAX`: never).
    pub fn granted_expiry(&self, asked: u32) -> u32 {
        let asked = match (asked, self.persistent_client_expiration) {
            (u32::MAX, Some(secs)) => secs,
            _ => asked,
        };
        self.max_session_expiry.map_or(asked, |max| asked.min(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_expiry_applies_the_persistent_expiration_then_the_cap() {
        let open = Limits::default();
        assert_eq!(open.granted_expiry(u32::MAX), u32::MAX);
        assert_eq!(open.granted_expiry(60), 60);
        let bounded = Limits {
            persistent_client_expiration: Some(3600),
            max_session_expiry: Some(600),
            ..Limits::default()
        };
        assert_eq!(bounded.granted_expiry(u32::MAX), 600);
        assert_eq!(bounded.granted_expiry(7200), 600);
        assert_eq!(bounded.granted_expiry(60), 60);
        assert_eq!(bounded.granted_expiry(0), 0);
        let expiring = Limits {
            persistent_client_expiration: Some(3600),
            ..Limits::default()
        };
        assert_eq!(expiring.granted_expiry(u32::MAX), 3600);
        assert_eq!(expiring.granted_expiry(86_400), 86_400);
    }
}
