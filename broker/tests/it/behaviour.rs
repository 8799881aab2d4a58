//! MQTT behaviours of the broker, each checked over real sockets with two shards: retained
//! messages, wills, keepalive, QoS downgrade, refusals, and protocol violations that must
//! close only the offending connection.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::raw::Raw;
use common::{Client, TestBroker};
use protocol::{
    ByteStr, Packet, Properties, Protocol, Publish, QoS as PQoS, ReasonCode, Subscribe,
    Subscription, SubscriptionOptions, Will,
};
use rumqttc::{LastWill, QoS};

const SHORT: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_reach_wildcard_subscribers_and_empty_payload_deletes() {
    let broker = TestBroker::start();
    let (mut publisher, _) = Client::connect(broker.port(), "status-pub", |_| {}).await;
    for v in ["v1", "v2", "v3"] {
        publisher
            .client
            .publish(
                format!("fleet/{v}/status"),
                QoS::AtLeastOnce,
                true,
                "online",
            )
            .await
            .unwrap();
    }
    publisher
        .client
        .publish("fleet/v2/status", QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    // A retained QoS 1 PUBLISH is acknowledged once every shard holds it.
    for _ in 0..4 {
        publisher
            .next_packet(|p| matches!(p, rumqttc::Packet::PubAck(_)))
            .await;
    }

    let (mut sub, _) = Client::connect(broker.port(), "status-sub", |_| {}).await;
    sub.client
        .subscribe("fleet/+/status", QoS::AtLeastOnce)
        .await
        .unwrap();
    sub.subscribed().await;
    let mut topics = [sub.next_publish().await, sub.next_publish().await];
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert_eq!(topics[0].topic, "fleet/v1/status");
    assert_eq!(topics[1].topic, "fleet/v3/status");
    assert!(topics
        .iter()
        .all(|p| p.retain && &p.payload[..] == b"online"));
    assert!(sub
        .until_marker(broker.port(), "fleet/marker/status")
        .await
        .is_empty());

    // A live publish with RETAIN reaches existing subscribers without the flag (3.1.1 3.3.1.3).
    publisher
        .client
        .publish("fleet/v4/status", QoS::AtLeastOnce, true, "online")
        .await
        .unwrap();
    let live = sub.next_publish().await;
    assert!(!live.retain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_sent_on_abrupt_close_but_not_after_disconnect() {
    let broker = TestBroker::start();
    let (mut watcher, _) = Client::connect(broker.port(), "watcher", |_| {}).await;
    watcher
        .client
        .subscribe("fleet/+/status", QoS::AtLeastOnce)
        .await
        .unwrap();
    watcher.subscribed().await;

    let will = |v: &str| {
        LastWill::new(
            format!("fleet/{v}/status"),
            "offline",
            QoS::AtLeastOnce,
            false,
        )
    };
    let (polite, _) = Client::connect(broker.port(), "polite", |o| {
        o.set_last_will(will("polite"));
    })
    .await;
    let mut polite = polite;
    polite.client.disconnect().await.unwrap();
    polite.closed().await;
    let got = watcher
        .until_marker(broker.port(), "fleet/marker/status")
        .await;
    assert!(got.is_empty(), "a Will after DISCONNECT: {got:?}");

    let (rude, _) = Client::connect(broker.port(), "rude", |o| {
        o.set_last_will(will("rude"));
    })
    .await;
    rude.kill();
    let got = watcher.next_publish().await;
    assert_eq!(got.topic, "fleet/rude/status");
    assert_eq!(&got.payload[..], b"offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_closed_after_one_and_a_half_keepalives_and_its_will_sent() {
    let broker = TestBroker::start();
    let (mut watcher, _) = Client::connect(broker.port(), "kw", |_| {}).await;
    watcher
        .client
        .subscribe("lost/#", QoS::AtMostOnce)
        .await
        .unwrap();
    watcher.subscribed().await;

    let port = broker.port();
    let closed_after = tokio::task::spawn_blocking(move || {
        let mut raw = Raw::open(port, Protocol::V3_1_1);
        let will = Will {
            topic: ByteStr::from("lost/silent"),
            payload: Bytes::from_static(b"gone"),
            qos: PQoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
        };
        raw.send(&Raw::connect_packet(
            Protocol::V3_1_1,
            "silent",
            1,
            Some(will),
        ));
        assert!(matches!(raw.recv(SHORT), Some(Packet::ConnAck(_))));
        let start = std::time::Instant::now();
        let rest = raw.until_closed(Duration::from_secs(4));
        assert!(rest.is_empty(), "nothing but the close: {rest:?}");
        start.elapsed()
    })
    .await
    .unwrap();
    assert!(
        closed_after >= Duration::from_millis(1400),
        "not before 1.5 x keepalive: {closed_after:?}"
    );
    assert!(
        closed_after < Duration::from_millis(2600),
        "soon after 1.5 x keepalive: {closed_after:?}"
    );
    let will = watcher.next_publish().await;
    assert_eq!(will.topic, "lost/silent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_qos_is_the_lower_of_publish_and_subscription() {
    let broker = TestBroker::start();
    let (mut low, _) = Client::connect(broker.port(), "low", |_| {}).await;
    low.client.subscribe("q/x", QoS::AtMostOnce).await.unwrap();
    low.subscribed().await;
    let (mut high, _) = Client::connect(broker.port(), "high", |_| {}).await;
    high.client
        .subscribe("q/x", QoS::ExactlyOnce)
        .await
        .unwrap();
    high.subscribed().await;
    let (publisher, _) = Client::connect(broker.port(), "qp", |_| {}).await;
    publisher
        .client
        .publish("q/x", QoS::ExactlyOnce, false, "a")
        .await
        .unwrap();
    publisher
        .client
        .publish("q/x", QoS::AtLeastOnce, false, "b")
        .await
        .unwrap();
    assert_eq!(low.next_publish().await.qos, QoS::AtMostOnce);
    assert_eq!(low.next_publish().await.qos, QoS::AtMostOnce);
    assert_eq!(high.next_publish().await.qos, QoS::ExactlyOnce);
    assert_eq!(high.next_publish().await.qos, QoS::AtLeastOnce);
}

#[test]
fn empty_client_id_needs_a_clean_session_in_3_1_1() {
    let broker = TestBroker::start();
    let mut raw = Raw::open(broker.port(), Protocol::V3_1_1);
    let Packet::Connect(mut connect) = Raw::connect_packet(Protocol::V3_1_1, "", 30, None) else {
        unreachable!()
    };
    connect.clean_start = false;
    raw.send(&Packet::Connect(connect));
    match raw.recv(SHORT) {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID)
        }
        other => panic!("expected CONNACK 0x02, got {other:?}"),
    }
    assert!(raw.until_closed(SHORT).is_empty());

    let mut ok = Raw::open(broker.port(), Protocol::V3_1_1);
    ok.send(&Raw::connect_packet(Protocol::V3_1_1, "", 30, None));
    match ok.recv(SHORT) {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ReasonCode::SUCCESS),
        other => panic!("expected CONNACK 0x00, got {other:?}"),
    }
}

#[test]
fn v5_empty_client_id_gets_an_assigned_identifier() {
    let broker = TestBroker::start();
    let mut raw = Raw::open(broker.port(), Protocol::V5);
    raw.send(&Raw::connect_packet(Protocol::V5, "", 30, None));
    match raw.recv(SHORT) {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.reason, ReasonCode::SUCCESS);
            let id = ack
                .properties
                .assigned_client_identifier
                .expect("assigned id");
            assert!(!id.is_empty());
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// A healthy subscriber on each shard, to prove bad clients do not disturb anyone else.
fn healthy_subscribers(broker: &TestBroker) -> Vec<Raw> {
    let mut subs = Vec::new();
    for i in 0..6 {
        let mut raw = Raw::open(broker.port(), Protocol::V5);
        raw.send(&Raw::connect_packet(
            Protocol::V5,
            &format!("healthy-{i}"),
            60,
            None,
        ));
        assert!(matches!(raw.recv(SHORT), Some(Packet::ConnAck(_))));
        raw.send(&Packet::Subscribe(Subscribe {
            pkid: 1,
            subscriptions: vec![Subscription {
                filter: ByteStr::from("health/#"),
                options: SubscriptionOptions::default(),
            }],
            properties: Properties::default(),
        }));
        assert!(matches!(raw.recv(SHORT), Some(Packet::SubAck(_))));
        subs.push(raw);
    }
    subs
}

fn assert_still_served(broker: &TestBroker, subs: &mut [Raw], payload: &'static [u8]) {
    let mut publisher = Raw::open(broker.port(), Protocol::V5);
    publisher.send(&Raw::connect_packet(Protocol::V5, "health-pub", 60, None));
    assert!(matches!(publisher.recv(SHORT), Some(Packet::ConnAck(_))));
    publisher.send(&Packet::Publish(Publish {
        dup: false,
        qos: PQoS::AtMostOnce,
        retain: false,
        topic: ByteStr::from("health/check"),
        pkid: 0,
        payload: Bytes::from_static(payload),
        properties: Properties::default(),
    }));
    for sub in subs.iter_mut() {
        match sub.recv(SHORT) {
            Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], payload),
            other => panic!("healthy subscriber lost service: {other:?}"),
        }
    }
}

#[test]
fn garbage_and_oversized_packets_close_only_their_own_connection() {
    let broker = TestBroker::with(|c| c.limits.max_packet_size = 64 * 1024);
    let mut subs = healthy_subscribers(&broker);

    // Garbage instead of CONNECT: closed without a word.
    let mut garbage = Raw::open(broker.port(), Protocol::V5);
    garbage.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(garbage.until_closed(SHORT).is_empty());

    // A PUBLISH before CONNECT.
    let mut early = Raw::open(broker.port(), Protocol::V3_1_1);
    early.send_bytes(&[0x30, 0x05, 0x00, 0x01, b'a', b'h', b'i']);
    assert!(early.until_closed(SHORT).is_empty());

    // An oversized PUBLISH after a 5.0 CONNECT: DISCONNECT 0x95 as soon as the header is read.
    let mut big = Raw::open(broker.port(), Protocol::V5);
    big.send(&Raw::connect_packet(Protocol::V5, "big", 60, None));
    assert!(matches!(big.recv(SHORT), Some(Packet::ConnAck(_))));
    big.send_bytes(&[0x30, 0xFF, 0xFF, 0x7F]); // remaining length 2 MiB, body never sent
    let seen = big.until_closed(SHORT);
    assert!(
        matches!(seen.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::PACKET_TOO_LARGE),
        "{seen:?}"
    );

    // Garbage after a valid 5.0 CONNECT: malformed packet.
    let mut bad = Raw::open(broker.port(), Protocol::V5);
    bad.send(&Raw::connect_packet(Protocol::V5, "bad", 60, None));
    assert!(matches!(bad.recv(SHORT), Some(Packet::ConnAck(_))));
    bad.send_bytes(&[0x00, 0x00]);
    let seen = bad.until_closed(SHORT);
    assert!(
        matches!(seen.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::MALFORMED_PACKET),
        "{seen:?}"
    );

    assert_still_served(&broker, &mut subs, b"still here");
}

#[test]
fn wildcard_in_a_publish_topic_closes_the_publisher() {
    let broker = TestBroker::start();
    let mut subs = healthy_subscribers(&broker);
    for protocol in [Protocol::V3_1_1, Protocol::V5] {
        let mut bad = Raw::open(broker.port(), protocol);
        bad.send(&Raw::connect_packet(protocol, "wild", 60, None));
        assert!(matches!(bad.recv(SHORT), Some(Packet::ConnAck(_))));
        // PUBLISH QoS 0 to "a/+": 0x30, length, topic length 3, "a/+", (5.0: no properties).
        if protocol.is_v5() {
            bad.send_bytes(&[0x30, 0x06, 0x00, 0x03, b'a', b'/', b'+', 0x00]);
        } else {
            bad.send_bytes(&[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'+']);
        }
        let seen = bad.until_closed(SHORT);
        if protocol.is_v5() {
            assert!(
                matches!(seen.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::TOPIC_NAME_INVALID),
                "{seen:?}"
            );
        } else {
            assert!(seen.is_empty(), "{seen:?}");
        }
    }
    assert_still_served(&broker, &mut subs, b"fine");
}

#[test]
fn mqtt_3_1_clients_are_accepted() {
    let broker = TestBroker::start();
    let mut old = Raw::open(broker.port(), Protocol::V3_1);
    old.send(&Raw::connect_packet(Protocol::V3_1, "old-device", 60, None));
    match old.recv(SHORT) {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ReasonCode::SUCCESS),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    old.send(&Packet::PingReq);
    assert_eq!(old.recv(SHORT), Some(Packet::PingResp));
}

#[test]
fn unknown_protocol_level_gets_return_code_1() {
    let broker = TestBroker::start();
    let mut raw = Raw::open(broker.port(), Protocol::V3_1_1);
    // CONNECT with protocol name "MQTT" and level 6.
    raw.send_bytes(&[
        0x10, 0x0D, // CONNECT, remaining length 13
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x06, // level 6: unknown
        0x02, 0x00, 0x3C, // clean session, keepalive 60
        0x00, 0x01, b'x', // client id "x"
    ]);
    let seen = raw.until_closed(SHORT);
    assert!(
        matches!(seen.as_slice(), [Packet::ConnAck(a)] if a.reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        "{seen:?}"
    );
}

/// Regression: a dashboard subscribing to fleet/+/status must get every vehicle's retained
/// status, even when there are more than its queue limits allow for live traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retained_message_arrives_on_subscribe_beyond_live_queue_limits() {
    let broker = TestBroker::with(|c| {
        c.limits.max_outbox_packets = 50;
        c.limits.max_queued_messages = 20;
    });
    let (mut publisher, _) = Client::connect(broker.port(), "statuses", |o| {
        o.set_inflight(100);
    })
    .await;
    for v in 0..600 {
        publisher
            .client
            .publish(
                format!("fleet/v{v}/status"),
                QoS::AtLeastOnce,
                true,
                "online",
            )
            .await
            .unwrap();
    }
    // Acknowledged means stored (retained QoS 1 waits for every shard).
    for _ in 0..600 {
        publisher
            .next_packet(|p| matches!(p, rumqttc::Packet::PubAck(_)))
            .await;
    }
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let (mut dashboard, _) =
            Client::connect(broker.port(), &format!("dashboard-{qos:?}"), |o| {
                o.set_inflight(200);
            })
            .await;
        dashboard
            .client
            .subscribe("fleet/+/status", qos)
            .await
            .unwrap();
        dashboard.subscribed().await;
        let mut seen = std::collections::HashSet::new();
        while seen.len() < 600 {
            let p = dashboard.next_publish().await;
            assert!(p.retain);
            seen.insert(p.topic);
        }
    }
}

/// 5.0 refusals say why (reason string), unless the client asked for no problem information.
#[test]
fn v5_suback_refusals_carry_a_reason_string_unless_declined() {
    let broker = TestBroker::start();
    for (declined, client) in [(false, "curious"), (true, "terse")] {
        let mut raw = Raw::open(broker.port(), Protocol::V5);
        let Packet::Connect(mut connect) = Raw::connect_packet(Protocol::V5, client, 30, None)
        else {
            unreachable!()
        };
        if declined {
            connect.properties.request_problem_information = Some(0);
        }
        raw.send(&Packet::Connect(connect));
        assert!(matches!(raw.recv(SHORT), Some(Packet::ConnAck(_))));
        raw.send(&Packet::Subscribe(Subscribe {
            pkid: 3,
            subscriptions: vec![
                Subscription {
                    filter: ByteStr::from("ok/+"),
                    options: SubscriptionOptions::default(),
                },
                Subscription {
                    filter: ByteStr::from("bad/#/filter"),
                    options: SubscriptionOptions::default(),
                },
            ],
            properties: Properties::default(),
        }));
        match raw.recv(SHORT) {
            Some(Packet::SubAck(ack)) => {
                assert_eq!(
                    ack.reasons,
                    [ReasonCode::GRANTED_QOS_0, ReasonCode::TOPIC_FILTER_INVALID]
                );
                match (declined, ack.properties.reason_string) {
                    (false, Some(why)) => assert!(why.contains("filter 2"), "{why}"),
                    (true, None) => {}
                    (d, other) => panic!("declined={d}, reason string {other:?}"),
                }
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
}
