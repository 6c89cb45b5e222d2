//! The end-to-end tests: one test binary (`cargo test --test e2e`), one module per feature.
//! Each test starts its own `ringmq` on a free loopback port (see `common`), so they run in
//! parallel like the tests of any other binary. The soak runs alone, in its own binary
//! (`tests/soak.rs`): it saturates the machine by design.

mod common;

mod auth;
mod bad_input;
mod closing;
mod connect;
mod flow_control;
mod hostile;
mod interop;
mod keepalive;
mod lifecycle;
mod properties;
mod qos;
mod retained_will;
mod sessions;
mod shared;
mod subscriptions;
mod sys_topics;
mod topic_aliases;
mod v5_server;
mod v5_session;
mod v5_subscriptions;
mod versions;
