//! What travels between shards: batches of core messages, and connections handed to the shard
//! that is home to their client id.

use std::os::fd::RawFd;

use crate::core::ShardMsg;

pub enum Envelope {
    Batch(Vec<ShardMsg>),
    /// A socket (a dup of the accepting shard's fd) and the bytes already read from it,
    /// CONNECT included.
    Handoff {
        fd: RawFd,
        buffered: Vec<u8>,
    },
}
