//! What shards tell each other. The server carries these over the mesh in batches.

use super::filter::Filter;
use super::message::SharedMessage;

#[derive(Debug, Clone)]
pub enum ShardMsg {
    /// A message published on another shard that matches a route to this one.
    Deliver(SharedMessage),
    /// A message for one member of the shared subscription `group` (`$share/{group}/{filter}`),
    /// which this shard has members of. `publisher` is the publisher's client id hash, for the
    /// by-publisher policy.
    DeliverShared {
        group: Filter,
        message: SharedMessage,
        publisher: u64,
        /// Shards whose members had no room for it, as a bit mask: it is passed on to one
        /// with members that has not tried yet, if any.
        tried: u64,
        /// With persistence on, when a shard passes on a QoS 1/2 message it took from a peer:
        /// its token, answered with [`ShardMsg::PassOnCommitted`] once the message is on disk
        /// wherever it went (0: none; see `broker::commit`).
        token: u64,
    },
    /// A retained message (or its deletion) to store in this shard's replica.
    Retain(SharedMessage),
    /// `shard` gained its first local subscriber on `filter` (a `$share/...` filter for a
    /// shared group member). A non-zero `sync` asks for a
    /// [`ShardMsg::RouteAck`] once applied: the SUBACK waits for every shard's.
    RouteAdd {
        filter: Filter,
        shard: usize,
        sync: u64,
        /// The origin's route change number (see `router::hints`).
        seq: u64,
    },
    /// `shard` lost its last local subscriber on `filter`. A non-zero `sync` asks for a
    /// [`ShardMsg::RouteAck`]: the UNSUBACK waits for every shard's.
    RouteRemove {
        filter: Filter,
        shard: usize,
        sync: u64,
        seq: u64,
    },
    /// Answered with [`ShardMsg::RouteAck`] once everything sent before it is applied.
    Barrier {
        sync: u64,
    },
    RouteAck {
        sync: u64,
    },
    /// With persistence on: the QoS 1/2 deliveries the receiver sent this shard, through the
    /// `through`-th, are on disk here (see `broker::commit`).
    DurableAck {
        through: u64,
    },
    /// The messages passed on with these tokens are on disk where they went.
    PassOnCommitted {
        tokens: Vec<u64>,
    },
    /// The publisher of the inbound QoS 2 message with this store receipt sent its PUBREL:
    /// sessions need not remember the receipt any more (see `message::Receipt`).
    ReceiptReleased {
        receipt: u64,
    },
}

impl ShardMsg {
    /// Whether the receiver must commit it (with persistence on): a QoS 1/2 delivery.
    pub fn is_durable_delivery(&self) -> bool {
        match self {
            ShardMsg::Deliver(message) | ShardMsg::DeliverShared { message, .. } => {
                message.qos > crate::protocol::QoS::AtMostOnce
            }
            _ => false,
        }
    }

    /// Whether, with persistence on, it may reach the peer only once the records this shard
    /// made before it are on disk: what a client could see through the peer and this shard
    /// could forget in a crash (see `router::outbox`). Route changes, retained updates (the
    /// retained message is the publisher's to send again until its PUBACK) and QoS 0
    /// deliveries need nothing on disk: unless a QoS 1/2 delivery waits before them, they go
    /// on while a full disk holds the store back.
    pub fn waits_for_records(&self) -> bool {
        match self {
            ShardMsg::ReceiptReleased { .. } => true,
            ShardMsg::Deliver(_) | ShardMsg::DeliverShared { .. } => self.is_durable_delivery(),
            ShardMsg::Retain(_)
            | ShardMsg::RouteAdd { .. }
            | ShardMsg::RouteRemove { .. }
            | ShardMsg::Barrier { .. }
            | ShardMsg::RouteAck { .. }
            | ShardMsg::DurableAck { .. }
            | ShardMsg::PassOnCommitted { .. } => false,
        }
    }
}
