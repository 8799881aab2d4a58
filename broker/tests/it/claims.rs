//! The session claim protocol under a burst: connections reusing one client id arrive at once
//! on both shards, some vanishing right after their CONNECT. MQTT says the newest takes the
//! session over; whatever the order the shards see them in, every connection must be answered
//! promptly (a CONNACK, or the connection closed), never left waiting for the claim timeout.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::{
    raw::Raw,
    raw_on_shard,
    v5::{
        ack, connect, connect_on, disconnect, publish, publish_numbered, subscribe,
        subscribed_offline, text, until_marker_via, WAIT,
    },
    TestBroker,
};
use protocol::{Packet, Protocol, QoS, ReasonCode};

/// Far below the 10 s a claim waits for an answer before it gives up.
const PROMPT: Duration = Duration::from_secs(4);

#[test]
fn a_burst_of_connections_with_one_client_id_is_answered_promptly() {
    let broker = TestBroker::start();
    let port = broker.port();
    for round in 0..40 {
        let id = format!("dup-{round}");
        let mut kept = Vec::new();
        for i in 0..6 {
            let mut raw = Raw::open(port, Protocol::V5);
            let mut connect = Raw::connect_packet(Protocol::V5, &id, 60, None);
            if let Packet::Connect(c) = &mut connect {
                // Half of them ask for a lasting session, so sessions move with their state.
                c.clean_start = i % 2 == 0;
                c.properties.session_expiry_interval = (i % 2 == 1).then_some(600);
            }
            raw.send(&connect);
            if i % 3 == 1 {
                continue; // gone right after CONNECT: its socket closes here
            }
            kept.push((i, raw));
        }
        for (i, mut raw) in kept {
            let started = Instant::now();
            // `recv` panics if nothing came within PROMPT; None is a closed connection.
            match raw.recv(PROMPT) {
                Some(Packet::ConnAck(_)) | None => {}
                Some(other) => panic!("round {round}, connection {i}: got {other:?}"),
            }
            assert!(
                started.elapsed() < PROMPT,
                "round {round}, connection {i} waited {:?}",
                started.elapsed()
            );
        }
        // After the burst the claims still chain: one more connection with the id is
        // answered at once too.
        let started = Instant::now();
        let (last, _) = connect(port, &id, true);
        assert!(
            started.elapsed() < PROMPT,
            "round {round}: the last one waited"
        );
        disconnect(last);
    }
}

/// Takeover storms lose nothing: while a publisher sends QoS 1 messages to a persistent
/// session, its client id is claimed again and again on both shards by connections that
/// never read (each is taken over with messages in flight, or vanishes). The connection that
/// finally stays gets every message (QoS 1: at least once), with persistence on or off.
#[test]
fn a_takeover_storm_loses_no_qos1_message_of_a_persistent_session() {
    for persistence in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_path_buf();
        let broker = TestBroker::with(move |c| {
            c.persistence.enabled = persistence;
            c.persistence.dir = data;
        });
        let port = broker.port();
        subscribed_offline(port, "storm-sub", "storm/t", QoS::AtLeastOnce);

        const N: u16 = 300;
        let publisher = std::thread::spawn(move || {
            let (mut publisher, _) = connect(port, "storm-pub", false);
            publish_numbered(&mut publisher, "storm/t", N, QoS::AtLeastOnce);
            disconnect(publisher);
        });
        let mut bursts = 0;
        while !publisher.is_finished() || bursts < 5 {
            let mut kept = Vec::new();
            for i in 0..4 {
                let mut raw = Raw::open(port, Protocol::V5);
                let mut connect = Raw::connect_packet(Protocol::V5, "storm-sub", 60, None);
                if let Packet::Connect(c) = &mut connect {
                    c.clean_start = false;
                    c.properties.session_expiry_interval = Some(600);
                }
                raw.send(&connect);
                if i % 2 == 1 {
                    kept.push(raw); // connected, receives, never acknowledges
                }
            }
            std::thread::sleep(Duration::from_millis(20));
            drop(kept);
            bursts += 1;
        }
        publisher.join().unwrap();

        let (mut last, present) = connect(port, "storm-sub", true);
        assert!(
            present,
            "persistence {persistence}: the session did not survive the storm"
        );
        let mut got = std::collections::BTreeSet::new();
        while let Some(packet) = last.recv_within(Duration::from_secs(1)) {
            if let Packet::Publish(p) = packet {
                got.insert(text(&p));
                last.send(&Packet::PubAck(ack(p.pkid)));
            }
        }
        let missing: Vec<u16> = (0..N).filter(|n| !got.contains(&format!("m{n}"))).collect();
        assert!(
            missing.is_empty(),
            "persistence {persistence}, {bursts} bursts: {} messages lost, first {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        disconnect(last);
    }
}

/// A session that ends with its connection (expiry 0, a 3.1.1 clean session) is never handed to
/// the next connection with the same id as present: not when the first connection is still
/// open and is taken over, on either shard, and not after it disconnected.
#[test]
fn a_session_that_ends_with_its_connection_is_never_present_to_the_next() {
    let broker = TestBroker::start();
    for round in 0..10 {
        for (first_shard, next_shard) in [(0, 1), (1, 1)] {
            let id = format!("hopper-{round}-{first_shard}{next_shard}");
            let (mut first, _) = connect_on(
                raw_on_shard(&broker, first_shard, Protocol::V5),
                &id,
                0,
                None,
            );
            subscribe(&mut first, "orders/#", QoS::AtLeastOnce);
            // Taken over while connected.
            let (second, present) = connect_on(
                raw_on_shard(&broker, next_shard, Protocol::V5),
                &id,
                3600,
                None,
            );
            assert!(!present, "{id}: a taken-over clean session was present");
            assert!(
                first.until_closed(WAIT).iter().any(|p| matches!(
                    p,
                    Packet::Disconnect(d) if d.reason == ReasonCode::SESSION_TAKEN_OVER
                )),
                "{id}: the first connection is told it was taken over"
            );
            // Its subscription went with it: the new session is subscribed to nothing.
            let (mut ops, _) = connect(broker.port(), "ops", false);
            let mut second = second;
            subscribe(&mut second, "status/#", QoS::AtLeastOnce);
            publish(&mut ops, 1, "orders/1", "load", QoS::AtLeastOnce, false);
            let got = until_marker_via(&mut ops, &mut second, "status/marker");
            assert!(got.is_empty(), "{id}: {got:?}");
            disconnect(ops);
            // A clean start ends the lasting session; the next lasting one starts afresh.
            disconnect(second);
            let (clean, _) = connect_on(
                raw_on_shard(&broker, first_shard, Protocol::V5),
                &id,
                0,
                None,
            );
            disconnect(clean);
            let (last, present) = connect_on(
                raw_on_shard(&broker, next_shard, Protocol::V5),
                &id,
                3600,
                None,
            );
            assert!(
                !present,
                "{id}: a session ended by a clean start was present"
            );
            disconnect(last);
        }
    }
}
