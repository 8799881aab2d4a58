//! The optional "reason code, properties" tail that ends 5.0 acks, DISCONNECT and AUTH.
//!
//! 5.0 lets these packets stop early: no reason code means success (0x00), no property length
//! means no properties (3.4.2.1, 3.14.2.1, 3.15.2.1). The decoder accepts every form; the encoder
//! writes the shortest one, because most acks are plain successes and two bytes matter at
//! telemetry rates.

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::Scope;
use crate::{wire, DecodeError, EncodeError, Properties, ReasonCode};

/// Reads the tail: nothing, a reason code, or a reason code and properties.
pub(super) fn read(
    body: &mut Bytes,
    scope: Scope,
) -> Result<(ReasonCode, Properties), DecodeError> {
    if body.is_empty() {
        return Ok((ReasonCode::SUCCESS, Properties::default()));
    }
    let reason = ReasonCode(wire::read_u8(body)?);
    if body.is_empty() {
        return Ok((reason, Properties::default()));
    }
    Ok((reason, Properties::read(body, scope)?))
}

/// The size of the shortest tail for `reason` and `properties`.
pub(super) fn len(reason: ReasonCode, properties: &Properties, scope: Scope) -> usize {
    match properties.body_len(scope) {
        0 if reason == ReasonCode::SUCCESS => 0,
        0 => 1,
        props => 1 + wire::varint_len(props) + props,
    }
}

/// Writes the shortest tail for `reason` and `properties`.
pub(super) fn write(
    reason: ReasonCode,
    properties: &Properties,
    scope: Scope,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    match properties.body_len(scope) {
        0 if reason == ReasonCode::SUCCESS => Ok(()),
        0 => {
            buf.put_u8(reason.0);
            Ok(())
        }
        _ => {
            buf.put_u8(reason.0);
            properties.write(scope, buf)
        }
    }
}
