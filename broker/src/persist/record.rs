//! The records of a shard's state log and their encoding.
//!
//! Every record is *redo-safe*: applying it to a state that already reflects it changes
//! nothing. A snapshot is taken at one instant while records appended just before it may
//! still be written after it, into the next segment; replaying those over the snapshot must
//! not duplicate anything (see [`crate::persist::state`]).
//!
//! How the values inside records are encoded is in [`super::values`].
//!
//! # Compatibility
//! The tag of a record is its version: a record whose layout changes gets a new tag, and the
//! old tag stays readable, so a state directory written by an earlier build recovers with a
//! later one. (An earlier build refuses the newer tags: it reads them as a corrupt tail.)
//! Tags so far: 1 `Session` (before it carried `offline_since`; read only), 2 to 10 as below,
//! 11 `Session` with `offline_since` (read only), 12 `Offline`, 13 `Will`, 14 `WillRemove`,
//! 15 `Session` with `offline_since` and `stamp`. A session record of tags 1 and 11 reads as
//! stamp 0: older than any copy this build stamps.

use bytes::Bytes;
use protocol::{ByteStr, Will};

use super::{
    codec::{Reader, Writer},
    values::{
        get_delivery, get_message, get_subscriptions, get_will, len32, put_delivery, put_message,
        put_subscriptions, put_will,
    },
};
use crate::{message::Delivery, message::Message, session::SessionSubscription};

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
    /// The client of a persistent session left (its connection ended, not by the broker's
    /// own stop): its expiry counts from then, across a restart too.
    Offline {
        /// Client id.
        client_id: ByteStr,
        /// When, wall-clock milliseconds since the Unix epoch.
        since_ms: u64,
    },
    /// A Will waits for its Will Delay Interval (MQTT 5.0) on this shard; replaces any
    /// earlier one of the same client.
    Will {
        /// Client id: the session it belongs to.
        client_id: ByteStr,
        /// When it is due, wall-clock milliseconds since the Unix epoch.
        due_ms: u64,
        /// The Will (its delay interval dropped: `due_ms` replaces it); boxed, as its
        /// properties would make every record as large.
        will: Box<Will>,
    },
    /// The client's pending Will was published or cancelled (the client came back).
    WillRemove {
        /// Client id.
        client_id: ByteStr,
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
    /// When its client left, wall-clock milliseconds since the Unix epoch; `None` while
    /// connected, when the broker's own stop ended its connection, or when written by a build
    /// before this was recorded (its expiry then counts from the restart).
    pub offline_since: Option<u64>,
    /// [`crate::session::SessionState::stamp`]: which of two copies a crash during a takeover
    /// left is the newer; 0 when written by a build before this was recorded.
    pub stamp: u64,
}

/// `Session` as written before `offline_since` (read only).
const SESSION_V1: u8 = 1;
/// `Session` as written before `stamp` (read only).
const SESSION_V2: u8 = 11;
const SUBSCRIPTIONS: u8 = 2;
const SESSION_REMOVE: u8 = 3;
const ENQUEUE: u8 = 4;
const SENT: u8 = 5;
const RELEASED: u8 = 6;
const DONE: u8 = 7;
const INBOUND_QOS2: u8 = 8;
const RETAIN: u8 = 9;
const SNAPSHOT_HEADER: u8 = 10;
const OFFLINE: u8 = 12;
const WILL: u8 = 13;
const WILL_REMOVE: u8 = 14;
const SESSION: u8 = 15;

/// The layouts a `Session` record has had, oldest first; each adds fields at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SessionLayout {
    /// Tag 1: no `offline_since`, no `stamp`.
    V1,
    /// Tag 11: `offline_since`, no `stamp`.
    V2,
    /// Tag 15: `offline_since`, then `stamp`.
    Stamped,
}

impl Record {
    /// Appends the body of this record to `w`.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Record::Session(s) => {
                w.u8(SESSION);
                put_session(w, s);
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
            Record::Offline {
                client_id,
                since_ms,
            } => {
                w.u8(OFFLINE);
                w.str(client_id);
                w.u64(*since_ms);
            }
            Record::Will {
                client_id,
                due_ms,
                will,
            } => {
                w.u8(WILL);
                w.str(client_id);
                w.u64(*due_ms);
                put_will(w, will);
            }
            Record::WillRemove { client_id } => {
                w.u8(WILL_REMOVE);
                w.str(client_id);
            }
        }
    }

    /// Decodes a record body; `None` if it is not one (which replay treats as corruption).
    pub fn decode(body: Bytes) -> Option<Record> {
        let mut r = Reader::new(body);
        let record = match r.u8()? {
            SESSION_V1 => Record::Session(get_session(&mut r, SessionLayout::V1)?),
            SESSION_V2 => Record::Session(get_session(&mut r, SessionLayout::V2)?),
            SESSION => Record::Session(get_session(&mut r, SessionLayout::Stamped)?),
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
            OFFLINE => Record::Offline {
                client_id: r.str()?,
                since_ms: r.u64()?,
            },
            WILL => Record::Will {
                client_id: r.str()?,
                due_ms: r.u64()?,
                will: Box::new(get_will(&mut r)?),
            },
            WILL_REMOVE => Record::WillRemove {
                client_id: r.str()?,
            },
            _ => return None,
        };
        r.is_done().then_some(record)
    }
}

/// The body of a `Session` record after its tag: the `SESSION_V1` layout, then
/// `offline_since` (0: none), then `stamp`.
fn put_session(w: &mut Writer, s: &SessionImage) {
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
    w.u64(s.offline_since.unwrap_or(0));
    w.u64(s.stamp);
}

/// Reads what [`put_session`] wrote, or an older `layout` of it (its missing fields unknown).
fn get_session(r: &mut Reader, layout: SessionLayout) -> Option<SessionImage> {
    let client_id = r.str()?;
    let expiry = r.u32()?;
    let subscriptions = get_subscriptions(r)?;
    let n = r.u32()?;
    let mut inflight = Vec::new();
    for _ in 0..n {
        let pkid = r.u16()?;
        let released = r.u8()? != 0;
        inflight.push((pkid, released, get_delivery(r)?));
    }
    let n = r.u32()?;
    let mut queue = Vec::new();
    for _ in 0..n {
        queue.push(get_delivery(r)?);
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
    let offline_since = if layout >= SessionLayout::V2 {
        Some(r.u64()?).filter(|ms| *ms != 0)
    } else {
        None
    };
    let stamp = if layout >= SessionLayout::Stamped {
        r.u64()?
    } else {
        0
    };
    Some(SessionImage {
        client_id,
        expiry,
        subscriptions,
        inflight,
        queue,
        inbound_qos2,
        next_seq,
        username,
        offline_since,
        stamp,
    })
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Arc,
        time::{Duration, Instant},
    };

    use protocol::{Properties, QoS, RetainHandling, SubscriptionOptions};

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

    fn subscription() -> SessionSubscription {
        SessionSubscription {
            options: SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
            id: Some(5),
        }
    }

    fn session_image(offline_since: Option<u64>) -> SessionImage {
        SessionImage {
            client_id: "c".into(),
            expiry: 300,
            subscriptions: vec![("fleet/+/status".into(), subscription())],
            inflight: vec![(17, true, delivery())],
            queue: vec![delivery()],
            inbound_qos2: vec![4, 5],
            next_seq: 43,
            username: Some("driver".into()),
            offline_since,
            stamp: 1_700_000_000_456,
        }
    }

    #[test]
    fn a_session_image_reads_back_whole() {
        let sub = subscription();
        let image = session_image(Some(1_700_000_000_123));
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
        assert_eq!(back.offline_since, Some(1_700_000_000_123));
        assert_eq!(back.stamp, 1_700_000_000_456);
        let Record::Session(online) = roundtrip(&Record::Session(session_image(None))) else {
            panic!("not a session");
        };
        assert_eq!(online.offline_since, None);
    }

    /// A session record as an older build wrote it: today's layout under `tag`, without its
    /// last `cut` bytes (the fields added since), read back.
    fn older_layout(tag: u8, cut: usize) -> SessionImage {
        let mut w = Writer::default();
        Record::Session(session_image(Some(99))).encode(&mut w);
        let mut old = w.buf[..w.buf.len() - cut].to_vec();
        old[0] = tag;
        let Some(Record::Session(back)) = Record::decode(Bytes::from(old)) else {
            panic!("the session layout of tag {tag} is refused");
        };
        back
    }

    /// Regression guard for state directories written before sessions carried
    /// `offline_since`: their tag-1 session records must still be read, as sessions whose
    /// client's departure is unknown.
    #[test]
    fn a_session_record_of_the_previous_layout_still_reads() {
        // The first layout is this one without the trailing `offline_since` and `stamp`,
        // under tag 1.
        let back = older_layout(SESSION_V1, 16);
        assert_eq!(back.client_id.as_ref(), "c");
        assert_eq!(back.queue.len(), 1);
        assert_eq!(back.username.as_deref(), Some("driver"));
        assert_eq!(back.offline_since, None);
        assert_eq!(back.stamp, 0);
    }

    /// Regression guard for state directories written before sessions carried a takeover
    /// `stamp`: their tag-11 session records must still be read, as the oldest copies (stamp 0)
    /// with everything else they held.
    #[test]
    fn a_session_record_without_a_stamp_still_reads_as_the_oldest_copy() {
        // The layout before `stamp` is this one without its trailing 8 bytes, under tag 11.
        let back = older_layout(SESSION_V2, 8);
        assert_eq!(back.client_id.as_ref(), "c");
        assert_eq!(back.queue.len(), 1);
        assert_eq!(back.inflight.len(), 1);
        assert_eq!(back.offline_since, Some(99));
        assert_eq!(back.stamp, 0);
        // A stamped body under the old tag has 8 bytes too many: refused, not misread.
        let mut w = Writer::default();
        Record::Session(session_image(Some(99))).encode(&mut w);
        assert_eq!(w.buf[0], SESSION);
        let mut long = w.buf;
        long[0] = SESSION_V2;
        assert!(Record::decode(Bytes::from(long)).is_none());
    }

    #[test]
    fn a_pending_will_reads_back_whole_without_its_delay() {
        let will = Will {
            topic: "fleet/7/status".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties {
                will_delay_interval: Some(30),
                message_expiry_interval: Some(600),
                content_type: Some("text/plain".into()),
                user_properties: vec![("depot".into(), "north".into())],
                ..Default::default()
            },
        };
        let record = Record::Will {
            client_id: "truck-7".into(),
            due_ms: 1_700_000_030_000,
            will: Box::new(will),
        };
        let Record::Will {
            client_id,
            due_ms,
            will,
        } = roundtrip(&record)
        else {
            panic!("not a will");
        };
        assert_eq!(client_id.as_ref(), "truck-7");
        assert_eq!(due_ms, 1_700_000_030_000);
        assert_eq!(will.topic.as_ref(), "fleet/7/status");
        assert_eq!(&will.payload[..], b"offline");
        assert_eq!(will.qos, QoS::AtLeastOnce);
        assert!(will.retain);
        assert_eq!(will.properties.will_delay_interval, None);
        assert_eq!(will.properties.message_expiry_interval, Some(600));
        assert_eq!(will.properties.content_type.as_deref(), Some("text/plain"));
        assert_eq!(will.properties.user_properties.len(), 1);
        assert!(matches!(
            roundtrip(&Record::WillRemove { client_id: "truck-7".into() }),
            Record::WillRemove { client_id } if client_id.as_ref() == "truck-7"
        ));
        assert!(matches!(
            roundtrip(&Record::Offline {
                client_id: "c".into(),
                since_ms: 5
            }),
            Record::Offline { since_ms: 5, .. }
        ));
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
