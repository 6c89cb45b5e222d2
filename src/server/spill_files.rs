//! A shard's spill files, `DIR/spill-N-K.dat` (shard N, segment K): the I/O the broker hands
//! out for spilled queues (`core::spill`), carried out in order from the shard's log task, so
//! that a snapshot of the log reads the frames it needs after their writes.
//!
//! They are a cache of what the log holds, so they are not synced, and start-up removes them.
//! A write that fails (a full disk) is tried again, with a growing pause, before anything after
//! it: the reads behind it wait, and the store counts as full meanwhile (new QoS 1/2 publishes
//! are refused), as for the log (the same `log_writer::WriteTarget`).

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;
use bytes::Bytes;
use glommio::io::{BufferedFile, OpenOptions};

use super::log_writer::WriteTarget;
use super::shard::Shard;
use crate::core::spill::{SpillIo, SpillRange};
use crate::core::store::StoreSpace;

/// After a spill file could not be opened (no room for it): the pause before trying again.
const OPEN_RETRY: Duration = Duration::from_millis(200);

pub struct SpillFiles {
    dir: PathBuf,
    shard: usize,
    files: AHashMap<u32, BufferedFile>,
    space: Arc<StoreSpace>,
    /// While a compaction copies spilled frames: the segments to remove after it.
    held_removals: Option<Vec<u32>>,
}

/// The path of shard `shard`'s spill segment `segment`.
pub fn spill_path(dir: &Path, shard: usize, segment: u32) -> PathBuf {
    dir.join(format!("spill-{shard}-{segment}.dat"))
}

/// Whether `name` is a spill file (any shard's): start-up removes them.
pub fn is_spill_file(name: &str) -> bool {
    name.starts_with("spill-") && name.ends_with(".dat")
}

impl SpillFiles {
    pub fn new(dir: &Path, shard: usize, space: Arc<StoreSpace>) -> SpillFiles {
        SpillFiles {
            dir: dir.to_path_buf(),
            shard,
            files: AHashMap::new(),
            space,
            held_removals: None,
        }
    }

    /// Keeps every segment until [`SpillFiles::release_removals`]: a compaction reads them.
    pub fn hold_removals(&mut self) {
        self.held_removals.get_or_insert_with(Vec::new);
    }

    /// Removes the segments whose removal was held.
    pub async fn release_removals(&mut self) {
        for segment in self.held_removals.take().unwrap_or_default() {
            self.remove(segment).await;
        }
    }

    /// Carries out what the broker asked of the spill files, until it asks nothing more.
    pub async fn run(&mut self, shard: &Rc<Shard>) {
        loop {
            let io = shard.broker().take_spill_io();
            if io.is_empty() {
                self.space
                    .set_spilled(self.shard, shard.broker().spill_bytes());
                return;
            }
            for op in io {
                match op {
                    SpillIo::Write {
                        segment,
                        offset,
                        bytes,
                    } => self.write_until_done(shard, segment, offset, bytes).await,
                    SpillIo::Read { token, ranges } => {
                        let frames = self.read(&ranges).await;
                        shard.broker().spill_loaded(token, frames);
                        shard.flush();
                    }
                    SpillIo::Remove { segment } => match &mut self.held_removals {
                        Some(held) => held.push(segment),
                        None => self.remove(segment).await,
                    },
                }
            }
        }
    }

    /// The frames at `ranges`, in order, up to the first that cannot be read.
    pub async fn read(&mut self, ranges: &[SpillRange]) -> Vec<Bytes> {
        let mut frames = Vec::with_capacity(ranges.len());
        for range in ranges {
            match self.read_one(range).await {
                Ok(frame) => frames.push(frame),
                Err(error) => {
                    tracing::error!(shard = self.shard, segment = range.segment, %error, "cannot read a spill file");
                    break;
                }
            }
        }
        frames
    }

    async fn read_one(&mut self, range: &SpillRange) -> std::io::Result<Bytes> {
        let file = self.file(range.segment).await?;
        let read = file.read_at(range.offset, range.len as usize).await?;
        if read.len() != range.len as usize {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(Bytes::copy_from_slice(&read))
    }

    /// Writes a frame, trying again until it is written (see `log_writer::WriteTarget`):
    /// what follows it waits.
    async fn write_until_done(&mut self, shard: &Shard, segment: u32, offset: u64, bytes: Bytes) {
        let path = spill_path(&self.dir, self.shard, segment);
        let mut failed = false;
        while let Err(error) = self.file(segment).await {
            shard.broker().counters.store_write_errors += 1;
            if !std::mem::replace(&mut failed, true) {
                self.space.set_failing(self.shard, true);
                tracing::error!(shard = self.shard, %error, file = %path.display(), "cannot open a spill file; trying again");
            }
            glommio::timer::sleep(OPEN_RETRY).await;
        }
        if failed {
            self.space.set_failing(self.shard, false);
        }
        let file = &self.files[&segment];
        let target = WriteTarget {
            file,
            path: &path,
            shard: self.shard,
            space: &self.space,
        };
        target.write_until_done(shard, bytes, offset).await;
    }

    async fn remove(&mut self, segment: u32) {
        if let Some(file) = self.files.remove(&segment) {
            let _ = file.close().await;
        }
        let path = spill_path(&self.dir, self.shard, segment);
        if let Err(error) = glommio::io::remove(&path).await {
            let error = std::io::Error::from(error);
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(shard = self.shard, %error, "cannot remove a spill file");
            }
        }
    }

    async fn file(&mut self, segment: u32) -> std::io::Result<&BufferedFile> {
        if !self.files.contains_key(&segment) {
            let path = spill_path(&self.dir, self.shard, segment);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .buffered_open(&path)
                .await?;
            self.files.insert(segment, file);
        }
        Ok(&self.files[&segment])
    }
}
