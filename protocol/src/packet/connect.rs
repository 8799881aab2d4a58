//! CONNECT (3.1.1 section 3.1, 5.0 section 3.1): the packet that fixes a connection's level.
//!
//! CONNECT announces its own protocol level, so it is read and written by that level rather than
//! the connection's: `MQIsdp`/3 is MQTT 3.1, `MQTT`/4 is 3.1.1, `MQTT`/5 is 5.0.

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::Scope;
use crate::{
    validate_topic_name, wire, ByteStr, DecodeError, EncodeError, Properties, Protocol, QoS,
};

/// CONNECT: the first packet of every connection.
///
/// Its `Debug` output never shows the password, so a logged packet cannot leak a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol level requested by the client.
    pub protocol: Protocol,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client identifier; may be empty (the server then assigns one or refuses, per level).
    pub client_id: ByteStr,
    /// The Last Will, if any.
    pub will: Option<Will>,
    /// User name, if the flag is set.
    pub username: Option<ByteStr>,
    /// Password, if the flag is set (binary data).
    pub password: Option<Bytes>,
    /// CONNECT properties (5.0).
    pub properties: Properties,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("protocol", &self.protocol)
            .field("clean_start", &self.clean_start)
            .field("keep_alive", &self.keep_alive)
            .field("client_id", &self.client_id)
            .field("will", &self.will)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("properties", &self.properties)
            .finish()
    }
}

/// A Last Will message carried in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Will topic.
    pub topic: ByteStr,
    /// Will payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will retain flag.
    pub retain: bool,
    /// Will properties (5.0): delay interval, expiry, content type, response topic...
    pub properties: Properties,
}

/// Connect flags (3.1.2.3).
mod flag {
    pub(super) const RESERVED: u8 = 0x01;
    pub(super) const CLEAN_START: u8 = 0x02;
    pub(super) const WILL: u8 = 0x04;
    pub(super) const WILL_QOS_SHIFT: u8 = 3;
    pub(super) const WILL_QOS_MASK: u8 = 0x18;
    pub(super) const WILL_RETAIN: u8 = 0x20;
    pub(super) const PASSWORD: u8 = 0x40;
    pub(super) const USERNAME: u8 = 0x80;
}

/// The protocol name a level announces.
fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::V3_1 => "MQIsdp",
        Protocol::V3_1_1 | Protocol::V5 => "MQTT",
    }
}

/// Reads the protocol name and level.
fn read_protocol(body: &mut Bytes) -> Result<Protocol, DecodeError> {
    let name = wire::read_string(body)?;
    let level = wire::read_u8(body)?;
    match (name.as_str(), level) {
        ("MQIsdp", 3) => Ok(Protocol::V3_1),
        ("MQTT", 4) => Ok(Protocol::V3_1_1),
        ("MQTT", 5) => Ok(Protocol::V5),
        _ => Err(DecodeError::UnsupportedProtocol {
            name: name.to_string(),
            level,
        }),
    }
}

impl Connect {
    /// Reads a CONNECT body at the level it announces.
    pub(super) fn read(body: &mut Bytes) -> Result<Connect, DecodeError> {
        let protocol = read_protocol(body)?;
        let flags = wire::read_u8(body)?;
        if flags & flag::RESERVED != 0 {
            return Err(DecodeError::Malformed("CONNECT reserved flag is set"));
        }
        let has_will = flags & flag::WILL != 0;
        let will_qos_bits = (flags & flag::WILL_QOS_MASK) >> flag::WILL_QOS_SHIFT;
        let will_retain = flags & flag::WILL_RETAIN != 0;
        let will_qos = QoS::from_u8(will_qos_bits).ok_or(DecodeError::Malformed("will QoS 3"))?;
        if !has_will && (will_qos_bits != 0 || will_retain) {
            return Err(DecodeError::Malformed(
                "will QoS or will retain set without a will",
            ));
        }
        let has_username = flags & flag::USERNAME != 0;
        let has_password = flags & flag::PASSWORD != 0;
        // 5.0 allows a password alone (for tokens); 3.1.1 does not (3.1.2-22).
        if has_password && !has_username && !protocol.is_v5() {
            return Err(DecodeError::Protocol("password without a user name"));
        }
        let keep_alive = wire::read_u16(body)?;
        let properties = if protocol.is_v5() {
            Properties::read(body, Scope::Connect)?
        } else {
            Properties::default()
        };
        let client_id = wire::read_string(body)?;
        let will = if has_will {
            Some(Will::read(body, protocol, will_qos, will_retain)?)
        } else {
            None
        };
        let username = has_username.then(|| wire::read_string(body)).transpose()?;
        let password = has_password.then(|| wire::read_binary(body)).transpose()?;
        Ok(Connect {
            protocol,
            clean_start: flags & flag::CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    /// The connect flags byte for this CONNECT.
    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_start {
            flags |= flag::CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= flag::WILL | (will.qos as u8) << flag::WILL_QOS_SHIFT;
            if will.retain {
                flags |= flag::WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= flag::USERNAME;
        }
        if self.password.is_some() {
            flags |= flag::PASSWORD;
        }
        flags
    }

    /// The remaining length of this CONNECT.
    pub(super) fn body_len(&self) -> usize {
        let protocol = self.protocol;
        let mut len = wire::prefixed_len(protocol_name(protocol).len()) + 1 + 1 + 2;
        if protocol.is_v5() {
            len += self.properties.encoded_len(Scope::Connect);
        }
        len += wire::prefixed_len(self.client_id.len());
        if let Some(will) = &self.will {
            len += will.len(protocol);
        }
        if let Some(username) = &self.username {
            len += wire::prefixed_len(username.len());
        }
        if let Some(password) = &self.password {
            len += wire::prefixed_len(password.len());
        }
        len
    }

    /// Writes the variable header and payload at the level of `self.protocol`.
    pub(super) fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let protocol = self.protocol;
        wire::write_string(buf, protocol_name(protocol), "protocol name")?;
        buf.put_u8(protocol.level());
        buf.put_u8(self.flags());
        buf.put_u16(self.keep_alive);
        if protocol.is_v5() {
            self.properties.write(Scope::Connect, buf)?;
        }
        wire::write_string(buf, &self.client_id, "client identifier")?;
        if let Some(will) = &self.will {
            will.write(protocol, buf)?;
        }
        if let Some(username) = &self.username {
            wire::write_string(buf, username, "user name")?;
        }
        if let Some(password) = &self.password {
            wire::write_binary(buf, password, "password")?;
        }
        Ok(())
    }
}

impl Will {
    /// Reads the will part of the CONNECT payload; its QoS and retain come from the flags.
    fn read(
        body: &mut Bytes,
        protocol: Protocol,
        qos: QoS,
        retain: bool,
    ) -> Result<Will, DecodeError> {
        let properties = if protocol.is_v5() {
            Properties::read(body, Scope::Will)?
        } else {
            Properties::default()
        };
        let topic = wire::read_string(body)?;
        validate_topic_name(&topic)?;
        let payload = wire::read_binary(body)?;
        Ok(Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
    }

    /// The size of the will properties, topic and payload.
    fn len(&self, protocol: Protocol) -> usize {
        let properties = if protocol.is_v5() {
            self.properties.encoded_len(Scope::Will)
        } else {
            0
        };
        properties + wire::prefixed_len(self.topic.len()) + wire::prefixed_len(self.payload.len())
    }

    fn write(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        if protocol.is_v5() {
            self.properties.write(Scope::Will, buf)?;
        }
        wire::write_string(buf, &self.topic, "will topic")?;
        wire::write_binary(buf, &self.payload, "will payload")
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::Packet;
    use super::*;
    use crate::TopicError;

    /// Regression: a logged CONNECT must not carry the password.
    #[test]
    fn debug_output_redacts_the_password() {
        let mut c = connect(Protocol::V5);
        c.username = Some(ByteStr::from_static("truck-7"));
        c.password = Some(bytes::Bytes::from_static(b"hunter2"));
        let shown = format!("{c:?}");
        assert!(shown.contains("truck-7"));
        assert!(
            !shown.contains("hunter2") && !shown.contains("104, 117"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"));
    }

    fn connect(protocol: Protocol) -> Connect {
        Connect {
            protocol,
            clean_start: true,
            keep_alive: 60,
            client_id: ByteStr::from_static("c"),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        }
    }

    #[test]
    fn v3_1_1_connect_with_will_user_and_password() {
        // The variable header of the 3.1.1 spec's example (3.1.2.10), with a payload.
        let bytes = [
            0x10, 0x22, // CONNECT, remaining length 34
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
            0x04, // level 4
            0xCE, // user name, password, will QoS 1, will, clean session
            0x00, 0x0A, // keep alive 10
            0x00, 0x03, b'c', b'i', b'd', // client identifier
            0x00, 0x03, b'a', b'/', b'b', // will topic
            0x00, 0x02, b'h', b'i', // will payload
            0x00, 0x04, b'u', b's', b'e', b'r', // user name
            0x00, 0x02, 0x01, 0x02, // password
        ];
        let packet = Packet::Connect(Connect {
            protocol: Protocol::V3_1_1,
            clean_start: true,
            keep_alive: 10,
            client_id: ByteStr::from_static("cid"),
            will: Some(Will {
                topic: ByteStr::from_static("a/b"),
                payload: Bytes::from_static(b"hi"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Properties::default(),
            }),
            username: Some(ByteStr::from_static("user")),
            password: Some(Bytes::from_static(&[1, 2])),
            properties: Properties::default(),
        });
        assert_wire(&bytes, Protocol::V3_1_1, &packet);
    }

    #[test]
    fn v5_connect_with_properties_and_will_properties() {
        // The 5.0 spec's example properties (3.1.2.11): session expiry interval 10.
        let bytes = [
            0x10, 0x1D, // CONNECT, remaining length 29
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
            0x05, // level 5
            0x26, // will retain, will QoS 0, will, clean start
            0x00, 0x3C, // keep alive 60
            0x05, // property length 5
            0x11, 0x00, 0x00, 0x00, 0x0A, // session expiry interval 10
            0x00, 0x00, // empty client identifier
            0x05, // will property length 5
            0x18, 0x00, 0x00, 0x00, 0x05, // will delay interval 5
            0x00, 0x01, b't', // will topic
            0x00, 0x00, // empty will payload
        ];
        let packet = Packet::Connect(Connect {
            client_id: ByteStr::default(),
            will: Some(Will {
                topic: ByteStr::from_static("t"),
                payload: Bytes::new(),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: Properties {
                    will_delay_interval: Some(5),
                    ..Properties::default()
                },
            }),
            properties: Properties {
                session_expiry_interval: Some(10),
                ..Properties::default()
            },
            ..connect(Protocol::V5)
        });
        assert_wire(&bytes, Protocol::V5, &packet);
    }

    #[test]
    fn v3_1_mqisdp_connect() {
        let bytes = [
            0x10, 0x0F, // CONNECT, remaining length 15
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // protocol name
            0x03, // level 3
            0x02, // clean session
            0x00, 0x3C, // keep alive 60
            0x00, 0x01, b'c', // client identifier
        ];
        assert_wire(
            &bytes,
            Protocol::V3_1,
            &Packet::Connect(connect(Protocol::V3_1)),
        );
    }

    #[test]
    fn connect_is_decoded_at_its_own_level() {
        let bytes = encode_vec(&Packet::Connect(connect(Protocol::V5)), Protocol::V3_1_1);
        let packet = decode_one(&bytes, Protocol::V3_1_1).unwrap();
        assert_eq!(packet, Packet::Connect(connect(Protocol::V5)));
    }

    /// A CONNECT body: protocol name, level, flags, keep alive 60, then `rest`.
    fn body(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
        let mut body = vec![0x00, name.len() as u8];
        body.extend_from_slice(name);
        body.extend_from_slice(&[level, flags, 0x00, 0x3C]);
        body.extend_from_slice(rest);
        body
    }

    #[test]
    fn unknown_protocol_name_or_level_is_unsupported() {
        for (name, level) in [
            (&b"MQTT"[..], 3),
            (b"MQTT", 6),
            (b"MQIsdp", 4),
            (b"MQTX", 4),
        ] {
            let result = decode_body(0x10, &body(name, level, 0x02, &[0, 0]), Protocol::V5);
            assert_eq!(
                result,
                Err(DecodeError::UnsupportedProtocol {
                    name: String::from_utf8(name.to_vec()).unwrap(),
                    level
                })
            );
        }
    }

    #[test]
    fn connect_reserved_flag_must_be_zero() {
        let result = decode_body(0x10, &body(b"MQTT", 4, 0x03, &[0, 0]), Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn will_qos_or_retain_without_will_flag_is_malformed() {
        for flags in [0x0A, 0x12, 0x22] {
            let result = decode_body(0x10, &body(b"MQTT", 4, flags, &[0, 0]), Protocol::V3_1_1);
            assert!(
                matches!(result, Err(DecodeError::Malformed(_))),
                "{flags:#04X}"
            );
        }
    }

    #[test]
    fn will_qos_3_is_malformed() {
        let rest = [0, 0, 0, 1, b't', 0, 0];
        let result = decode_body(0x10, &body(b"MQTT", 4, 0x1E, &rest), Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn password_without_user_name_is_a_protocol_error_in_3_1_1_only() {
        let rest = [0, 0, 0, 1, b'p'];
        let result = decode_body(0x10, &body(b"MQTT", 4, 0x42, &rest), Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));

        let rest = [0, 0, 0, 0, 1, b'p'];
        let Packet::Connect(connect) =
            decode_body(0x10, &body(b"MQTT", 5, 0x42, &rest), Protocol::V5).unwrap()
        else {
            panic!("not a CONNECT")
        };
        assert_eq!(connect.password, Some(Bytes::from_static(b"p")));
        assert_eq!(connect.username, None);
    }

    #[test]
    fn will_topic_with_wildcard_is_a_topic_name_error() {
        let rest = [0, 0, 0, 1, b'#', 0, 0];
        let result = decode_body(0x10, &body(b"MQTT", 4, 0x06, &rest), Protocol::V3_1_1);
        assert_eq!(
            result,
            Err(DecodeError::TopicName(TopicError::WildcardInName))
        );
    }

    #[test]
    fn connect_property_not_allowed_is_a_protocol_error() {
        // Topic alias (0x23) belongs to PUBLISH.
        let rest = [0x03, 0x23, 0x00, 0x01, 0x00, 0x00];
        let result = decode_body(0x10, &body(b"MQTT", 5, 0x02, &rest), Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn connect_with_missing_payload_is_malformed() {
        let result = decode_body(0x10, &body(b"MQTT", 4, 0x02, &[]), Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn connect_with_left_over_bytes_is_malformed() {
        let result = decode_body(
            0x10,
            &body(b"MQTT", 4, 0x02, &[0, 0, 0xFF]),
            Protocol::V3_1_1,
        );
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn v3_1_1_encode_leaves_properties_out() {
        let mut connect = connect(Protocol::V3_1_1);
        let plain = encode_vec(&Packet::Connect(connect.clone()), Protocol::V3_1_1);
        connect.properties.receive_maximum = Some(5);
        assert_eq!(
            encode_vec(&Packet::Connect(connect), Protocol::V3_1_1),
            plain
        );
    }
}
