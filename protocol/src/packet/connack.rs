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
