//! The durable store's files: one append-only log per shard, `DIR/shard-N.log`.
//!
//! At start, on the main thread before any shard runs, every shard's log is read back (a torn
//! tail is cut, a corrupt log is set aside as `.corrupt` after its sound records are taken),
//! the records are folded into what they recover, and each shard's log is rewritten as a
//! snapshot of that: written aside, synced, renamed over. So the logs of a different shard
//! count are folded in too, and old records go. Then each shard appends to its own log from
//! its log task (`log_writer`).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::core::home_shard;
use crate::core::store::{scan, write_frame, Damage, Record, Recovered};
use bytes::{Bytes, BytesMut};

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
    settle_snapshot(dir).map_err(dir_error)?;
    remove_unfinished_compactions(dir).map_err(dir_error)?;
    remove_spill_files(dir).map_err(dir_error)?;
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
    // The logs longer than their sound records (a damage, or the zeros a log is filled with
    // ahead of its writes), with the length of what is sound in them.
    let mut longer = Vec::new();
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
                if let Err(error) = std::fs::copy(path, &aside) {
                    // A full disk, most likely: starting matters more than the evidence.
                    tracing::error!(%error, aside = %aside.display(), "cannot set the damaged log aside");
                }
            }
        }
        if found.sound_len < bytes.len() {
            longer.push((path.clone(), found.sound_len));
        }
        recovered.apply(found.records);
    }
    recovered.prune();
    let folding = logs.iter().any(|(n, _)| *n >= shards);
    match write_snapshots(dir, &recovered, shards) {
        Ok(()) => {
            if folding {
                tracing::info!(
                    "the logs of shards this run does not have are folded into the others"
                );
            }
        }
        // No room for the snapshot (a full disk): with the same shard count the logs serve
        // as they are, cut to what is sound (appends go on from their end), and the broker
        // starts; the store counts as full until its first write succeeds.
        Err(error) if !folding => {
            tracing::error!(
                %error,
                "cannot write the start's snapshot of the store: the logs are kept as they are"
            );
            remove_new_logs(dir).map_err(dir_error)?;
            for (path, sound_len) in &longer {
                cut(path, *sound_len).map_err(|source| StoreError::File {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Err(error) => return Err(error),
    }
    tracing::info!(
        dir = %dir.display(),
        records = read,
        sessions = recovered.sessions.len(),
        retained = recovered.retained.len(),
        messages = recovered.messages.len(),
        dangling = recovered.dangling,
        "durable store recovered"
    );
    Ok(recovered)
}

/// Rewrites the logs as a snapshot of `recovered` for `shards` shards. Two phases, so that a
/// crash in the middle leaves either the old logs or the new ones: every new log written aside
/// and synced, then the marker, then the renames.
fn write_snapshots(dir: &Path, recovered: &Recovered, shards: usize) -> Result<(), StoreError> {
    let dir_error = |source| StoreError::Dir {
        dir: dir.to_path_buf(),
        source,
    };
    for shard in 0..shards {
        write_snapshot(dir, shard, &snapshot(recovered, shard, shards))?;
    }
    let marker = dir.join(SNAPSHOT_READY);
    std::fs::File::create(&marker)
        .and_then(|f| f.sync_all())
        .map_err(dir_error)?;
    sync_dir(dir).map_err(dir_error)?;
    settle_snapshot(dir).map_err(dir_error)?;
    sync_dir(dir).map_err(dir_error)
}

/// Removes the new logs of a snapshot that could not be finished (and its marker).
fn remove_new_logs(dir: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(dir.join(SNAPSHOT_READY));
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.to_str().is_some_and(|p| p.ends_with(".log.new")) {
            std::fs::remove_file(&path)?;
        }
    }
    sync_dir(dir)
}

/// Cuts a log to its first `len` bytes, durably: what follows a damage must not be appended
/// after (a scan would stop at the damage and never reach it).
fn cut(path: &Path, len: usize) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.set_len(len as u64)?;
    file.sync_all()
}

/// The records that rebuild shard `shard`'s part of `recovered`: the sessions homed there and
/// the retained messages whose topic it owns.
fn snapshot(recovered: &Recovered, shard: usize, shards: usize) -> Vec<Record> {
    let mut records = Vec::new();
    let mut messages_written = std::collections::BTreeSet::new();
    for (client_id, session) in &recovered.sessions {
        if home_shard(client_id.as_bytes(), shards) != shard {
            continue;
        }
        session.records(
            client_id,
            &recovered.messages,
            &mut messages_written,
            &mut records,
        );
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

/// A running broker's compaction writes `shard-N.log.next`, then renames it over the log: one
/// still there was cut short by a crash, and the log it was to replace is whole.
fn remove_unfinished_compactions(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("shard-") && name.ends_with(".log.next") {
            tracing::info!(file = %path.display(), "an unfinished compaction is removed");
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The spill files of the last run: a cache of messages its logs hold.
fn remove_spill_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if super::spill_files::is_spill_file(name) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Present while a complete set of new logs (`shard-N.log.new`) waits to replace the old.
const SNAPSHOT_READY: &str = "snapshot.ready";

/// Finishes a snapshot: with its marker there, the new logs replace every old one; without
/// it, new logs are leftovers of a snapshot cut short, and go.
fn settle_snapshot(dir: &Path) -> std::io::Result<()> {
    let marker = dir.join(SNAPSHOT_READY);
    let complete = marker.exists();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.starts_with("shard-") {
            continue;
        }
        let superseded =
            complete && name.ends_with(".log") && !path.with_extension("log.new").exists();
        let leftover = !complete && name.ends_with(".log.new");
        if superseded || leftover {
            std::fs::remove_file(&path)?;
        }
    }
    if complete {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.to_str().is_some_and(|p| p.ends_with(".log.new")) {
                std::fs::rename(&path, path.with_extension(""))?;
            }
        }
        sync_dir(dir)?;
        std::fs::remove_file(&marker)?;
    }
    sync_dir(dir)
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
    file.sync_all().map_err(file_error)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::SubscriptionOptions;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringmq-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn log(dir: &Path, shard: usize, suffix: &str, records: &[Record]) {
        let mut bytes = BytesMut::new();
        for r in records {
            write_frame(r, &mut bytes).unwrap();
        }
        let path = dir.join(format!("shard-{shard}.{suffix}"));
        std::fs::write(path, &bytes).unwrap();
    }

    fn session(id: &str) -> Vec<Record> {
        vec![
            Record::SessionOpen {
                client_id: id.into(),
                expiry: u32::MAX,
            },
            Record::Subscribe {
                client_id: id.into(),
                filter: "t".into(),
                options: SubscriptionOptions::default(),
                id: 0,
            },
        ]
    }

    #[test]
    fn a_restart_with_fewer_shards_folds_every_log_in() {
        let d = dir("fold");
        for shard in 0..4 {
            log(&d, shard, "log", &session(&format!("c{shard}")));
        }
        let recovered = recover(&d, 2).unwrap();
        assert_eq!(recovered.sessions.len(), 4);
        assert!(!d.join("shard-2.log").exists() && !d.join("shard-3.log").exists());
        // And the snapshot holds them all.
        assert_eq!(recover(&d, 2).unwrap().sessions.len(), 4);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_snapshot_cut_short_leaves_the_old_logs_and_a_finished_one_the_new() {
        let d = dir("cut");
        log(&d, 0, "log", &session("old"));
        // New logs without their marker: a crash before the renames.
        log(&d, 0, "log.new", &session("new"));
        let recovered = recover(&d, 1).unwrap();
        assert!(recovered.sessions.contains_key("old") && !recovered.sessions.contains_key("new"));
        // With the marker: the new logs are the state, every old log goes.
        log(&d, 0, "log.new", &session("new"));
        log(&d, 1, "log", &session("stale"));
        std::fs::write(d.join(SNAPSHOT_READY), b"").unwrap();
        let recovered = recover(&d, 1).unwrap();
        let ids: Vec<&str> = recovered.sessions.keys().map(|k| &**k).collect();
        assert_eq!(ids, ["new"]);
        assert!(!d.join(SNAPSHOT_READY).exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
