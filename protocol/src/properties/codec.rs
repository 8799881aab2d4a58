//! Reading and writing a property list: a variable byte integer length, then identifier/value
//! pairs.
//!
//! The length and the bytes written come from one walk over the properties ([`Properties::visit`])
//! so `encoded_len` cannot disagree with `write`.

use std::convert::Infallible;

use bytes::{BufMut, Bytes, BytesMut};

use super::scope::{bit, id, Scope, KNOWN};
use super::Properties;
use crate::{wire, DecodeError, EncodeError};

/// The largest subscription identifier (it is a variable byte integer).
pub(super) const MAX_SUBSCRIPTION_IDENTIFIER: u32 = 268_435_455;

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
