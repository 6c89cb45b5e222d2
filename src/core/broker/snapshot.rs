//! A snapshot of what this shard's log must hold, as of now: the log can be replaced by it
//! (followed by the records made after it) and every record before dropped. That bounds the
//! log by the live state instead of its history.
//!
//! What a shard's log holds: the durable sessions homed here (their expiry, subscriptions,
//! inbound QoS 2 state and receipts, a will waiting out its delay, the messages they are owed)
//! and, per topic, the last retained update this shard decided. Another shard's later update
//! of the same topic is in that shard's log with a higher sequence, and wins at recovery as
//! it would have before.
//!
//! Records are idempotent, so records made before the snapshot but written after it change
//! nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::journal::{retained, stored_message, stored_will};
use super::Broker;
use crate::core::session::Session;
use crate::core::store::{OwedMessage, Owing, Record, RecoveredSession, StoredMessage};

impl Broker {
    /// The records that rebuild this shard's durable state as of now, but for the `Message`
    /// records of spilled messages: the frames at [`Broker::spill_ranges`] go with them.
    pub fn snapshot_records(&self) -> Vec<Record> {
        let mut records = Vec::new();
        let mut written = BTreeSet::new();
        for session in self.sessions.values().filter(|s| s.durable) {
            let (saved, messages) = self.as_recovered(session);
            saved.records(&session.client_id, &messages, &mut written, &mut records);
            // Spilled messages: what is owed here; their `Message` records are the spill
            // files' frames, which the shell appends (`spill_ranges`).
            for spilled in session.spilled() {
                records.push(Record::Owed {
                    client_id: session.client_id.clone(),
                    owing: Owing {
                        id: spilled.stored,
                        qos: spilled.qos,
                        retain: spilled.retain,
                        subscription_ids: spilled.subscription_ids.clone(),
                        pkid: 0,
                        receipt: spilled.receipt.id,
                    },
                });
            }
        }
        for (topic, (seq, message)) in &self.logged_retained {
            records.push(match message {
                Some(message) => retained(message, *seq),
                None => Record::RetainClear {
                    seq: *seq,
                    topic: topic.clone(),
                },
            });
        }
        records
    }

    /// A live session as the store would recover it, with the messages it is owed.
    fn as_recovered(&self, session: &Session) -> (RecoveredSession, BTreeMap<u64, StoredMessage>) {
        let mut messages = BTreeMap::new();
        let mut owed = BTreeMap::new();
        for (delivery, pkid, released) in session.owed() {
            let id = delivery.stored;
            if id == 0 {
                continue; // Not durable (QoS 0).
            }
            messages.insert(id, stored_message(&delivery.message));
            let owing = Owing {
                id,
                qos: delivery.qos,
                retain: delivery.retain,
                subscription_ids: delivery.subscription_ids.clone(),
                pkid,
                receipt: delivery.message.receipt.id,
            };
            owed.insert(id, OwedMessage { owing, released });
        }
        let will = session.pending_will.as_ref().map(|pending| {
            let left = pending.due.saturating_duration_since(self.now);
            let delay = u32::try_from(left.as_secs()).unwrap_or(u32::MAX);
            (delay, stored_will(&pending.will))
        });
        let saved = RecoveredSession {
            expiry: session.expiry_interval,
            subscriptions: session
                .subscriptions
                .iter()
                .map(|(filter, sub)| (filter.clone(), (sub.options, sub.id.unwrap_or(0))))
                .collect(),
            awaiting_pubrel: session.inbound_qos2().collect(),
            receipts: session.receipts.iter().copied().collect(),
            will,
            owed,
        };
        (saved, messages)
    }
}
