//! The end-to-end tests: one test binary (`cargo test --test e2e`, one module a feature:
//! `cargo test --test e2e sessions::`), for 3.1, 3.1.1 and 5.0 alike. Each test starts its own
//! `ringmq` on a free loopback port (see `common`), so they run in parallel like the tests of
//! any binary. The soak runs alone, in its own binary (`tests/soak.rs`): it saturates the
//! machine by design, and the tests beside it would miss their deadlines.

mod common;

mod auth;
mod bad_input;
mod bridge;
mod config_file;
mod conformance;
mod connect;
mod crash;
mod cross_shard;
mod durable;
mod features;
mod flow_control;
mod hostile;
mod interop;
mod keepalive;
mod lifecycle;
mod limits;
mod logging;
mod prometheus;
mod properties;
mod proxy_protocol;
mod qos;
mod retained_will;
mod scale_out;
mod sessions;
mod shared;
mod spill;
mod store_full;
mod subscriptions;
mod sys_topics;
mod tls;
mod topic_aliases;
mod versions;
mod websockets;
