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
