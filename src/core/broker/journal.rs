//! The broker's side of the durable store: with persistence on, every change that must survive
//! a restart is framed as a [`Record`] the moment it is made, and the frames are handed out
//! ([`Broker::take_journal`]) for the shell to append to the shard's log as they are; at start,
//! [`Broker::restore`] rebuilds what the logs recovered.
//!
//! Recorded: sessions that outlive their connection, their subscriptions, the packet ids of
//! inbound QoS 2 messages awaiting PUBREL, wills waiting out their delay, retained messages,
//! and the QoS 1/2 messages durable sessions are owed (`deliveries`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::connection::NEVER_EXPIRES;
use super::Broker;
use crate::core::filter::Filter;
use crate::core::home_shard;
use crate::core::message::{Delivery, Message, SharedMessage};
use crate::core::session::{PendingWill, Session, Subscription};
use crate::core::sessions::SessionKey;
use crate::core::store::{
    scan, write_frame_with, MessageView, Record, Recovered, StoreSpace, StoredMessage,
};
use crate::protocol::{EncodeError, Will};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

/// The least room a new batch of frames starts with.
const MIN_JOURNAL_ROOM: usize = 4096;

/// The records made since the shell last took them, framed as the log holds them: the hot
/// path (`deliveries`) encodes straight from the messages and sessions, building no [`Record`].
#[derive(Debug, Default)]
pub(super) struct Journal {
    frames: BytesMut,
}

impl Journal {
    /// Frames one record written by `encode`. Records are made from what the codec accepted,
    /// which fits its fields; one that does not is left out, loudly.
    pub fn frame(&mut self, encode: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>) -> bool {
        match write_frame_with(&mut self.frames, encode) {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, "a record cannot be encoded: it is not stored");
                false
            }
        }
    }
}

impl Broker {
    /// Turns persistence on: from now on changes are recorded.
    pub fn with_journal(mut self) -> Broker {
        self.journal = Some(Journal::default());
        self
    }

    /// Shares the durable store's room with the other shards: while it is full, new QoS 1/2
    /// publishes are refused.
    pub fn with_store_space(mut self, space: Arc<StoreSpace>) -> Broker {
        self.store_space = space;
        self
    }

    /// The records made since the last call, framed, in order, and the count of records made
    /// so far: once these are on disk, hand that count to [`Broker::committed`]. Group commit:
    /// all the records of a read batch go in one write and one sync, and the output the batch
    /// made (its acks among it) leaves only after.
    pub fn take_journal(&mut self) -> (Bytes, u64) {
        // The next batch gets room for as much as this one had: no growing (and copying)
        // through every size on the way.
        let frames = self
            .journal
            .as_mut()
            .map(|j| {
                let room = j.frames.len().max(MIN_JOURNAL_ROOM);
                std::mem::replace(&mut j.frames, BytesMut::with_capacity(room)).freeze()
            })
            .unwrap_or_default();
        (frames, self.journal_made)
    }

    /// [`Broker::take_journal`], its frames read back as records (for tests).
    pub fn take_records(&mut self) -> (Vec<Record>, u64) {
        let (frames, through) = self.take_journal();
        let found = scan(&frames);
        assert!(found.damage.is_none(), "the journal's own frames read back");
        (found.records, through)
    }

    /// Whether records wait to be taken ([`Broker::take_journal`]).
    pub fn has_records(&self) -> bool {
        self.journal.as_ref().is_some_and(|j| !j.frames.is_empty())
    }

    /// Records a retained message set or cleared, on the shard that decided it: its
    /// publisher's PUBACK then waits for the record. A broker-wide sequence orders the updates
    /// of one topic decided on different shards.
    pub(super) fn journal_retained(&mut self, message: &SharedMessage) {
        if self.journal.is_some() {
            let seq = self.quota.next_retain_seq();
            self.journal(|| retained(message, seq));
            let kept = (!message.payload().is_empty()).then(|| message.clone());
            self.logged_retained
                .insert(message.topic().into(), (seq, kept));
        }
    }

    /// Records what `make` builds, if persistence is on.
    pub(super) fn journal(&mut self, make: impl FnOnce() -> Record) {
        self.journal_encoded(|out| make().encode(out));
    }

    /// Records what `encode` writes (a kind byte and a body), if persistence is on.
    pub(super) fn journal_encoded(
        &mut self,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
    ) {
        if let Some(journal) = &mut self.journal {
            if journal.frame(encode) {
                self.records_made(1);
            }
        }
    }

    /// `n` more records were framed: messages to other shards from now on wait for them.
    pub(super) fn records_made(&mut self, n: u64) {
        self.journal_made += n;
        self.router.records_made(self.journal_made);
    }

    /// A session with a non-zero expiry outlives its connection: it is (again) in the log.
    pub(super) fn journal_session(&mut self, key: SessionKey, expiry: u32) {
        if self.journal.is_none() || expiry == 0 {
            return;
        }
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        session.durable = true;
        let client_id = session.client_id.clone();
        self.flush_session_end(&client_id);
        self.journal(|| Record::SessionOpen { client_id, expiry });
    }

    /// Rebuilds what the logs of every shard recovered: the sessions homed here (offline,
    /// their expiry counting from now) with their subscriptions, and every retained message.
    pub fn restore(&mut self, recovered: &Recovered) {
        let now = self.now;
        self.restored_at = Some(now);
        let mut new_routes = Vec::new();
        // One copy of each message, however many sessions are owed it.
        let mut messages: BTreeMap<u64, SharedMessage> = BTreeMap::new();
        self.restore_message_ids(recovered.max_message_id);
        for (client_id, saved) in &recovered.sessions {
            if home_shard(client_id.as_bytes(), self.shards) != self.shard
                || self.sessions.key_of(client_id).is_some()
            {
                continue;
            }
            if !self.quota.try_add_session(self.limits.max_sessions) {
                tracing::warn!(shard = self.shard, client = %client_id, "session limit reached; a stored session is not restored");
                continue;
            }
            let mut session = Session::new(client_id.clone(), saved.expiry);
            session.durable = true;
            let key = self.sessions.create(session);
            for (filter, &(options, id)) in &saved.subscriptions {
                let subscription = Subscription {
                    options,
                    id: (id != 0).then_some(id),
                    since: now,
                };
                let filter = Filter::from(filter.clone());
                if let Some(session) = self.sessions.get_mut(&key) {
                    session.subscriptions.insert(filter.text(), subscription);
                }
                if self.router.subscribe(&filter, key, subscription) {
                    new_routes.push(filter);
                }
            }
            if let Some(session) = self.sessions.get_mut(&key) {
                for (&pkid, &receipt) in &saved.awaiting_pubrel {
                    session.restore_qos2(pkid, receipt);
                }
                session.receipts.extend(saved.receipts.iter().copied());
                for &receipt in &saved.receipts {
                    self.receipt_holders.entry(receipt).or_default().push(key);
                }
                for (&id, owed) in &saved.owed {
                    let Some(stored) = recovered.messages.get(&id) else {
                        continue; // Counted as dangling by the recovery.
                    };
                    let message = messages
                        .entry(id)
                        .or_insert_with(|| message_of(stored, now));
                    let owing = &owed.owing;
                    let mut delivery = Delivery::new(message.clone(), owing.qos, owing.retain);
                    delivery
                        .subscription_ids
                        .clone_from(&owing.subscription_ids);
                    delivery.stored = id;
                    session.restore_owed(delivery, owing.pkid, owed.released, &self.limits);
                }
            }
            self.spill_session(key);
            if let Some((delay, stored)) = &saved.will {
                let due = now + Duration::from_secs(u64::from(*delay));
                if let Some(session) = self.sessions.get_mut(&key) {
                    session.pending_will = Some(Box::new(PendingWill {
                        due,
                        will: Box::new(will_of(stored)),
                    }));
                }
                self.arm_session(key, due);
            }
            if saved.expiry != NEVER_EXPIRES {
                let at = now + Duration::from_secs(u64::from(saved.expiry));
                if let Some(session) = self.sessions.get_mut(&key) {
                    session.expires_at = Some(at);
                }
                self.arm_session(key, at);
            }
        }
        if !new_routes.is_empty() {
            self.router.announce(new_routes);
        }
        for stored in recovered.retained.values() {
            let message = message_of(stored, now);
            self.retained.update(&message, None);
            // The start's snapshot put it in its topic's home shard's log, at sequence 0.
            if home_shard(stored.topic.as_bytes(), self.shards) == self.shard {
                self.logged_retained
                    .insert(stored.topic.clone(), (0, Some(message)));
            }
        }
    }
}

/// The record of a retained message set (or, with an empty payload, cleared).
pub(super) fn retained(message: &Message, seq: u64) -> Record {
    if message.payload().is_empty() {
        return Record::RetainClear {
            seq,
            topic: message.topic().into(),
        };
    }
    Record::RetainSet {
        seq,
        message: stored_message(message),
    }
}

/// A message as a record holds it, borrowed.
pub(super) fn message_view(message: &Message) -> MessageView<'_> {
    MessageView {
        topic: message.topic(),
        payload: message.payload(),
        qos: message.qos,
        retain: message.retain,
        properties: &message.properties,
    }
}

/// A message as stored, owning its bytes.
pub(super) fn stored_message(message: &Message) -> StoredMessage {
    StoredMessage {
        topic: message.topic().into(),
        payload: bytes::Bytes::copy_from_slice(message.payload()),
        qos: message.qos,
        retain: message.retain,
        properties: message.properties.compacted(),
    }
}

/// A will as stored.
pub(super) fn stored_will(will: &Will) -> StoredMessage {
    StoredMessage {
        topic: will.topic.clone(),
        payload: will.payload.clone(),
        qos: will.qos,
        retain: will.retain,
        properties: will.properties.compacted(),
    }
}

/// A stored will, owning its bytes (not slices of the segment it was read from).
fn will_of(stored: &StoredMessage) -> Will {
    Will {
        topic: ByteString::from(&*stored.topic),
        payload: bytes::Bytes::copy_from_slice(&stored.payload),
        qos: stored.qos,
        retain: stored.retain,
        properties: stored.properties.compacted(),
    }
}

/// A stored message as the broker routes it, owning its bytes.
fn message_of(stored: &StoredMessage, now: std::time::Instant) -> SharedMessage {
    Arc::new(plain_message_of(stored, now))
}

/// [`message_of`], before it is shared (its times may still be set).
pub(super) fn plain_message_of(stored: &StoredMessage, now: std::time::Instant) -> Message {
    let mut message = Message::new(&stored.topic, &stored.payload, stored.qos, now);
    message.retain = stored.retain;
    message.properties = stored.properties.compacted();
    message
}
