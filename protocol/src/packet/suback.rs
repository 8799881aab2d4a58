//! SUBACK (3.1.1 section 3.9, 5.0 section 3.9).
//!
//! 3.1.1 knows only "granted QoS 0/1/2" and 0x80 "failure"; 5.0 reason codes are mapped to those
//! on encode, and 0x80 reads back as "unspecified error".

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::Scope;
use crate::{wire, DecodeError, EncodeError, Properties, Protocol, ReasonCode};

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

/// Reads a 3.1.1 SUBACK return code.
fn from_v4(code: u8) -> Result<ReasonCode, DecodeError> {
    match code {
        0..=2 => Ok(ReasonCode(code)),
        0x80 => Ok(ReasonCode::UNSPECIFIED_ERROR),
        _ => Err(DecodeError::Malformed("unknown SUBACK return code")),
    }
}

impl SubAck {
    pub(super) fn read(body: &mut Bytes, version: Protocol) -> Result<SubAck, DecodeError> {
        let pkid = super::read_pkid(body)?;
        let properties = if version.is_v5() {
            Properties::read(body, Scope::SubAck)?
        } else {
            Properties::default()
        };
        let mut reasons = Vec::with_capacity(body.len());
        while !body.is_empty() {
            let code = wire::read_u8(body)?;
            reasons.push(if version.is_v5() {
                ReasonCode(code)
            } else {
                from_v4(code)?
            });
        }
        if reasons.is_empty() {
            return Err(DecodeError::Protocol("SUBACK without reason codes"));
        }
        Ok(SubAck {
            pkid,
            reasons,
            properties,
        })
    }

    pub(super) fn body_len(&self, version: Protocol) -> usize {
        let properties = if version.is_v5() {
            self.properties.encoded_len(Scope::SubAck)
        } else {
            0
        };
        2 + properties + self.reasons.len()
    }

    pub(super) fn write(&self, version: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u16(self.pkid);
        if version.is_v5() {
            self.properties.write(Scope::SubAck, buf)?;
            for reason in &self.reasons {
                buf.put_u8(reason.0);
            }
        } else {
            for reason in &self.reasons {
                buf.put_u8(reason.to_v4_suback());
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
    use crate::ByteStr;

    fn suback(reasons: Vec<ReasonCode>) -> Packet {
        Packet::SubAck(SubAck {
            pkid: 1,
            reasons,
            properties: Properties::default(),
        })
    }

    #[test]
    fn v3_1_1_suback() {
        let bytes = [
            0x90, 0x05, // SUBACK, remaining length 5
            0x00, 0x01, // packet identifier 1
            0x00, // granted QoS 0
            0x02, // granted QoS 2
            0x80, // failure
        ];
        let packet = suback(vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_2,
            ReasonCode::UNSPECIFIED_ERROR,
        ]);
        assert_wire(&bytes, Protocol::V3_1_1, &packet);
    }

    #[test]
    fn v3_1_1_suback_maps_5_0_failures_to_0x80() {
        let packet = suback(vec![
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::TOPIC_FILTER_INVALID,
        ]);
        assert_eq!(
            encode_vec(&packet, Protocol::V3_1_1),
            [0x90, 0x04, 0x00, 0x01, 0x01, 0x80]
        );
    }

    #[test]
    fn v3_1_1_unknown_suback_return_code_is_malformed() {
        let result = decode_body(0x90, &[0x00, 0x01, 0x03], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn v5_suback_with_reason_string() {
        let bytes = [
            0x90, 0x0A, // SUBACK, remaining length 10
            0x00, 0x01, // packet identifier 1
            0x05, // property length 5
            0x1F, 0x00, 0x02, b'n', b'o', // reason string "no"
            0x01, // granted QoS 1
            0x8F, // topic filter invalid
        ];
        let packet = Packet::SubAck(SubAck {
            pkid: 1,
            reasons: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::TOPIC_FILTER_INVALID],
            properties: Properties {
                reason_string: Some(ByteStr::from_static("no")),
                ..Properties::default()
            },
        });
        assert_wire(&bytes, Protocol::V5, &packet);
    }

    #[test]
    fn suback_without_reason_codes_is_a_protocol_error() {
        let result = decode_body(0x90, &[0x00, 0x01], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }
}
