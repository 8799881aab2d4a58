//! Segment files of one shard's log: naming, listing, reading and replay scanning.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::frame::{decode, Frame};
use crate::{Record, WalPosition};

/// `{segment:020}.wal`: zero-padded so names sort like numbers.
pub fn file_name(segment: u64) -> String {
    format!("{segment:020}.wal")
}

/// The path of `segment` in `dir`.
pub fn path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(file_name(segment))
}

/// The segment number of a file name.
pub fn parse_name(name: &str) -> Option<u64> {
    name.strip_suffix(".wal")?.parse().ok()
}

/// Segment numbers in `dir`, ascending (blocking: call through `spawn_blocking`).
pub fn list(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(n) = entry?.file_name().to_str().and_then(parse_name) {
            segments.push(n);
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// Reads a whole segment (through the page cache: see [`seglog::read_whole`]).
pub async fn read(path: &Path) -> std::io::Result<Bytes> {
    seglog::read_whole(path).await
}

/// The records of one segment, as replay finds them.
#[derive(Debug, Default)]
pub struct Scan {
    /// Valid records with the position just after each.
    pub records: Vec<(Record, WalPosition)>,
    /// Length of the valid prefix.
    pub valid_len: u64,
    /// Where and why replay stopped early, if it did.
    pub torn: Option<(u64, &'static str)>,
}

/// Scans the frames of `segment` held in `buf`.
pub fn scan(segment: u64, buf: &Bytes) -> Scan {
    let mut out = Scan::default();
    let mut at = 0;
    loop {
        match decode(buf, at) {
            Frame::Record(record, len) => {
                at += len;
                out.records
                    .push((record, WalPosition::new(segment, at as u64)));
            }
            Frame::End => break,
            Frame::Torn(why) => {
                out.torn = Some((at as u64, why));
                break;
            }
        }
    }
    out.valid_len = at as u64;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::frame::encode;

    #[test]
    fn names_sort_like_numbers() {
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert!(file_name(9) < file_name(10));
        assert_eq!(parse_name("checkpoint"), None);
    }

    #[test]
    fn scan_stops_at_garbage_and_reports_it() {
        let mut out = Vec::new();
        encode(&Record::new("a", "1", 0), &mut out);
        let first = out.len() as u64;
        encode(&Record::new("b", "2", 0), &mut out);
        let second = out.len() as u64;
        out.extend_from_slice(b"garbage");
        let scan = scan(3, &Bytes::from(out));
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.records[0].1, WalPosition::new(3, first));
        assert_eq!(scan.valid_len, second);
        assert_eq!(scan.torn.map(|t| t.0), Some(second));
    }
}
