//! DISCONNECT (3.1.1 section 3.14, 5.0 section 3.14).
//!
//! Empty under 3.1.1. Under 5.0 either side may send it with a reason code and properties, both
//! optional; a normal disconnection without properties is two bytes on the wire.

use bytes::{Bytes, BytesMut};

use super::tail;
use crate::properties::Scope;
use crate::{DecodeError, EncodeError, Properties, Protocol, ReasonCode};

/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// 5.0 reason code (normal disconnection under 3.1.1).
    pub reason: ReasonCode,
    /// Properties (5.0): session expiry, reason string, server reference.
    pub properties: Properties,
}

impl Disconnect {
    pub(super) fn read(body: &mut Bytes, version: Protocol) -> Result<Disconnect, DecodeError> {
        if !version.is_v5() {
            // A 3.1.1 DISCONNECT has no body; any byte is left over and malformed.
            return Ok(Disconnect::default());
        }
        let (reason, properties) = tail::read(body, Scope::Disconnect)?;
        Ok(Disconnect { reason, properties })
    }

    pub(super) fn body_len(&self, version: Protocol) -> usize {
        if version.is_v5() {
            tail::len(self.reason, &self.properties, Scope::Disconnect)
        } else {
            0
        }
    }

    pub(super) fn write(&self, version: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        if version.is_v5() {
            tail::write(self.reason, &self.properties, Scope::Disconnect, buf)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::Packet;
    use super::*;
    use crate::ByteStr;

    #[test]
    fn v3_1_1_disconnect() {
        let bytes = [0xE0, 0x00]; // DISCONNECT, remaining length 0
        assert_wire(
            &bytes,
            Protocol::V3_1_1,
            &Packet::Disconnect(Disconnect::default()),
        );
    }

    #[test]
    fn v3_1_1_disconnect_with_a_body_is_malformed() {
        let result = decode_body(0xE0, &[0x00], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn v5_normal_disconnection_is_empty() {
        let bytes = [0xE0, 0x00]; // DISCONNECT, remaining length 0: normal disconnection
        assert_wire(
            &bytes,
            Protocol::V5,
            &Packet::Disconnect(Disconnect::default()),
        );
        // The long forms of the same thing are accepted and re-encoded short.
        for body in [&[0x00][..], &[0x00, 0x00]] {
            let packet = decode_body(0xE0, body, Protocol::V5).unwrap();
            assert_eq!(packet, Packet::Disconnect(Disconnect::default()));
        }
    }

    #[test]
    fn v5_disconnect_with_reason_code_only() {
        let bytes = [
            0xE0, 0x01, // DISCONNECT, remaining length 1
            0x8E, // session taken over
        ];
        let packet = Packet::Disconnect(Disconnect {
            reason: ReasonCode::SESSION_TAKEN_OVER,
            properties: Properties::default(),
        });
        assert_wire(&bytes, Protocol::V5, &packet);
    }

    #[test]
    fn v5_disconnect_with_properties() {
        let bytes = [
            0xE0, 0x0C, // DISCONNECT, remaining length 12
            0x04, // disconnect with will message
            0x0A, // property length 10
            0x11, 0x00, 0x00, 0x0E, 0x10, // session expiry interval 3600
            0x1C, 0x00, 0x02, b'h', b'2', // server reference "h2"
        ];
        let packet = Packet::Disconnect(Disconnect {
            reason: ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
            properties: Properties {
                session_expiry_interval: Some(3600),
                server_reference: Some(ByteStr::from_static("h2")),
                ..Properties::default()
            },
        });
        assert_wire(&bytes, Protocol::V5, &packet);
    }

    #[test]
    fn disconnect_property_not_allowed_is_a_protocol_error() {
        // Receive maximum (0x21) is for CONNECT and CONNACK.
        let result = decode_body(0xE0, &[0x00, 0x03, 0x21, 0x00, 0x01], Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn v3_1_1_disconnect_encode_is_always_empty() {
        let packet = Packet::Disconnect(Disconnect {
            reason: ReasonCode::SERVER_SHUTTING_DOWN,
            properties: Properties::default(),
        });
        assert_eq!(encode_vec(&packet, Protocol::V3_1_1), [0xE0, 0x00]);
    }
}
