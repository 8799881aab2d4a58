//! PUBLISH (3.1.1 section 3.3, 5.0 section 3.3): the hot path.
//!
//! Decoding allocates nothing: topic and payload are slices of the frame. The topic name is
//! validated here (a wildcard in it ends the connection), except for the empty topic a 5.0 client
//! may send together with a Topic Alias, which the broker resolves.

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::Scope;
use crate::{
    validate_topic_name, wire, ByteStr, DecodeError, EncodeError, Properties, Protocol, QoS,
};

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag.
    pub dup: bool,
    /// QoS level.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name; may be empty under 5.0 when a topic alias stands for it.
    pub topic: ByteStr,
    /// Packet identifier; 0 (and not on the wire) at QoS 0.
    pub pkid: u16,
    /// Application payload, shared with the receive buffer.
    pub payload: Bytes,
    /// PUBLISH properties (5.0).
    pub properties: Properties,
}

const DUP: u8 = 0b1000;
const QOS_SHIFT: u8 = 1;
const RETAIN: u8 = 0b0001;

/// Parses the fixed header flags into DUP, QoS and RETAIN.
pub(super) fn parse_flags(flags: u8) -> Result<(bool, QoS, bool), DecodeError> {
    let qos = QoS::from_u8((flags >> QOS_SHIFT) & 0b11)
        .ok_or(DecodeError::Malformed("PUBLISH with QoS 3"))?;
    let dup = flags & DUP != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::Malformed("DUP flag on a QoS 0 PUBLISH"));
    }
    Ok((dup, qos, flags & RETAIN != 0))
}

impl Publish {
    /// The fixed header flags. DUP is only written for QoS 1 and 2: a QoS 0 message must never
    /// carry it (3.3.1-2), which matters when the broker downgrades a redelivery to QoS 0.
    pub(super) fn flags(&self) -> u8 {
        let mut flags = (self.qos as u8) << QOS_SHIFT;
        if self.dup && self.qos != QoS::AtMostOnce {
            flags |= DUP;
        }
        if self.retain {
            flags |= RETAIN;
        }
        flags
    }

    pub(super) fn read(
        flags: u8,
        body: &mut Bytes,
        version: Protocol,
    ) -> Result<Publish, DecodeError> {
        let (dup, qos, retain) = parse_flags(flags)?;
        let topic = wire::read_string(body)?;
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            super::read_pkid(body)?
        };
        let properties = if version.is_v5() {
            Properties::read(body, Scope::Publish)?
        } else {
            Properties::default()
        };
        let aliased = version.is_v5() && properties.topic_alias.is_some();
        if !(aliased && topic.is_empty()) {
            validate_topic_name(&topic)?;
        }
        Ok(Publish {
            dup,
            qos,
            retain,
            topic,
            pkid,
            payload: std::mem::take(body),
            properties,
        })
    }

    pub(super) fn body_len(&self, version: Protocol) -> usize {
        let mut len = wire::prefixed_len(self.topic.len()) + self.payload.len();
        if self.qos != QoS::AtMostOnce {
            len += 2;
        }
        if version.is_v5() {
            len += self.properties.encoded_len(Scope::Publish);
        }
        len
    }

    pub(super) fn write(&self, version: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        wire::write_string(buf, &self.topic, "topic name")?;
        if self.qos != QoS::AtMostOnce {
            buf.put_u16(self.pkid);
        }
        if version.is_v5() {
            self.properties.write(Scope::Publish, buf)?;
        }
        buf.put_slice(&self.payload);
        Ok(())
    }
}
