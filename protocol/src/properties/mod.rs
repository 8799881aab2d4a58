//! MQTT 5.0 properties.
//!
//! One struct holds every property; each packet kind may carry only a subset of them, which the
//! decoder enforces (a property that is not allowed in a packet, or a property other than user
//! property and subscription identifier given twice, is a protocol error per the 5.0 spec, 2.2.2.2).
//! Under 3.1.1 properties are neither read nor written.
//!
//! - `scope`: the property identifiers and which packet may carry which (table 2-4).
//! - `codec`: reading and writing a property list, in identifier order.

use bytes::Bytes;

use crate::ByteStr;

mod codec;
mod scope;
#[cfg(test)]
mod tests;

pub(crate) use scope::Scope;

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
