//! The compact hand-rolled encoding of record bodies: little-endian integers, length-prefixed
//! byte strings. No schema evolution beyond the record tag: a state directory is read by the
//! build that wrote it (or a later one that keeps the tags).

use bytes::Bytes;
use protocol::ByteStr;

/// Appends primitive values to a record body.
#[derive(Debug, Default)]
pub struct Writer {
    /// The bytes so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// A `u16`.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A `u32`.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A `u64`.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A length-prefixed byte string (clamped to `u32::MAX`, far above any MQTT packet).
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(v);
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
}

/// Reads primitive values from a record body; every read is `None` past the end, so a
/// malformed body is refused rather than misread.
#[derive(Debug)]
pub struct Reader {
    buf: Bytes,
    at: usize,
}

impl Reader {
    /// Reads `buf` from the start.
    pub fn new(buf: Bytes) -> Reader {
        Reader { buf, at: 0 }
    }

    fn take(&mut self, n: usize) -> Option<Bytes> {
        let end = self.at.checked_add(n)?;
        if end > self.buf.len() {
            return None;
        }
        let out = self.buf.slice(self.at..end);
        self.at = end;
        Some(out)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let b = self.take(N)?;
        <[u8; N]>::try_from(&b[..]).ok()
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    /// A `u16`.
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.array()?))
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }

    /// A `u64`.
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }

    /// A length-prefixed byte string, sharing the record's buffer.
    pub fn bytes(&mut self) -> Option<Bytes> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Option<ByteStr> {
        ByteStr::from_utf8(self.bytes()?).ok()
    }

    /// True once everything was read.
    pub fn is_done(&self) -> bool {
        self.at == self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_and_short_input_is_refused() {
        let mut w = Writer::default();
        w.u8(7);
        w.u16(0x0102);
        w.u64(u64::MAX - 1);
        w.str("fleet/1/gps");
        let mut r = Reader::new(Bytes::from(w.buf.clone()));
        assert_eq!(r.u8(), Some(7));
        assert_eq!(r.u16(), Some(0x0102));
        assert_eq!(r.u64(), Some(u64::MAX - 1));
        assert_eq!(r.str().as_deref(), Some("fleet/1/gps"));
        assert!(r.is_done());
        let cut = w.buf.len() - 1;
        let mut r = Reader::new(Bytes::from(w.buf[..cut].to_vec()));
        r.u8();
        r.u16();
        r.u64();
        assert_eq!(r.str(), None);
    }
}
