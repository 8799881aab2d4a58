//! MQTT control packets and the framing that reads and writes them.
//!
//! One module per packet kind, each with its `read` and `write` and byte-commented tests; this
//! module holds the [`Packet`] enum, the fixed header, and the [`decode`]/[`encode`] entry points.

use bytes::{Bytes, BytesMut};

use crate::{ByteStr, DecodeError, EncodeError, Properties, Protocol, QoS, ReasonCode};

/// Every MQTT control packet, for all protocol levels.
///
/// Fields that exist only in 5.0 (properties, reason codes on acks) are simply left at their
/// defaults for 3.1/3.1.1 connections; the encoder omits them and the decoder never sets them.
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

/// CONNECT: the first packet of every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol level requested by the client.
    pub protocol: Protocol,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client identifier; may be empty (the server then assigns one or refuses, per level).
    pub client_id: ByteStr,
    /// The Last Will, if any.
    pub will: Option<Will>,
    /// User name, if the flag is set.
    pub username: Option<ByteStr>,
    /// Password, if the flag is set (binary data).
    pub password: Option<Bytes>,
    /// CONNECT properties (5.0).
    pub properties: Properties,
}

/// A Last Will message carried in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Will topic.
    pub topic: ByteStr,
    /// Will payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will retain flag.
    pub retain: bool,
    /// Will properties (5.0): delay interval, expiry, content type, response topic...
    pub properties: Properties,
}

/// CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Session present flag.
    pub session_present: bool,
    /// 5.0 reason code; mapped to a 3.1.1 return code on encode.
    pub reason: ReasonCode,
    /// CONNACK properties (5.0).
    pub properties: Properties,
}

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag.
    pub dup: bool,
    /// QoS level.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name; may be empty under 5.0 when a topic alias stands for it.
    pub topic: ByteStr,
    /// Packet identifier; 0 (and not on the wire) at QoS 0.
    pub pkid: u16,
    /// Application payload, shared with the receive buffer.
    pub payload: Bytes,
    /// PUBLISH properties (5.0).
    pub properties: Properties,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubAck {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// 5.0 reason code (always success under 3.1.1).
    pub reason: ReasonCode,
    /// Properties (5.0): reason string, user properties.
    pub properties: Properties,
}

/// Retain handling option of a 5.0 subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe,
    /// 1: send retained messages only if the subscription did not already exist.
    SendIfNew,
    /// 2: do not send retained messages.
    DoNotSend,
}

/// Subscription options byte (3.1.1 only uses the QoS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local (5.0): do not send the client its own publications.
    pub no_local: bool,
    /// Retain As Published (5.0): keep the RETAIN flag when forwarding.
    pub retain_as_published: bool,
    /// Retain Handling (5.0).
    pub retain_handling: RetainHandling,
}

/// One topic filter of a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Topic filter, possibly `$share/{group}/{filter}`.
    pub filter: ByteStr,
    /// Its options.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier.
    pub pkid: u16,
    /// At least one filter.
    pub subscriptions: Vec<Subscription>,
    /// Properties (5.0): subscription identifier, user properties.
    pub properties: Properties,
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier.
    pub pkid: u16,
    /// One 5.0 reason code per filter; mapped to 3.1.1 return codes on encode.
    pub reasons: Vec<ReasonCode>,
    /// Properties (5.0).
    pub properties: Properties,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier.
    pub pkid: u16,
    /// At least one filter.
    pub filters: Vec<ByteStr>,
    /// Properties (5.0).
    pub properties: Properties,
}

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet identifier.
    pub pkid: u16,
    /// One reason code per filter under 5.0; empty under 3.1.1 (not on the wire).
    pub reasons: Vec<ReasonCode>,
    /// Properties (5.0).
    pub properties: Properties,
}

/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// 5.0 reason code (normal disconnection under 3.1.1).
    pub reason: ReasonCode,
    /// Properties (5.0): session expiry, reason string, server reference.
    pub properties: Properties,
}

/// AUTH (5.0 only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// 0x00 success, 0x18 continue authentication, 0x19 re-authenticate.
    pub reason: ReasonCode,
    /// Properties: authentication method and data, reason string, user properties.
    pub properties: Properties,
}

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
}

/// Decodes one packet from the front of `buf`.
///
/// Returns `Ok(None)` and consumes nothing when `buf` does not yet hold a whole packet. A
/// packet whose remaining length makes it larger than `max_packet_size` is refused from its fixed
/// header alone, before its body is buffered. `version` is the connection's protocol level; a
/// CONNECT is decoded by the level it announces itself.
///
/// # Errors
/// A [`DecodeError`] when the bytes are not a valid packet for `version`; the connection must then
/// be closed (with [`DecodeError::reason_code`] under 5.0).
pub fn decode(
    buf: &mut BytesMut,
    version: Protocol,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let _ = (buf, version, max_packet_size);
    Err(DecodeError::Malformed("codec not yet implemented"))
}

/// Appends the encoding of `packet` for a connection at `version` to `buf`.
///
/// # Errors
/// An [`EncodeError`] when the packet cannot be represented (a string over 65,535 bytes, a
/// remaining length over 268,435,455, a 5.0-only packet on a 3.1.1 connection).
pub fn encode(packet: &Packet, version: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let _ = (packet, version, buf);
    Err(EncodeError::Unsupported("codec not yet implemented"))
}

/// The number of bytes [`encode`] would write for `packet`, fixed header included; used to honour
/// a client's Maximum Packet Size before a message is queued for it.
pub fn encoded_len(packet: &Packet, version: Protocol) -> usize {
    let _ = (packet, version);
    0
}
