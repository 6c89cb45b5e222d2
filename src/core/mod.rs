//! The sans-IO broker: sessions, the topic trie, routing and retained messages as plain state
//! machines. Packets and messages in, encoded bytes and shard messages out; the caller supplies
//! the clock. Nothing here touches a socket or an executor.

pub mod acl;
pub mod auth;
pub mod broker;
pub mod features;
pub mod filter;
pub mod limits;
pub mod link;
pub mod message;
pub mod quota;
pub mod retained;
pub mod router;
pub mod session;
pub mod sessions;
pub mod shard_msg;
pub mod spill;
pub mod store;
pub mod sys_topics;
pub mod timers;
pub mod topic_alias;
pub mod trie;

pub use broker::{Broker, Census, Closing, ConnId, Output, ReadPause, Receive};
pub use features::{Features, SharedPolicy};
pub use limits::Limits;
pub use message::{Delivery, Message, SharedMessage};
pub use shard_msg::ShardMsg;

/// A map for per-connection and per-session state. Its hasher is a zero-sized handle on one
/// random per-process ahash key, so an empty map is 32 bytes rather than 64 (no per-map random
/// state), and keys a client chooses cannot be crafted to collide: the key is not known
/// outside the process.
pub type SmallMap<K, V> = std::collections::HashMap<K, V, ProcessSeed>;
pub type SmallSet<K> = std::collections::HashSet<K, ProcessSeed>;

/// Builds hashers from one random key drawn once per process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessSeed;

impl std::hash::BuildHasher for ProcessSeed {
    type Hasher = ahash::AHasher;

    fn build_hasher(&self) -> ahash::AHasher {
        static STATE: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
        STATE.get_or_init(ahash::RandomState::new).build_hasher()
    }
}

/// The shard a client id's session lives on. Every shard computes the same answer (fixed seeds),
/// so a connection can be handed to its home shard right after CONNECT.
pub fn home_shard(client_id: &[u8], shards: usize) -> usize {
    const SEEDS: (u64, u64, u64, u64) = (
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    );
    let state = ahash::RandomState::with_seeds(SEEDS.0, SEEDS.1, SEEDS.2, SEEDS.3);
    (state.hash_one(client_id) % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    #[test]
    fn small_maps_hash_with_a_random_key() {
        let fixed = std::hash::BuildHasherDefault::<ahash::AHasher>::default();
        let keys = ["sensor-1", "a/b/c", "+", ""];
        let differs = keys
            .iter()
            .filter(|k| super::ProcessSeed.hash_one(k) != fixed.hash_one(k))
            .count();
        assert_eq!(
            differs,
            keys.len(),
            "the per-process key is not the fixed one"
        );
        assert_eq!(
            super::ProcessSeed.hash_one("x"),
            super::ProcessSeed.hash_one("x"),
            "one key for the whole process"
        );
    }

    #[test]
    fn home_shard_is_stable_and_spreads() {
        let a = super::home_shard(b"sensor-1", 4);
        assert_eq!(a, super::home_shard(b"sensor-1", 4));
        assert_eq!(super::home_shard(b"anything", 1), 0);
        let hits = (0..100)
            .map(|i| super::home_shard(format!("c{i}").as_bytes(), 2))
            .filter(|&s| s == 0)
            .count();
        assert!((20..80).contains(&hits), "{hits} of 100 on shard 0");
    }
}
