//! The exactly-once index saved beside the write-ahead log, so that a start reads one small
//! file per writer instead of every Parquet file the archive ever wrote.
//!
//! `{data}/wal/exactly-once/writer-{n}` holds one checksummed frame ([`seglog::frame`]): a
//! magic, the writer's next file number and its index. A writer saves it only when it holds no
//! unpublished rows, so the index describes exactly the rows in that writer's files numbered
//! below the saved number. A start loads every writer's snapshot and adds the rows of the files
//! published after it (numbered from there on): the same index a scan of the whole archive
//! would give, from a handful of files.

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
};

use bytes::{Buf, BufMut, Bytes};
use seglog::frame::{self, Frame};

use crate::{dedup::DedupIndex, writer::file::replace_file, ArchiveError};

const DIR: &str = "exactly-once";
const MAGIC: &[u8; 8] = b"FMQXO\x00\x00\x01";

/// One writer's saved index.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The writer it belongs to.
    pub writer: usize,
    /// The index covers the rows of this writer's files numbered below this.
    pub next_file: u64,
    /// When it was saved, Unix epoch ms: where a vehicle is in two snapshots (the writer pool
    /// changed size), the later one holds its state.
    pub saved_at_ms: u64,
    /// The index.
    pub index: DedupIndex,
}

fn dir(wal_root: &Path) -> PathBuf {
    wal_root.join(DIR)
}

/// Saves writer `writer`'s index, which covers its files numbered below `next_file`.
///
/// # Errors
/// The file cannot be written; the previous snapshot stays.
pub(crate) fn save(
    wal_root: &Path,
    writer: usize,
    next_file: u64,
    index: &DedupIndex,
) -> Result<(), ArchiveError> {
    let mut out = Vec::new();
    frame::encode_with(&mut out, |body| {
        body.extend_from_slice(MAGIC);
        body.put_u64_le(next_file);
        body.put_u64_le(unix_ms());
        index.encode(body);
    });
    replace_file(&dir(wal_root), &format!("writer-{writer}"), &out)
}

/// Every writer's snapshot. One that cannot be read is left out with a warning: the start then
/// reads that writer's files instead, slower but exact.
///
/// # Errors
/// The directory cannot be listed.
pub(crate) fn load_all(wal_root: &Path) -> Result<Vec<Snapshot>, ArchiveError> {
    let dir = dir(wal_root);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ArchiveError::io(&dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ArchiveError::io(&dir, e))?;
        let name = entry.file_name();
        let Some(writer) = name
            .to_str()
            .and_then(|n| n.strip_prefix("writer-"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let path = entry.path();
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| decode(&Bytes::from(bytes)))
        {
            Ok((next_file, saved_at_ms, index)) => out.push(Snapshot {
                writer,
                next_file,
                saved_at_ms,
                index,
            }),
            Err(why) => tracing::warn!(
                path = %path.display(), why,
                "exactly-once snapshot unreadable; rebuilding that writer's index from its files"
            ),
        }
    }
    Ok(out)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn decode(bytes: &Bytes) -> Result<(u64, u64, DedupIndex), String> {
    let body = match frame::decode(bytes, 0) {
        Frame::Body(body, _) => body,
        Frame::End => return Err("empty".into()),
        Frame::Torn(why) => return Err(why.into()),
    };
    let mut rest = &body[..];
    if !rest.starts_with(MAGIC) {
        return Err("not an exactly-once snapshot of this version".into());
    }
    rest.advance(MAGIC.len());
    let next_file = rest.try_get_u64_le().map_err(|e| e.to_string())?;
    let saved_at_ms = rest.try_get_u64_le().map_err(|e| e.to_string())?;
    Ok((next_file, saved_at_ms, DedupIndex::decode(rest)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_and_a_damaged_one_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = DedupIndex::new();
        index.admit("truck-1", 41, 41_000);
        save(dir.path(), 3, 17, &index).unwrap();
        save(dir.path(), 4, 2, &DedupIndex::new()).unwrap();
        let mut loaded = load_all(dir.path()).unwrap();
        loaded.sort_by_key(|s| s.writer);
        assert_eq!(loaded.len(), 2);
        assert_eq!((loaded[0].writer, loaded[0].next_file), (3, 17));
        assert_eq!(loaded[0].index, index);
        // One flipped byte: the checksum catches it and that writer is rebuilt from files.
        let path = dir.path().join(DIR).join("writer-3");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let loaded = load_all(dir.path()).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].writer, 4);
    }
}
