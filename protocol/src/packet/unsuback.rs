//! UNSUBACK (3.1.1 section 3.11, 5.0 section 3.11).
//!
//! 3.1.1 UNSUBACK is a bare packet identifier; 5.0 adds properties and one reason code per
//! filter.

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::Scope;
use crate::{wire, DecodeError, EncodeError, Properties, Protocol, ReasonCode};

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

impl UnsubAck {
    pub(super) fn read(body: &mut Bytes, version: Protocol) -> Result<UnsubAck, DecodeError> {
        let pkid = super::read_pkid(body)?;
        if !version.is_v5() {
            return Ok(UnsubAck {
                pkid,
                reasons: Vec::new(),
                properties: Properties::default(),
            });
        }
        let properties = Properties::read(body, Scope::UnsubAck)?;
        let mut reasons = Vec::with_capacity(body.len());
        while !body.is_empty() {
            reasons.push(ReasonCode(wire::read_u8(body)?));
        }
        if reasons.is_empty() {
            return Err(DecodeError::Protocol("UNSUBACK without reason codes"));
        }
        Ok(UnsubAck {
            pkid,
            reasons,
            properties,
        })
    }

    pub(super) fn body_len(&self, version: Protocol) -> usize {
        if version.is_v5() {
            2 + self.properties.encoded_len(Scope::UnsubAck) + self.reasons.len()
        } else {
            2
        }
    }

    pub(super) fn write(&self, version: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u16(self.pkid);
        if version.is_v5() {
            self.properties.write(Scope::UnsubAck, buf)?;
            for reason in &self.reasons {
                buf.put_u8(reason.0);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::Packet;
    use super::*;

    #[test]
    fn v3_1_1_unsuback_has_no_reason_codes() {
        let bytes = [
            0xB0, 0x02, // UNSUBACK, remaining length 2
            0x00, 0x03, // packet identifier 3
        ];
        let packet = Packet::UnsubAck(UnsubAck {
            pkid: 3,
            reasons: Vec::new(),
            properties: Properties::default(),
        });
        assert_wire(&bytes, Protocol::V3_1_1, &packet);
    }

    #[test]
    fn v3_1_1_unsuback_encode_drops_reason_codes() {
        let packet = Packet::UnsubAck(UnsubAck {
            pkid: 3,
            reasons: vec![ReasonCode::SUCCESS],
            properties: Properties::default(),
        });
        assert_eq!(
            encode_vec(&packet, Protocol::V3_1_1),
            [0xB0, 0x02, 0x00, 0x03]
        );
    }

    #[test]
    fn v3_1_1_unsuback_with_more_bytes_is_malformed() {
        let result = decode_body(0xB0, &[0x00, 0x03, 0x00], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn v5_unsuback_with_reason_codes() {
        let bytes = [
            0xB0, 0x05, // UNSUBACK, remaining length 5
            0x00, 0x03, // packet identifier 3
            0x00, // property length 0
            0x00, // success
            0x11, // no subscription existed
        ];
        let packet = Packet::UnsubAck(UnsubAck {
            pkid: 3,
            reasons: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
            properties: Properties::default(),
        });
        assert_wire(&bytes, Protocol::V5, &packet);
    }

    #[test]
    fn v5_unsuback_without_reason_codes_is_a_protocol_error() {
        let result = decode_body(0xB0, &[0x00, 0x03, 0x00], Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }
}
