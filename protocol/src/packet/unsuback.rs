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
