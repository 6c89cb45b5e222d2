//! Messages on their way to a session that has just ended.
//!
//! A publish routed to another shard is acknowledged to its publisher at once, and reaches
//! that shard a moment later. If a subscriber's session ends meanwhile (a clean session's
//! client goes, a session expires), the message finds no one there: lost to that subscriber
//! after the broker accepted it. So an ended session leaves a tombstone with its
//! subscriptions until every other shard has answered a barrier sent behind it (the mesh is
//! first in, first out, so by then everything they sent before it has arrived), and a
//! message that arrives meanwhile for it is counted as dropped.

use std::time::Instant;

use bytestring::ByteString;

use super::{effective_qos, Broker};
use crate::core::message::SharedMessage;
use crate::core::session::Subscription;
use crate::protocol::topic::{matches, parse_shared};
use crate::protocol::QoS;

#[derive(Debug)]
pub(super) struct Tombstone {
    subscriptions: Vec<(ByteString, Subscription)>,
    ended: Instant,
    sync: u64,
}

impl Broker {
    /// Leaves a tombstone for a session that ends with these subscriptions.
    pub(super) fn bury(&mut self, subscriptions: Vec<(ByteString, Subscription)>) {
        let subscriptions: Vec<_> = subscriptions
            .into_iter()
            .filter(|(filter, sub)| {
                parse_shared(filter).is_none() && sub.options.qos > QoS::AtMostOnce
            })
            .collect();
        if subscriptions.is_empty() {
            return;
        }
        let Some(sync) = self.router.barrier() else {
            return;
        };
        self.tombstones.push(Tombstone {
            subscriptions,
            ended: self.now,
            sync,
        });
    }

    /// Counts a message from another shard that was on its way to sessions that ended.
    pub(super) fn mourn(&mut self, message: &SharedMessage) {
        if self.tombstones.is_empty() || message.qos == QoS::AtMostOnce {
            return;
        }
        let topic = message.topic();
        let lost = self
            .tombstones
            .iter()
            .filter(|t| message.published_at <= t.ended)
            .filter(|t| {
                t.subscriptions.iter().any(|(filter, sub)| {
                    matches(filter, topic)
                        && sub.since <= message.published_at
                        && effective_qos(message.qos, sub.options.qos) > QoS::AtMostOnce
                })
            })
            .count();
        self.note_drops(lost, |c| &mut c.dropped_subscriber_gone);
    }

    /// The barrier of `sync` came back from every shard: its tombstones can go.
    pub(super) fn lay_to_rest(&mut self, sync: u64) {
        self.tombstones.retain(|t| t.sync != sync);
    }
}
