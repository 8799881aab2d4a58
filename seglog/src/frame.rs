//! The framing of a log's records, checked on recovery.
//!
//! ```text
//! frame = len: u32 LE    length of body (at least 1)
//!         crc: u32 LE    crc32 (IEEE) of body
//!         body           what the log's owner encoded
//! ```
//! A crash can leave a frame half written, and a direct-I/O sync pads the last block with zeros
//! (overwritten by the next write). Recovery therefore stops at the first frame that does not
//! check out: zeros up to the end of the file are the normal end, anything else is a torn or
//! corrupt tail, cut off at the last good frame.

use bytes::Bytes;

/// Bytes before the body.
pub const HEADER: usize = 8;
/// Largest body accepted on recovery; a larger length is garbage. (MQTT caps a packet at
/// 256 MiB; a state record holds at most a few of them.)
pub const MAX_BODY: usize = 512 << 20;

/// Appends one frame whose body `write_body` appends to `out`: the body is encoded in place,
/// never copied.
///
/// A body longer than `u32::MAX` gets a clamped length, which recovery refuses as corrupt; no
/// log record comes near it.
pub fn encode_with(out: &mut Vec<u8>, write_body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    write_body(out);
    let body = &out[start + HEADER..];
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Appends one frame holding `body`.
pub fn encode(body: &[u8], out: &mut Vec<u8>) {
    encode_with(out, |out| out.extend_from_slice(body));
}

/// What is found at an offset of a log file.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A valid frame: its body (sharing the file's buffer) and the frame's whole size.
    Body(Bytes, usize),
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
    if !(1..=MAX_BODY).contains(&len) {
        return Frame::Torn("implausible frame length");
    }
    if rest.len() < HEADER + len {
        return Frame::Torn("frame runs past the end of the file");
    }
    if crc32fast::hash(&rest[HEADER..HEADER + len]) != crc {
        return Frame::Torn("checksum mismatch");
    }
    Frame::Body(buf.slice(at + HEADER..at + HEADER + len), HEADER + len)
}

/// The frames of one file, as recovery finds them.
#[derive(Debug, Default)]
pub struct Scan {
    /// The valid frames' bodies in order, each with the offset just past its frame.
    pub bodies: Vec<(Bytes, u64)>,
    /// Length of the valid prefix.
    pub valid_len: u64,
    /// Where and why the scan stopped early, if it did.
    pub torn: Option<(u64, &'static str)>,
}

/// Scans the frames in `buf` up to its end, its zero padding, or the first that does not
/// check out.
pub fn scan(buf: &Bytes) -> Scan {
    let mut out = Scan::default();
    let mut at = 0;
    loop {
        match decode(buf, at) {
            Frame::Body(body, len) => {
                at += len;
                out.bodies.push((body, at as u64));
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

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_bytes() {
        let mut out = Vec::new();
        encode(b"xyz", &mut out);
        assert_eq!(&out[0..4], &[3, 0, 0, 0]);
        assert_eq!(&out[4..8], &crc32fast::hash(b"xyz").to_le_bytes());
        assert_eq!(&out[8..], b"xyz");
        let mut in_place = Vec::new();
        encode_with(&mut in_place, |o| o.extend_from_slice(b"xyz"));
        assert_eq!(in_place, out);
    }

    #[test]
    fn frames_round_trip_then_end_at_padding() {
        let mut out = Vec::new();
        encode(b"one", &mut out);
        let first = out.len() as u64;
        encode(b"two", &mut out);
        let good = out.len() as u64;
        out.extend_from_slice(&[0; 100]);
        let s = scan(&Bytes::from(out));
        assert_eq!(
            s.bodies,
            vec![
                (Bytes::from_static(b"one"), first),
                (Bytes::from_static(b"two"), good)
            ]
        );
        assert!(s.torn.is_none());
        assert_eq!(s.valid_len, good);
    }

    #[test]
    fn garbage_after_good_frames_is_reported_where_it_starts() {
        let mut out = Vec::new();
        encode(b"one", &mut out);
        encode(b"two", &mut out);
        let good = out.len();
        out.extend_from_slice(b"\x05\0\0\0garbage");
        let s = scan(&Bytes::from(out));
        assert_eq!(s.bodies.len(), 2);
        assert_eq!(s.valid_len, good as u64);
        assert_eq!(s.torn.map(|t| t.0), Some(good as u64));
    }

    #[test]
    fn every_torn_prefix_and_every_flipped_byte_is_detected() {
        let mut out = Vec::new();
        encode(b"{\"seq\":1} fleet/v/gps", &mut out);
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

    #[test]
    fn a_flipped_bit_early_distrusts_everything_after_it() {
        let mut out = Vec::new();
        encode(b"one", &mut out);
        encode(b"two", &mut out);
        out[HEADER] ^= 1;
        let s = scan(&Bytes::from(out));
        assert!(s.bodies.is_empty());
        assert_eq!(s.torn, Some((0, "checksum mismatch")));
        assert_eq!(s.valid_len, 0);
    }
}
