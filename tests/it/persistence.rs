//! `fleetmq broker` killed with SIGKILL keeps what it acknowledged: a persistent session comes
//! back with session present and every QoS 1 message it was owed, in order, and retained
//! messages are still there; a Will waiting for its delay is published when the delay runs
//! out after the restart, and no Will is made up for a client that was connected at the kill.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use protocol::{
    decode, encode, ByteStr, Connect, Packet, Properties, Protocol, PubAck, QoS, ReasonCode,
    Subscribe, Subscription, SubscriptionOptions, Will,
};
use support::{connect_when_listening, fleetmq, Killed, MqttClient};

fn start_broker(dir: &Path) -> (Killed, u16) {
    /// Numbers the brokers' logs: a test starts several in one directory.
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (broker, listening) = support::spawn_broker(
        fleetmq().current_dir(dir).args([
            "broker",
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "off",
            "--shards",
            "2",
            "--no-archive",
        ]),
        &dir.join(format!("broker-{n}.log")),
        false,
    );
    (broker, listening.port())
}

/// Prints the logs of every broker a test started in `dir` when the test fails: a failure
/// that shows up once in many runs must bring its own evidence.
struct LogsOnFailure<'a>(&'a Path);

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.0) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("broker-") {
                let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
                eprintln!("---- {name} ----\n{log}");
            }
        }
    }
}

/// A client with a persistent session: 3.1.1 (clean session 0) or 5.0 (an hour's expiry).
struct Persistent {
    stream: TcpStream,
    protocol: Protocol,
    buf: BytesMut,
}

impl Persistent {
    fn connect(port: u16, id: &str) -> (Persistent, bool) {
        Persistent::connect_with(port, id, Protocol::V3_1_1, None)
    }

    fn connect_with(
        port: u16,
        id: &str,
        protocol: Protocol,
        will: Option<Will>,
    ) -> (Persistent, bool) {
        let stream = connect_when_listening(port);
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut c = Persistent {
            stream,
            protocol,
            buf: BytesMut::new(),
        };
        let mut properties = Properties::default();
        if protocol == Protocol::V5 {
            properties.session_expiry_interval = Some(3600);
        }
        c.send(&Packet::Connect(Connect {
            protocol,
            clean_start: false,
            keep_alive: 60,
            client_id: ByteStr::from(id),
            will,
            username: None,
            password: None,
            properties,
        }));
        match c.next() {
            Some(Packet::ConnAck(ack)) => (c, ack.session_present),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        encode(packet, self.protocol, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    fn next(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = decode(&mut self.buf, self.protocol, u32::MAX).unwrap() {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Drops the connection without DISCONNECT (a lost network) and waits until the broker
    /// closes its side: by then it has handled the loss, Will included.
    fn vanish(mut self) {
        self.stream.shutdown(std::net::Shutdown::Write).unwrap();
        while self.next().is_some() {}
    }
}

/// Publishes a retained message at QoS 1 and waits for its PUBACK: under the default
/// `fsync = "always"` it comes once every shard's state log is durable up to it.
fn retain_acked(client: &mut MqttClient, topic: &str, payload: &'static [u8]) {
    client.send(&Packet::Publish(protocol::Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: ByteStr::from(topic),
        pkid: 999,
        payload: Bytes::from_static(payload),
        properties: Properties::default(),
    }));
    assert!(matches!(client.next(), Some(Packet::PubAck(a)) if a.pkid == 999));
}

/// SIGKILL (no chance to flush anything), then a new broker on the same state, on a new port.
fn kill_and_restart(mut broker: Killed, dir: &Path) -> (Killed, u16) {
    broker.0.kill().unwrap();
    broker.0.wait().unwrap();
    start_broker(dir)
}

#[test]
fn acknowledged_messages_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let _logs = LogsOnFailure(dir.path());
    let (broker, port) = start_broker(dir.path());
    let (mut sub, present) = MqttClient::connect_session(port, Protocol::V3_1_1, "reefer-3", false);
    assert!(!present);
    sub.subscribe("cmd/reefer-3/#", QoS::AtLeastOnce);
    sub.disconnect();

    let mut publisher = MqttClient::connect(port, Protocol::V3_1_1, "ops");
    for n in 0..200 {
        publisher.publish_acked("cmd/reefer-3/setpoint", format!("{n}"));
    }
    retain_acked(&mut publisher, "fleet/3/status", b"cooling");
    // Every PUBACK is in: kill -9, no chance to flush anything.
    let (_broker, port) = kill_and_restart(broker, dir.path());
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

/// The Will of vehicle `id`: a retained `offline` on `fleet/{id}/status`.
fn status_will(id: &str, delay_secs: u32) -> Will {
    Will {
        topic: ByteStr::from(format!("fleet/{id}/status")),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties {
            will_delay_interval: Some(delay_secs),
            ..Default::default()
        },
    }
}

fn subscribe_statuses(client: &mut MqttClient) {
    client.send(&Packet::Subscribe(Subscribe {
        pkid: 1,
        subscriptions: vec![Subscription {
            filter: ByteStr::from("fleet/+/status"),
            options: SubscriptionOptions::default(),
        }],
        properties: Properties::default(),
    }));
    assert!(matches!(client.next(), Some(Packet::SubAck(_))));
}

#[test]
fn a_delayed_will_survives_sigkill_and_none_is_made_up_for_a_connected_client() {
    const DELAY: u64 = 5;
    let dir = tempfile::tempdir().unwrap();
    let _logs = LogsOnFailure(dir.path());
    let (broker, port) = start_broker(dir.path());
    // Connected at the kill, with an ordinary Will: the broker crashed, the client did not
    // leave, so no Will of its may appear.
    let (_alive, _) = Persistent::connect_with(
        port,
        "truck-alive",
        Protocol::V5,
        Some(status_will("truck-alive", 0)),
    );
    let (gone, _) = Persistent::connect_with(
        port,
        "truck-gone",
        Protocol::V5,
        Some(status_will("truck-gone", DELAY as u32)),
    );
    let due = Instant::now() + Duration::from_secs(DELAY);
    gone.vanish();
    // Acknowledged once every shard's state log is durable up to it, the Will's record included.
    let mut ops = MqttClient::connect(port, Protocol::V3_1_1, "ops");
    retain_acked(&mut ops, "fleet/depot/status", b"open");
    let (_broker, port) = kill_and_restart(broker, dir.path());
    let mut watcher = MqttClient::connect(port, Protocol::V5, "dashboard");
    subscribe_statuses(&mut watcher);
    assert!(
        Instant::now() + Duration::from_secs(1) < due,
        "the restart took so long that the Will may be due already; the test proves nothing"
    );
    let will_at = loop {
        match watcher.next() {
            Some(Packet::Publish(p)) if p.topic.as_ref() == "fleet/truck-gone/status" => {
                assert_eq!(&p.payload[..], b"offline");
                break Instant::now();
            }
            Some(Packet::Publish(p)) => assert_eq!(
                p.topic.as_ref(),
                "fleet/depot/status",
                "a Will nobody left was published"
            ),
            Some(_) => {}
            None => panic!("the delayed Will never came"),
        }
    };
    assert!(
        will_at + Duration::from_millis(250) >= due,
        "the Will came {:?} before its delay ran out",
        due - will_at
    );
    // Retained now: the depot's status and the delayed Will, not the connected client's Will.
    let mut late = MqttClient::connect(port, Protocol::V5, "late");
    subscribe_statuses(&mut late);
    let mut retained = Vec::new();
    for _ in 0..2 {
        match late.next() {
            Some(Packet::Publish(p)) => retained.push(p.topic.to_string()),
            other => panic!("expected a retained status, got {other:?}"),
        }
    }
    retained.sort();
    assert_eq!(
        retained,
        vec!["fleet/depot/status", "fleet/truck-gone/status"]
    );
    // Nothing else is retained: a third one would be the made-up Will.
    late.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(late.next().is_none(), "a Will nobody left is retained");
}
