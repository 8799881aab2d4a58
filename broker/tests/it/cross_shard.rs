//! Behaviour that only exists with more than one shard: fan-out across the mesh, takeover of a
//! client id whose connection lives on another shard, subscriptions visible everywhere at SUBACK.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use common::{connect_on_other_shard, Client, TestBroker};
use rumqttc::QoS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_subscriber_on_another_shard_at_every_qos() {
    let broker = TestBroker::start();
    let before = broker.accepted();
    let (mut sub, _) = Client::connect(broker.port(), "xs-sub", |_| {}).await;
    let sub_shard = broker.shard_of_last(&before);
    sub.client
        .subscribe("xs/#", QoS::ExactlyOnce)
        .await
        .unwrap();
    sub.subscribed().await;

    let (publisher, _, pub_shard) =
        connect_on_other_shard(&broker, sub_shard, "xs-pub", |_| {}).await;
    assert_ne!(sub_shard, pub_shard);
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publisher
            .client
            .publish(format!("xs/{i}"), qos, false, format!("m{i}"))
            .await
            .unwrap();
        let got = sub.next_publish().await;
        assert_eq!(got.topic, format!("xs/{i}"));
        assert_eq!(&got.payload[..], format!("m{i}").as_bytes());
        assert_eq!(got.qos, qos);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_many_subscribers_on_both_shards() {
    let broker = TestBroker::start();
    let mut subs = Vec::new();
    for i in 0..12 {
        let (mut c, _) = Client::connect(broker.port(), &format!("fan-sub-{i}"), |_| {}).await;
        c.client
            .subscribe("fan/+/gps", QoS::AtLeastOnce)
            .await
            .unwrap();
        c.subscribed().await;
        subs.push(c);
    }
    let per_shard = broker.accepted();
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "both shards hold subscribers: {per_shard:?}"
    );
    let (publisher, _) = Client::connect(broker.port(), "fan-pub", |_| {}).await;
    for n in 0..5 {
        publisher
            .client
            .publish("fan/v1/gps", QoS::AtLeastOnce, false, format!("{n}"))
            .await
            .unwrap();
    }
    for sub in &mut subs {
        for n in 0..5 {
            let p = sub.next_publish().await;
            assert_eq!(&p.payload[..], format!("{n}").as_bytes(), "in order");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_from_another_shard_moves_the_session() {
    let broker = TestBroker::start();
    let persistent = |o: &mut rumqttc::MqttOptions| {
        o.set_clean_session(false);
    };
    let before = broker.accepted();
    let (mut holder, present) = Client::connect(broker.port(), "truck-7", persistent).await;
    assert!(!present);
    let mut holder_shard = broker.shard_of_last(&before);
    holder
        .client
        .subscribe("orders/truck-7", QoS::AtLeastOnce)
        .await
        .unwrap();
    holder.subscribed().await;

    // Reconnect with the same id until the new connection lands on the other shard; each
    // attempt is a takeover, and the one we keep crossed shards.
    let mut crossed = None;
    for _ in 0..64 {
        let before = broker.accepted();
        let (newcomer, present) = Client::connect(broker.port(), "truck-7", persistent).await;
        let shard = broker.shard_of_last(&before);
        assert!(present, "the session follows the client id");
        let reason = holder.closed().await;
        assert!(!reason.is_empty());
        let from = holder_shard;
        holder = newcomer;
        holder_shard = shard;
        if shard != from {
            crossed = Some((from, shard));
            break;
        }
    }
    let (from, to) = crossed.expect("a takeover crossed shards");
    assert_ne!(from, to);

    let (publisher, _) = Client::connect(broker.port(), "dispatch", |_| {}).await;
    publisher
        .client
        .publish(
            "orders/truck-7",
            QoS::AtLeastOnce,
            false,
            "deliver to dock 4",
        )
        .await
        .unwrap();
    let got = holder.next_publish().await;
    assert_eq!(&got.payload[..], b"deliver to dock 4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_wait_in_the_session_and_arrive_in_order() {
    let broker = TestBroker::start();
    let persistent = |o: &mut rumqttc::MqttOptions| {
        o.set_clean_session(false);
    };
    let (sub, _) = {
        let (mut c, p) = Client::connect(broker.port(), "reefer-12", persistent).await;
        c.client
            .subscribe("cmd/reefer-12", QoS::ExactlyOnce)
            .await
            .unwrap();
        c.subscribed().await;
        (c, p)
    };
    let mut sub = sub;
    sub.client.disconnect().await.unwrap();
    sub.closed().await;
    sub.kill();

    let (mut publisher, _) = Client::connect(broker.port(), "ops", |_| {}).await;
    for n in 0..10u32 {
        let qos = if n.is_multiple_of(2) {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        publisher
            .client
            .publish("cmd/reefer-12", qos, false, format!("setpoint {n}"))
            .await
            .unwrap();
    }
    // QoS 0 to an offline session is not kept; the QoS 1 after it is.
    publisher
        .client
        .publish("cmd/reefer-12", QoS::AtMostOnce, false, "dropped")
        .await
        .unwrap();
    publisher
        .client
        .publish("cmd/reefer-12", QoS::AtLeastOnce, false, "last")
        .await
        .unwrap();
    // Routed once acknowledged: 6 PUBACKs and 5 PUBCOMPs.
    for _ in 0..11 {
        publisher
            .next_packet(|p| matches!(p, rumqttc::Packet::PubAck(_) | rumqttc::Packet::PubComp(_)))
            .await;
    }

    let (mut back, present) = Client::connect(broker.port(), "reefer-12", persistent).await;
    assert!(present);
    for n in 0..10u32 {
        let p = back.next_publish().await;
        assert_eq!(&p.payload[..], format!("setpoint {n}").as_bytes());
    }
    assert_eq!(&back.next_publish().await.payload[..], b"last");
}
