//! Framing of log records, checked on replay.
//!
//! ```text
//! frame = len: u32 LE      length of body
//!         crc: u32 LE      crc32 (IEEE) of body
//!         body = received_at_ms: i64 LE | topic_len: u32 LE | topic | payload
//! ```
//! A crash can leave a frame half written, and `DmaStreamWriter::sync` pads the last block
//! with zeros (overwritten by the next write). Replay therefore stops at the first frame that
//! does not check out: zeros to the end of the file are the normal padding, anything else is a
//! torn or corrupt tail.

use bytes::Bytes;

use crate::Record;

/// Bytes before the body.
pub const HEADER: usize = 8;
/// Bytes of the body before the topic.
const FIXED: usize = 12;
/// Largest body accepted on replay (MQTT caps a packet at 256 MiB); a larger length is garbage.
pub const MAX_BODY: usize = 256 << 20;

/// Size of the frame of `record`.
pub fn encoded_len(record: &Record) -> usize {
    HEADER + FIXED + record.topic.len() + record.payload.len()
}

/// Appends the frame of `record` to `out`.
///
/// # Panics
/// Never for MQTT messages: a topic is at most 64 KiB and a packet at most 256 MiB, far
/// below `u32::MAX`; larger values are clamped, which replay then refuses as corrupt.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    let body_len = FIXED + record.topic.len() + record.payload.len();
    out.extend_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // crc, filled in below
    out.extend_from_slice(&record.received_at_ms.to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(record.topic.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&record.topic);
    out.extend_from_slice(&record.payload);
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// What is found at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A valid record and the size of its frame. Topic and payload share the segment buffer.
    Record(Record, usize),
    /// The end of the log: end of file, or zero padding up to it.
    End,
    /// Not a valid frame, and not padding: a torn write or corruption.
    Torn(&'static str),
}

/// Decodes the frame at `at` in `buf`.
pub fn decode(buf: &Bytes, at: usize) -> Frame {
    let rest = &buf[at.min(buf.len())..];
    if rest.iter().all(|&b| b == 0) {
        return Frame::End;
    }
    if rest.len() < HEADER {
        return Frame::Torn("truncated frame header");
    }
    let len = u32_at(rest, 0) as usize;
    let crc = u32_at(rest, 4);
    if !(FIXED..=MAX_BODY).contains(&len) {
        return Frame::Torn("implausible frame length");
    }
    if rest.len() < HEADER + len {
        return Frame::Torn("frame runs past the end of the segment");
    }
    let body = &rest[HEADER..HEADER + len];
    if crc32fast::hash(body) != crc {
        return Frame::Torn("checksum mismatch");
    }
    let mut received = [0; 8];
    received.copy_from_slice(&body[..8]);
    let topic_len = u32_at(body, 8) as usize;
    if topic_len > len - FIXED {
        return Frame::Torn("topic length exceeds the frame");
    }
    let topic_start = at + HEADER + FIXED;
    let payload_start = topic_start + topic_len;
    let record = Record {
        topic: buf.slice(topic_start..payload_start),
        payload: buf.slice(payload_start..at + HEADER + len),
        received_at_ms: i64::from_le_bytes(received),
    };
    Frame::Record(record, HEADER + len)
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, payload: &str, at: i64) -> Record {
        Record::new(topic.as_bytes().to_vec(), payload.as_bytes().to_vec(), at)
    }

    #[test]
    fn frame_bytes() {
        let mut out = Vec::new();
        encode(&record("a/b", "xy", 1), &mut out);
        assert_eq!(out.len(), encoded_len(&record("a/b", "xy", 1)));
        assert_eq!(&out[0..4], &[17, 0, 0, 0]); // body: 8 + 4 + 3 + 2 bytes
        assert_eq!(&out[8..16], &[1, 0, 0, 0, 0, 0, 0, 0]); // received_at_ms
        assert_eq!(&out[16..20], &[3, 0, 0, 0]); // topic length
        assert_eq!(&out[20..], b"a/bxy"); // topic, payload
        assert_eq!(&out[4..8], &crc32fast::hash(&out[8..]).to_le_bytes());
    }

    #[test]
    fn frames_round_trip_then_end_at_padding() {
        let records = [record("fleet/v/gps", "{}", 5), record("t", "", -3)];
        let mut out = Vec::new();
        for r in &records {
            encode(r, &mut out);
        }
        out.extend_from_slice(&[0; 100]);
        let buf = Bytes::from(out);
        let mut at = 0;
        for expected in &records {
            let Frame::Record(got, len) = decode(&buf, at) else {
                panic!("no record at {at}");
            };
            assert_eq!(&got, expected);
            at += len;
        }
        assert_eq!(decode(&buf, at), Frame::End);
        assert_eq!(decode(&buf, buf.len()), Frame::End);
    }

    #[test]
    fn every_torn_prefix_and_every_flipped_byte_is_detected() {
        let mut out = Vec::new();
        encode(&record("fleet/v/gps", "{\"seq\":1}", 5), &mut out);
        for cut in 1..out.len() {
            let buf = Bytes::from(out[..cut].to_vec());
            assert!(
                matches!(decode(&buf, 0), Frame::Torn(_)),
                "prefix {cut} accepted"
            );
        }
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x40;
            assert!(
                matches!(decode(&Bytes::from(bad), 0), Frame::Torn(_)),
                "flip at {i} accepted"
            );
        }
    }
}
