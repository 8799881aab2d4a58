//! Framing of state records, checked on recovery.
//!
//! ```text
//! frame = len: u32 LE    length of body (at least 1: the record tag)
//!         crc: u32 LE    crc32 (IEEE) of body
//!         body
//! ```
//! `DmaStreamWriter::sync` pads the last block with zeros (overwritten by the next write), so
//! zeros up to the end of a file are the normal end; anything else that does not check out is a
//! torn or corrupt tail, cut off at the last good frame.

use bytes::Bytes;

/// Bytes before the body.
pub const HEADER: usize = 8;
/// Largest body accepted on recovery; a larger length is garbage.
pub const MAX_BODY: usize = 512 << 20;

/// Appends one frame holding `body`.
pub fn encode(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
}

/// The frames of one file, as recovery finds them.
#[derive(Debug, Default)]
pub struct Scan {
    /// Offsets and bodies of the valid frames, in order (bodies share the file's buffer).
    pub bodies: Vec<(u64, Bytes)>,
    /// Length of the valid prefix.
    pub valid_len: u64,
    /// Where and why the scan stopped early, if it did.
    pub torn: Option<(u64, &'static str)>,
}

/// Scans the frames in `buf`.
pub fn scan(buf: &Bytes) -> Scan {
    let mut out = Scan::default();
    let mut at = 0usize;
    loop {
        let rest = &buf[at.min(buf.len())..];
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let torn = |why| Some((at as u64, why));
        if rest.len() < HEADER {
            out.torn = torn("truncated frame header");
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if !(1..=MAX_BODY).contains(&len) {
            out.torn = torn("implausible frame length");
            break;
        }
        if rest.len() < HEADER + len {
            out.torn = torn("frame runs past the end of the file");
            break;
        }
        if crc32fast::hash(&rest[HEADER..HEADER + len]) != crc {
            out.torn = torn("checksum mismatch");
            break;
        }
        out.bodies
            .push((at as u64, buf.slice(at + HEADER..at + HEADER + len)));
        at += HEADER + len;
    }
    out.valid_len = at as u64;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_padding_ends_cleanly_and_garbage_is_reported() {
        let mut out = Vec::new();
        encode(b"one", &mut out);
        let first = out.len() as u64;
        encode(b"two", &mut out);
        let good = out.len();
        out.extend_from_slice(&[0; 100]);
        let s = scan(&Bytes::from(out.clone()));
        assert_eq!(s.bodies.len(), 2);
        assert!(s.torn.is_none());
        assert_eq!(s.valid_len, good as u64);

        out.truncate(good);
        out.extend_from_slice(b"\x05\0\0\0garbage");
        let s = scan(&Bytes::from(out.clone()));
        assert_eq!(s.bodies.len(), 2);
        assert_eq!(s.torn.map(|t| t.0), Some(good as u64));

        // A flipped bit in the first body: nothing after it is trusted.
        let mut flipped = out.clone();
        flipped[HEADER] ^= 1;
        let s = scan(&Bytes::from(flipped));
        assert!(s.bodies.is_empty());
        assert_eq!(s.torn, Some((0, "checksum mismatch")));

        // A frame cut in its body.
        let s = scan(&Bytes::from(out[..first as usize + 5].to_vec()));
        assert_eq!(s.bodies.len(), 1);
        assert_eq!(s.valid_len, first);
        assert!(s.torn.is_some());
    }
}
