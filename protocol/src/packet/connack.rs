//! CONNACK (3.1.1 section 3.2, 5.0 section 3.2).
//!
//! The broker always speaks 5.0 reason codes; under 3.1.1 they are mapped to the six return codes
//! that level knows, and back to their closest 5.0 code when decoding.

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::Scope;
use crate::{wire, DecodeError, EncodeError, Properties, Protocol, ReasonCode};

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

/// Bit 0 of the acknowledge flags; bits 1-7 are reserved.
const SESSION_PRESENT: u8 = 0x01;

impl ConnAck {
    pub(super) fn read(body: &mut Bytes, version: Protocol) -> Result<ConnAck, DecodeError> {
        let flags = wire::read_u8(body)?;
        if flags & !SESSION_PRESENT != 0 {
            return Err(DecodeError::Malformed("CONNACK reserved flags are set"));
        }
        let code = wire::read_u8(body)?;
        let (reason, properties) = if version.is_v5() {
            (ReasonCode(code), Properties::read(body, Scope::ConnAck)?)
        } else {
            let reason = ReasonCode::from_v4_connack(code)
                .ok_or(DecodeError::Malformed("unknown CONNACK return code"))?;
            (reason, Properties::default())
        };
        Ok(ConnAck {
            session_present: flags & SESSION_PRESENT != 0,
            reason,
            properties,
        })
    }

    pub(super) fn body_len(&self, version: Protocol) -> usize {
        if version.is_v5() {
            2 + self.properties.encoded_len(Scope::ConnAck)
        } else {
            2
        }
    }

    pub(super) fn write(&self, version: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u8(if self.session_present {
            SESSION_PRESENT
        } else {
            0
        });
        if version.is_v5() {
            buf.put_u8(self.reason.0);
            self.properties.write(Scope::ConnAck, buf)
        } else {
            buf.put_u8(self.reason.to_v4_connack());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::Packet;
    use super::*;
    use crate::ByteStr;

    fn connack(session_present: bool, reason: ReasonCode) -> Packet {
        Packet::ConnAck(ConnAck {
            session_present,
            reason,
            properties: Properties::default(),
        })
    }

    #[test]
    fn v3_1_1_connack() {
        let bytes = [
            0x20, 0x02, // CONNACK, remaining length 2
            0x01, // session present
            0x00, // connection accepted
        ];
        assert_wire(
            &bytes,
            Protocol::V3_1_1,
            &connack(true, ReasonCode::SUCCESS),
        );
    }

    #[test]
    fn v3_1_1_connack_maps_reason_codes() {
        // 0x05 "not authorized" reads as its 5.0 counterpart and back.
        let bytes = [0x20, 0x02, 0x00, 0x05];
        assert_wire(
            &bytes,
            Protocol::V3_1_1,
            &connack(false, ReasonCode::NOT_AUTHORIZED),
        );
        // 5.0-only codes become the closest 3.1.1 return code.
        let banned = encode_vec(&connack(false, ReasonCode::BANNED), Protocol::V3_1_1);
        assert_eq!(banned, [0x20, 0x02, 0x00, 0x05]);
        let busy = encode_vec(&connack(false, ReasonCode::SERVER_BUSY), Protocol::V3_1_1);
        assert_eq!(busy, [0x20, 0x02, 0x00, 0x03]);
    }

    #[test]
    fn v3_1_1_unknown_connack_return_code_is_malformed() {
        let result = decode_body(0x20, &[0x00, 0x06], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn v5_connack_without_properties() {
        let bytes = [
            0x20, 0x03, // CONNACK, remaining length 3
            0x00, // no session present
            0x00, // success
            0x00, // property length 0
        ];
        assert_wire(&bytes, Protocol::V5, &connack(false, ReasonCode::SUCCESS));
    }

    #[test]
    fn v5_connack_with_properties() {
        let bytes = [
            0x20, 0x11, // CONNACK, remaining length 17
            0x00, // no session present
            0x00, // success
            0x0E, // property length 14
            0x12, 0x00, 0x03, b'a', b'b', b'c', // assigned client identifier "abc"
            0x13, 0x00, 0x1E, // server keep alive 30
            0x21, 0x00, 0x0A, // receive maximum 10
            0x24, 0x01, // maximum QoS 1
        ];
        let packet = Packet::ConnAck(ConnAck {
            session_present: false,
            reason: ReasonCode::SUCCESS,
            properties: Properties {
                assigned_client_identifier: Some(ByteStr::from_static("abc")),
                server_keep_alive: Some(30),
                receive_maximum: Some(10),
                maximum_qos: Some(1),
                ..Properties::default()
            },
        });
        assert_wire(&bytes, Protocol::V5, &packet);
    }

    #[test]
    fn connack_reserved_flags_must_be_zero() {
        let result = decode_body(0x20, &[0x02, 0x00], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn maximum_qos_other_than_0_or_1_is_a_protocol_error() {
        let result = decode_body(0x20, &[0x00, 0x00, 0x02, 0x24, 0x02], Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn receive_maximum_0_is_a_protocol_error() {
        let result = decode_body(0x20, &[0x00, 0x00, 0x03, 0x21, 0x00, 0x00], Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn maximum_packet_size_0_is_a_protocol_error() {
        let body = [0x00, 0x00, 0x05, 0x27, 0x00, 0x00, 0x00, 0x00];
        let result = decode_body(0x20, &body, Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn available_flags_other_than_0_or_1_are_a_protocol_error() {
        for id in [0x25, 0x28, 0x29, 0x2A] {
            let result = decode_body(0x20, &[0x00, 0x00, 0x02, id, 0x02], Protocol::V5);
            assert!(matches!(result, Err(DecodeError::Protocol(_))), "{id:#04X}");
        }
    }

    #[test]
    fn duplicate_property_is_a_protocol_error() {
        let body = [0x00, 0x00, 0x04, 0x24, 0x01, 0x24, 0x01];
        let result = decode_body(0x20, &body, Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }
}
