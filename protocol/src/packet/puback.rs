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
