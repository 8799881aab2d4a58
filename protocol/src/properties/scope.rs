//! Property identifiers and which packet kind may carry which (5.0 spec, table 2-4).
//!
//! Sets of identifiers are `u64` bit masks (every identifier is below 64), so "is this allowed
//! here" and "was this seen already" are a shift and an AND while decoding.

/// Property identifiers (5.0 spec, table 2-4).
pub(super) mod id {
    pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub(crate) const CONTENT_TYPE: u8 = 0x03;
    pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
    pub(crate) const CORRELATION_DATA: u8 = 0x09;
    pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
    pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
    pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
    pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
    pub(crate) const REASON_STRING: u8 = 0x1F;
    pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
    pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub(crate) const TOPIC_ALIAS: u8 = 0x23;
    pub(crate) const MAXIMUM_QOS: u8 = 0x24;
    pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
    pub(crate) const USER_PROPERTY: u8 = 0x26;
    pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
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
pub(super) fn bit(id: u32) -> u64 {
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

    pub(super) fn allows(self, id: u8) -> bool {
        self.allowed() & bit(id.into()) != 0
    }

    /// User properties may repeat anywhere; subscription identifiers only in PUBLISH, where the
    /// server lists one per matching subscription (3.3.2.3.8). Everything else at most once.
    pub(super) fn repeatable(self, id: u8) -> bool {
        id == id::USER_PROPERTY || (id == id::SUBSCRIPTION_IDENTIFIER && self == Scope::Publish)
    }
}

/// Every identifier this codec knows; anything else is a malformed packet.
pub(super) const KNOWN: u64 = {
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
