//! Appending to a shard's log, from the shard's log task: the records of everything that
//! happened since the last write go in one write, and the output they held back leaves once
//! that write is durable (group commit; see `Broker::committed`).
//!
//! With `--fsync always` the log is opened `O_DSYNC`, so one write is one durable round trip
//! (measured here: 0.51 ms against 0.61 ms for a write then an `fdatasync`; fan-in QoS 1 went
//! from 172 to 213 K msgs/s). One write is in flight at a time: with two, ext4 serialised
//! them and each paid its own journal commit (171 K msgs/s); an O_DIRECT `DmaFile` was no
//! faster (161 K msgs/s, and a worse tail), nor was it over the zeros filled ahead (whole
//! aligned blocks, the last partial one written again; three alternating pairs: 328-409 K
//! against 401-500 K msgs/s, 4.2-5.3 against 2.8-3.3 µs of broker CPU per message). With
//! `interval=MS` writes go at once and an `fdatasync` follows within MS.
//!
//! Once a log has grown by `--compact-after-bytes` (and to twice its last snapshot), the shard
//! writes a snapshot of its live state (`Broker::snapshot_records`) beside it, a chunk between
//! two group commits, and then renames it over the log (`compaction`): the log stays bounded by
//! what is live, and acks do not wait for the snapshot.
//!
//! A write that fails (a full disk, an I/O error) is tried again, with a growing pause, until
//! it succeeds: the acks it holds back wait, the store counts as full meanwhile (new QoS 1/2
//! publishes are refused, see `StoreSpace`), and nothing is acknowledged that is not on disk.
//! Once the logs together reach `--max-data-bytes`, a shard whose log has anything since its
//! last snapshot compacts at most once a second, so what deliveries freed is given back.
//!
//! The files are glommio's buffered files (io_uring, no blocking call on the shard) rather than
//! O_DIRECT ones: a group commit is a few kilobytes at most, which O_DIRECT would pad to whole
//! blocks and rewrite.
//!
//! A log is filled with zeros [`FILL_AHEAD`] ahead of its records (a synchronous write of
//! 128 KiB of zeros every 128 KiB of records, between group commits: small, so that the commit
//! it delays waits a little), so that a group commit overwrites blocks that
//! exist: an `O_DSYNC` write that grows a file on ext4 waits for a journal commit (the new
//! size), one that does not waits only for its data (measured with `dd oflag=dsync`, 4 KiB
//! writes: 0.57 ms appending, 0.21 ms overwriting). A scan reads zeros to the end as the end
//! of the log (`store::scan`). On a disk too full for the zeros, writes grow the file as
//! before.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use glommio::channels::local_channel::LocalReceiver;
use glommio::io::{BufferedFile, Directory, OpenOptions};

use super::compaction::{Compaction, Step};
use super::shard::Shard;
use super::spill_files::SpillFiles;
use crate::config::Fsync;
use crate::core::store::StoreSpace;

/// While the store is over `--max-data-bytes`: how often a shard compacts to give room back.
const RECLAIM_EVERY: Duration = Duration::from_secs(1);
/// After a compaction failed (no room for the snapshot beside the log): the pause before the
/// next try. The log itself goes on as it was.
const COMPACTION_RETRY: Duration = Duration::from_secs(10);
/// A failed write is tried again after a pause that doubles up to this.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);
/// While writes keep failing, the error is logged again this often.
const FAILING_LOG_EVERY: Duration = Duration::from_secs(10);
/// How far past its records a log is filled with zeros (less under a small
/// `--max-data-bytes`, see `StoreSpace::fill_ahead`); it is filled again once less than half of
/// that is left.
const FILL_AHEAD: u64 = 256 << 10;
/// After the zeros could not be written (a full disk): the pause before trying again.
const FILL_RETRY: Duration = Duration::from_secs(1);

/// A shard's log, open for appending.
pub struct ShardLog {
    path: PathBuf,
    shard: usize,
    file: BufferedFile,
    /// Where the next write goes: the end of the records.
    len: u64,
    /// The file's length: the records, then zeros (see the module's header).
    filled: u64,
    fill_failed: Option<Instant>,
    fsync: Fsync,
    /// Its length after the last snapshot (at start: as the start's snapshot left it).
    snapshot_len: u64,
    compact_after: u64,
    space: Arc<StoreSpace>,
    last_compaction: Instant,
    compaction_failed: Option<Instant>,
    /// The shard's spill files: their I/O runs here, between group commits, so that a
    /// snapshot reads the frames it needs after their writes.
    spill: SpillFiles,
    /// The count of records made that the last append went through.
    written_through: u64,
    /// A snapshot being written beside the log, if any.
    compaction: Option<Compaction>,
}

impl ShardLog {
    pub async fn open(
        path: &Path,
        shard: usize,
        fsync: Fsync,
        compact_after: u64,
        space: Arc<StoreSpace>,
    ) -> std::io::Result<ShardLog> {
        let file = open_for_append(path, fsync).await?;
        let len = file.file_size().await?;
        space.set_used(shard, len);
        let dir = path.parent().unwrap_or(Path::new("."));
        Ok(ShardLog {
            spill: SpillFiles::new(dir, shard, space.clone()),
            path: path.to_path_buf(),
            shard,
            file,
            len,
            filled: len,
            fill_failed: None,
            fsync,
            snapshot_len: len,
            compact_after,
            space,
            last_compaction: Instant::now(),
            compaction_failed: None,
            written_through: 0,
            compaction: None,
        })
    }

    /// Fills the log with zeros [`FILL_AHEAD`] past its records once less than half of that
    /// is left. A failure (no room) only means that writes grow the file for a while.
    async fn fill_ahead(&mut self) {
        let ahead = self.space.fill_ahead(FILL_AHEAD);
        if ahead == 0
            || self.filled >= self.len + ahead / 2
            || self.fill_failed.is_some_and(|at| at.elapsed() < FILL_RETRY)
        {
            return;
        }
        let from = self.filled.max(self.len);
        let zeros = Bytes::from(vec![0u8; (self.len + ahead - from) as usize]);
        let mut at = from;
        match write_all_at(&self.file, zeros, &mut at).await {
            Ok(()) => {
                self.filled = at;
                self.fill_failed = None;
            }
            Err(error) => {
                // What was written of the zeros stays; the records overwrite it.
                self.filled = at;
                if self.fill_failed.is_none() {
                    tracing::warn!(
                        shard = self.shard,
                        %error,
                        "cannot fill the log ahead with zeros: its writes grow the file (slower)"
                    );
                }
                self.fill_failed = Some(Instant::now());
            }
        }
        self.space.set_used(self.shard, self.filled.max(self.len));
    }

    /// Whether it is time for a snapshot: the log has grown enough, or the store is over its
    /// bound and this log holds something a snapshot may drop.
    fn compaction_due(&self) -> bool {
        if self.compaction.is_some() {
            return false;
        }
        if self
            .compaction_failed
            .is_some_and(|at| at.elapsed() < COMPACTION_RETRY)
        {
            return false;
        }
        let grown = self.len >= (self.snapshot_len + self.compact_after).max(2 * self.snapshot_len);
        grown || self.reclaim_due().is_some_and(|wait| wait.is_zero())
    }

    /// While the store is over its bound and this log has records since its snapshot: how
    /// long until it may compact again to give room back.
    fn reclaim_due(&self) -> Option<Duration> {
        (self.space.over_limit() && self.len > self.snapshot_len)
            .then(|| RECLAIM_EVERY.saturating_sub(self.last_compaction.elapsed()))
    }

    /// Writes `bytes` at `at`, trying again until they are all on disk (see the module's
    /// header): the store is full meanwhile.
    async fn write_until_done(&self, shard: &Shard, bytes: Bytes, at: u64) {
        let target = WriteTarget {
            file: &self.file,
            path: &self.path,
            shard: self.shard,
            space: &self.space,
        };
        target.write_until_done(shard, bytes, at).await;
        self.space.set_used(self.shard, self.filled.max(self.len));
    }

    /// Appends `frames` (the records made through `through`) until they are on disk, then
    /// commits them.
    async fn append(&mut self, shard: &Rc<Shard>, frames: Bytes, through: u64) {
        let at = self.len;
        self.len += frames.len() as u64;
        let records = through - std::mem::replace(&mut self.written_through, through);
        note_written(shard, records, frames.len(), self.fsync == Fsync::Always);
        if let Some(compaction) = &mut self.compaction {
            compaction.took(&frames);
        }
        self.write_until_done(shard, frames, at).await;
        self.filled = self.filled.max(self.len);
        shard.broker().committed(through);
        shard.flush();
    }
}

async fn open_for_append(path: &Path, fsync: Fsync) -> std::io::Result<BufferedFile> {
    let mut options = OpenOptions::new();
    options.write(true).create(true);
    if fsync == Fsync::Always {
        options.custom_flags(libc::O_DSYNC);
    }
    Ok(options.buffered_open(path).await?)
}

/// Starts a compaction (see `compaction`): the records made since the last write are
/// appended as usual, and the shard's state as of them is the snapshot, written beside the
/// log a chunk at a time from then on ([`step_compaction`]). When the snapshot cannot be
/// started, the log goes on as it is and compaction waits a while. True when records were
/// appended.
async fn start_compaction(shard: &Rc<Shard>, log: &mut ShardLog) -> bool {
    let before = log.len;
    // The state as of the records taken: no await between the two.
    let (pending, through) = shard.broker().take_journal();
    let records = shard.broker().snapshot_records();
    // The `Message` records of spilled messages are copied from the spill files as they hold
    // them, chunk by chunk; no spill segment goes meanwhile.
    let spilled = shard.broker().spill_ranges();
    log.last_compaction = Instant::now();
    let appended = !pending.is_empty();
    if appended {
        log.append(shard, pending, through).await;
    }
    let next = log.path.with_extension("log.next");
    match Compaction::start(next.clone(), &records, spilled, before).await {
        Ok(compaction) => {
            log.spill.hold_removals();
            log.compaction = Some(compaction);
        }
        Err(error) => {
            let _ = glommio::io::remove(&next).await;
            compaction_failed(shard, log, &error);
        }
    }
    appended
}

/// Writes the next chunk of the compaction under way; once all of it (and the log's tail) is
/// on disk, the new file replaces the log (true).
async fn step_compaction(shard: &Rc<Shard>, log: &mut ShardLog) -> std::io::Result<bool> {
    let Some(compaction) = log.compaction.as_mut() else {
        return Ok(false);
    };
    let written = match compaction.step(shard, &mut log.spill).await {
        Ok(Step::Going) => return Ok(false),
        Ok(Step::Written(len)) => Ok(len),
        Err(error) => Err(error),
    };
    let compaction = log.compaction.take().expect("under way");
    let path = compaction.path.clone();
    let snapshot_len = compaction.snapshot_len();
    let (records, before, commits, started) = (
        compaction.records,
        compaction.log_bytes_before,
        compaction.commits_meanwhile,
        compaction.started,
    );
    let closed = compaction.close().await;
    log.spill.release_removals().await;
    let len = match written.and_then(|len| closed.map(|()| len)) {
        Ok(len) => len,
        Err(error) => {
            let _ = glommio::io::remove(&path).await;
            compaction_failed(shard, log, &error);
            return Ok(false);
        }
    };
    log.compaction_failed = None;
    glommio::io::rename(&path, &log.path).await?;
    if let Some(dir) = log.path.parent() {
        Directory::open(dir).await?.sync().await?;
    }
    log.file = open_for_append(&log.path, log.fsync).await?;
    log.len = len;
    log.filled = len;
    log.snapshot_len = snapshot_len;
    log.space.set_used(log.shard, len);
    shard.broker().counters.store_compactions += 1;
    tracing::info!(
        shard = log.shard,
        records,
        from_bytes = before,
        to_bytes = len,
        took_ms = started.elapsed().as_millis() as u64,
        commits_meanwhile = commits,
        "log compacted to a snapshot of the live state"
    );
    Ok(true)
}

/// A snapshot could not be written (no room beside the log?): the log goes on as it is, and
/// compaction is tried again later.
fn compaction_failed(shard: &Shard, log: &mut ShardLog, error: &std::io::Error) {
    log.compaction_failed = Some(Instant::now());
    shard.broker().counters.store_write_errors += 1;
    tracing::error!(
        shard = log.shard,
        %error,
        log_bytes = log.len,
        "cannot write a snapshot of the log (no room beside it?): the log goes on as it is; \
         compaction is tried again later"
    );
}

/// A file of the durable store (a log, a spill segment) and what a failed write affects.
pub(super) struct WriteTarget<'a> {
    pub file: &'a BufferedFile,
    pub path: &'a Path,
    pub shard: usize,
    pub space: &'a StoreSpace,
}

impl WriteTarget<'_> {
    /// Writes `bytes` at `at`, trying again with a growing pause until they are all written:
    /// meanwhile the store counts as full (new QoS 1/2 publishes are refused) and what waits
    /// for the write (acks, later spill I/O) waits. Logged when it starts failing, every
    /// [`FAILING_LOG_EVERY`] while it does, and when it works again.
    pub async fn write_until_done(&self, shard: &Shard, bytes: Bytes, mut at: u64) {
        let mut failing: Option<(Instant, Instant)> = None;
        let mut pause = Duration::from_millis(50);
        let start = at;
        while let Err(error) =
            write_all_at(self.file, bytes.slice((at - start) as usize..), &mut at).await
        {
            let now = Instant::now();
            shard.broker().counters.store_write_errors += 1;
            match &mut failing {
                None => {
                    self.space.set_failing(self.shard, true);
                    failing = Some((now, now));
                    tracing::error!(
                        shard = self.shard,
                        file = %self.path.display(),
                        %error,
                        "cannot write the durable store: the acks that wait for it are held \
                         back and new QoS 1/2 publishes refused until it can; trying again"
                    );
                }
                Some((since, logged)) if now.duration_since(*logged) >= FAILING_LOG_EVERY => {
                    *logged = now;
                    tracing::error!(
                        shard = self.shard,
                        %error,
                        failing_for_s = now.duration_since(*since).as_secs(),
                        "the durable store still cannot be written"
                    );
                }
                Some(_) => {}
            }
            glommio::timer::sleep(pause).await;
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        }
        if let Some((since, _)) = failing {
            self.space.set_failing(self.shard, false);
            tracing::warn!(
                shard = self.shard,
                failed_for_ms = since.elapsed().as_millis() as u64,
                "the durable store can be written again"
            );
        }
    }
}

/// Writes `bytes` at `at`, all of them; on an error, `at` is past what was written, so that
/// a retry goes on from there. (glommio takes the bytes as a `Vec`: one copy per try.)
pub(super) async fn write_all_at(
    file: &BufferedFile,
    mut bytes: Bytes,
    at: &mut u64,
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = file.write_at(bytes.to_vec(), *at).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        *at += n as u64;
        bytes.advance(n);
    }
    Ok(())
}

/// Writes the shard's records as they come. Writes that fail are tried again (see the
/// module's header); only a log that cannot be reopened after a compaction stops the task,
/// loudly, and with it the shard's durable acks: what is acknowledged must be on disk.
pub async fn log_task(shard: Rc<Shard>, log: ShardLog, wake: LocalReceiver<()>) {
    let id = log.shard;
    let space = log.space.clone();
    let result = match log.fsync {
        Fsync::Always => write_durably(&shard, log, wake).await,
        Fsync::Interval(every) => write_then_sync(&shard, log, wake, every).await,
    };
    if let Err(error) = result {
        space.set_failing(id, true);
        tracing::error!(
            shard = id,
            %error,
            "cannot write the durable store: acks that need it are held back"
        );
    }
}

/// Waits until the shard has records for the log (true), or `timeout` passes (true too),
/// or the shard is gone (false).
async fn woken(wake: &LocalReceiver<()>, timeout: Option<Duration>) -> bool {
    match timeout {
        None => wake.recv().await.is_some(),
        Some(timeout) => {
            futures_lite::future::or(async { wake.recv().await.is_some() }, async {
                glommio::timer::sleep(timeout).await;
                true
            })
            .await
        }
    }
}

/// `--fsync always`: each batch of records in one `O_DSYNC` write, then its commit.
async fn write_durably(
    shard: &Rc<Shard>,
    mut log: ShardLog,
    wake: LocalReceiver<()>,
) -> std::io::Result<()> {
    loop {
        log.spill.run(shard).await;
        if log.compaction_due() && shard.broker().may_snapshot() {
            start_compaction(shard, &mut log).await;
            continue;
        }
        let (frames, through) = shard.broker().take_journal();
        if !frames.is_empty() {
            log.append(shard, frames, through).await;
            log.fill_ahead().await;
        } else if log.compaction.is_none() {
            if shard.broker().has_spill_io() {
                continue;
            }
            // Woken by the shard's flush when it has records or spill I/O.
            if !woken(&wake, log.reclaim_due()).await {
                return Ok(());
            }
            continue;
        }
        // One chunk of a compaction under way, between two group commits.
        step_compaction(shard, &mut log).await?;
    }
}

/// `--fsync interval=MS`: writes at once, commits at once, an `fdatasync` within MS.
async fn write_then_sync(
    shard: &Rc<Shard>,
    mut log: ShardLog,
    wake: LocalReceiver<()>,
    every: Duration,
) -> std::io::Result<()> {
    let mut unsynced = false;
    let mut last_sync = Instant::now();
    loop {
        let timeout = log.reclaim_due().map_or(every, |wait| wait.min(every));
        if !woken(&wake, Some(timeout)).await {
            return Ok(());
        }
        loop {
            log.spill.run(shard).await;
            if log.compaction_due()
                && shard.broker().may_snapshot()
                && start_compaction(shard, &mut log).await
            {
                // Its records went to the log as usual: synced within the interval too.
                unsynced = true;
            }
            let (frames, through) = shard.broker().take_journal();
            let wrote = !frames.is_empty();
            if wrote {
                log.append(shard, frames, through).await;
                log.fill_ahead().await;
                unsynced = true;
            }
            let compacting = log.compaction.is_some();
            if compacting && step_compaction(shard, &mut log).await? {
                // The new log is synced, all of it.
                unsynced = false;
            }
            if unsynced && last_sync.elapsed() >= every {
                match log.file.fdatasync().await {
                    Ok(()) => {
                        shard.broker().counters.store_syncs += 1;
                        unsynced = false;
                    }
                    Err(error) => {
                        // Acked already (the interval's promise): tried again next time.
                        shard.broker().counters.store_write_errors += 1;
                        tracing::error!(shard = log.shard, %error, "cannot sync the durable store");
                    }
                }
                last_sync = Instant::now();
            }
            if !wrote && !compacting && !shard.broker().has_spill_io() {
                break;
            }
        }
    }
}

/// Counts a write (a synced one too, with `O_DSYNC`) for the store's figures.
fn note_written(shard: &Shard, records: u64, bytes: usize, synced: bool) {
    let counters = &mut shard.broker().counters;
    counters.store_records += records;
    counters.store_bytes += bytes as u64;
    counters.store_syncs += u64::from(synced);
}
