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

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::Packet;
    use super::*;
    use crate::{ByteStr, Protocol};

    #[test]
    fn auth_success_is_empty() {
        let bytes = [0xF0, 0x00]; // AUTH, remaining length 0: success
        assert_wire(&bytes, Protocol::V5, &Packet::Auth(Auth::default()));
    }

    #[test]
    fn auth_continue_with_method_and_data() {
        let bytes = [
            0xF0, 0x0E, // AUTH, remaining length 14
            0x18, // continue authentication
            0x0C, // property length 12
            0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // authentication method
            0x16, 0x00, 0x01, 0xAB, // authentication data
        ];
        let packet = Packet::Auth(Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Properties {
                authentication_method: Some(ByteStr::from_static("SCRAM")),
                authentication_data: Some(Bytes::from_static(&[0xAB])),
                ..Properties::default()
            },
        });
        assert_wire(&bytes, Protocol::V5, &packet);
    }

    #[test]
    fn auth_with_reason_code_only() {
        let bytes = [0xF0, 0x01, 0x19]; // AUTH, remaining length 1, re-authenticate
        let packet = Packet::Auth(Auth {
            reason: ReasonCode::RE_AUTHENTICATE,
            properties: Properties::default(),
        });
        assert_wire(&bytes, Protocol::V5, &packet);
    }

    #[test]
    fn auth_property_not_allowed_is_a_protocol_error() {
        let result = decode_body(0xF0, &[0x18, 0x02, 0x24, 0x01], Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }
}
