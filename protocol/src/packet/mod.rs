//! MQTT control packets and the framing that reads and writes them.
//!
//! One module per packet kind, each with its `read` and `write` and byte-commented tests; this
//! module holds the [`Packet`] enum, the fixed header, and the [`decode`]/[`encode`] entry points.
//!
//! Every packet module follows one shape: `read(&mut Bytes, ...)` parses the fields of a frame
//! whose fixed header is already gone (the bytes it leaves behind are a malformed packet, checked
//! once here), `body_len(...)` is the remaining length `write(...)` will produce, and `write`
//! appends the variable header and payload.

mod auth;
mod connack;
mod connect;
mod disconnect;
mod puback;
mod publish;
mod suback;
mod subscribe;
mod tail;
mod unsuback;
mod unsubscribe;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{wire, DecodeError, EncodeError, Protocol, MAX_REMAINING_LENGTH};

pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub use disconnect::Disconnect;
pub use puback::PubAck;
pub use publish::Publish;
pub use suback::SubAck;
pub use subscribe::{RetainHandling, Subscribe, Subscription, SubscriptionOptions};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

/// Every MQTT control packet, for all protocol levels.
///
/// Fields that exist only in 5.0 (properties, reason codes on acks) are simply left at their
/// defaults for 3.1/3.1.1 connections; the encoder omits them and the decoder never sets them.
// CONNECT is the largest variant but arrives once per connection; boxing it would change the
// public shape the broker matches on for a saving that never reaches the PUBLISH hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (1).
    Connect(Connect),
    /// CONNACK (2).
    ConnAck(ConnAck),
    /// PUBLISH (3).
    Publish(Publish),
    /// PUBACK (4).
    PubAck(PubAck),
    /// PUBREC (5).
    PubRec(PubAck),
    /// PUBREL (6).
    PubRel(PubAck),
    /// PUBCOMP (7).
    PubComp(PubAck),
    /// SUBSCRIBE (8).
    Subscribe(Subscribe),
    /// SUBACK (9).
    SubAck(SubAck),
    /// UNSUBSCRIBE (10).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (11).
    UnsubAck(UnsubAck),
    /// PINGREQ (12).
    PingReq,
    /// PINGRESP (13).
    PingResp,
    /// DISCONNECT (14).
    Disconnect(Disconnect),
    /// AUTH (15, 5.0 only).
    Auth(Auth),
}

/// Packet type numbers, the high nibble of the first byte.
mod kind {
    pub(super) const CONNECT: u8 = 1;
    pub(super) const CONNACK: u8 = 2;
    pub(super) const PUBLISH: u8 = 3;
    pub(super) const PUBACK: u8 = 4;
    pub(super) const PUBREC: u8 = 5;
    pub(super) const PUBREL: u8 = 6;
    pub(super) const PUBCOMP: u8 = 7;
    pub(super) const SUBSCRIBE: u8 = 8;
    pub(super) const SUBACK: u8 = 9;
    pub(super) const UNSUBSCRIBE: u8 = 10;
    pub(super) const UNSUBACK: u8 = 11;
    pub(super) const PINGREQ: u8 = 12;
    pub(super) const PINGRESP: u8 = 13;
    pub(super) const DISCONNECT: u8 = 14;
    pub(super) const AUTH: u8 = 15;
}

/// The flags PUBREL, SUBSCRIBE and UNSUBSCRIBE must carry (a leftover of MQTT 3.1's QoS 1).
const FLAGS_0010: u8 = 0b0010;

impl Packet {
    /// The packet type's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }

    /// The first byte of the fixed header: packet type and flags.
    fn first_byte(&self) -> u8 {
        let (kind, flags) = match self {
            Packet::Connect(_) => (kind::CONNECT, 0),
            Packet::ConnAck(_) => (kind::CONNACK, 0),
            Packet::Publish(publish) => (kind::PUBLISH, publish.flags()),
            Packet::PubAck(_) => (kind::PUBACK, 0),
            Packet::PubRec(_) => (kind::PUBREC, 0),
            Packet::PubRel(_) => (kind::PUBREL, FLAGS_0010),
            Packet::PubComp(_) => (kind::PUBCOMP, 0),
            Packet::Subscribe(_) => (kind::SUBSCRIBE, FLAGS_0010),
            Packet::SubAck(_) => (kind::SUBACK, 0),
            Packet::Unsubscribe(_) => (kind::UNSUBSCRIBE, FLAGS_0010),
            Packet::UnsubAck(_) => (kind::UNSUBACK, 0),
            Packet::PingReq => (kind::PINGREQ, 0),
            Packet::PingResp => (kind::PINGRESP, 0),
            Packet::Disconnect(_) => (kind::DISCONNECT, 0),
            Packet::Auth(_) => (kind::AUTH, 0),
        };
        kind << 4 | flags
    }

    /// The remaining length: variable header plus payload.
    fn body_len(&self, version: Protocol) -> usize {
        match self {
            Packet::Connect(connect) => connect.body_len(),
            Packet::ConnAck(connack) => connack.body_len(version),
            Packet::Publish(publish) => publish.body_len(version),
            Packet::PubAck(ack)
            | Packet::PubRec(ack)
            | Packet::PubRel(ack)
            | Packet::PubComp(ack) => ack.body_len(version),
            Packet::Subscribe(subscribe) => subscribe.body_len(version),
            Packet::SubAck(suback) => suback.body_len(version),
            Packet::Unsubscribe(unsubscribe) => unsubscribe.body_len(version),
            Packet::UnsubAck(unsuback) => unsuback.body_len(version),
            Packet::PingReq | Packet::PingResp => 0,
            Packet::Disconnect(disconnect) => disconnect.body_len(version),
            Packet::Auth(auth) => auth.body_len(),
        }
    }

    /// Appends the variable header and payload.
    fn write_body(&self, version: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Packet::Connect(connect) => connect.write(buf),
            Packet::ConnAck(connack) => connack.write(version, buf),
            Packet::Publish(publish) => publish.write(version, buf),
            Packet::PubAck(ack)
            | Packet::PubRec(ack)
            | Packet::PubRel(ack)
            | Packet::PubComp(ack) => ack.write(version, buf),
            Packet::Subscribe(subscribe) => subscribe.write(version, buf),
            Packet::SubAck(suback) => suback.write(version, buf),
            Packet::Unsubscribe(unsubscribe) => unsubscribe.write(version, buf),
            Packet::UnsubAck(unsuback) => unsuback.write(version, buf),
            Packet::PingReq | Packet::PingResp => Ok(()),
            Packet::Disconnect(disconnect) => disconnect.write(version, buf),
            Packet::Auth(auth) => auth.write(buf),
        }
    }
}

/// Checks the first byte of a fixed header: a known packet type for `version` with the flags
/// that type requires. Done before the remaining length is even complete, so garbage is refused
/// at its first byte.
fn check_first_byte(first: u8, version: Protocol) -> Result<(), DecodeError> {
    let flags = first & 0x0F;
    let required = match first >> 4 {
        0 => return Err(DecodeError::Malformed("reserved packet type 0")),
        kind::PUBLISH => return publish::parse_flags(flags).map(|_| ()),
        kind::PUBREL | kind::SUBSCRIBE | kind::UNSUBSCRIBE => FLAGS_0010,
        kind::AUTH if !version.is_v5() => {
            return Err(DecodeError::Malformed("AUTH is reserved before MQTT 5.0"))
        }
        _ => 0,
    };
    if flags == required {
        Ok(())
    } else {
        Err(DecodeError::Malformed("invalid fixed header flags"))
    }
}

/// Parses the fields of a complete frame whose fixed header has been cut off.
fn read_body(first: u8, mut body: Bytes, version: Protocol) -> Result<Packet, DecodeError> {
    let body = &mut body;
    let packet = match first >> 4 {
        kind::CONNECT => Packet::Connect(Connect::read(body)?),
        kind::CONNACK => Packet::ConnAck(ConnAck::read(body, version)?),
        kind::PUBLISH => Packet::Publish(Publish::read(first & 0x0F, body, version)?),
        kind::PUBACK => Packet::PubAck(PubAck::read(body, version)?),
        kind::PUBREC => Packet::PubRec(PubAck::read(body, version)?),
        kind::PUBREL => Packet::PubRel(PubAck::read(body, version)?),
        kind::PUBCOMP => Packet::PubComp(PubAck::read(body, version)?),
        kind::SUBSCRIBE => Packet::Subscribe(Subscribe::read(body, version)?),
        kind::SUBACK => Packet::SubAck(SubAck::read(body, version)?),
        kind::UNSUBSCRIBE => Packet::Unsubscribe(Unsubscribe::read(body, version)?),
        kind::UNSUBACK => Packet::UnsubAck(UnsubAck::read(body, version)?),
        kind::PINGREQ => Packet::PingReq,
        kind::PINGRESP => Packet::PingResp,
        kind::DISCONNECT => Packet::Disconnect(Disconnect::read(body, version)?),
        kind::AUTH => Packet::Auth(Auth::read(body)?),
        _ => return Err(DecodeError::Malformed("reserved packet type")),
    };
    if !body.is_empty() {
        return Err(DecodeError::Malformed(
            "bytes left over after the packet's fields",
        ));
    }
    Ok(packet)
}

/// Reads a packet identifier where one is required; 0 is not a packet identifier (2.2.1).
fn read_pkid(body: &mut Bytes) -> Result<u16, DecodeError> {
    match wire::read_u16(body)? {
        0 => Err(DecodeError::Protocol("packet identifier 0")),
        pkid => Ok(pkid),
    }
}

/// Decodes one packet from the front of `buf`.
///
/// Returns `Ok(None)` and consumes nothing when `buf` does not yet hold a whole packet. A
/// packet whose remaining length makes it larger than `max_packet_size` is refused from its fixed
/// header alone, before its body is buffered. `version` is the connection's protocol level; a
/// CONNECT is decoded by the level it announces itself.
///
/// A decoded packet's strings and payload share memory with the frame cut from `buf`; nothing is
/// copied.
///
/// # Errors
/// A [`DecodeError`] when the bytes are not a valid packet for `version`; the connection must then
/// be closed (with [`DecodeError::reason_code`] under 5.0).
pub fn decode(
    buf: &mut BytesMut,
    version: Protocol,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    check_first_byte(first, version)?;
    let Some((remaining, len_len)) = wire::peek_varint(buf.get(1..).unwrap_or_default())? else {
        return Ok(None);
    };
    let header_len = 1 + len_len;
    let size = header_len + remaining as usize;
    if size > max_packet_size as usize {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        // No `reserve(size)` here: a five-byte header would otherwise make the peer's claimed
        // size an allocation before any of it has arrived. The reader grows the buffer as bytes
        // actually come in.
        return Ok(None);
    }
    let mut frame = buf.split_to(size).freeze();
    frame.advance(header_len);
    read_body(first, frame, version).map(Some)
}

/// Appends the encoding of `packet` for a connection at `version` to `buf`.
///
/// CONNECT is written at the level of its own `protocol` field. Under 3.1/3.1.1 properties and
/// reason codes are silently left out (CONNACK and SUBACK reason codes are mapped to 3.1.1 return
/// codes). Properties a packet kind may not carry are left out too. On error `buf` is left as it
/// was.
///
/// # Errors
/// An [`EncodeError`] when the packet cannot be represented (a string over 65,535 bytes, a
/// remaining length over 268,435,455, a 5.0-only packet on a 3.1.1 connection).
pub fn encode(packet: &Packet, version: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
    if matches!(packet, Packet::Auth(_)) && !version.is_v5() {
        return Err(EncodeError::Unsupported("AUTH exists only in MQTT 5.0"));
    }
    write_frame(
        packet.first_byte(),
        packet.body_len(version),
        buf,
        |buf| packet.write_body(version, buf),
        packet.name(),
    )
}

/// [`encode`] for a PUBLISH held on its own: the same bytes as `encode(&Packet::Publish(..))`
/// without building a [`Packet`] (about 1 KiB, its largest variant's size) around it, which
/// a broker would otherwise do for every message it delivers.
///
/// # Errors
/// As [`encode`].
pub fn encode_publish(
    publish: &Publish,
    version: Protocol,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    write_frame(
        (kind::PUBLISH << 4) | publish.flags(),
        publish.body_len(version),
        buf,
        |buf| publish.write(version, buf),
        "PUBLISH",
    )
}

/// Writes a fixed header (`first_byte`, then the remaining length) and the body `write_body`
/// writes, which must be `remaining` bytes long. On error `buf` is left as it was.
fn write_frame(
    first_byte: u8,
    remaining: usize,
    buf: &mut BytesMut,
    write_body: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
    name: &str,
) -> Result<(), EncodeError> {
    if remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge);
    }
    let start = buf.len();
    buf.reserve(1 + wire::varint_len(remaining) + remaining);
    buf.put_u8(first_byte);
    wire::write_varint(buf, remaining);
    if let Err(error) = write_body(buf) {
        buf.truncate(start);
        return Err(error);
    }
    debug_assert_eq!(
        buf.len() - start,
        1 + wire::varint_len(remaining) + remaining,
        "{name} body_len disagrees with write"
    );
    Ok(())
}

/// The number of bytes [`encode`] would write for `packet`, fixed header included; used to honour
/// a client's Maximum Packet Size before a message is queued for it.
///
/// Meaningless for a packet `encode` refuses (it is then the size the packet would have).
pub fn encoded_len(packet: &Packet, version: Protocol) -> usize {
    let remaining = packet.body_len(version);
    1 + wire::varint_len(remaining) + remaining
}

/// Helpers for the byte-level fixtures of the packet modules.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Decodes `bytes` as exactly one packet.
    pub(crate) fn decode_one(bytes: &[u8], version: Protocol) -> Result<Packet, DecodeError> {
        let mut buf = BytesMut::from(bytes);
        let packet = decode(&mut buf, version, u32::MAX)?.expect("a complete packet");
        assert!(buf.is_empty(), "decode left {} bytes", buf.len());
        Ok(packet)
    }

    /// Encodes `packet`, checking `encoded_len` along the way.
    pub(crate) fn encode_vec(packet: &Packet, version: Protocol) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode(packet, version, &mut buf).expect("encodable");
        assert_eq!(buf.len(), encoded_len(packet, version));
        buf.to_vec()
    }

    /// Decodes the frame of type-and-flags `first` around `body` (remaining length added).
    pub(crate) fn decode_body(
        first: u8,
        body: &[u8],
        version: Protocol,
    ) -> Result<Packet, DecodeError> {
        let mut bytes = BytesMut::new();
        bytes.put_u8(first);
        wire::write_varint(&mut bytes, body.len());
        bytes.put_slice(body);
        decode_one(&bytes, version)
    }

    /// `bytes` decode to `packet` and `packet` encodes to `bytes`.
    pub(crate) fn assert_wire(bytes: &[u8], version: Protocol, packet: &Packet) {
        assert_eq!(&decode_one(bytes, version).expect("decodes"), packet);
        assert_eq!(encode_vec(packet, version), bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn pingreq_and_pingresp() {
        for version in [Protocol::V3_1_1, Protocol::V5] {
            assert_wire(&[0xC0, 0x00], version, &Packet::PingReq);
            assert_wire(&[0xD0, 0x00], version, &Packet::PingResp);
        }
    }

    #[test]
    fn ping_with_a_body_is_malformed() {
        let result = decode_one(&[0xC0, 0x01, 0x00], Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn empty_and_partial_fixed_header_wait_for_more() {
        let mut buf = BytesMut::new();
        assert_eq!(decode(&mut buf, Protocol::V5, 100), Ok(None));
        let mut buf = BytesMut::from(&[0x30, 0x80][..]);
        assert_eq!(decode(&mut buf, Protocol::V5, 1_000_000), Ok(None));
        assert_eq!(buf.len(), 2);
    }

    #[test]
    fn incomplete_body_consumes_nothing() {
        // PUBLISH, remaining length 5, only 3 body bytes.
        let mut buf = BytesMut::from(&[0x30, 0x05, 0x00, 0x01, b'a'][..]);
        assert_eq!(decode(&mut buf, Protocol::V3_1_1, 100), Ok(None));
        assert_eq!(&buf[..], &[0x30, 0x05, 0x00, 0x01, b'a']);
    }

    #[test]
    fn packet_too_large_is_refused_before_the_body_arrives() {
        // PUBLISH announcing 200 bytes of body; nothing of it has arrived.
        let mut buf = BytesMut::from(&[0x30, 0xC8, 0x01][..]);
        assert_eq!(
            decode(&mut buf, Protocol::V5, 100),
            Err(DecodeError::PacketTooLarge {
                size: 203,
                max: 100
            })
        );
    }

    #[test]
    fn remaining_length_of_five_bytes_is_malformed() {
        let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F][..]);
        let result = decode(&mut buf, Protocol::V5, u32::MAX);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn packet_type_0_is_malformed() {
        let result = decode_one(&[0x00, 0x00], Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn auth_under_3_1_1_is_malformed() {
        let result = decode_one(&[0xF0, 0x00], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn reserved_flags_must_match_the_packet_type() {
        // PUBREL, SUBSCRIBE and UNSUBSCRIBE need 0b0010; everything else but PUBLISH needs 0.
        for first in [0x60, 0x80, 0xA0, 0x42, 0x11, 0x21, 0xC1, 0xE8] {
            let mut buf = BytesMut::from(&[first, 0x00][..]);
            let result = decode(&mut buf, Protocol::V5, 100);
            assert!(
                matches!(result, Err(DecodeError::Malformed(_))),
                "{first:#04X}: {result:?}"
            );
        }
    }

    #[test]
    fn encode_auth_under_3_1_1_is_unsupported() {
        let mut buf = BytesMut::new();
        let result = encode(&Packet::Auth(Auth::default()), Protocol::V3_1_1, &mut buf);
        assert!(matches!(result, Err(EncodeError::Unsupported(_))));
        assert!(buf.is_empty());
    }

    #[test]
    fn encode_over_the_remaining_length_limit_is_too_large() {
        let publish = Publish {
            dup: false,
            qos: crate::QoS::AtMostOnce,
            retain: false,
            topic: crate::ByteStr::from_static("t"),
            pkid: 0,
            payload: Bytes::from(vec![0u8; MAX_REMAINING_LENGTH]),
            properties: crate::Properties::default(),
        };
        let mut buf = BytesMut::new();
        let result = encode(&Packet::Publish(publish), Protocol::V3_1_1, &mut buf);
        assert_eq!(result, Err(EncodeError::PacketTooLarge));
    }

    #[test]
    fn failed_encode_leaves_the_buffer_as_it_was() {
        let publish = Publish {
            dup: false,
            qos: crate::QoS::AtMostOnce,
            retain: false,
            topic: crate::ByteStr::from("x".repeat(70_000)),
            pkid: 0,
            payload: Bytes::new(),
            properties: crate::Properties::default(),
        };
        let mut buf = BytesMut::from(&b"previous"[..]);
        let result = encode(&Packet::Publish(publish), Protocol::V5, &mut buf);
        assert_eq!(result, Err(EncodeError::FieldTooLong("topic name")));
        assert_eq!(&buf[..], b"previous");
    }
}
