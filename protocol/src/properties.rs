//! MQTT 5.0 properties.
//!
//! One struct holds every property; each packet kind may carry only a subset of them, which the
//! decoder enforces (a property that is not allowed in a packet, or a property other than user
//! property and subscription identifier given twice, is a protocol error per the 5.0 spec, 2.2.2.2).
//! Under 3.1.1 properties are neither read nor written.

use std::convert::Infallible;

use bytes::{Bytes, BytesMut};

use crate::wire;
use crate::{ByteStr, DecodeError, EncodeError};

/// All MQTT 5.0 properties. `None` / empty means "absent on the wire".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// 0x01 Payload Format Indicator (PUBLISH, Will): 0 bytes, 1 UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// 0x02 Message Expiry Interval in seconds (PUBLISH, Will).
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type (PUBLISH, Will).
    pub content_type: Option<ByteStr>,
    /// 0x08 Response Topic (PUBLISH, Will).
    pub response_topic: Option<ByteStr>,
    /// 0x09 Correlation Data (PUBLISH, Will).
    pub correlation_data: Option<Bytes>,
    /// 0x0B Subscription Identifier(s): one in SUBSCRIBE, any number in a delivered PUBLISH.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11 Session Expiry Interval in seconds (CONNECT, CONNACK, DISCONNECT).
    pub session_expiry_interval: Option<u32>,
    /// 0x12 Assigned Client Identifier (CONNACK).
    pub assigned_client_identifier: Option<ByteStr>,
    /// 0x13 Server Keep Alive in seconds (CONNACK).
    pub server_keep_alive: Option<u16>,
    /// 0x15 Authentication Method (CONNECT, CONNACK, AUTH).
    pub authentication_method: Option<ByteStr>,
    /// 0x16 Authentication Data (CONNECT, CONNACK, AUTH).
    pub authentication_data: Option<Bytes>,
    /// 0x17 Request Problem Information (CONNECT): 0 or 1.
    pub request_problem_information: Option<u8>,
    /// 0x18 Will Delay Interval in seconds (Will).
    pub will_delay_interval: Option<u32>,
    /// 0x19 Request Response Information (CONNECT): 0 or 1.
    pub request_response_information: Option<u8>,
    /// 0x1A Response Information (CONNACK).
    pub response_information: Option<ByteStr>,
    /// 0x1C Server Reference (CONNACK, DISCONNECT).
    pub server_reference: Option<ByteStr>,
    /// 0x1F Reason String (CONNACK, acks, SUBACK, UNSUBACK, DISCONNECT, AUTH).
    pub reason_string: Option<ByteStr>,
    /// 0x21 Receive Maximum (CONNECT, CONNACK); 0 is a protocol error.
    pub receive_maximum: Option<u16>,
    /// 0x22 Topic Alias Maximum (CONNECT, CONNACK).
    pub topic_alias_maximum: Option<u16>,
    /// 0x23 Topic Alias (PUBLISH); 0 is a protocol error.
    pub topic_alias: Option<u16>,
    /// 0x24 Maximum QoS (CONNACK): 0 or 1.
    pub maximum_qos: Option<u8>,
    /// 0x25 Retain Available (CONNACK): 0 or 1.
    pub retain_available: Option<u8>,
    /// 0x26 User Properties, in order, repeats allowed (every packet with properties).
    pub user_properties: Vec<(ByteStr, ByteStr)>,
    /// 0x27 Maximum Packet Size (CONNECT, CONNACK); 0 is a protocol error.
    pub maximum_packet_size: Option<u32>,
    /// 0x28 Wildcard Subscription Available (CONNACK): 0 or 1.
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29 Subscription Identifier Available (CONNACK): 0 or 1.
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A Shared Subscription Available (CONNACK): 0 or 1.
    pub shared_subscription_available: Option<u8>,
}

impl Properties {
    /// True when no property is set (the encoder then writes a single zero length byte).
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}

/// Property identifiers (5.0 spec, table 2-4).
mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// A set of property identifiers as a bit mask (every identifier is below 64).
const fn set(ids: &[u8]) -> u64 {
    let mut mask = 0u64;
    let mut i = 0;
    while i < ids.len() {
        mask |= 1 << ids[i];
        i += 1;
    }
    mask
}

/// The bit of `id` in a [`set`], or 0 for identifiers that cannot be in one.
fn bit(id: u32) -> u64 {
    if id < 64 {
        1 << id
    } else {
        0
    }
}

/// Identifiers allowed in the PUBLISH-shaped property sets (PUBLISH and Will share most).
const MESSAGE: u64 = set(&[
    id::PAYLOAD_FORMAT_INDICATOR,
    id::MESSAGE_EXPIRY_INTERVAL,
    id::CONTENT_TYPE,
    id::RESPONSE_TOPIC,
    id::CORRELATION_DATA,
    id::USER_PROPERTY,
]);

/// Which packet a property set belongs to; decides which identifiers are allowed in it.
///
/// A property outside its packet's set is a protocol error on decode and is left out on encode,
/// so the broker cannot put, say, a Topic Alias into a CONNACK by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Connect,
    ConnAck,
    Publish,
    Will,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Scope {
    /// The identifiers allowed in this packet.
    fn allowed(self) -> u64 {
        use id::*;
        match self {
            Scope::Connect => {
                const {
                    set(&[
                        SESSION_EXPIRY_INTERVAL,
                        AUTHENTICATION_METHOD,
                        AUTHENTICATION_DATA,
                        REQUEST_PROBLEM_INFORMATION,
                        REQUEST_RESPONSE_INFORMATION,
                        RECEIVE_MAXIMUM,
                        TOPIC_ALIAS_MAXIMUM,
                        USER_PROPERTY,
                        MAXIMUM_PACKET_SIZE,
                    ])
                }
            }
            Scope::ConnAck => {
                const {
                    set(&[
                        SESSION_EXPIRY_INTERVAL,
                        ASSIGNED_CLIENT_IDENTIFIER,
                        SERVER_KEEP_ALIVE,
                        AUTHENTICATION_METHOD,
                        AUTHENTICATION_DATA,
                        RESPONSE_INFORMATION,
                        SERVER_REFERENCE,
                        REASON_STRING,
                        RECEIVE_MAXIMUM,
                        TOPIC_ALIAS_MAXIMUM,
                        MAXIMUM_QOS,
                        RETAIN_AVAILABLE,
                        USER_PROPERTY,
                        MAXIMUM_PACKET_SIZE,
                        WILDCARD_SUBSCRIPTION_AVAILABLE,
                        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                        SHARED_SUBSCRIPTION_AVAILABLE,
                    ])
                }
            }
            Scope::Publish => const { MESSAGE | set(&[SUBSCRIPTION_IDENTIFIER, TOPIC_ALIAS]) },
            Scope::Will => const { MESSAGE | set(&[WILL_DELAY_INTERVAL]) },
            Scope::Ack | Scope::SubAck | Scope::UnsubAck => {
                const { set(&[REASON_STRING, USER_PROPERTY]) }
            }
            Scope::Subscribe => const { set(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]) },
            Scope::Unsubscribe => const { set(&[USER_PROPERTY]) },
            Scope::Disconnect => {
                const {
                    set(&[
                        SESSION_EXPIRY_INTERVAL,
                        SERVER_REFERENCE,
                        REASON_STRING,
                        USER_PROPERTY,
                    ])
                }
            }
            Scope::Auth => {
                const {
                    set(&[
                        AUTHENTICATION_METHOD,
                        AUTHENTICATION_DATA,
                        REASON_STRING,
                        USER_PROPERTY,
                    ])
                }
            }
        }
    }

    fn allows(self, id: u8) -> bool {
        self.allowed() & bit(id.into()) != 0
    }

    /// User properties may repeat anywhere; subscription identifiers only in PUBLISH, where the
    /// server lists one per matching subscription (3.3.2.3.8). Everything else at most once.
    fn repeatable(self, id: u8) -> bool {
        id == id::USER_PROPERTY || (id == id::SUBSCRIPTION_IDENTIFIER && self == Scope::Publish)
    }
}

/// Every identifier this codec knows; anything else is a malformed packet.
const KNOWN: u64 = {
    use id::*;
    set(&[
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        SUBSCRIPTION_IDENTIFIER,
        SESSION_EXPIRY_INTERVAL,
        ASSIGNED_CLIENT_IDENTIFIER,
        SERVER_KEEP_ALIVE,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
        REQUEST_PROBLEM_INFORMATION,
        WILL_DELAY_INTERVAL,
        REQUEST_RESPONSE_INFORMATION,
        RESPONSE_INFORMATION,
        SERVER_REFERENCE,
        REASON_STRING,
        RECEIVE_MAXIMUM,
        TOPIC_ALIAS_MAXIMUM,
        TOPIC_ALIAS,
        MAXIMUM_QOS,
        RETAIN_AVAILABLE,
        USER_PROPERTY,
        MAXIMUM_PACKET_SIZE,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        SHARED_SUBSCRIPTION_AVAILABLE,
    ])
};

/// The largest subscription identifier (it is a variable byte integer).
const MAX_SUBSCRIPTION_IDENTIFIER: u32 = 268_435_455;

/// One property value as it goes on the wire, borrowed from [`Properties`].
enum Value<'a> {
    Byte(u8),
    U16(u16),
    U32(u32),
    Varint(u32),
    Str(&'a str),
    Binary(&'a [u8]),
    Pair(&'a str, &'a str),
}

impl Value<'_> {
    /// Encoded size of the value, without its identifier byte.
    fn len(&self) -> usize {
        match self {
            Value::Byte(_) => 1,
            Value::U16(_) => 2,
            Value::U32(_) => 4,
            Value::Varint(v) => wire::varint_len(*v as usize),
            Value::Str(s) => wire::prefixed_len(s.len()),
            Value::Binary(b) => wire::prefixed_len(b.len()),
            Value::Pair(k, v) => wire::prefixed_len(k.len()) + wire::prefixed_len(v.len()),
        }
    }
}

/// Reads a byte property that may only be 0 or 1.
fn read_flag(buf: &mut Bytes, error: &'static str) -> Result<u8, DecodeError> {
    match wire::read_u8(buf)? {
        value @ (0 | 1) => Ok(value),
        _ => Err(DecodeError::Protocol(error)),
    }
}

/// Reads a two byte property for which 0 is a protocol error.
fn read_nonzero_u16(buf: &mut Bytes, error: &'static str) -> Result<u16, DecodeError> {
    match wire::read_u16(buf)? {
        0 => Err(DecodeError::Protocol(error)),
        value => Ok(value),
    }
}

impl Properties {
    /// Reads a property length and the properties it covers from the front of `buf`.
    ///
    /// # Errors
    /// Malformed when the length overruns the packet, a value is cut short or an identifier is
    /// unknown; protocol error when a property is not allowed in `scope`, is repeated, or has a
    /// value the 5.0 spec forbids.
    pub(crate) fn read(buf: &mut Bytes, scope: Scope) -> Result<Properties, DecodeError> {
        let len = wire::read_varint(buf)? as usize;
        if len > buf.len() {
            return Err(DecodeError::Malformed(
                "property length overruns the packet",
            ));
        }
        let mut buf = buf.split_to(len);
        let mut props = Properties::default();
        let mut seen = 0u64;
        while !buf.is_empty() {
            let raw_id = wire::read_varint(&mut buf)?;
            let id_bit = bit(raw_id);
            let id = match u8::try_from(raw_id) {
                Ok(id) if KNOWN & id_bit != 0 => id,
                _ => return Err(DecodeError::Malformed("unknown property identifier")),
            };
            if !scope.allows(id) {
                return Err(DecodeError::Protocol("property not allowed in this packet"));
            }
            if seen & id_bit != 0 && !scope.repeatable(id) {
                return Err(DecodeError::Protocol("property given more than once"));
            }
            seen |= id_bit;
            props.read_value(id, &mut buf)?;
        }
        Ok(props)
    }

    /// Reads the value of property `id` into its field.
    fn read_value(&mut self, id: u8, buf: &mut Bytes) -> Result<(), DecodeError> {
        match id {
            id::PAYLOAD_FORMAT_INDICATOR => {
                self.payload_format_indicator =
                    Some(read_flag(buf, "payload format indicator must be 0 or 1")?);
            }
            id::MESSAGE_EXPIRY_INTERVAL => {
                self.message_expiry_interval = Some(wire::read_u32(buf)?);
            }
            id::CONTENT_TYPE => self.content_type = Some(wire::read_string(buf)?),
            id::RESPONSE_TOPIC => self.response_topic = Some(wire::read_string(buf)?),
            id::CORRELATION_DATA => self.correlation_data = Some(wire::read_binary(buf)?),
            id::SUBSCRIPTION_IDENTIFIER => {
                let value = wire::read_varint(buf)?;
                if value == 0 || value > MAX_SUBSCRIPTION_IDENTIFIER {
                    return Err(DecodeError::Protocol(
                        "subscription identifier must be 1 to 268435455",
                    ));
                }
                self.subscription_identifiers.push(value);
            }
            id::SESSION_EXPIRY_INTERVAL => {
                self.session_expiry_interval = Some(wire::read_u32(buf)?);
            }
            id::ASSIGNED_CLIENT_IDENTIFIER => {
                self.assigned_client_identifier = Some(wire::read_string(buf)?);
            }
            id::SERVER_KEEP_ALIVE => self.server_keep_alive = Some(wire::read_u16(buf)?),
            id::AUTHENTICATION_METHOD => {
                self.authentication_method = Some(wire::read_string(buf)?);
            }
            id::AUTHENTICATION_DATA => self.authentication_data = Some(wire::read_binary(buf)?),
            id::REQUEST_PROBLEM_INFORMATION => {
                self.request_problem_information = Some(read_flag(
                    buf,
                    "request problem information must be 0 or 1",
                )?);
            }
            id::WILL_DELAY_INTERVAL => self.will_delay_interval = Some(wire::read_u32(buf)?),
            id::REQUEST_RESPONSE_INFORMATION => {
                self.request_response_information = Some(read_flag(
                    buf,
                    "request response information must be 0 or 1",
                )?);
            }
            id::RESPONSE_INFORMATION => {
                self.response_information = Some(wire::read_string(buf)?);
            }
            id::SERVER_REFERENCE => self.server_reference = Some(wire::read_string(buf)?),
            id::REASON_STRING => self.reason_string = Some(wire::read_string(buf)?),
            id::RECEIVE_MAXIMUM => {
                self.receive_maximum = Some(read_nonzero_u16(buf, "receive maximum of 0")?);
            }
            id::TOPIC_ALIAS_MAXIMUM => self.topic_alias_maximum = Some(wire::read_u16(buf)?),
            id::TOPIC_ALIAS => {
                self.topic_alias = Some(read_nonzero_u16(buf, "topic alias of 0")?);
            }
            id::MAXIMUM_QOS => {
                self.maximum_qos = Some(read_flag(buf, "maximum QoS must be 0 or 1")?);
            }
            id::RETAIN_AVAILABLE => {
                self.retain_available = Some(read_flag(buf, "retain available must be 0 or 1")?);
            }
            id::USER_PROPERTY => self.user_properties.push(wire::read_string_pair(buf)?),
            id::MAXIMUM_PACKET_SIZE => match wire::read_u32(buf)? {
                0 => return Err(DecodeError::Protocol("maximum packet size of 0")),
                value => self.maximum_packet_size = Some(value),
            },
            id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
                self.wildcard_subscription_available = Some(read_flag(
                    buf,
                    "wildcard subscription available must be 0 or 1",
                )?);
            }
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                self.subscription_identifier_available = Some(read_flag(
                    buf,
                    "subscription identifier available must be 0 or 1",
                )?);
            }
            id::SHARED_SUBSCRIPTION_AVAILABLE => {
                self.shared_subscription_available = Some(read_flag(
                    buf,
                    "shared subscription available must be 0 or 1",
                )?);
            }
            _ => return Err(DecodeError::Malformed("unknown property identifier")),
        }
        Ok(())
    }

    /// Calls `f` with every property allowed in `scope`, in identifier order (user properties and
    /// subscription identifiers in their given order), so the length and the bytes written come
    /// from the same walk and cannot disagree.
    fn visit<E>(
        &self,
        scope: Scope,
        mut f: impl FnMut(u8, &'static str, Value<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut emit = |id: u8, name: &'static str, value: Value<'_>| {
            if scope.allows(id) {
                f(id, name, value)
            } else {
                Ok(())
            }
        };
        if let Some(v) = self.payload_format_indicator {
            emit(
                id::PAYLOAD_FORMAT_INDICATOR,
                "payload format indicator",
                Value::Byte(v),
            )?;
        }
        if let Some(v) = self.message_expiry_interval {
            emit(
                id::MESSAGE_EXPIRY_INTERVAL,
                "message expiry interval",
                Value::U32(v),
            )?;
        }
        if let Some(v) = &self.content_type {
            emit(id::CONTENT_TYPE, "content type", Value::Str(v))?;
        }
        if let Some(v) = &self.response_topic {
            emit(id::RESPONSE_TOPIC, "response topic", Value::Str(v))?;
        }
        if let Some(v) = &self.correlation_data {
            emit(id::CORRELATION_DATA, "correlation data", Value::Binary(v))?;
        }
        for v in &self.subscription_identifiers {
            emit(
                id::SUBSCRIPTION_IDENTIFIER,
                "subscription identifier",
                Value::Varint(*v),
            )?;
        }
        if let Some(v) = self.session_expiry_interval {
            emit(
                id::SESSION_EXPIRY_INTERVAL,
                "session expiry interval",
                Value::U32(v),
            )?;
        }
        if let Some(v) = &self.assigned_client_identifier {
            emit(
                id::ASSIGNED_CLIENT_IDENTIFIER,
                "assigned client identifier",
                Value::Str(v),
            )?;
        }
        if let Some(v) = self.server_keep_alive {
            emit(id::SERVER_KEEP_ALIVE, "server keep alive", Value::U16(v))?;
        }
        if let Some(v) = &self.authentication_method {
            emit(
                id::AUTHENTICATION_METHOD,
                "authentication method",
                Value::Str(v),
            )?;
        }
        if let Some(v) = &self.authentication_data {
            emit(
                id::AUTHENTICATION_DATA,
                "authentication data",
                Value::Binary(v),
            )?;
        }
        if let Some(v) = self.request_problem_information {
            emit(
                id::REQUEST_PROBLEM_INFORMATION,
                "request problem information",
                Value::Byte(v),
            )?;
        }
        if let Some(v) = self.will_delay_interval {
            emit(
                id::WILL_DELAY_INTERVAL,
                "will delay interval",
                Value::U32(v),
            )?;
        }
        if let Some(v) = self.request_response_information {
            emit(
                id::REQUEST_RESPONSE_INFORMATION,
                "request response information",
                Value::Byte(v),
            )?;
        }
        if let Some(v) = &self.response_information {
            emit(
                id::RESPONSE_INFORMATION,
                "response information",
                Value::Str(v),
            )?;
        }
        if let Some(v) = &self.server_reference {
            emit(id::SERVER_REFERENCE, "server reference", Value::Str(v))?;
        }
        if let Some(v) = &self.reason_string {
            emit(id::REASON_STRING, "reason string", Value::Str(v))?;
        }
        if let Some(v) = self.receive_maximum {
            emit(id::RECEIVE_MAXIMUM, "receive maximum", Value::U16(v))?;
        }
        if let Some(v) = self.topic_alias_maximum {
            emit(
                id::TOPIC_ALIAS_MAXIMUM,
                "topic alias maximum",
                Value::U16(v),
            )?;
        }
        if let Some(v) = self.topic_alias {
            emit(id::TOPIC_ALIAS, "topic alias", Value::U16(v))?;
        }
        if let Some(v) = self.maximum_qos {
            emit(id::MAXIMUM_QOS, "maximum QoS", Value::Byte(v))?;
        }
        if let Some(v) = self.retain_available {
            emit(id::RETAIN_AVAILABLE, "retain available", Value::Byte(v))?;
        }
        for (k, v) in &self.user_properties {
            emit(id::USER_PROPERTY, "user property", Value::Pair(k, v))?;
        }
        if let Some(v) = self.maximum_packet_size {
            emit(
                id::MAXIMUM_PACKET_SIZE,
                "maximum packet size",
                Value::U32(v),
            )?;
        }
        if let Some(v) = self.wildcard_subscription_available {
            let name = "wildcard subscription available";
            emit(id::WILDCARD_SUBSCRIPTION_AVAILABLE, name, Value::Byte(v))?;
        }
        if let Some(v) = self.subscription_identifier_available {
            let name = "subscription identifier available";
            emit(id::SUBSCRIPTION_IDENTIFIER_AVAILABLE, name, Value::Byte(v))?;
        }
        if let Some(v) = self.shared_subscription_available {
            let name = "shared subscription available";
            emit(id::SHARED_SUBSCRIPTION_AVAILABLE, name, Value::Byte(v))?;
        }
        Ok(())
    }

    /// The size of the properties allowed in `scope`, without the property length prefix.
    pub(crate) fn body_len(&self, scope: Scope) -> usize {
        let mut len = 0;
        let _ = self.visit::<Infallible>(scope, |_, _, value| {
            len += 1 + value.len();
            Ok(())
        });
        len
    }

    /// The size of the property length prefix plus the properties allowed in `scope`.
    pub(crate) fn encoded_len(&self, scope: Scope) -> usize {
        let len = self.body_len(scope);
        wire::varint_len(len) + len
    }

    /// Writes the property length and the properties allowed in `scope`; the others are left out.
    ///
    /// # Errors
    /// [`EncodeError::FieldTooLong`] for a string or binary value over 65,535 bytes,
    /// [`EncodeError::Unsupported`] for a subscription identifier a variable byte integer cannot
    /// hold.
    pub(crate) fn write(&self, scope: Scope, buf: &mut BytesMut) -> Result<(), EncodeError> {
        use bytes::BufMut;
        wire::write_varint(buf, self.body_len(scope));
        self.visit(scope, |id, name, value| {
            buf.put_u8(id);
            match value {
                Value::Byte(v) => buf.put_u8(v),
                Value::U16(v) => buf.put_u16(v),
                Value::U32(v) => buf.put_u32(v),
                Value::Varint(v) => {
                    if v > MAX_SUBSCRIPTION_IDENTIFIER {
                        return Err(EncodeError::Unsupported(
                            "subscription identifier over 268435455",
                        ));
                    }
                    wire::write_varint(buf, v as usize);
                }
                Value::Str(s) => wire::write_string(buf, s, name)?,
                Value::Binary(b) => wire::write_binary(buf, b, name)?,
                Value::Pair(k, v) => {
                    wire::write_string(buf, k, name)?;
                    wire::write_string(buf, v, name)?;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPES: [Scope; 11] = [
        Scope::Connect,
        Scope::ConnAck,
        Scope::Publish,
        Scope::Will,
        Scope::Ack,
        Scope::Subscribe,
        Scope::SubAck,
        Scope::Unsubscribe,
        Scope::UnsubAck,
        Scope::Disconnect,
        Scope::Auth,
    ];

    fn s(value: &'static str) -> Option<ByteStr> {
        Some(ByteStr::from_static(value))
    }

    /// Every property set, with values the spec allows.
    fn full() -> Properties {
        Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(2),
            content_type: s("text/plain"),
            response_topic: s("reply/here"),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            subscription_identifiers: vec![11],
            session_expiry_interval: Some(17),
            assigned_client_identifier: s("assigned"),
            server_keep_alive: Some(19),
            authentication_method: s("SCRAM-SHA-1"),
            authentication_data: Some(Bytes::from_static(b"data")),
            request_problem_information: Some(0),
            will_delay_interval: Some(24),
            request_response_information: Some(1),
            response_information: s("info"),
            server_reference: s("other:1883"),
            reason_string: s("because"),
            receive_maximum: Some(33),
            topic_alias_maximum: Some(34),
            topic_alias: Some(35),
            maximum_qos: Some(1),
            retain_available: Some(0),
            user_properties: vec![(ByteStr::from_static("k"), ByteStr::from_static("v"))],
            maximum_packet_size: Some(39),
            wildcard_subscription_available: Some(1),
            subscription_identifier_available: Some(0),
            shared_subscription_available: Some(1),
        }
    }

    /// `props` without the properties `scope` does not allow.
    fn restrict(props: &Properties, scope: Scope) -> Properties {
        fn keep<T: Clone>(scope: Scope, id: u8, value: &Option<T>) -> Option<T> {
            value.clone().filter(|_| scope.allows(id))
        }
        let p = props;
        Properties {
            payload_format_indicator: keep(
                scope,
                id::PAYLOAD_FORMAT_INDICATOR,
                &p.payload_format_indicator,
            ),
            message_expiry_interval: keep(
                scope,
                id::MESSAGE_EXPIRY_INTERVAL,
                &p.message_expiry_interval,
            ),
            content_type: keep(scope, id::CONTENT_TYPE, &p.content_type),
            response_topic: keep(scope, id::RESPONSE_TOPIC, &p.response_topic),
            correlation_data: keep(scope, id::CORRELATION_DATA, &p.correlation_data),
            subscription_identifiers: if scope.allows(id::SUBSCRIPTION_IDENTIFIER) {
                p.subscription_identifiers.clone()
            } else {
                Vec::new()
            },
            session_expiry_interval: keep(
                scope,
                id::SESSION_EXPIRY_INTERVAL,
                &p.session_expiry_interval,
            ),
            assigned_client_identifier: keep(
                scope,
                id::ASSIGNED_CLIENT_IDENTIFIER,
                &p.assigned_client_identifier,
            ),
            server_keep_alive: keep(scope, id::SERVER_KEEP_ALIVE, &p.server_keep_alive),
            authentication_method: keep(scope, id::AUTHENTICATION_METHOD, &p.authentication_method),
            authentication_data: keep(scope, id::AUTHENTICATION_DATA, &p.authentication_data),
            request_problem_information: keep(
                scope,
                id::REQUEST_PROBLEM_INFORMATION,
                &p.request_problem_information,
            ),
            will_delay_interval: keep(scope, id::WILL_DELAY_INTERVAL, &p.will_delay_interval),
            request_response_information: keep(
                scope,
                id::REQUEST_RESPONSE_INFORMATION,
                &p.request_response_information,
            ),
            response_information: keep(scope, id::RESPONSE_INFORMATION, &p.response_information),
            server_reference: keep(scope, id::SERVER_REFERENCE, &p.server_reference),
            reason_string: keep(scope, id::REASON_STRING, &p.reason_string),
            receive_maximum: keep(scope, id::RECEIVE_MAXIMUM, &p.receive_maximum),
            topic_alias_maximum: keep(scope, id::TOPIC_ALIAS_MAXIMUM, &p.topic_alias_maximum),
            topic_alias: keep(scope, id::TOPIC_ALIAS, &p.topic_alias),
            maximum_qos: keep(scope, id::MAXIMUM_QOS, &p.maximum_qos),
            retain_available: keep(scope, id::RETAIN_AVAILABLE, &p.retain_available),
            user_properties: p.user_properties.clone(),
            maximum_packet_size: keep(scope, id::MAXIMUM_PACKET_SIZE, &p.maximum_packet_size),
            wildcard_subscription_available: keep(
                scope,
                id::WILDCARD_SUBSCRIPTION_AVAILABLE,
                &p.wildcard_subscription_available,
            ),
            subscription_identifier_available: keep(
                scope,
                id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                &p.subscription_identifier_available,
            ),
            shared_subscription_available: keep(
                scope,
                id::SHARED_SUBSCRIPTION_AVAILABLE,
                &p.shared_subscription_available,
            ),
        }
    }

    fn write(props: &Properties, scope: Scope) -> BytesMut {
        let mut buf = BytesMut::new();
        props.write(scope, &mut buf).unwrap();
        assert_eq!(buf.len(), props.encoded_len(scope));
        buf
    }

    #[test]
    fn every_scope_round_trips_exactly_its_allowed_properties() {
        let full = full();
        for scope in SCOPES {
            let mut bytes = write(&full, scope).freeze();
            let read = Properties::read(&mut bytes, scope).unwrap();
            assert!(bytes.is_empty());
            assert_eq!(read, restrict(&full, scope), "{scope:?}");
        }
    }

    #[test]
    fn the_allowed_sets_follow_table_2_4() {
        let allowed = |id| SCOPES.iter().filter(|s| s.allows(id)).count();
        assert_eq!(allowed(id::USER_PROPERTY), SCOPES.len());
        assert_eq!(allowed(id::REASON_STRING), 6);
        assert!(Scope::Will.allows(id::WILL_DELAY_INTERVAL));
        assert!(!Scope::Publish.allows(id::WILL_DELAY_INTERVAL));
        assert!(Scope::Publish.allows(id::TOPIC_ALIAS));
        assert!(!Scope::Will.allows(id::SUBSCRIPTION_IDENTIFIER));
        assert!(!Scope::Connect.allows(id::REASON_STRING));
        assert!(!Scope::Unsubscribe.allows(id::REASON_STRING));
    }

    #[test]
    fn encode_orders_properties_by_identifier() {
        let props = Properties {
            user_properties: vec![
                (ByteStr::from_static("b"), ByteStr::from_static("2")),
                (ByteStr::from_static("a"), ByteStr::from_static("1")),
            ],
            content_type: s("t"),
            message_expiry_interval: Some(9),
            ..Properties::default()
        };
        let bytes = write(&props, Scope::Publish);
        assert_eq!(
            &bytes[..],
            &[
                0x17, // property length 23
                0x02, 0x00, 0x00, 0x00, 0x09, // message expiry interval 9
                0x03, 0x00, 0x01, b't', // content type "t"
                0x26, 0x00, 0x01, b'b', 0x00, 0x01, b'2', // user property ("b", "2")
                0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'1', // user property ("a", "1")
            ]
        );
        let read = Properties::read(&mut bytes.freeze(), Scope::Publish).unwrap();
        assert_eq!(read, props);
    }

    #[test]
    fn encode_leaves_out_properties_the_packet_may_not_carry() {
        let props = Properties {
            topic_alias: Some(3),
            reason_string: s("r"),
            ..Properties::default()
        };
        let bytes = write(&props, Scope::Ack);
        assert_eq!(&bytes[..], &[0x04, 0x1F, 0x00, 0x01, b'r']);
        assert_eq!(props.body_len(Scope::Unsubscribe), 0);
    }

    #[test]
    fn subscription_identifiers_repeat_only_in_publish() {
        let bytes = [0x04, 0x0B, 0x01, 0x0B, 0x02];
        let read = Properties::read(&mut Bytes::copy_from_slice(&bytes), Scope::Publish).unwrap();
        assert_eq!(read.subscription_identifiers, [1, 2]);
        let result = Properties::read(&mut Bytes::copy_from_slice(&bytes), Scope::Subscribe);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn request_information_flags_other_than_0_or_1_are_a_protocol_error() {
        for id in [
            id::REQUEST_PROBLEM_INFORMATION,
            id::REQUEST_RESPONSE_INFORMATION,
        ] {
            let bytes = [0x02, id, 0x02];
            let result = Properties::read(&mut Bytes::copy_from_slice(&bytes), Scope::Connect);
            assert!(matches!(result, Err(DecodeError::Protocol(_))), "{id:#04X}");
        }
    }

    #[test]
    fn subscription_identifier_over_the_maximum_is_refused_on_encode() {
        let props = Properties {
            subscription_identifiers: vec![MAX_SUBSCRIPTION_IDENTIFIER + 1],
            ..Properties::default()
        };
        let mut buf = BytesMut::new();
        let result = props.write(Scope::Publish, &mut buf);
        assert!(matches!(result, Err(EncodeError::Unsupported(_))));
    }

    #[test]
    fn string_property_over_65535_bytes_is_too_long() {
        let props = Properties {
            reason_string: Some(ByteStr::from("r".repeat(65_536))),
            ..Properties::default()
        };
        let mut buf = BytesMut::new();
        let result = props.write(Scope::Ack, &mut buf);
        assert_eq!(result, Err(EncodeError::FieldTooLong("reason string")));
    }
}
