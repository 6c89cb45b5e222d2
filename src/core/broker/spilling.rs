//! The broker's side of spilled queues (see `core::spill`): with spilling on, a durable
//! session's queued QoS 1/2 messages beyond `--max-queued-in-memory` go to the shard's spill
//! files, and come back a batch at a time as the session's queue drains.
//!
//! The shell carries out [`Broker::take_spill_io`] in order and hands each read back with
//! [`Broker::spill_loaded`].

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::journal::{message_view, plain_message_of};
use super::Broker;
use crate::core::message::Message;
use crate::core::sessions::SessionKey;
use crate::core::spill::{SpillIndex, SpillIo, SpillRange};
use crate::core::store::record::encode_message_record;
use crate::core::store::{scan, write_frame_with, Record};

/// A read of spilled messages on its way back.
#[derive(Debug)]
pub(super) struct SpillRead {
    key: SessionKey,
    /// The store ids it reads, in order: the session's first spilled ones.
    ids: Vec<u64>,
}

impl Broker {
    /// Turns spilling on (with persistence): sessions keep at most
    /// `Limits::max_queued_in_memory` queued messages in memory.
    pub fn with_spill(mut self) -> Broker {
        self.limits.max_queued_in_memory = self.spill_share;
        self.spill = Some(SpillIndex::default());
        self
    }

    /// What the shell must do with the spill files, in order.
    pub fn take_spill_io(&mut self) -> Vec<SpillIo> {
        self.spill
            .as_mut()
            .map(SpillIndex::take_io)
            .unwrap_or_default()
    }

    pub fn has_spill_io(&self) -> bool {
        self.spill.as_ref().is_some_and(SpillIndex::has_io)
    }

    /// Where every spilled message's frame is: a snapshot of the log appends them (the
    /// `Message` records of the `Owed` ones it has).
    pub fn spill_ranges(&self) -> Vec<SpillRange> {
        self.spill
            .as_ref()
            .map(SpillIndex::ranges)
            .unwrap_or_default()
    }

    /// Bytes in the spill files now.
    pub fn spill_bytes(&self) -> u64 {
        self.spill.as_ref().map_or(0, SpillIndex::bytes)
    }

    /// Messages spilled now, once each.
    pub fn spilled_now(&self) -> usize {
        self.spill.as_ref().map_or(0, SpillIndex::messages)
    }

    /// Puts what session `key` just spilled on disk (once per message).
    pub(super) fn spill_session(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if session.to_spill.is_empty() {
            return;
        }
        let spilled = std::mem::take(&mut session.to_spill);
        let Some(index) = self.spill.as_mut() else {
            return;
        };
        self.counters.spilled_messages += spilled.len() as u64;
        for (id, message) in spilled {
            index.hold(id, || frame(id, &message));
        }
    }

    /// Asks for the next spilled messages of session `key` once its in-memory queue is low.
    pub(super) fn load_spilled(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        let n = session.spill_to_load(&self.limits);
        if n == 0 {
            return;
        }
        let Some(index) = self.spill.as_mut() else {
            return;
        };
        let ids = session.start_loading(n);
        let ranges: Vec<SpillRange> = ids.iter().filter_map(|&id| index.range(id)).collect();
        if ranges.len() != ids.len() {
            // Every spilled message is held until its session loads or drops it.
            tracing::error!(
                shard = self.shard,
                "a spilled message is missing from the index"
            );
            session.spill_loading = 0;
            return;
        }
        self.next_spill_token += 1;
        let token = self.next_spill_token;
        index.read(token, ranges);
        self.spill_reads.insert(token, SpillRead { key, ids });
    }

    /// The frames of read `token`, in the order asked (fewer if the rest could not be read:
    /// those are dropped, counted). The session's messages join its in-memory queue and go
    /// out if it is connected.
    pub fn spill_loaded(&mut self, token: u64, frames: Vec<Bytes>) {
        let Some(read) = self.spill_reads.remove(&token) else {
            return;
        };
        let now = self.now;
        let Some(session) = self.sessions.get_mut(&read.key) else {
            return; // Gone: it let go of its spilled messages then.
        };
        let same = session.spill_loading == read.ids.len()
            && session.spilled().next().map(|s| s.stored) == read.ids.first().copied();
        if !same {
            return; // Ended and made again meanwhile.
        }
        let mut messages = Vec::with_capacity(read.ids.len());
        for (frame, spilled) in frames.iter().zip(session.spilled()) {
            let Some(stored) = decode(frame, spilled.stored) else {
                break;
            };
            let mut message = plain_message_of(&stored, now);
            message.expires_at = spilled.expires_at;
            message.published_at = spilled.published_at;
            message.receipt = spilled.receipt;
            messages.push(Arc::new(message));
        }
        let lost = session.finish_loading(messages, read.ids.len());
        let conn = session.conn;
        if let Some(index) = self.spill.as_mut() {
            for &id in &read.ids {
                index.release(id);
            }
        }
        if lost > 0 {
            tracing::error!(
                shard = self.shard,
                lost,
                "spilled messages could not be read back from the spill file: dropped, counted"
            );
            self.note_drops(lost, |c| &mut c.dropped_spill_unreadable);
        }
        self.journal_deliveries(read.key);
        match conn {
            Some(conn) => self.pump(conn, read.key),
            None => self.load_spilled(read.key),
        }
    }

    /// Session `key` is going: it lets go of what it holds spilled.
    pub(super) fn release_spilled(&mut self, key: SessionKey) {
        let (Some(index), Some(session)) = (self.spill.as_mut(), self.sessions.get(&key)) else {
            return;
        };
        for spilled in session.spilled() {
            index.release(spilled.stored);
        }
    }
}

/// Message `id` as a spill file holds it: the framed `Message` record, as the log does, so a
/// snapshot of the log can take the frame as it is.
fn frame(id: u64, message: &Message) -> Bytes {
    let mut out = BytesMut::new();
    match write_frame_with(&mut out, |out| {
        encode_message_record(out, id, message_view(message))
    }) {
        Ok(()) => out.freeze(),
        Err(error) => {
            // It was encoded into the log already, so this does not happen; if it did, the
            // empty frame reads back as unreadable: dropped and counted, not a panic.
            tracing::error!(%error, "a spilled message does not encode");
            Bytes::new()
        }
    }
}

/// The stored message in `frame`, if it is message `id`'s sound record.
fn decode(frame: &Bytes, id: u64) -> Option<crate::core::store::StoredMessage> {
    match scan(frame).records.pop() {
        Some(Record::Message { id: got, message }) if got == id => Some(message),
        _ => None,
    }
}
