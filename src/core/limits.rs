//! The per-shard limits the core enforces.

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest packet accepted from a client, in bytes.
    pub max_packet_size: u32,
    /// Outgoing QoS 1/2 messages awaiting acknowledgement per session (lowered to a 5.0
    /// client's Receive Maximum).
    pub max_inflight: u16,
    /// Messages queued per session beyond the inflight window (offline or slow clients).
    pub max_queued_messages: usize,
    /// Bytes of topic and payload queued per session.
    pub max_queued_bytes: usize,
    /// Encoded bytes waiting on one connection's socket before new deliveries queue instead.
    pub write_high_water: usize,
    /// Connected clients per shard; further CONNECTs are refused (5.0: 0x97 Quota exceeded).
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: 1024 * 1024,
            max_inflight: 256,
            max_queued_messages: 10_000,
            max_queued_bytes: 64 * 1024 * 1024,
            write_high_water: 256 * 1024,
            max_connections: 100_000,
        }
    }
}
