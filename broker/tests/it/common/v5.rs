//! MQTT 5.0 client steps over a raw socket, with the acknowledgements checked: connect with or
//! without a lasting session, subscribe, publish through the whole QoS exchange, and
//! read what a subscriber is owed.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use protocol::{
    ByteStr, Packet, Properties, Protocol, PubAck, Publish, QoS, ReasonCode, Subscribe,
    Subscription, SubscriptionOptions, Will,
};

use super::raw::Raw;

pub const WAIT: Duration = Duration::from_secs(5);

/// A 5.0 connection with a session that outlives it (or not); returns it and session present.
pub fn connect(port: u16, id: &str, persistent: bool) -> (Raw, bool) {
    let expiry = if persistent { 3600 } else { 0 };
    connect_on(Raw::open(port, Protocol::V5), id, expiry, None)
}

/// Sends a 5.0 CONNECT on an open socket: a session lasting `expiry` seconds (0: clean start,
/// no lasting session) and an optional Will; returns the connection and session present.
pub fn connect_on(mut raw: Raw, id: &str, expiry: u32, will: Option<Will>) -> (Raw, bool) {
    let mut connect = Raw::connect_packet(Protocol::V5, id, 60, will);
    if let Packet::Connect(c) = &mut connect {
        c.clean_start = expiry == 0;
        c.properties.session_expiry_interval = (expiry != 0).then_some(expiry);
    }
    raw.send(&connect);
    match raw.recv(WAIT) {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.reason, ReasonCode::SUCCESS);
            (raw, ack.session_present)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

pub fn subscribe(raw: &mut Raw, filter: &str, qos: QoS) {
    raw.send(&Packet::Subscribe(Subscribe {
        pkid: 1,
        subscriptions: vec![Subscription {
            filter: ByteStr::from(filter),
            options: SubscriptionOptions {
                qos,
                ..Default::default()
            },
        }],
        properties: Properties::default(),
    }));
    match raw.recv(WAIT) {
        Some(Packet::SubAck(_)) => {}
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

pub fn ack(pkid: u16) -> PubAck {
    PubAck {
        pkid,
        reason: ReasonCode::SUCCESS,
        properties: Properties::default(),
    }
}

/// Publishes and completes the QoS 1/2 exchange.
pub fn publish(raw: &mut Raw, pkid: u16, topic: &str, payload: &str, qos: QoS, retain: bool) {
    publish_with(raw, pkid, topic, payload, qos, retain, None);
}

pub fn publish_with(
    raw: &mut Raw,
    pkid: u16,
    topic: &str,
    payload: &str,
    qos: QoS,
    retain: bool,
    expiry: Option<u32>,
) {
    raw.send(&Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: ByteStr::from(topic),
        pkid: if qos == QoS::AtMostOnce { 0 } else { pkid },
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        properties: Properties {
            message_expiry_interval: expiry,
            ..Default::default()
        },
    }));
    match qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce => match raw.recv(WAIT) {
            Some(Packet::PubAck(a)) => assert_eq!(a.pkid, pkid),
            other => panic!("expected PUBACK, got {other:?}"),
        },
        QoS::ExactlyOnce => {
            match raw.recv(WAIT) {
                Some(Packet::PubRec(a)) => assert_eq!(a.pkid, pkid),
                other => panic!("expected PUBREC, got {other:?}"),
            }
            raw.send(&Packet::PubRel(ack(pkid)));
            match raw.recv(WAIT) {
                Some(Packet::PubComp(a)) => assert_eq!(a.pkid, pkid),
                other => panic!("expected PUBCOMP, got {other:?}"),
            }
        }
    }
}

/// Publishes `count` messages "m0", "m1", ... to `topic` at `qos` (packet ids from 1), each
/// exchange completed.
pub fn publish_numbered(raw: &mut Raw, topic: &str, count: u16, qos: QoS) {
    for n in 0..count {
        publish(raw, n + 1, topic, &format!("m{n}"), qos, false);
    }
}

/// Leaves a lasting session for `id` subscribed to `filter` at `qos`, its client gone.
pub fn subscribed_offline(port: u16, id: &str, filter: &str, qos: QoS) {
    let (mut sub, _) = connect(port, id, true);
    subscribe(&mut sub, filter, qos);
    disconnect(sub);
}

/// The payload of the message [`until_marker`] publishes last.
pub const MARKER: &str = "marker: whatever was owed came before this";

/// Everything `sub` is owed when it connects or subscribes: what it receives before a marker
/// that a new client publishes on `topic` (which `sub` must match), acknowledging none of it.
///
/// A resumed session's queue goes out with its CONNACK, retained messages with the SUBACK, so
/// the marker comes after them: no waiting for a quiet period, and nothing late is missed. For
/// messages published live, use [`until_marker_via`] with their publisher.
pub fn until_marker(port: u16, sub: &mut Raw, topic: &str) -> Vec<Publish> {
    let (mut marker, _) = connect(port, "test-marker", false);
    let got = until_marker_via(&mut marker, sub, topic);
    disconnect(marker);
    got
}

/// Everything `sub` receives before a marker that `publisher` publishes on `topic` (which `sub`
/// must match), acknowledging only markers: a publisher's messages reach each subscriber in
/// the order it sent them, so what precedes the marker is everything it published before.
///
/// Each marker is told apart by a number of its own; markers of earlier calls that reach `sub`
/// (queued for it while it was away) are acknowledged and left out.
pub fn until_marker_via(publisher: &mut Raw, sub: &mut Raw, topic: &str) -> Vec<Publish> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mine = format!(
        "{MARKER} #{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    publish(publisher, 65535, topic, &mine, QoS::AtLeastOnce, false);
    let mut out = Vec::new();
    loop {
        match sub.recv(WAIT) {
            Some(Packet::Publish(p)) if p.payload.starts_with(MARKER.as_bytes()) => {
                // Acknowledged, so that it is not owed again when `sub` comes back.
                if p.qos != QoS::AtMostOnce {
                    sub.send(&Packet::PubAck(ack(p.pkid)));
                }
                if p.payload.as_ref() == mine.as_bytes() {
                    return out;
                }
            }
            Some(Packet::Publish(p)) => out.push(p),
            Some(_) => {}
            None => panic!("the broker closed the connection before the marker; got {out:?}"),
        }
    }
}

pub fn text(p: &Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

/// Sends DISCONNECT and waits until the broker closes the socket: it does so once it has
/// ended or parked the session, so the test's next step sees the client gone.
pub fn disconnect(mut raw: Raw) {
    raw.send(&Packet::Disconnect(protocol::Disconnect {
        reason: ReasonCode::SUCCESS,
        properties: Properties::default(),
    }));
    raw.until_closed(WAIT);
}
