//! PUBACK, PUBREC, PUBREL and PUBCOMP (sections 3.4-3.7): one shape, four packet types.
//!
//! Under 3.1.1 they are just a packet identifier. Under 5.0 a reason code and properties may
//! follow, both optional (see [`super::tail`]).

use bytes::{BufMut, Bytes, BytesMut};

use super::tail;
use crate::properties::Scope;
use crate::{DecodeError, EncodeError, Properties, Protocol, ReasonCode};

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

impl PubAck {
    pub(super) fn read(body: &mut Bytes, version: Protocol) -> Result<PubAck, DecodeError> {
        let pkid = super::read_pkid(body)?;
        let (reason, properties) = if version.is_v5() {
            tail::read(body, Scope::Ack)?
        } else {
            (ReasonCode::SUCCESS, Properties::default())
        };
        Ok(PubAck {
            pkid,
            reason,
            properties,
        })
    }

    pub(super) fn body_len(&self, version: Protocol) -> usize {
        if version.is_v5() {
            2 + tail::len(self.reason, &self.properties, Scope::Ack)
        } else {
            2
        }
    }

    pub(super) fn write(&self, version: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u16(self.pkid);
        if version.is_v5() {
            tail::write(self.reason, &self.properties, Scope::Ack, buf)?;
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

    fn ack(reason: ReasonCode) -> PubAck {
        PubAck {
            pkid: 10,
            reason,
            properties: Properties::default(),
        }
    }

    #[test]
    fn every_ack_type_in_its_short_form() {
        for (first, packet) in [
            (0x40, Packet::PubAck(ack(ReasonCode::SUCCESS))),
            (0x50, Packet::PubRec(ack(ReasonCode::SUCCESS))),
            (0x62, Packet::PubRel(ack(ReasonCode::SUCCESS))),
            (0x70, Packet::PubComp(ack(ReasonCode::SUCCESS))),
        ] {
            let bytes = [
                first, 0x02, // type and flags, remaining length 2
                0x00, 0x0A, // packet identifier 10
            ];
            assert_wire(&bytes, Protocol::V3_1_1, &packet);
            // Under 5.0 a success without properties is the same two bytes.
            assert_wire(&bytes, Protocol::V5, &packet);
        }
    }

    #[test]
    fn v5_ack_with_reason_code_only() {
        let bytes = [
            0x40, 0x03, // PUBACK, remaining length 3
            0x00, 0x0A, // packet identifier 10
            0x10, // no matching subscribers
        ];
        let packet = Packet::PubAck(ack(ReasonCode::NO_MATCHING_SUBSCRIBERS));
        assert_wire(&bytes, Protocol::V5, &packet);
    }

    #[test]
    fn v5_ack_with_reason_code_and_properties() {
        let bytes = [
            0x50, 0x09, // PUBREC, remaining length 9
            0x00, 0x0A, // packet identifier 10
            0x97, // quota exceeded
            0x05, // property length 5
            0x1F, 0x00, 0x02, b'n', b'o', // reason string "no"
        ];
        let packet = Packet::PubRec(PubAck {
            properties: Properties {
                reason_string: Some(ByteStr::from_static("no")),
                ..Properties::default()
            },
            ..ack(ReasonCode::QUOTA_EXCEEDED)
        });
        assert_wire(&bytes, Protocol::V5, &packet);
    }

    #[test]
    fn v5_ack_long_form_of_a_plain_success_is_accepted() {
        // Reason 0 and an empty property list: legal, and re-encoded in the short form.
        let packet = decode_body(0x40, &[0x00, 0x0A, 0x00, 0x00], Protocol::V5).unwrap();
        assert_eq!(packet, Packet::PubAck(ack(ReasonCode::SUCCESS)));
        assert_eq!(encode_vec(&packet, Protocol::V5), [0x40, 0x02, 0x00, 0x0A]);
    }

    #[test]
    fn v3_1_1_ack_with_a_reason_code_is_malformed() {
        let result = decode_body(0x40, &[0x00, 0x0A, 0x00], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn ack_packet_identifier_0_is_a_protocol_error() {
        let result = decode_body(0x40, &[0x00, 0x00], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn ack_too_short_is_malformed() {
        let result = decode_body(0x70, &[0x0A], Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn ack_property_not_allowed_is_a_protocol_error() {
        // Server reference (0x1C) is for CONNACK and DISCONNECT.
        let body = [0x00, 0x0A, 0x80, 0x04, 0x1C, 0x00, 0x01, b's'];
        let result = decode_body(0x40, &body, Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn v3_1_1_ack_encode_drops_the_reason_code() {
        let packet = Packet::PubAck(ack(ReasonCode::NO_MATCHING_SUBSCRIBERS));
        assert_eq!(
            encode_vec(&packet, Protocol::V3_1_1),
            [0x40, 0x02, 0x00, 0x0A]
        );
    }
}
