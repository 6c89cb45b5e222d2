//! Compacting a shard's log without holding its acks: the live state is written beside the log
//! as a snapshot (`shard-N.log.next`), one chunk between two group commits, while the log goes
//! on taking records; the records it took meanwhile (the tail) follow the snapshot in the new
//! file, which is then synced and renamed over the log. Records are idempotent and in order
//! (see `broker::snapshot`), so the snapshot as of one commit and the records after it rebuild
//! what the log did. A crash before the rename leaves the old log, whole (start-up removes the
//! `.next`); one after it, the new one.
//!
//! An ack waits at most for one chunk (`CHUNK`, synced) instead of the whole snapshot: before,
//! a snapshot of a large live state (queues spilled to disk) held every ack of its shard while
//! it was written. The spilled messages' frames are read from the spill files chunk by chunk
//! too; the spill segments are not removed while a compaction reads them.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use glommio::io::{BufferedFile, OpenOptions};

use super::shard::Shard;
use super::spill_files::SpillFiles;
use crate::core::spill::SpillRange;
use crate::core::store::{write_frame, Record};

/// The snapshot is written this much at a time, each chunk synced.
const CHUNK: usize = 1 << 20;

/// A snapshot being written beside the log.
pub(super) struct Compaction {
    pub path: PathBuf,
    file: BufferedFile,
    /// The live state's records, framed.
    snapshot: Bytes,
    written: usize,
    /// Where spilled messages' frames are, still to be copied after the records.
    spilled: VecDeque<SpillRange>,
    /// Where the next chunk goes in the new file.
    at: u64,
    /// Where the tail starts, once the snapshot is written.
    snapshot_end: u64,
    /// The frames the log took since the snapshot's commit, to follow it in the new file,
    /// and how much of them is written.
    tail: Vec<u8>,
    tail_written: usize,
    /// Group commits made while it was written (reported in its log line).
    pub commits_meanwhile: u64,
    pub started: Instant,
    pub log_bytes_before: u64,
    pub records: usize,
}

/// What a step of a compaction came to.
pub(super) enum Step {
    /// More chunks to go.
    Going,
    /// The snapshot and its tail are on disk in `path`, this long: rename it over the log.
    Written(u64),
}

impl Compaction {
    /// Starts writing `records`, then the frames of spilled messages at `spilled` (as the
    /// spill files hold them), to a new file at `path`.
    pub async fn start(
        path: PathBuf,
        records: &[Record],
        spilled: Vec<SpillRange>,
        log_bytes_before: u64,
    ) -> std::io::Result<Compaction> {
        let mut snapshot = BytesMut::new();
        for record in records {
            write_frame(record, &mut snapshot).map_err(std::io::Error::other)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .buffered_open(&path)
            .await?;
        Ok(Compaction {
            path,
            file,
            snapshot: snapshot.freeze(),
            written: 0,
            spilled: spilled.into(),
            at: 0,
            snapshot_end: 0,
            tail: Vec::new(),
            tail_written: 0,
            commits_meanwhile: 0,
            started: Instant::now(),
            log_bytes_before,
            records: records.len(),
        })
    }

    /// The log took `frames` after the snapshot's commit.
    pub fn took(&mut self, frames: &[u8]) {
        self.tail.extend_from_slice(frames);
        self.commits_meanwhile += 1;
    }

    /// Writes the next chunk, synced: records, then spilled frames read from `spill`, then
    /// the tail. An error (a spill file that cannot be read too) ends the compaction.
    pub async fn step(&mut self, shard: &Shard, spill: &mut SpillFiles) -> std::io::Result<Step> {
        let (chunk, last) = if self.written < self.snapshot.len() {
            let end = (self.written + CHUNK).min(self.snapshot.len());
            let chunk = self.snapshot.slice(self.written..end);
            self.written = end;
            (chunk, false)
        } else if !self.spilled.is_empty() {
            let mut ranges = Vec::new();
            let mut bytes = 0;
            while bytes < CHUNK {
                let Some(range) = self.spilled.pop_front() else {
                    break;
                };
                bytes += range.len as usize;
                ranges.push(range);
            }
            let frames = spill.read(&ranges).await;
            if frames.len() != ranges.len() {
                return Err(std::io::Error::other("a spill file cannot be read"));
            }
            (frames.concat().into(), false)
        } else {
            // The tail a chunk at a time too, while the log keeps adding to it; the last
            // chunk (less than one) is written with nothing appended after it.
            if self.tail_written == 0 {
                self.snapshot_end = self.at;
            }
            let end = (self.tail_written + CHUNK).min(self.tail.len());
            let chunk = Bytes::copy_from_slice(&self.tail[self.tail_written..end]);
            let last = end == self.tail.len();
            self.tail_written = end;
            (chunk, last)
        };
        super::log_writer::write_all_at(&self.file, chunk, &mut self.at).await?;
        self.file.fdatasync().await?;
        shard.broker().counters.store_syncs += 1;
        Ok(match last {
            true => Step::Written(self.at),
            false => Step::Going,
        })
    }

    /// Closes the new file (after a failed step too; the caller removes it then).
    pub async fn close(self) -> std::io::Result<()> {
        self.file.close().await.map_err(Into::into)
    }

    /// The snapshot's own length (once written): where the tail starts.
    pub fn snapshot_len(&self) -> u64 {
        self.snapshot_end
    }
}
