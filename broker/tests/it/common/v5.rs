//! MQTT 5.0 client steps over a raw socket, with the acknowledgements checked: connect with or
//! without a lasting session, subscribe, publish through the whole QoS exchange, drain.

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

/// Receives PUBLISH packets until `quiet` passes without one (acknowledging none).
pub fn drain(raw: &mut Raw, quiet: Duration) -> Vec<Publish> {
    let mut out = Vec::new();
    loop {
        let deadline = std::time::Instant::now() + quiet;
        let mut got = None;
        while std::time::Instant::now() < deadline {
            if let Some(Packet::Publish(p)) = raw.recv_within(Duration::from_millis(50)) {
                got = Some(p);
                break;
            }
        }
        match got {
            Some(p) => out.push(p),
            None => return out,
        }
    }
}

pub fn text(p: &Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

pub fn disconnect(mut raw: Raw) {
    raw.send(&Packet::Disconnect(protocol::Disconnect {
        reason: ReasonCode::SUCCESS,
        properties: Properties::default(),
    }));
    std::thread::sleep(Duration::from_millis(50));
}
