//! ringmq: a thread-per-core MQTT broker.
//!
//! - [`protocol`]: the sans-IO codec (bytes <-> packets).
//! - [`core`]: the sans-IO broker (sessions, routing, retained, wills) driven by packets and a clock.
//! - [`server`]: the glommio shell: shards, sockets and the shard mesh.

pub mod config;
pub mod core;
pub mod metrics;
pub mod protocol;
pub mod server;
