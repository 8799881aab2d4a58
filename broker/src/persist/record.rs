//! The records of a shard's state log and their encoding.
//!
//! Every record is *redo-safe*: applying it to a state that already reflects it changes
//! nothing. A snapshot is taken at one instant while records appended just before it may
//! still be written after it, into the next segment; replaying those over the snapshot must
//! not duplicate anything (see [`crate::persist::state`]).
//!
//! Messages are stored as MQTT 5.0 PUBLISH packets (the protocol crate's codec already covers
//! every property a message carries), with the expiry as wall-clock milliseconds since the
//! instant a message expires at means nothing after a restart.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::{Bytes, BytesMut};
use protocol::{ByteStr, Packet, Protocol, Publish, QoS, RetainHandling, SubscriptionOptions};

use super::codec::{Reader, Writer};
use crate::{
    message::{Delivery, Message},
    session::SessionSubscription,
};

/// One change to a shard's persistent state.
#[derive(Debug, Clone)]
pub enum Record {
    /// A whole session, as it is now (on connect, on arrival from another shard, in snapshots).
    Session(SessionImage),
    /// A session's subscriptions and expiry changed.
    Subscriptions {
        /// Client id.
        client_id: ByteStr,
        /// Session Expiry Interval, seconds.
        expiry: u32,
        /// Every subscription it has now.
        subscriptions: Vec<(ByteStr, SessionSubscription)>,
    },
    /// The session ended here (expired, clean start, or moved to another shard).
    SessionRemove {
        /// Client id.
        client_id: ByteStr,
    },
    /// A QoS 1/2 delivery joined a session's queue (its `seq` is set).
    Enqueue {
        /// Client id.
        client_id: ByteStr,
        /// The delivery.
        delivery: Delivery,
    },
    /// The queued delivery `seq` was sent with packet identifier `pkid`.
    Sent {
        /// Client id.
        client_id: ByteStr,
        /// The delivery's number.
        seq: u64,
        /// Packet identifier.
        pkid: u16,
    },
    /// QoS 2: PUBREC received for `seq`; PUBREL is what is owed now.
    Released {
        /// Client id.
        client_id: ByteStr,
        /// The delivery's number.
        seq: u64,
    },
    /// The delivery `seq` is finished (acknowledged, dropped by policy, or too large).
    Done {
        /// Client id.
        client_id: ByteStr,
        /// The delivery's number.
        seq: u64,
    },
    /// An inbound QoS 2 packet identifier was received (`add`) or released.
    InboundQos2 {
        /// Client id.
        client_id: ByteStr,
        /// Packet identifier.
        pkid: u16,
        /// Received (true) or released (false).
        add: bool,
    },
    /// A retained message was stored (`Some`) or deleted (`None`). Logged by shard 0 only,
    /// which applies every retained change in the order every replica does.
    Retain {
        /// Topic.
        topic: ByteStr,
        /// The message.
        message: Option<Message>,
    },
    /// First record of a snapshot: the log segment that continues it.
    SnapshotHeader {
        /// Segment number replay continues with.
        next_segment: u64,
    },
}

/// A whole session in a record.
#[derive(Debug, Clone)]
pub struct SessionImage {
    /// Client id.
    pub client_id: ByteStr,
    /// Session Expiry Interval, seconds.
    pub expiry: u32,
    /// Subscriptions.
    pub subscriptions: Vec<(ByteStr, SessionSubscription)>,
    /// In flight, in the order sent: packet identifier, PUBREC received, the delivery.
    pub inflight: Vec<(u16, bool, Delivery)>,
    /// Queued, in order.
    pub queue: Vec<Delivery>,
    /// Inbound QoS 2 identifiers not yet released.
    pub inbound_qos2: Vec<u16>,
    /// The next delivery number.
    pub next_seq: u64,
    /// The user it authenticated as (ACL rules apply to its offline deliveries after a
    /// restart too); `None` for anonymous.
    pub username: Option<ByteStr>,
}

const SESSION: u8 = 1;
const SUBSCRIPTIONS: u8 = 2;
const SESSION_REMOVE: u8 = 3;
const ENQUEUE: u8 = 4;
const SENT: u8 = 5;
const RELEASED: u8 = 6;
const DONE: u8 = 7;
const INBOUND_QOS2: u8 = 8;
const RETAIN: u8 = 9;
const SNAPSHOT_HEADER: u8 = 10;

impl Record {
    /// Appends the body of this record to `w`.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Record::Session(s) => {
                w.u8(SESSION);
                w.str(&s.client_id);
                w.u32(s.expiry);
                put_subscriptions(w, &s.subscriptions);
                w.u32(len32(s.inflight.len()));
                for (pkid, released, d) in &s.inflight {
                    w.u16(*pkid);
                    w.u8(u8::from(*released));
                    put_delivery(w, d);
                }
                w.u32(len32(s.queue.len()));
                for d in &s.queue {
                    put_delivery(w, d);
                }
                w.u32(len32(s.inbound_qos2.len()));
                for pkid in &s.inbound_qos2 {
                    w.u16(*pkid);
                }
                w.u64(s.next_seq);
                match &s.username {
                    Some(u) => {
                        w.u8(1);
                        w.str(u);
                    }
                    None => w.u8(0),
                }
            }
            Record::Subscriptions {
                client_id,
                expiry,
                subscriptions,
            } => {
                w.u8(SUBSCRIPTIONS);
                w.str(client_id);
                w.u32(*expiry);
                put_subscriptions(w, subscriptions);
            }
            Record::SessionRemove { client_id } => {
                w.u8(SESSION_REMOVE);
                w.str(client_id);
            }
            Record::Enqueue {
                client_id,
                delivery,
            } => {
                w.u8(ENQUEUE);
                w.str(client_id);
                put_delivery(w, delivery);
            }
            Record::Sent {
                client_id,
                seq,
                pkid,
            } => {
                w.u8(SENT);
                w.str(client_id);
                w.u64(*seq);
                w.u16(*pkid);
            }
            Record::Released { client_id, seq } => {
                w.u8(RELEASED);
                w.str(client_id);
                w.u64(*seq);
            }
            Record::Done { client_id, seq } => {
                w.u8(DONE);
                w.str(client_id);
                w.u64(*seq);
            }
            Record::InboundQos2 {
                client_id,
                pkid,
                add,
            } => {
                w.u8(INBOUND_QOS2);
                w.str(client_id);
                w.u16(*pkid);
                w.u8(u8::from(*add));
            }
            Record::Retain { topic, message } => {
                w.u8(RETAIN);
                w.str(topic);
                match message {
                    Some(m) => {
                        w.u8(1);
                        put_message(w, m);
                    }
                    None => w.u8(0),
                }
            }
            Record::SnapshotHeader { next_segment } => {
                w.u8(SNAPSHOT_HEADER);
                w.u64(*next_segment);
            }
        }
    }

    /// Decodes a record body; `None` if it is not one (which replay treats as corruption).
    pub fn decode(body: Bytes) -> Option<Record> {
        let mut r = Reader::new(body);
        let record = match r.u8()? {
            SESSION => {
                let client_id = r.str()?;
                let expiry = r.u32()?;
                let subscriptions = get_subscriptions(&mut r)?;
                let n = r.u32()?;
                let mut inflight = Vec::new();
                for _ in 0..n {
                    let pkid = r.u16()?;
                    let released = r.u8()? != 0;
                    inflight.push((pkid, released, get_delivery(&mut r)?));
                }
                let n = r.u32()?;
                let mut queue = Vec::new();
                for _ in 0..n {
                    queue.push(get_delivery(&mut r)?);
                }
                let n = r.u32()?;
                let mut inbound_qos2 = Vec::new();
                for _ in 0..n {
                    inbound_qos2.push(r.u16()?);
                }
                let next_seq = r.u64()?;
                let username = match r.u8()? {
                    0 => None,
                    _ => Some(r.str()?),
                };
                Record::Session(SessionImage {
                    username,
                    client_id,
                    expiry,
                    subscriptions,
                    inflight,
                    queue,
                    inbound_qos2,
                    next_seq,
                })
            }
            SUBSCRIPTIONS => Record::Subscriptions {
                client_id: r.str()?,
                expiry: r.u32()?,
                subscriptions: get_subscriptions(&mut r)?,
            },
            SESSION_REMOVE => Record::SessionRemove {
                client_id: r.str()?,
            },
            ENQUEUE => Record::Enqueue {
                client_id: r.str()?,
                delivery: get_delivery(&mut r)?,
            },
            SENT => Record::Sent {
                client_id: r.str()?,
                seq: r.u64()?,
                pkid: r.u16()?,
            },
            RELEASED => Record::Released {
                client_id: r.str()?,
                seq: r.u64()?,
            },
            DONE => Record::Done {
                client_id: r.str()?,
                seq: r.u64()?,
            },
            INBOUND_QOS2 => Record::InboundQos2 {
                client_id: r.str()?,
                pkid: r.u16()?,
                add: r.u8()? != 0,
            },
            RETAIN => {
                let topic = r.str()?;
                let message = match r.u8()? {
                    0 => None,
                    _ => Some(get_message(&mut r)?),
                };
                Record::Retain { topic, message }
            }
            SNAPSHOT_HEADER => Record::SnapshotHeader {
                next_segment: r.u64()?,
            },
            _ => return None,
        };
        r.is_done().then_some(record)
    }
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_subscriptions(w: &mut Writer, subs: &[(ByteStr, SessionSubscription)]) {
    w.u32(len32(subs.len()));
    for (filter, sub) in subs {
        w.str(filter);
        let o = sub.options;
        let flags = (o.qos as u8)
            | (u8::from(o.no_local) << 2)
            | (u8::from(o.retain_as_published) << 3)
            | ((o.retain_handling as u8) << 4);
        w.u8(flags);
        w.u32(sub.id.unwrap_or(0));
    }
}

fn get_subscriptions(r: &mut Reader) -> Option<Vec<(ByteStr, SessionSubscription)>> {
    let n = r.u32()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let filter = r.str()?;
        let flags = r.u8()?;
        let id = r.u32()?;
        let retain_handling = match (flags >> 4) & 3 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return None,
        };
        let options = SubscriptionOptions {
            qos: QoS::from_u8(flags & 3)?,
            no_local: flags & 4 != 0,
            retain_as_published: flags & 8 != 0,
            retain_handling,
        };
        out.push((
            filter,
            SessionSubscription {
                options,
                id: (id != 0).then_some(id),
            },
        ));
    }
    Some(out)
}

fn put_delivery(w: &mut Writer, d: &Delivery) {
    w.u64(d.seq);
    w.u8(d.qos as u8);
    w.u8(u8::from(d.retain));
    w.u32(len32(d.subscription_ids.len()));
    for id in &d.subscription_ids {
        w.u32(*id);
    }
    put_message(w, &d.message);
}

fn get_delivery(r: &mut Reader) -> Option<Delivery> {
    let seq = r.u64()?;
    let qos = QoS::from_u8(r.u8()?)?;
    let retain = r.u8()? != 0;
    let n = r.u32()?;
    let mut subscription_ids = Vec::new();
    for _ in 0..n {
        subscription_ids.push(r.u32()?);
    }
    Some(Delivery {
        message: get_message(r)?,
        qos,
        retain,
        subscription_ids,
        seq,
    })
}

fn put_message(w: &mut Writer, m: &Message) {
    w.u64(m.expires_at.map_or(0, to_unix_ms));
    match &m.publisher {
        Some(p) => {
            w.u8(1);
            w.str(p);
        }
        None => w.u8(0),
    }
    let publish = Publish {
        dup: false,
        qos: m.qos,
        retain: m.retain,
        topic: m.topic.clone(),
        pkid: if m.qos == QoS::AtMostOnce { 0 } else { 1 },
        payload: m.payload.clone(),
        properties: m.properties.as_deref().cloned().unwrap_or_default(),
    };
    let mut buf = BytesMut::new();
    // A message the broker accepted always encodes; an error leaves `buf` empty, which
    // replay refuses as corrupt rather than misreading.
    let _ = protocol::encode(&Packet::Publish(publish), Protocol::V5, &mut buf);
    w.bytes(&buf);
}

fn get_message(r: &mut Reader) -> Option<Message> {
    let expires_ms = r.u64()?;
    let publisher = match r.u8()? {
        0 => None,
        _ => Some(r.str()?),
    };
    let mut buf = BytesMut::from(&r.bytes()?[..]);
    let Ok(Some(Packet::Publish(p))) = protocol::decode(&mut buf, Protocol::V5, u32::MAX) else {
        return None;
    };
    Some(Message {
        topic: p.topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties: (!p.properties.is_empty()).then(|| Arc::new(p.properties)),
        expires_at: (expires_ms != 0).then(|| from_unix_ms(expires_ms)),
        publisher,
    })
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The wall-clock time of an instant (the process's clock pairs them now).
fn to_unix_ms(at: Instant) -> u64 {
    let now = Instant::now();
    let base = unix_ms_now();
    if at >= now {
        base + at.duration_since(now).as_millis() as u64
    } else {
        base.saturating_sub(now.duration_since(at).as_millis() as u64)
    }
    .max(1)
}

/// The instant of a wall-clock time; one already past becomes now (so it is expired).
fn from_unix_ms(ms: u64) -> Instant {
    let now = Instant::now();
    let base = unix_ms_now();
    now + Duration::from_millis(ms.saturating_sub(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        let properties = protocol::Properties {
            content_type: Some("application/json".into()),
            ..Default::default()
        };
        Delivery {
            message: Message {
                topic: "fleet/7/status".into(),
                payload: Bytes::from_static(b"{\"ok\":true}"),
                qos: QoS::ExactlyOnce,
                retain: true,
                properties: Some(Arc::new(properties)),
                expires_at: Some(Instant::now() + Duration::from_secs(60)),
                publisher: Some("truck-7".into()),
            },
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![3, 9],
            seq: 42,
        }
    }

    fn roundtrip(record: &Record) -> Record {
        let mut w = Writer::default();
        record.encode(&mut w);
        Record::decode(Bytes::from(w.buf)).unwrap()
    }

    #[test]
    fn a_session_image_reads_back_whole() {
        let sub = SessionSubscription {
            options: SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
            id: Some(5),
        };
        let image = SessionImage {
            client_id: "c".into(),
            expiry: 300,
            subscriptions: vec![("fleet/+/status".into(), sub)],
            inflight: vec![(17, true, delivery())],
            queue: vec![delivery()],
            inbound_qos2: vec![4, 5],
            next_seq: 43,
            username: Some("driver".into()),
        };
        let Record::Session(back) = roundtrip(&Record::Session(image)) else {
            panic!("not a session");
        };
        assert_eq!(back.subscriptions, vec![("fleet/+/status".into(), sub)]);
        assert_eq!(back.inflight[0].0, 17);
        assert!(back.inflight[0].1);
        let d = &back.queue[0];
        assert_eq!(d.seq, 42);
        assert_eq!(d.subscription_ids, vec![3, 9]);
        assert_eq!(d.message.publisher.as_deref(), Some("truck-7"));
        assert_eq!(
            d.message
                .properties
                .as_ref()
                .and_then(|p| p.content_type.as_deref()),
            Some("application/json")
        );
        let left = d.message.expires_at.unwrap() - Instant::now();
        assert!(left > Duration::from_secs(58) && left <= Duration::from_secs(60));
        assert_eq!(back.inbound_qos2, vec![4, 5]);
        assert_eq!(back.next_seq, 43);
        assert_eq!(back.username.as_deref(), Some("driver"));
    }

    #[test]
    fn a_trailing_byte_or_unknown_tag_is_refused() {
        let mut w = Writer::default();
        Record::Done {
            client_id: "c".into(),
            seq: 1,
        }
        .encode(&mut w);
        w.u8(0);
        assert!(Record::decode(Bytes::from(w.buf)).is_none());
        assert!(Record::decode(Bytes::from_static(&[200])).is_none());
    }
}
