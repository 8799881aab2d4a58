//! A record's body in the write-ahead log, inside seglog's frame (length, crc32):
//!
//! ```text
//! body = received_at_ms: i64 LE | topic_len: u32 LE | topic | payload
//! ```

use bytes::Bytes;
use seglog::frame::HEADER;

use crate::Record;

/// Bytes of the body before the topic.
const FIXED: usize = 12;

/// Size of the frame of `record`.
pub fn encoded_len(record: &Record) -> usize {
    HEADER + FIXED + record.topic.len() + record.payload.len()
}

/// Appends the frame of `record` to `out`.
///
/// A topic is at most 64 KiB and an MQTT packet at most 256 MiB, far below `u32::MAX`; larger
/// values would be clamped, which replay then refuses as corrupt.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    seglog::frame::encode_with(out, |out| {
        out.extend_from_slice(&record.received_at_ms.to_le_bytes());
        let topic_len = u32::try_from(record.topic.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&topic_len.to_le_bytes());
        out.extend_from_slice(&record.topic);
        out.extend_from_slice(&record.payload);
    });
}

/// The record in a frame's body (topic and payload share the body's buffer), or why the body,
/// although its checksum holds, is not one.
pub fn decode(body: &Bytes) -> Result<Record, &'static str> {
    if body.len() < FIXED {
        return Err("record shorter than its fixed fields");
    }
    let mut received = [0; 8];
    received.copy_from_slice(&body[..8]);
    let mut topic_len = [0; 4];
    topic_len.copy_from_slice(&body[8..FIXED]);
    let topic_end = FIXED + u32::from_le_bytes(topic_len) as usize;
    if topic_end > body.len() {
        return Err("topic length exceeds the frame");
    }
    Ok(Record {
        topic: body.slice(FIXED..topic_end),
        payload: body.slice(topic_end..),
        received_at_ms: i64::from_le_bytes(received),
    })
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
    fn records_round_trip_through_their_frames() {
        let records = [record("fleet/v/gps", "{}", 5), record("t", "", -3)];
        let mut out = Vec::new();
        for r in &records {
            encode(r, &mut out);
        }
        let scan = seglog::frame::scan(&Bytes::from(out));
        let decoded: Vec<Record> = scan
            .bodies
            .iter()
            .map(|(b, _)| decode(b).unwrap())
            .collect();
        assert_eq!(decoded, records);
    }

    #[test]
    fn a_body_that_is_not_a_record_is_refused() {
        assert!(decode(&Bytes::from_static(b"short")).is_err());
        let mut body = vec![0; 8];
        body.extend_from_slice(&100u32.to_le_bytes());
        body.extend_from_slice(b"abc");
        assert_eq!(
            decode(&Bytes::from(body)),
            Err("topic length exceeds the frame")
        );
    }
}
