//! Encodings of the values records carry: subscriptions, deliveries, messages, Wills, and
//! wall-clock times.
//!
//! Messages and Wills are stored as MQTT 5.0 PUBLISH packets (the protocol crate's codec
//! already covers every property they carry). Times that must mean the same after a restart
//! (a message's expiry, a Will's due time, when a client left) are wall-clock milliseconds
//! since the Unix epoch: an `Instant` means nothing to the next process.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use protocol::{
    ByteStr, Packet, Protocol, Publish, QoS, RetainHandling, SubscriptionOptions, Will,
};

use super::codec::{Reader, Writer};
use crate::clock::unix_ms_now;
use crate::{
    message::{Delivery, Message},
    session::SessionSubscription,
};

pub(super) fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub(super) fn put_subscriptions(w: &mut Writer, subs: &[(ByteStr, SessionSubscription)]) {
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

pub(super) fn get_subscriptions(r: &mut Reader) -> Option<Vec<(ByteStr, SessionSubscription)>> {
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

pub(super) fn put_delivery(w: &mut Writer, d: &Delivery) {
    w.u64(d.seq);
    w.u8(d.qos as u8);
    w.u8(u8::from(d.retain));
    w.u32(len32(d.subscription_ids.len()));
    for id in &d.subscription_ids {
        w.u32(*id);
    }
    put_message(w, &d.message);
}

pub(super) fn get_delivery(r: &mut Reader) -> Option<Delivery> {
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

pub(super) fn put_message(w: &mut Writer, m: &Message) {
    w.u64(m.expires_at.map_or(0, to_unix_ms));
    match &m.publisher {
        Some(p) => {
            w.u8(1);
            w.str(p);
        }
        None => w.u8(0),
    }
    put_publish(
        w,
        Publish {
            dup: false,
            qos: m.qos,
            retain: m.retain,
            topic: m.topic.clone(),
            pkid: 0,
            payload: m.payload.clone(),
            properties: m.properties.as_deref().cloned().unwrap_or_default(),
        },
    );
}

pub(super) fn get_message(r: &mut Reader) -> Option<Message> {
    let expires_ms = r.u64()?;
    let publisher = match r.u8()? {
        0 => None,
        _ => Some(r.str()?),
    };
    let p = get_publish(r)?;
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

/// A Will as the PUBLISH it becomes. Its Will Delay Interval is not stored: the record's due
/// time replaces it (and it is no PUBLISH property); its Message Expiry Interval is, since it
/// counts from when the Will is published.
pub(super) fn put_will(w: &mut Writer, will: &Will) {
    let mut properties = will.properties.clone();
    properties.will_delay_interval = None;
    put_publish(
        w,
        Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic.clone(),
            pkid: 0,
            payload: will.payload.clone(),
            properties,
        },
    );
}

pub(super) fn get_will(r: &mut Reader) -> Option<Will> {
    let p = get_publish(r)?;
    Some(Will {
        topic: p.topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties: p.properties,
    })
}

fn put_publish(w: &mut Writer, mut publish: Publish) {
    // QoS 1/2 packets need an identifier to encode; it means nothing here.
    publish.pkid = if publish.qos == QoS::AtMostOnce { 0 } else { 1 };
    let mut buf = BytesMut::new();
    // A message the broker accepted always encodes; an error leaves `buf` empty, which
    // replay refuses as corrupt rather than misreading.
    let _ = protocol::encode(&Packet::Publish(publish), Protocol::V5, &mut buf);
    w.bytes(&buf);
}

fn get_publish(r: &mut Reader) -> Option<Publish> {
    let mut buf = BytesMut::from(&r.bytes()?[..]);
    match protocol::decode(&mut buf, Protocol::V5, u32::MAX) {
        Ok(Some(Packet::Publish(p))) => Some(p),
        _ => None,
    }
}

/// The wall-clock time of an instant (the process's clock pairs them now).
pub(crate) fn to_unix_ms(at: Instant) -> u64 {
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
