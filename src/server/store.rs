//! The durable store's files: one append-only log per shard, `DIR/shard-N.log`.
//!
//! At start, on the main thread before any shard runs, every shard's log is read back (a torn
//! tail is cut, a corrupt log is set aside as `.corrupt` after its sound records are taken),
//! the records are folded into what they recover, and each shard's log is rewritten as a
//! snapshot of that: written aside, synced, renamed over. So the logs of a different shard
//! count are folded in too, and old records go. Then each shard appends to its own log from
//! its log task: the records of everything that happened since the last write go in one write
//! and (with `--fsync always`) one `fdatasync`, and only then does the output they held back
//! leave (group commit; see `Broker::committed`).
//!
//! The files are written with glommio's buffered files (io_uring, no thread, no blocking
//! call on the shard) rather than O_DIRECT ones: a group commit is a few hundred bytes, which
//! O_DIRECT would pad to a 4 KiB block and rewrite; `fdatasync` makes either durable.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use glommio::channels::local_channel::LocalReceiver;
use glommio::io::{BufferedFile, OpenOptions};

use super::shard::Shard;
use crate::config::Fsync;
use crate::core::home_shard;
use crate::core::store::{scan, write_frame, Damage, Record, Recovered};

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode a snapshot record: {0}")]
    Encode(#[from] crate::protocol::EncodeError),
}

pub fn log_path(dir: &Path, shard: usize) -> PathBuf {
    dir.join(format!("shard-{shard}.log"))
}

/// Reads every shard log in `dir` (made if missing), recovers their state and rewrites the
/// logs of `shards` shards as its snapshot.
pub fn recover(dir: &Path, shards: usize) -> Result<Recovered, StoreError> {
    let dir_error = |source| StoreError::Dir {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(dir_error)?;
    let mut logs: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .map_err(dir_error)?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?;
            let n = name
                .strip_prefix("shard-")?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((n, path))
        })
        .collect();
    logs.sort();
    let mut recovered = Recovered::default();
    let mut read = 0usize;
    for (_, path) in &logs {
        let file_error = |source| StoreError::File {
            path: path.clone(),
            source,
        };
        let bytes = Bytes::from(std::fs::read(path).map_err(file_error)?);
        let found = scan(&bytes);
        read += found.records.len();
        match &found.damage {
            None => {}
            Some(Damage::TornTail) => tracing::warn!(
                log = %path.display(),
                kept = found.sound_len,
                cut = bytes.len() - found.sound_len,
                "the log ends in a record cut short (a crash while writing): its tail is dropped"
            ),
            Some(Damage::Corrupt(why)) => {
                let aside = path.with_extension("log.corrupt");
                tracing::error!(
                    log = %path.display(),
                    at = found.sound_len,
                    why,
                    aside = %aside.display(),
                    "a damaged log: what comes before the damage is recovered, the file is set aside"
                );
                std::fs::copy(path, &aside).map_err(file_error)?;
            }
        }
        recovered.apply(found.records);
    }
    recovered.collect_garbage();
    for shard in 0..shards {
        write_snapshot(dir, shard, &snapshot(&recovered, shard, shards))?;
    }
    for (n, path) in logs.iter().filter(|(n, _)| *n >= shards) {
        tracing::info!(
            shard = n,
            "the log of a shard this run does not have was folded into the others"
        );
        std::fs::remove_file(path).map_err(|source| StoreError::File {
            path: path.clone(),
            source,
        })?;
    }
    sync_dir(dir).map_err(dir_error)?;
    tracing::info!(
        dir = %dir.display(),
        records = read,
        sessions = recovered.sessions.len(),
        retained = recovered.retained.len(),
        "durable store recovered"
    );
    Ok(recovered)
}

/// The records that rebuild shard `shard`'s part of `recovered`: the sessions homed there and
/// the retained messages whose topic it owns.
fn snapshot(recovered: &Recovered, shard: usize, shards: usize) -> Vec<Record> {
    let mut records = Vec::new();
    for (client_id, session) in &recovered.sessions {
        if home_shard(client_id.as_bytes(), shards) != shard {
            continue;
        }
        records.push(Record::SessionOpen {
            client_id: client_id.clone(),
            expiry: session.expiry,
        });
        for (filter, &(options, id)) in &session.subscriptions {
            records.push(Record::Subscribe {
                client_id: client_id.clone(),
                filter: filter.clone(),
                options,
                id,
            });
        }
    }
    for (topic, message) in &recovered.retained {
        if home_shard(topic.as_bytes(), shards) == shard {
            // Older than anything set after the restart.
            records.push(Record::RetainSet {
                seq: 0,
                message: message.clone(),
            });
        }
    }
    records
}

fn write_snapshot(dir: &Path, shard: usize, records: &[Record]) -> Result<(), StoreError> {
    let path = log_path(dir, shard);
    let aside = path.with_extension("log.new");
    let mut bytes = BytesMut::new();
    for record in records {
        write_frame(record, &mut bytes)?;
    }
    let file_error = |source| StoreError::File {
        path: aside.clone(),
        source,
    };
    let mut file = std::fs::File::create(&aside).map_err(file_error)?;
    file.write_all(&bytes).map_err(file_error)?;
    file.sync_all().map_err(file_error)?;
    std::fs::rename(&aside, &path).map_err(file_error)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A shard's log, open for appending.
pub struct ShardLog {
    file: BufferedFile,
    len: u64,
}

impl ShardLog {
    pub async fn open(path: &Path) -> glommio::Result<ShardLog, ()> {
        let file = OpenOptions::new().write(true).buffered_open(path).await?;
        let len = file.file_size().await?;
        Ok(ShardLog { file, len })
    }

    async fn append(&mut self, records: &[Record]) -> std::io::Result<()> {
        let mut bytes = BytesMut::new();
        for record in records {
            write_frame(record, &mut bytes).map_err(std::io::Error::other)?;
        }
        let mut rest = bytes.to_vec();
        while !rest.is_empty() {
            let n = self.file.write_at(rest.clone(), self.len).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.len += n as u64;
            rest.drain(..n);
        }
        Ok(())
    }

    async fn sync(&self) -> std::io::Result<()> {
        Ok(self.file.fdatasync().await?)
    }
}

/// Writes the shard's records as they come: every record made since the last write in one
/// write (and, with `--fsync always`, one sync before the output that waited for them goes;
/// with `interval=MS`, that output goes at once and a sync follows within MS). A log that
/// cannot be written stops the shard's durable acks, loudly: what is acknowledged must be on
/// disk.
pub async fn log_task(shard: Rc<Shard>, mut log: ShardLog, wake: LocalReceiver<()>, fsync: Fsync) {
    let mut unsynced = false;
    let mut last_sync = Instant::now();
    loop {
        let woken = match fsync {
            Fsync::Always => wake.recv().await.is_some(),
            Fsync::Interval(every) => {
                futures_lite::future::or(async { wake.recv().await.is_some() }, async {
                    glommio::timer::sleep(every).await;
                    true
                })
                .await
            }
        };
        if !woken {
            return;
        }
        if let Err(error) =
            write_pending(&shard, &mut log, fsync, &mut unsynced, &mut last_sync).await
        {
            tracing::error!(
                shard = shard.broker().shard(),
                %error,
                "cannot write the durable store: acks that need it are held back"
            );
            return;
        }
    }
}

async fn write_pending(
    shard: &Rc<Shard>,
    log: &mut ShardLog,
    fsync: Fsync,
    unsynced: &mut bool,
    last_sync: &mut Instant,
) -> std::io::Result<()> {
    loop {
        let (records, through) = shard.broker().take_records();
        if !records.is_empty() {
            log.append(&records).await?;
            *unsynced = true;
        }
        let due = match fsync {
            Fsync::Always => true,
            Fsync::Interval(every) => last_sync.elapsed() >= every,
        };
        if *unsynced && due {
            log.sync().await?;
            *unsynced = false;
            *last_sync = Instant::now();
        }
        if records.is_empty() {
            return Ok(());
        }
        shard.broker().committed(through);
        shard.flush();
    }
}
