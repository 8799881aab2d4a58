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

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::Packet;
    use super::*;
    use crate::TopicError;

    fn publish(qos: QoS, pkid: u16) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: false,
            topic: ByteStr::from_static("a/b"),
            pkid,
            payload: Bytes::from_static(b"hi"),
            properties: Properties::default(),
        }
    }

    #[test]
    fn v3_1_1_publish_qos0() {
        let bytes = [
            0x30, 0x07, // PUBLISH QoS 0, remaining length 7
            0x00, 0x03, b'a', b'/', b'b', // topic name
            b'h', b'i', // payload
        ];
        let packet = Packet::Publish(publish(QoS::AtMostOnce, 0));
        assert_wire(&bytes, Protocol::V3_1_1, &packet);
    }

    #[test]
    fn v3_1_1_publish_qos1_retained() {
        let bytes = [
            0x33, 0x09, // PUBLISH QoS 1 retain, remaining length 9
            0x00, 0x03, b'a', b'/', b'b', // topic name
            0x00, 0x0A, // packet identifier 10
            b'h', b'i', // payload
        ];
        let packet = Packet::Publish(Publish {
            retain: true,
            ..publish(QoS::AtLeastOnce, 10)
        });
        assert_wire(&bytes, Protocol::V3_1_1, &packet);
    }

    #[test]
    fn v5_publish_qos0_without_properties() {
        let bytes = [
            0x30, 0x08, // PUBLISH QoS 0, remaining length 8
            0x00, 0x03, b'a', b'/', b'b', // topic name
            0x00, // property length 0
            b'h', b'i', // payload
        ];
        assert_wire(
            &bytes,
            Protocol::V5,
            &Packet::Publish(publish(QoS::AtMostOnce, 0)),
        );
    }

    #[test]
    fn v5_publish_qos2_dup_with_properties() {
        let bytes = [
            0x3C, 0x1C, // PUBLISH DUP QoS 2, remaining length 28
            0x00, 0x03, b'a', b'/', b'b', // topic name
            0x12, 0x34, // packet identifier 0x1234
            0x12, // property length 18
            0x01, 0x01, // payload format indicator: UTF-8
            0x02, 0x00, 0x00, 0x00, 0x3C, // message expiry interval 60
            0x0B, 0x07, // subscription identifier 7
            0x0B, 0x80, 0x01, // subscription identifier 128
            0x26, 0x00, 0x01, b'k', 0x00, 0x00, // user property ("k", "")
            b'h', b'i', // payload
        ];
        let packet = Packet::Publish(Publish {
            dup: true,
            properties: Properties {
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(60),
                subscription_identifiers: vec![7, 128],
                user_properties: vec![(ByteStr::from_static("k"), ByteStr::default())],
                ..Properties::default()
            },
            ..publish(QoS::ExactlyOnce, 0x1234)
        });
        assert_wire(&bytes, Protocol::V5, &packet);
    }

    #[test]
    fn payload_and_topic_share_the_frame() {
        let mut buf =
            bytes::BytesMut::from(&[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'][..]);
        let start = buf.as_ptr() as usize;
        let Some(Packet::Publish(publish)) =
            super::super::decode(&mut buf, Protocol::V3_1_1, 100).unwrap()
        else {
            panic!("not a PUBLISH")
        };
        assert_eq!(publish.topic.as_bytes().as_ptr() as usize, start + 4);
        assert_eq!(publish.payload.as_ptr() as usize, start + 7);
    }

    #[test]
    fn publish_qos_3_is_malformed() {
        let result = decode_body(0x36, &[0x00, 0x01, b't', 0x00, 0x01], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn publish_dup_with_qos_0_is_malformed() {
        let result = decode_body(0x38, &[0x00, 0x01, b't'], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn encode_never_sets_dup_on_qos_0() {
        let packet = Packet::Publish(Publish {
            dup: true,
            ..publish(QoS::AtMostOnce, 0)
        });
        assert_eq!(encode_vec(&packet, Protocol::V3_1_1)[0], 0x30);
    }

    /// `encode_publish` writes exactly what `encode` writes for the same PUBLISH.
    #[test]
    fn encode_publish_matches_encode() {
        let mut with_properties = Publish {
            retain: true,
            dup: true,
            ..publish(QoS::ExactlyOnce, 9)
        };
        with_properties.properties.content_type = Some(ByteStr::from_static("text/plain"));
        with_properties.properties.subscription_identifiers = vec![3, 300];
        for publish in [publish(QoS::AtMostOnce, 0), with_properties] {
            for version in [Protocol::V3_1_1, Protocol::V5] {
                let mut alone = BytesMut::new();
                super::super::encode_publish(&publish, version, &mut alone).unwrap();
                let packet = Packet::Publish(publish.clone());
                assert_eq!(&alone[..], &encode_vec(&packet, version)[..], "{version:?}");
            }
        }
    }

    #[test]
    fn publish_packet_identifier_0_is_a_protocol_error() {
        let result = decode_body(0x32, &[0x00, 0x01, b't', 0x00, 0x00], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn publish_topic_with_wildcard_is_a_topic_name_error() {
        let result = decode_body(0x30, &[0x00, 0x03, b'a', b'/', b'+'], Protocol::V3_1_1);
        assert_eq!(
            result,
            Err(DecodeError::TopicName(TopicError::WildcardInName))
        );
    }

    #[test]
    fn empty_topic_is_allowed_only_with_a_v5_topic_alias() {
        let result = decode_body(0x30, &[0x00, 0x00], Protocol::V3_1_1);
        assert_eq!(result, Err(DecodeError::TopicName(TopicError::Empty)));
        let result = decode_body(0x30, &[0x00, 0x00, 0x00], Protocol::V5);
        assert_eq!(result, Err(DecodeError::TopicName(TopicError::Empty)));

        let bytes = [
            0x30, 0x06, // PUBLISH QoS 0, remaining length 6
            0x00, 0x00, // empty topic name
            0x03, 0x23, 0x00, 0x05, // property length 3, topic alias 5
        ];
        let packet = Packet::Publish(Publish {
            topic: ByteStr::default(),
            payload: Bytes::new(),
            properties: Properties {
                topic_alias: Some(5),
                ..Properties::default()
            },
            ..publish(QoS::AtMostOnce, 0)
        });
        assert_wire(&bytes, Protocol::V5, &packet);
    }

    #[test]
    fn topic_alias_0_is_a_protocol_error() {
        let body = [0x00, 0x01, b't', 0x03, 0x23, 0x00, 0x00];
        let result = decode_body(0x30, &body, Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn payload_format_indicator_other_than_0_or_1_is_a_protocol_error() {
        let body = [0x00, 0x01, b't', 0x02, 0x01, 0x02];
        let result = decode_body(0x30, &body, Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn subscription_identifier_0_is_a_protocol_error() {
        let body = [0x00, 0x01, b't', 0x02, 0x0B, 0x00];
        let result = decode_body(0x30, &body, Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn publish_property_not_allowed_is_a_protocol_error() {
        // Session expiry interval (0x11) belongs to CONNECT, CONNACK and DISCONNECT.
        let body = [0x00, 0x01, b't', 0x05, 0x11, 0x00, 0x00, 0x00, 0x01];
        let result = decode_body(0x30, &body, Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn duplicate_publish_property_is_a_protocol_error() {
        let body = [0x00, 0x01, b't', 0x04, 0x01, 0x00, 0x01, 0x00];
        let result = decode_body(0x30, &body, Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn property_length_overrunning_the_packet_is_malformed() {
        let body = [0x00, 0x01, b't', 0x09, 0x01, 0x00];
        let result = decode_body(0x30, &body, Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn property_value_cut_by_the_property_length_is_malformed() {
        // Property length 2 covers the identifier and half of a two-byte topic alias.
        let body = [0x00, 0x01, b't', 0x02, 0x23, 0x00, 0x05];
        let result = decode_body(0x30, &body, Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn unknown_property_identifier_is_malformed() {
        let body = [0x00, 0x01, b't', 0x02, 0x7F, 0x00];
        let result = decode_body(0x30, &body, Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn topic_with_null_character_is_malformed() {
        let result = decode_body(0x30, &[0x00, 0x02, b'a', 0x00], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }
}
