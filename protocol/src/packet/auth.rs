//! AUTH (5.0 section 3.15): extended authentication exchanges. Not defined before 5.0; the
//! framing refuses it on 3.1.1 connections in both directions.

use bytes::{Bytes, BytesMut};

use super::tail;
use crate::properties::Scope;
use crate::{DecodeError, EncodeError, Properties, ReasonCode};

/// AUTH (5.0 only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// 0x00 success, 0x18 continue authentication, 0x19 re-authenticate.
    pub reason: ReasonCode,
    /// Properties: authentication method and data, reason string, user properties.
    pub properties: Properties,
}

impl Auth {
    pub(super) fn read(body: &mut Bytes) -> Result<Auth, DecodeError> {
        let (reason, properties) = tail::read(body, Scope::Auth)?;
        Ok(Auth { reason, properties })
    }

    pub(super) fn body_len(&self) -> usize {
        tail::len(self.reason, &self.properties, Scope::Auth)
    }

    pub(super) fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        tail::write(self.reason, &self.properties, Scope::Auth, buf)
    }
}
