//! Queued messages kept on disk instead of in memory: with persistence on, a durable session
//! keeps at most `--max-queued-in-memory` of its queued QoS 1/2 messages in memory; the ones
//! behind them live in the shard's spill files, and the session holds only a small entry for
//! each ([`SpilledDelivery`]). When its in-memory part is down to half, the next ones are read
//! back, in order.
//!
//! The spill files are a cache, not the store: each spilled message is in the shard's log too
//! (its `Message` record, with the session's `Owed`), so they are written without a sync and
//! removed at start. A message owed to several sessions is spilled once; the index counts its
//! holders. Files are segments of [`SEGMENT_BYTES`]: one whose every message has been read back
//! or dropped is removed, so the disk holds what is spilled now, give or take a segment per
//! session that keeps an old message.
//!
//! This is the bookkeeping, without I/O: it decides where each message goes and hands out the
//! writes, reads and removals ([`SpillIo`]) for the shell to carry out in order.

use std::collections::BTreeMap;
use std::time::Instant;

use ahash::AHashMap;
use bytes::Bytes;

use super::message::{Delivery, Receipt};
use crate::protocol::QoS;

/// The size past which a spill file is closed and the next one started.
pub const SEGMENT_BYTES: u64 = 16 << 20;

/// What a session keeps of a spilled message: enough to deliver it once its body is back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpilledDelivery {
    /// Its id in the durable store (never 0: only stored messages spill).
    pub stored: u64,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    pub receipt: Receipt,
    pub expires_at: Option<Instant>,
    pub published_at: Instant,
}

impl SpilledDelivery {
    pub fn of(delivery: &Delivery) -> SpilledDelivery {
        SpilledDelivery {
            stored: delivery.stored,
            qos: delivery.qos,
            retain: delivery.retain,
            subscription_ids: delivery.subscription_ids.clone(),
            receipt: delivery.message.receipt,
            expires_at: delivery.message.expires_at,
            published_at: delivery.message.published_at,
        }
    }
}

/// Where a spilled message's frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpillRange {
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
}

/// What the shell must do with the spill files, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpillIo {
    /// Write `bytes` at `offset` of segment `segment` (a new segment starts at 0).
    Write {
        segment: u32,
        offset: u64,
        bytes: Bytes,
    },
    /// Read these frames (after the writes before it) and hand them back, in order, with
    /// `Broker::spill_loaded(token, ...)`.
    Read { token: u64, ranges: Vec<SpillRange> },
    /// Nothing live is left in this segment: remove its file.
    Remove { segment: u32 },
}

#[derive(Debug)]
struct Entry {
    range: SpillRange,
    /// Sessions holding it spilled.
    holders: u32,
}

#[derive(Debug, Default)]
struct Segment {
    /// Messages in it still held.
    live: u32,
    len: u64,
}

/// A shard's spilled messages: where each is, who holds it, and the I/O still to do.
#[derive(Debug)]
pub struct SpillIndex {
    entries: AHashMap<u64, Entry>,
    segments: BTreeMap<u32, Segment>,
    /// The segment new frames go to.
    current: u32,
    segment_bytes: u64,
    io: Vec<SpillIo>,
}

impl Default for SpillIndex {
    fn default() -> SpillIndex {
        SpillIndex::new(SEGMENT_BYTES)
    }
}

impl SpillIndex {
    pub fn new(segment_bytes: u64) -> SpillIndex {
        SpillIndex {
            entries: AHashMap::new(),
            segments: BTreeMap::new(),
            current: 0,
            segment_bytes: segment_bytes.max(1),
            io: Vec::new(),
        }
    }

    /// One more session holds message `id` spilled; its frame (made by `frame` only if it is
    /// not on disk yet) is written to the current segment.
    pub fn hold(&mut self, id: u64, frame: impl FnOnce() -> Bytes) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.holders += 1;
            return;
        }
        let bytes = frame();
        let len = bytes.len() as u64;
        let full = self
            .segments
            .get(&self.current)
            .is_some_and(|s| s.len > 0 && s.len + len > self.segment_bytes);
        if full {
            let closed = self.current;
            self.current += 1;
            self.remove_if_unused(closed);
        }
        let segment = self.segments.entry(self.current).or_default();
        let range = SpillRange {
            segment: self.current,
            offset: segment.len,
            len: len as u32,
        };
        segment.len += len;
        segment.live += 1;
        self.io.push(SpillIo::Write {
            segment: range.segment,
            offset: range.offset,
            bytes,
        });
        self.entries.insert(id, Entry { range, holders: 1 });
    }

    /// Where message `id`'s frame is, while someone holds it.
    pub fn range(&self, id: u64) -> Option<SpillRange> {
        self.entries.get(&id).map(|e| e.range)
    }

    /// A session no longer holds message `id` spilled (read back, or dropped with it).
    pub fn release(&mut self, id: u64) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        entry.holders -= 1;
        if entry.holders > 0 {
            return;
        }
        let segment = entry.range.segment;
        self.entries.remove(&id);
        if let Some(s) = self.segments.get_mut(&segment) {
            s.live -= 1;
        }
        self.remove_if_unused(segment);
    }

    /// Asks for frames to be read back, to hand in with `token`.
    pub fn read(&mut self, token: u64, ranges: Vec<SpillRange>) {
        self.io.push(SpillIo::Read { token, ranges });
    }

    fn remove_if_unused(&mut self, segment: u32) {
        let unused = self.segments.get(&segment).is_some_and(|s| s.live == 0);
        if !unused {
            return;
        }
        if segment == self.current {
            // Emptied: it is written again from the start, under a new number so that no
            // read of the old one is confused with it.
            self.current += 1;
        }
        self.segments.remove(&segment);
        self.io.push(SpillIo::Remove { segment });
    }

    /// The I/O to carry out, in order.
    pub fn take_io(&mut self) -> Vec<SpillIo> {
        std::mem::take(&mut self.io)
    }

    pub fn has_io(&self) -> bool {
        !self.io.is_empty()
    }

    /// Messages spilled now (each once, however many sessions hold it).
    pub fn messages(&self) -> usize {
        self.entries.len()
    }

    /// Bytes in the spill files that exist.
    pub fn bytes(&self) -> u64 {
        self.segments.values().map(|s| s.len).sum()
    }

    /// Every spilled message's frame, for a snapshot of the log (which must hold their
    /// `Message` records).
    pub fn ranges(&self) -> Vec<SpillRange> {
        let mut ranges: Vec<SpillRange> = self.entries.values().map(|e| e.range).collect();
        ranges.sort_by_key(|r| (r.segment, r.offset));
        ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> impl FnOnce() -> Bytes {
        move || Bytes::from(vec![7u8; n])
    }

    fn writes(io: &[SpillIo]) -> Vec<(u32, u64, usize)> {
        io.iter()
            .filter_map(|io| match io {
                SpillIo::Write {
                    segment,
                    offset,
                    bytes,
                } => Some((*segment, *offset, bytes.len())),
                _ => None,
            })
            .collect()
    }

    fn removed(io: &[SpillIo]) -> Vec<u32> {
        io.iter()
            .filter_map(|io| match io {
                SpillIo::Remove { segment } => Some(*segment),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_message_held_by_several_sessions_is_written_once_and_freed_with_the_last() {
        let mut index = SpillIndex::new(1000);
        index.hold(1, frame(100));
        index.hold(1, || panic!("written already"));
        index.hold(2, frame(50));
        assert_eq!(writes(&index.take_io()), [(0, 0, 100), (0, 100, 50)]);
        assert_eq!(index.range(2).map(|r| r.offset), Some(100));
        index.release(1);
        assert!(index.range(1).is_some(), "one holder left");
        index.release(1);
        assert_eq!(index.range(1), None);
        assert_eq!(index.messages(), 1);
        index.release(2);
        // The segment emptied: removed, and writing goes on in a new one.
        assert_eq!(removed(&index.take_io()), [0]);
        assert_eq!(index.bytes(), 0);
        index.hold(3, frame(10));
        assert_eq!(writes(&index.take_io()), [(1, 0, 10)]);
    }

    #[test]
    fn full_segments_close_and_go_once_nothing_in_them_is_held() {
        let mut index = SpillIndex::new(250);
        for id in 1..=5 {
            index.hold(id, frame(100));
        }
        // Two frames a segment.
        let placed: Vec<u32> = writes(&index.take_io()).iter().map(|w| w.0).collect();
        assert_eq!(placed, [0, 0, 1, 1, 2]);
        index.release(1);
        assert!(removed(&index.take_io()).is_empty());
        index.release(2);
        assert_eq!(removed(&index.take_io()), [0]);
        index.release(4);
        index.release(5);
        assert_eq!(removed(&index.take_io()), [2], "3 is still in segment 1");
        assert_eq!(index.ranges().len(), 1);
        index.release(3);
        assert_eq!(removed(&index.take_io()), [1]);
        assert_eq!(index.messages(), 0);
    }

    #[test]
    fn releasing_what_is_not_held_changes_nothing() {
        let mut index = SpillIndex::new(1000);
        index.release(9);
        index.hold(1, frame(10));
        index.release(9);
        assert_eq!(index.messages(), 1);
    }
}
