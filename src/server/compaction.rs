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
//! it was written.

use std::path::PathBuf;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use glommio::io::{BufferedFile, OpenOptions};

use super::shard::Shard;
use crate::core::store::{write_frame, Record};

/// The snapshot is written this much at a time, each chunk synced.
const CHUNK: usize = 1 << 20;

/// A snapshot being written beside the log.
pub(super) struct Compaction {
    pub path: PathBuf,
    file: BufferedFile,
    snapshot: Bytes,
    written: usize,
    /// The frames the log took since the snapshot's commit, to follow it in the new file.
    tail: BytesMut,
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
    /// Starts writing `records`, then the already framed `frames` (spilled messages), to a
    /// new file at `path`.
    pub async fn start(
        path: PathBuf,
        records: &[Record],
        frames: &[Bytes],
        log_bytes_before: u64,
    ) -> std::io::Result<Compaction> {
        let mut snapshot = BytesMut::new();
        for record in records {
            write_frame(record, &mut snapshot).map_err(std::io::Error::other)?;
        }
        for frame in frames {
            snapshot.extend_from_slice(frame);
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
            tail: BytesMut::new(),
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

    /// Writes the next chunk, synced; after the last, the tail, synced.
    pub async fn step(&mut self, shard: &Shard) -> std::io::Result<Step> {
        if self.written < self.snapshot.len() {
            let end = (self.written + CHUNK).min(self.snapshot.len());
            let mut at = self.written as u64;
            super::log_writer::write_all_at(
                &self.file,
                self.snapshot.slice(self.written..end),
                &mut at,
            )
            .await?;
            self.file.fdatasync().await?;
            shard.broker().counters.store_syncs += 1;
            self.written = end;
            return Ok(Step::Going);
        }
        let tail = std::mem::take(&mut self.tail).freeze();
        let mut at = self.snapshot.len() as u64;
        super::log_writer::write_all_at(&self.file, tail, &mut at).await?;
        self.file.fdatasync().await?;
        shard.broker().counters.store_syncs += 1;
        Ok(Step::Written(at))
    }

    /// Closes the new file (after a failed step too; the caller removes it then).
    pub async fn close(self) -> std::io::Result<()> {
        self.file.close().await.map_err(Into::into)
    }

    /// The snapshot's own length: where the tail starts.
    pub fn snapshot_len(&self) -> u64 {
        self.snapshot.len() as u64
    }
}
