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
