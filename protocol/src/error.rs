//! Codec errors.

use crate::ReasonCode;

/// Why bytes could not be decoded as a packet. Every variant ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes break the packet grammar (bad flags, bad lengths, invalid UTF-8...).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// The packet is well formed but not allowed here (duplicate property, zero packet id...).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The packet is larger than the maximum packet size.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// Size of the whole packet as announced by its fixed header.
        size: usize,
        /// The limit in force.
        max: u32,
    },
    /// CONNECT names a protocol name or level this codec does not speak.
    #[error("unsupported protocol: name {name:?}, level {level}")]
    UnsupportedProtocol {
        /// The protocol name found.
        name: String,
        /// The protocol level byte found.
        level: u8,
    },
    /// A topic name in a PUBLISH or Will is not valid.
    #[error("invalid topic name: {0}")]
    TopicName(#[from] crate::TopicError),
}

impl DecodeError {
    /// The 5.0 reason code to send in CONNACK or DISCONNECT before closing.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            DecodeError::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocol { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::TopicName(_) => ReasonCode::TOPIC_NAME_INVALID,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string or binary field is longer than 65,535 bytes.
    #[error("{0} is longer than 65535 bytes")]
    FieldTooLong(&'static str),
    /// The whole packet is longer than the 268,435,455-byte remaining length limit.
    #[error("packet too large for MQTT framing")]
    PacketTooLarge,
    /// The packet does not exist at this protocol level (AUTH under 3.1.1).
    #[error("not representable: {0}")]
    Unsupported(&'static str),
}
