//! Wire primitives shared by every packet (section 1.5 of the 3.1.1 and 5.0 specifications).
//!
//! Readers take the `Bytes` of one frame and advance it, so strings and binary fields come out as
//! slices of the received buffer rather than copies. Every reader checks the length it needs
//! first: running out of bytes inside a frame is a malformed packet, never a panic.
//!
//! Writers append to a `BytesMut`; the length-prefixed ones refuse fields over 65,535 bytes,
//! which the two-byte prefix cannot describe.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{ByteStr, DecodeError, EncodeError};

/// Ran out of bytes inside a field: the lengths of the packet contradict each other.
const TRUNCATED: DecodeError = DecodeError::Malformed("packet ends inside a field");

/// Reads one byte.
pub(crate) fn read_u8(buf: &mut Bytes) -> Result<u8, DecodeError> {
    if buf.is_empty() {
        return Err(TRUNCATED);
    }
    Ok(buf.get_u8())
}

/// Reads a big-endian two byte integer.
pub(crate) fn read_u16(buf: &mut Bytes) -> Result<u16, DecodeError> {
    if buf.len() < 2 {
        return Err(TRUNCATED);
    }
    Ok(buf.get_u16())
}

/// Reads a big-endian four byte integer.
pub(crate) fn read_u32(buf: &mut Bytes) -> Result<u32, DecodeError> {
    if buf.len() < 4 {
        return Err(TRUNCATED);
    }
    Ok(buf.get_u32())
}

/// Parses a variable byte integer at the front of `bytes` without consuming anything.
///
/// Returns the value and the number of bytes it occupies, or `None` when `bytes` ends before the
/// integer does (the caller decides whether that means "wait for more" or "malformed"). Non-minimal
/// encodings (`0x80 0x00` for 0) are accepted, as most brokers do; a fifth byte is not.
pub(crate) fn peek_varint(bytes: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value = 0u32;
    for (i, byte) in bytes.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 {
        Err(DecodeError::Malformed(
            "variable byte integer longer than 4 bytes",
        ))
    } else {
        Ok(None)
    }
}

/// Reads a variable byte integer from inside a frame.
pub(crate) fn read_varint(buf: &mut Bytes) -> Result<u32, DecodeError> {
    let (value, len) = peek_varint(buf)?.ok_or(TRUNCATED)?;
    buf.advance(len);
    Ok(value)
}

/// Reads two-byte-length-prefixed binary data, sharing `buf`'s memory.
pub(crate) fn read_binary(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = usize::from(read_u16(buf)?);
    if buf.len() < len {
        return Err(TRUNCATED);
    }
    Ok(buf.split_to(len))
}

/// Reads a UTF-8 string: valid UTF-8 (which excludes surrogates) without U+0000 (1.5.4).
pub(crate) fn read_string(buf: &mut Bytes) -> Result<ByteStr, DecodeError> {
    let bytes = read_binary(buf)?;
    if memchr::memchr(0, &bytes).is_some() {
        return Err(DecodeError::Malformed("string contains U+0000"));
    }
    ByteStr::from_utf8(bytes).map_err(|_| DecodeError::Malformed("string is not valid UTF-8"))
}

/// Reads a UTF-8 string pair (user property).
pub(crate) fn read_string_pair(buf: &mut Bytes) -> Result<(ByteStr, ByteStr), DecodeError> {
    let key = read_string(buf)?;
    let value = read_string(buf)?;
    Ok((key, value))
}

/// The number of bytes [`write_varint`] writes for `value`.
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        0x20_0000..=0x0FFF_FFFF => 4,
        _ => 5,
    }
}

/// Writes a variable byte integer. Callers keep `value` within
/// [`MAX_REMAINING_LENGTH`](crate::MAX_REMAINING_LENGTH); larger values would need a fifth byte,
/// which no decoder accepts.
pub(crate) fn write_varint(buf: &mut BytesMut, value: usize) {
    let mut rest = value;
    loop {
        // Truncation is the point: the low seven bits of `rest`.
        let mut byte = (rest & 0x7F) as u8;
        rest >>= 7;
        if rest > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if rest == 0 {
            return;
        }
    }
}

/// The encoded size of a length-prefixed string or binary field of `len` bytes.
pub(crate) fn prefixed_len(len: usize) -> usize {
    2 + len
}

/// Writes two-byte-length-prefixed binary data; `field` names it in the error.
pub(crate) fn write_binary(
    buf: &mut BytesMut,
    data: &[u8],
    field: &'static str,
) -> Result<(), EncodeError> {
    let len = u16::try_from(data.len()).map_err(|_| EncodeError::FieldTooLong(field))?;
    buf.put_u16(len);
    buf.put_slice(data);
    Ok(())
}

/// Writes a length-prefixed UTF-8 string; `field` names it in the error.
pub(crate) fn write_string(
    buf: &mut BytesMut,
    s: &str,
    field: &'static str,
) -> Result<(), EncodeError> {
    write_binary(buf, s.as_bytes(), field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(b: &[u8]) -> Bytes {
        Bytes::copy_from_slice(b)
    }

    #[test]
    fn varint_boundaries_round_trip() {
        for (value, encoded) in [
            (0usize, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut buf = BytesMut::new();
            write_varint(&mut buf, value);
            assert_eq!(&buf[..], encoded, "{value}");
            assert_eq!(varint_len(value), encoded.len());
            let mut b = bytes(encoded);
            assert_eq!(read_varint(&mut b).unwrap() as usize, value);
            assert!(b.is_empty());
        }
    }

    #[test]
    fn varint_of_five_bytes_is_malformed() {
        let mut b = bytes(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
        assert!(matches!(
            read_varint(&mut b),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn varint_non_minimal_encoding_is_accepted() {
        let mut b = bytes(&[0x80, 0x00]);
        assert_eq!(read_varint(&mut b).unwrap(), 0);
    }

    #[test]
    fn varint_incomplete_peeks_none() {
        assert_eq!(peek_varint(&[0x80, 0x80]).unwrap(), None);
        assert_eq!(peek_varint(&[]).unwrap(), None);
    }

    #[test]
    fn string_shares_the_frame() {
        let frame = bytes(&[0x00, 0x03, b'a', b'/', b'b', 0xAA]);
        let mut b = frame.clone();
        let s = read_string(&mut b).unwrap();
        assert_eq!(s, "a/b");
        assert_eq!(s.as_bytes().as_ptr(), frame[2..].as_ptr());
        assert_eq!(&b[..], &[0xAA]);
    }

    #[test]
    fn string_with_null_character_is_malformed() {
        let mut b = bytes(&[0x00, 0x02, b'a', 0x00]);
        assert!(matches!(
            read_string(&mut b),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn string_with_invalid_utf8_is_malformed() {
        // 0xED 0xA0 0x80 is the surrogate U+D800, which UTF-8 forbids.
        let mut b = bytes(&[0x00, 0x03, 0xED, 0xA0, 0x80]);
        assert!(matches!(
            read_string(&mut b),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn string_longer_than_the_packet_is_malformed() {
        let mut b = bytes(&[0x00, 0x05, b'a']);
        assert!(matches!(
            read_string(&mut b),
            Err(DecodeError::Malformed(_))
        ));
        let mut b = bytes(&[0x00]);
        assert!(matches!(read_u16(&mut b), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn binary_over_65535_bytes_is_refused() {
        let mut buf = BytesMut::new();
        let big = vec![0u8; 65_536];
        assert_eq!(
            write_binary(&mut buf, &big, "payload"),
            Err(EncodeError::FieldTooLong("payload"))
        );
        assert!(write_binary(&mut buf, &big[..65_535], "payload").is_ok());
        assert_eq!(buf.len(), prefixed_len(65_535));
    }
}
