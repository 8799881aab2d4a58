//! `fleetmq broker` killed with SIGKILL keeps what it acknowledged: a persistent session comes
//! back with session present and every QoS 1 message it was owed, in order, and retained
//! messages are still there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::Stdio,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use protocol::{
    decode, encode, ByteStr, Connect, Packet, Properties, Protocol, PubAck, QoS, ReasonCode,
    Subscribe, Subscription, SubscriptionOptions,
};
use support::{connect_when_listening, fleetmq, free_port, Killed, MqttClient};

fn start_broker(dir: &Path, port: u16) -> Killed {
    Killed(
        fleetmq()
            .current_dir(dir)
            .args([
                "broker",
                "--mqtt",
                &format!("127.0.0.1:{port}"),
                "--http",
                "off",
                "--shards",
                "2",
                "--no-archive",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A 3.1.1 client with a persistent session (clean session 0).
struct Persistent {
    stream: TcpStream,
    buf: BytesMut,
}

impl Persistent {
    fn connect(port: u16, id: &str) -> (Persistent, bool) {
        let stream = connect_when_listening(port);
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut c = Persistent {
            stream,
            buf: BytesMut::new(),
        };
        c.send(&Packet::Connect(Connect {
            protocol: Protocol::V3_1_1,
            clean_start: false,
            keep_alive: 60,
            client_id: ByteStr::from(id),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        }));
        match c.next() {
            Some(Packet::ConnAck(ack)) => (c, ack.session_present),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        encode(packet, Protocol::V3_1_1, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    fn next(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = decode(&mut self.buf, Protocol::V3_1_1, u32::MAX).unwrap() {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

#[test]
fn acknowledged_messages_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = start_broker(dir.path(), port);
    let (mut sub, present) = Persistent::connect(port, "reefer-3");
    assert!(!present);
    sub.send(&Packet::Subscribe(Subscribe {
        pkid: 1,
        subscriptions: vec![Subscription {
            filter: ByteStr::from("cmd/reefer-3/#"),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        }],
        properties: Properties::default(),
    }));
    assert!(matches!(sub.next(), Some(Packet::SubAck(_))));
    drop(sub);
    std::thread::sleep(Duration::from_millis(100));

    let mut publisher = MqttClient::connect(port, Protocol::V3_1_1, "ops");
    for n in 0..200 {
        publisher.publish_acked("cmd/reefer-3/setpoint", format!("{n}"));
    }
    publisher.send(&Packet::Publish(protocol::Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: ByteStr::from("fleet/3/status"),
        pkid: 999,
        payload: Bytes::from_static(b"cooling"),
        properties: Properties::default(),
    }));
    assert!(matches!(publisher.next(), Some(Packet::PubAck(a)) if a.pkid == 999));
    // Every PUBACK is in: kill -9, no chance to flush anything.
    broker.0.kill().unwrap();
    broker.0.wait().unwrap();

    let port = free_port();
    let _broker = start_broker(dir.path(), port);
    let (mut sub, present) = Persistent::connect(port, "reefer-3");
    assert!(present, "session present after SIGKILL");
    for n in 0..200 {
        match sub.next() {
            Some(Packet::Publish(p)) => {
                assert_eq!(&p.payload[..], format!("{n}").as_bytes());
                sub.send(&Packet::PubAck(PubAck {
                    pkid: p.pkid,
                    reason: ReasonCode::SUCCESS,
                    properties: Properties::default(),
                }));
            }
            other => panic!("message {n}: expected PUBLISH, got {other:?}"),
        }
    }
    let mut watcher = MqttClient::connect(port, Protocol::V3_1_1, "dashboard");
    watcher.send(&Packet::Subscribe(Subscribe {
        pkid: 1,
        subscriptions: vec![Subscription {
            filter: ByteStr::from("fleet/+/status"),
            options: SubscriptionOptions::default(),
        }],
        properties: Properties::default(),
    }));
    assert!(matches!(watcher.next(), Some(Packet::SubAck(_))));
    match watcher.next() {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"cooling"),
        other => panic!("expected the retained status, got {other:?}"),
    }
}
