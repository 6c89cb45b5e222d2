//! Durable deliveries: with persistence on, a QoS 1/2 message for a session that outlives its
//! connection is logged on the session's shard (once per shard, however many sessions there
//! are owed it), and so is each step of its delivery to each session: owed (queued or sent
//! with its packet id), sent, PUBREC in, done. The publisher's PUBACK waits for these records
//! (`commit`), so an acknowledged message is on disk wherever it is owed. At start the owed
//! messages come back, queued or in flight with their packet ids.

use std::sync::Arc;

use super::journal::message_view;
use super::Broker;
use crate::core::message::Delivery;
use crate::core::session::DeliveryEvent;
use crate::core::sessions::SessionKey;
use crate::core::store::record::{
    encode_delivered, encode_message_record, encode_owed, encode_released, encode_sent,
};
use crate::protocol::QoS;

/// Message ids carry the shard that made them in their low bits, so that those of every
/// shard's log are distinct (shards are at most 64).
const SHARD_BITS: u32 = 6;

impl Broker {
    /// Gives `delivery` its store id if it is for a durable session and must survive a
    /// restart: a QoS 1/2 message, logged here the first time one of this shard's sessions
    /// is owed it.
    pub(super) fn store_delivery(&mut self, key: SessionKey, delivery: &mut Delivery) {
        let durable = self.journal.is_some()
            && delivery.qos > QoS::AtMostOnce
            && self.sessions.get(&key).is_some_and(|s| s.durable);
        if !durable {
            delivery.stored = 0;
            return;
        }
        if delivery.stored != 0 {
            return; // Stored already: passed on to another member of a shared group.
        }
        delivery.stored = match &self.last_stored {
            Some((message, id)) if Arc::ptr_eq(message, &delivery.message) => *id,
            _ => {
                let id = self.next_receipt();
                let message = message_view(&delivery.message);
                self.journal_encoded(|out| encode_message_record(out, id, message));
                // Holding the message keeps its address from being reused by another.
                self.last_stored = Some((delivery.message.clone(), id));
                id
            }
        };
    }

    /// Gives an inbound QoS 2 message from a durable session its receipt (see
    /// `message::Receipt`), unique across every shard's log like message ids.
    pub(super) fn next_receipt(&mut self) -> u64 {
        self.next_message_id += 1;
        self.next_message_id << SHARD_BITS | self.shard as u64
    }

    /// Logs what happened to the session's stored messages since the last call.
    pub(super) fn journal_deliveries(&mut self, key: SessionKey) {
        // Called on every delivery and ack: without persistence, not even a lookup.
        let Some(journal) = &mut self.journal else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        let mut made = 0;
        let client_id = &*session.client_id;
        for event in session.delivery_events.drain(..) {
            let framed = journal.frame(|out| match &event {
                DeliveryEvent::Owed(owing) => encode_owed(out, client_id, owing),
                DeliveryEvent::Sent { id, pkid } => encode_sent(out, client_id, *id, *pkid),
                DeliveryEvent::Released { id } => encode_released(out, client_id, *id),
                DeliveryEvent::Delivered { id } => encode_delivered(out, client_id, *id),
            });
            made += u64::from(framed);
            if let DeliveryEvent::Owed(owing) = &event {
                if owing.receipt != 0 {
                    self.receipt_holders
                        .entry(owing.receipt)
                        .or_default()
                        .push(key);
                }
            }
        }
        if made > 0 {
            self.records_made(made);
        }
    }

    /// The publisher released the inbound QoS 2 message `receipt` (on this shard: tell the
    /// others too): the sessions here that got it forget its receipt.
    pub(super) fn receipt_released(&mut self, receipt: u64, here: bool) {
        if here && self.shards > 1 {
            self.router
                .broadcast(crate::core::shard_msg::ShardMsg::ReceiptReleased { receipt });
        }
        for key in self.receipt_holders.remove(&receipt).unwrap_or_default() {
            if let Some(session) = self.sessions.get_mut(&key) {
                session.receipts.remove(&receipt);
            }
        }
    }

    /// New message ids go above every recovered one.
    pub(super) fn restore_message_ids(&mut self, max_recovered: u64) {
        self.next_message_id = self.next_message_id.max(max_recovered >> SHARD_BITS);
    }
}
