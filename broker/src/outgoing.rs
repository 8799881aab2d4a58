//! What waits in a connection's outbox: the packets a broker sends all the time (deliveries,
//! acknowledgements, pings) in a compact form, anything else boxed.
//!
//! A `protocol::Packet` is as large as its largest variant (CONNECT, about 1 KiB), and a
//! PUBLISH or an acknowledgement carries a whole `Properties` (about 450 bytes) inline. Queued
//! as a `Packet`, every delivery was copied into the outbox and out of it at that size, and a
//! slow subscriber's outbox held that much per waiting message. An [`Outgoing`] is 80 bytes.

use bytes::Bytes;
use protocol::{ByteStr, Packet, Properties, Protocol, PubAck, Publish, QoS, ReasonCode};

/// One packet waiting for a connection's writer.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A message delivered to the client.
    Publish(OutPublish),
    /// PUBACK, PUBREC, PUBREL or PUBCOMP without properties.
    Ack {
        /// Which one.
        kind: AckKind,
        /// The packet identifier acknowledged.
        pkid: u16,
        /// The reason code (5.0; 3.1.1 has none on the wire).
        reason: ReasonCode,
    },
    /// PINGRESP.
    PingResp,
    /// Any other packet (CONNACK, SUBACK, UNSUBACK, DISCONNECT, acknowledgements with a reason
    /// string): rare, so boxed.
    Other(Box<Packet>),
}

/// The four acknowledgements of the QoS 1 and 2 flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // named after the MQTT packets they stand for
pub enum AckKind {
    /// PUBACK (QoS 1).
    PubAck,
    /// PUBREC (QoS 2, first answer).
    PubRec,
    /// PUBREL (QoS 2, the sender's release).
    PubRel,
    /// PUBCOMP (QoS 2, the last answer).
    PubComp,
}

impl Outgoing {
    /// An acknowledgement without properties.
    pub fn ack(kind: AckKind, pkid: u16, reason: ReasonCode) -> Outgoing {
        Outgoing::Ack { kind, pkid, reason }
    }

    /// The packet as the protocol crate encodes it (a PUBLISH is encoded on its own, see
    /// the writer).
    pub fn into_packet(self) -> Packet {
        match self {
            Outgoing::Publish(publish) => Packet::Publish(publish.into_publish()),
            Outgoing::Ack { kind, pkid, reason } => {
                let ack = PubAck {
                    pkid,
                    reason,
                    properties: Properties::default(),
                };
                match kind {
                    AckKind::PubAck => Packet::PubAck(ack),
                    AckKind::PubRec => Packet::PubRec(ack),
                    AckKind::PubRel => Packet::PubRel(ack),
                    AckKind::PubComp => Packet::PubComp(ack),
                }
            }
            Outgoing::PingResp => Packet::PingResp,
            Outgoing::Other(packet) => *packet,
        }
    }
}

impl From<OutPublish> for Outgoing {
    fn from(publish: OutPublish) -> Outgoing {
        Outgoing::Publish(publish)
    }
}

impl From<Packet> for Outgoing {
    fn from(packet: Packet) -> Outgoing {
        let bare = |ack: &PubAck| {
            ack.properties.reason_string.is_none() && ack.properties.user_properties.is_empty()
        };
        match packet {
            Packet::Publish(publish) => Outgoing::Publish(OutPublish::from(publish)),
            Packet::PubAck(ack) if bare(&ack) => {
                Outgoing::ack(AckKind::PubAck, ack.pkid, ack.reason)
            }
            Packet::PubRec(ack) if bare(&ack) => {
                Outgoing::ack(AckKind::PubRec, ack.pkid, ack.reason)
            }
            Packet::PubRel(ack) if bare(&ack) => {
                Outgoing::ack(AckKind::PubRel, ack.pkid, ack.reason)
            }
            Packet::PubComp(ack) if bare(&ack) => {
                Outgoing::ack(AckKind::PubComp, ack.pkid, ack.reason)
            }
            Packet::PingResp => Outgoing::PingResp,
            other => Outgoing::Other(Box::new(other)),
        }
    }
}

/// A PUBLISH to a client, its properties boxed and absent when there are none (most
/// telemetry).
#[derive(Debug, Clone, PartialEq)]
pub struct OutPublish {
    /// DUP flag.
    pub dup: bool,
    /// QoS it is delivered with.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Packet identifier; 0 at QoS 0.
    pub pkid: u16,
    /// Topic name (the writer may replace it by a topic alias).
    pub topic: ByteStr,
    /// Payload, shared with the message.
    pub payload: Bytes,
    /// 5.0 properties, if any.
    pub properties: Option<Box<Properties>>,
}

impl OutPublish {
    /// Bytes it takes on the wire, to honour a client's Maximum Packet Size. It builds the
    /// protocol's packet to count them: only for clients that set a maximum.
    pub fn encoded_len(&self, version: Protocol) -> usize {
        protocol::encoded_len(&Packet::Publish(self.clone().into_publish()), version)
    }

    /// The protocol crate's PUBLISH, for encoding.
    pub fn into_publish(self) -> Publish {
        Publish {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic,
            pkid: self.pkid,
            payload: self.payload,
            properties: self.properties.map(|p| *p).unwrap_or_default(),
        }
    }
}

impl From<Publish> for OutPublish {
    fn from(publish: Publish) -> OutPublish {
        let properties =
            (publish.properties != Properties::default()).then(|| Box::new(publish.properties));
        OutPublish {
            dup: publish.dup,
            qos: publish.qos,
            retain: publish.retain,
            pkid: publish.pkid,
            topic: publish.topic,
            payload: publish.payload,
            properties,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The point of the type: a queued packet is small.
    #[test]
    fn an_outgoing_packet_is_compact() {
        let size = std::mem::size_of::<Outgoing>();
        assert!(size <= 96, "Outgoing is {size} bytes");
        assert!(std::mem::size_of::<Packet>() > 4 * size);
    }

    /// Packets go in and come out the same, whichever form they are queued in.
    #[test]
    fn packets_round_trip() {
        let mut with_properties = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "fleet/v1/gps".into(),
            pkid: 7,
            payload: Bytes::from_static(b"{}"),
            properties: Properties::default(),
        };
        let bare = with_properties.clone();
        with_properties.properties.content_type = Some("application/json".into());
        let reasoned = PubAck {
            pkid: 3,
            reason: ReasonCode::NOT_AUTHORIZED,
            properties: Properties {
                reason_string: Some("denied".into()),
                ..Properties::default()
            },
        };
        let plain = PubAck {
            pkid: 4,
            reason: ReasonCode::SUCCESS,
            properties: Properties::default(),
        };
        let packets = [
            Packet::Publish(bare),
            Packet::Publish(with_properties),
            Packet::PubAck(reasoned),
            Packet::PubRec(plain.clone()),
            Packet::PubRel(plain.clone()),
            Packet::PubComp(plain),
            Packet::PingResp,
            Packet::PingReq,
        ];
        for packet in packets {
            let queued = Outgoing::from(packet.clone());
            assert_eq!(queued.into_packet(), packet);
        }
        let bare_publish = Outgoing::from(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t".into(),
            pkid: 0,
            payload: Bytes::new(),
            properties: Properties::default(),
        }));
        assert!(
            matches!(&bare_publish, Outgoing::Publish(p) if p.properties.is_none()),
            "no properties, no box"
        );
        assert!(matches!(
            Outgoing::from(Packet::PubAck(PubAck {
                pkid: 1,
                reason: ReasonCode::SUCCESS,
                properties: Properties::default(),
            })),
            Outgoing::Ack {
                kind: AckKind::PubAck,
                pkid: 1,
                ..
            }
        ));
    }
}
