//! Replay of one segment of a shard's log: its frames' records, each with the position just
//! after it.

use bytes::Bytes;

use super::frame;
use crate::{Record, WalPosition};

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

/// Scans the records of `segment` held in `buf`: seglog's frame scan, then each body decoded;
/// a frame whose checksum holds but whose body is not a record ends the valid prefix like a
/// torn one.
pub fn scan(segment: u64, buf: &Bytes) -> Scan {
    let frames = seglog::frame::scan(buf);
    let mut out = Scan {
        valid_len: frames.valid_len,
        torn: frames.torn,
        records: Vec::with_capacity(frames.bodies.len()),
    };
    let mut start = 0;
    for (body, end) in frames.bodies {
        match frame::decode(&body) {
            Ok(record) => out.records.push((record, WalPosition::new(segment, end))),
            Err(why) => {
                out.valid_len = start;
                out.torn = Some((start, why));
                break;
            }
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::frame::encode;

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

    #[test]
    fn a_checked_frame_that_is_no_record_ends_the_valid_prefix() {
        let mut out = Vec::new();
        encode(&Record::new("a", "1", 0), &mut out);
        let first = out.len() as u64;
        seglog::frame::encode(b"tiny", &mut out);
        encode(&Record::new("b", "2", 0), &mut out);
        let scan = scan(0, &Bytes::from(out));
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.valid_len, first);
        assert_eq!(scan.torn.map(|t| t.0), Some(first));
    }
}
