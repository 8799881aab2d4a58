//! What flows from the broker into the archive: raw records and log positions.

use std::fmt;

use bytes::Bytes;

/// One message as received, before any decoding. Decoding happens on the writer threads, so
/// that a shard pays only for the log append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The topic, UTF-8 (a topic that is not becomes a reject).
    pub topic: Bytes,
    /// The payload as published.
    pub payload: Bytes,
    /// When the broker received it, Unix epoch milliseconds.
    pub received_at_ms: i64,
}

impl Record {
    /// A record from its parts.
    pub fn new(topic: impl Into<Bytes>, payload: impl Into<Bytes>, received_at_ms: i64) -> Self {
        Record {
            topic: topic.into(),
            payload: payload.into(),
            received_at_ms,
        }
    }
}

/// A position in one shard's write-ahead log: the segment file and the byte offset in it.
///
/// Positions order records of a shard in the order they were logged. A record's position is
/// the one just after its frame, so "everything up to `p` is archived" covers the record
/// ending at `p`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalPosition {
    /// The segment number (file `{segment:020}.wal`).
    pub segment: u64,
    /// Byte offset within the segment.
    pub offset: u64,
}

impl WalPosition {
    /// The start of an empty log.
    pub const ZERO: WalPosition = WalPosition {
        segment: 0,
        offset: 0,
    };

    /// A position from its parts.
    pub const fn new(segment: u64, offset: u64) -> Self {
        WalPosition { segment, offset }
    }
}

impl fmt::Display for WalPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.segment, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_segment_then_offset() {
        assert!(WalPosition::new(1, 0) > WalPosition::new(0, u64::MAX));
        assert!(WalPosition::new(2, 5) < WalPosition::new(2, 6));
        assert_eq!(WalPosition::default(), WalPosition::ZERO);
    }
}
