//! ringmq: a thread-per-core MQTT broker.
//!
//! - [`protocol`]: the sans-IO codec (bytes <-> packets).
//! - [`core`]: the sans-IO broker (sessions, routing, retained, wills) driven by packets and a clock.
//! - [`cluster`]: the route plane between nodes as NATS subjects (sans-IO; issue 17, started).
//! - [`harness`]: several core shards on one fake clock, for tests and benches.
//! - [`server`]: the glommio shell: shards, sockets and the shard mesh (feature `server`, on by
//!   default; `protocol` and `core` never depend on it, and build without it).

pub mod cluster;
#[cfg(feature = "server")]
pub mod config;
pub mod core;
pub mod harness;
#[cfg(feature = "server")]
pub mod logging;
pub mod metrics;
pub mod protocol;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod transport;
