//! The files of a shard's state: its log segments, reading, the snapshot write (temp, sync,
//! rename, sync of the directory), the directory lock.

use std::path::{Path, PathBuf};

use bytes::Bytes;
pub(super) use seglog::blocking;
use seglog::{frame, AppendFile, IoMode, Segments};

use super::{codec, Record, StateSource};
use crate::config::PersistenceSettings;

/// Write buffer of the snapshot writer (synced once, at its end).
pub(super) const WRITE_BUFFER: usize = 128 << 10;
/// Name of the snapshot file.
pub(super) const SNAPSHOT: &str = "snapshot";
/// Name of the snapshot while it is written.
pub(super) const SNAPSHOT_TMP: &str = "snapshot.tmp";

/// The directory of shard `shard`'s state.
pub fn shard_dir(settings: &PersistenceSettings, shard: usize) -> PathBuf {
    settings.dir.join(format!("shard-{shard}"))
}

/// The log segments of a shard's state directory, `{n:020}.log`.
pub(super) fn segments(dir: &Path) -> Segments {
    Segments::new(dir, "log")
}

/// Reads a whole snapshot or segment (through the page cache: see [`seglog::read_whole`]).
pub(super) async fn read_file(path: &Path) -> Result<Bytes, String> {
    seglog::read_whole(path).await.map_err(|e| e.to_string())
}

/// Takes the state directory's exclusive lock (created if need be), held for as long as the
/// returned file is open: two brokers writing one state directory would corrupt each other's
/// logs, and recovery of one would delete the other's segments.
///
/// # Errors
/// The directory or lock file cannot be created, or another process holds the lock.
pub fn lock_state_dir(settings: &PersistenceSettings) -> Result<std::fs::File, String> {
    let path = settings.dir.join(".lock");
    let file = std::fs::create_dir_all(&settings.dir)
        .and_then(|()| {
            std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        })
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "{} is in use by another broker: one broker per state directory (give this one \
             another --data, or persistence.dir)",
            settings.dir.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("{}: {e}", path.display())),
    }
}

/// Shard directories at or beyond `nr_shards`: state written by a broker that ran with more
/// shards, which the shards running now must take over rather than ignore.
///
/// # Errors
/// The state directory exists but cannot be listed.
pub fn orphan_shards(
    settings: &PersistenceSettings,
    nr_shards: usize,
) -> std::io::Result<Vec<usize>> {
    let entries = match std::fs::read_dir(&settings.dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix("shard-"))
            .and_then(|n| n.parse::<usize>().ok())
        {
            if n >= nr_shards {
                out.push(n);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Deletes the directory of a shard whose state another shard took over (and snapshotted).
pub async fn remove_shard_dir(settings: &PersistenceSettings, shard: usize) {
    let dir = shard_dir(settings, shard);
    let shown = dir.display().to_string();
    if let Err(e) = blocking(move || std::fs::remove_dir_all(dir)).await {
        tracing::warn!(path = shown, error = %e, "broker state: cannot delete a taken-over shard directory");
    }
}

/// Writes a snapshot durably: a temp file, synced, renamed over the old one, directory synced.
/// Items are encoded and written a chunk at a time, so neither the shard's time nor memory
/// grows with the size of its state.
pub(super) async fn write_snapshot(
    dir: &Path,
    io: IoMode,
    next_segment: u64,
    source: &dyn StateSource,
) -> Result<u64, String> {
    /// Encoded bytes handed to the writer at once.
    const CHUNK: usize = 256 << 10;
    let tmp = dir.join(SNAPSHOT_TMP);
    let failed = |e: std::io::Error| format!("{}: {e}", tmp.display());
    let mut writer = AppendFile::create(&tmp, io, WRITE_BUFFER)
        .await
        .map_err(failed)?;
    let mut buf = Vec::with_capacity(CHUNK);
    let mut w = codec::Writer::default();
    Record::SnapshotHeader { next_segment }.encode(&mut w);
    frame::encode(&w.buf, &mut buf);
    let mut total = 0u64;
    for (i, key) in source.keys().iter().enumerate() {
        if let Some(record) = source.record(key) {
            let mut w = codec::Writer::default();
            record.encode(&mut w);
            frame::encode(&w.buf, &mut buf);
        }
        if buf.len() >= CHUNK {
            writer.write_all(&buf).await.map_err(failed)?;
            total += buf.len() as u64;
            buf.clear();
        }
        if i % 64 == 63 {
            glommio::yield_if_needed().await;
        }
    }
    writer.write_all(&buf).await.map_err(failed)?;
    total += buf.len() as u64;
    writer.sync().await.map_err(failed)?;
    writer.close().await.map_err(failed)?;
    let (from, to) = (tmp.clone(), dir.join(SNAPSHOT));
    blocking(move || std::fs::rename(from, to))
        .await
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    sync_dir(dir).await?;
    Ok(total)
}

pub(super) async fn sync_dir(dir: &Path) -> Result<(), String> {
    seglog::sync_dir(dir).await.map_err(|e| e.to_string())
}
