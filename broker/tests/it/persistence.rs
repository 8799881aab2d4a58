//! Broker state across restarts: sessions, subscriptions, owed QoS 1/2 messages and retained
//! messages come back from `{state}/shard-{n}/`; a torn log tail is cut off and reported.
//! Clients are raw MQTT 5.0 peers, so packet identifiers, DUP flags and acknowledgements are
//! exactly what the test says.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{path::Path, time::Duration};

use bytes::Bytes;
use common::{
    v5::{
        ack, connect, disconnect, publish, publish_numbered, publish_with, subscribe,
        subscribed_offline, text, until_marker, until_marker_via, WAIT,
    },
    TestBroker,
};
use protocol::{ByteStr, Packet, Properties, Publish, QoS};

fn start(dir: &Path, adjust: impl FnOnce(&mut broker::Config)) -> TestBroker {
    let dir = dir.to_path_buf();
    TestBroker::with(move |c| {
        c.persistence.enabled = true;
        c.persistence.dir = dir;
        adjust(c);
    })
}

fn stop(broker: TestBroker) {
    broker.handle.shutdown();
    broker.handle.join().unwrap();
}

#[test]
fn sessions_owed_messages_and_retained_come_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |_| {});
    let port = broker.port();
    // Several subscribers, so that sessions sit on both shards.
    let ids: Vec<String> = (0..6).map(|i| format!("truck-{i}")).collect();
    for id in &ids {
        let (mut sub, present) = connect(port, id, true);
        assert!(!present);
        subscribe(&mut sub, "fleet/+/alerts", QoS::AtLeastOnce);
        subscribe(&mut sub, "fleet/+/cmd", QoS::ExactlyOnce);
        disconnect(sub);
    }
    let (mut publisher, _) = connect(port, "dispatcher", false);
    for i in 0..10u16 {
        publish(
            &mut publisher,
            i + 1,
            "fleet/1/alerts",
            &format!("a{i}"),
            QoS::AtLeastOnce,
            false,
        );
        publish(
            &mut publisher,
            i + 100,
            "fleet/1/cmd",
            &format!("c{i}"),
            QoS::ExactlyOnce,
            false,
        );
    }
    publish(
        &mut publisher,
        500,
        "fleet/1/status",
        "online",
        QoS::AtLeastOnce,
        true,
    );
    publish(
        &mut publisher,
        501,
        "fleet/2/status",
        "parked",
        QoS::AtLeastOnce,
        true,
    );
    publish_with(
        &mut publisher,
        502,
        "fleet/3/status",
        "gone soon",
        QoS::AtLeastOnce,
        true,
        Some(1),
    );
    // A retained message deleted before the restart stays deleted.
    publish(
        &mut publisher,
        503,
        "fleet/4/status",
        "old",
        QoS::AtLeastOnce,
        true,
    );
    publish(
        &mut publisher,
        504,
        "fleet/4/status",
        "",
        QoS::AtLeastOnce,
        true,
    );
    disconnect(publisher);
    stop(broker);
    // Let the retained message with a 1 s expiry expire while the broker is down: the passing
    // of time is what this step tests, so it is a sleep.
    std::thread::sleep(Duration::from_millis(1200));

    let broker = start(dir.path(), |_| {});
    let port = broker.port();
    for id in &ids {
        let (mut sub, present) = connect(port, id, true);
        assert!(present, "{id}: session present after the restart");
        let got = until_marker(port, &mut sub, "fleet/marker/alerts");
        let alerts: Vec<String> = got
            .iter()
            .filter(|p| p.topic.as_ref() == "fleet/1/alerts")
            .map(text)
            .collect();
        let cmds: Vec<String> = got
            .iter()
            .filter(|p| p.topic.as_ref() == "fleet/1/cmd")
            .map(text)
            .collect();
        let want_a: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
        let want_c: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
        // The in-flight window (Receive Maximum: none given, so all) sends everything owed.
        assert_eq!(alerts, want_a, "{id}: QoS 1 messages in order");
        assert_eq!(cmds, want_c, "{id}: QoS 2 messages in order");
        disconnect(sub);
    }
    // The subscriptions came back too: a live publish reaches a recovered session.
    let (mut sub, present) = connect(port, &ids[0], true);
    assert!(present);
    let (mut publisher, _) = connect(port, "dispatcher", false);
    publish(
        &mut publisher,
        1,
        "fleet/9/alerts",
        "live",
        QoS::AtLeastOnce,
        false,
    );
    let got = until_marker_via(&mut publisher, &mut sub, "fleet/marker/alerts");
    assert!(
        got.iter().any(|p| text(p) == "live"),
        "live message after restart: {got:?}"
    );
    // Retained: present, the expired one gone, the deleted one still deleted.
    let (mut fresh, _) = connect(port, "dashboard", false);
    subscribe(&mut fresh, "fleet/+/status", QoS::AtLeastOnce);
    let mut retained: Vec<(String, String)> = until_marker(port, &mut fresh, "fleet/marker/status")
        .iter()
        .map(|p| (p.topic.to_string(), text(p)))
        .collect();
    retained.sort();
    assert_eq!(
        retained,
        vec![
            ("fleet/1/status".to_string(), "online".to_string()),
            ("fleet/2/status".to_string(), "parked".to_string()),
        ]
    );
    stop(broker);
}

#[test]
fn qos2_in_progress_on_both_sides_is_exactly_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |_| {});
    let port = broker.port();
    let (mut sub, _) = connect(port, "sub", true);
    subscribe(&mut sub, "t/#", QoS::ExactlyOnce);
    let (mut publisher, _) = connect(port, "pub", true);
    // The publisher sends QoS 2 and gets PUBREC, but the broker stops before PUBREL.
    publisher.send(&Packet::Publish(Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: ByteStr::from("t/1"),
        pkid: 7,
        payload: Bytes::from_static(b"once"),
        properties: Properties::default(),
    }));
    assert!(matches!(publisher.recv(WAIT), Some(Packet::PubRec(a)) if a.pkid == 7));
    // The subscriber receives it and sends PUBREC, but not yet PUBCOMP.
    let first = match sub.recv(WAIT) {
        Some(Packet::Publish(p)) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    sub.send(&Packet::PubRec(ack(first.pkid)));
    assert!(matches!(sub.recv(WAIT), Some(Packet::PubRel(a)) if a.pkid == first.pkid));
    sub.vanish(WAIT);
    publisher.vanish(WAIT);
    stop(broker);

    let broker = start(dir.path(), |_| {});
    let port = broker.port();
    // The publisher resends the PUBLISH with DUP: acknowledged, not routed again.
    let (mut publisher, present) = connect(port, "pub", true);
    assert!(present);
    publisher.send(&Packet::Publish(Publish {
        dup: true,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: ByteStr::from("t/1"),
        pkid: 7,
        payload: Bytes::from_static(b"once"),
        properties: Properties::default(),
    }));
    assert!(matches!(publisher.recv(WAIT), Some(Packet::PubRec(a)) if a.pkid == 7));
    publisher.send(&Packet::PubRel(ack(7)));
    assert!(matches!(publisher.recv(WAIT), Some(Packet::PubComp(a)) if a.pkid == 7));
    // The subscriber is owed a PUBREL for the same packet identifier, and nothing else.
    let (mut sub, present) = connect(port, "sub", true);
    assert!(present);
    match sub.recv(WAIT) {
        Some(Packet::PubRel(a)) => assert_eq!(a.pkid, first.pkid),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    sub.send(&Packet::PubComp(ack(first.pkid)));
    assert!(until_marker(port, &mut sub, "t/marker").is_empty());
    stop(broker);
}

/// The newest log segment of every shard.
fn newest_logs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir).unwrap() {
        let shard = shard.unwrap().path();
        if !shard.is_dir() {
            continue;
        }
        let mut logs: Vec<_> = std::fs::read_dir(shard)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        out.extend(logs.pop());
    }
    out
}

#[test]
fn a_torn_log_tail_is_cut_off_and_reported_and_state_before_it_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |_| {});
    let port = broker.port();
    subscribed_offline(port, "sub", "t/#", QoS::AtLeastOnce);
    let (mut publisher, _) = connect(port, "pub", false);
    publish_numbered(&mut publisher, "t/x", 5, QoS::AtLeastOnce);
    disconnect(publisher);
    stop(broker);
    for log in newest_logs(dir.path()) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
        // A frame header announcing 200 bytes, then only part of them: a torn write.
        f.write_all(&200u32.to_le_bytes()).unwrap();
        f.write_all(&[0xAB; 40]).unwrap();
    }

    let broker = start(dir.path(), |_| {});
    let (mut sub, present) = connect(broker.port(), "sub", true);
    assert!(present);
    let got: Vec<String> = until_marker(broker.port(), &mut sub, "t/marker")
        .iter()
        .map(text)
        .collect();
    assert_eq!(got, vec!["m0", "m1", "m2", "m3", "m4"]);
    let total = broker::metrics::Snapshot::total(&broker.handle.fresh_snapshots());
    assert!(
        total.persist_torn_tails >= 1,
        "torn tails reported: {total:?}"
    );
    stop(broker);
}

#[test]
fn state_stays_exact_across_many_snapshots_while_traffic_flows() {
    let dir = tempfile::tempdir().unwrap();
    // A snapshot every few kilobytes of log: compaction runs many times under the traffic.
    let small = |c: &mut broker::Config| c.persistence.compact_bytes = 4096;
    let broker = start(dir.path(), small);
    let port = broker.port();
    // One subscriber online, acknowledging everything; one offline, owed everything.
    let (mut online, _) = connect(port, "online", true);
    subscribe(&mut online, "t/#", QoS::AtLeastOnce);
    subscribed_offline(port, "offline", "t/#", QoS::AtLeastOnce);
    let (mut publisher, _) = connect(port, "pub", false);
    for n in 0..300u16 {
        publish(
            &mut publisher,
            n + 1,
            "t/x",
            &format!("m{n}"),
            QoS::AtLeastOnce,
            false,
        );
        match online.recv(WAIT) {
            Some(Packet::Publish(p)) => online.send(&Packet::PubAck(ack(p.pkid))),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    let total = broker::metrics::Snapshot::total(&broker.handle.fresh_snapshots());
    assert!(
        total.persist_snapshots > 10,
        "snapshots: {}",
        total.persist_snapshots
    );
    disconnect(online);
    disconnect(publisher);
    stop(broker);

    let broker = start(dir.path(), small);
    let port = broker.port();
    let (mut offline, present) = connect(port, "offline", true);
    assert!(present);
    let got: Vec<String> = until_marker(port, &mut offline, "t/marker")
        .iter()
        .map(text)
        .collect();
    let want: Vec<String> = (0..300).map(|n| format!("m{n}")).collect();
    assert_eq!(got, want);
    // The online one acknowledged everything: nothing is owed to it.
    let (mut online, present) = connect(port, "online", true);
    assert!(present);
    assert!(until_marker(port, &mut online, "t/marker").is_empty());
    stop(broker);
}

/// Measures recovery: `cargo test -p fleetmq-broker --test persistence -- --ignored
/// --nocapture recovery_time`. Not a pass/fail test: it prints the figures.
#[test]
#[ignore = "a measurement; prints recovery time and state size"]
fn recovery_time_for_many_sessions() {
    const SESSIONS: usize = 2000;
    const MESSAGES: u16 = 5;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |_| {});
    let port = broker.port();
    for i in 0..SESSIONS {
        let (mut sub, _) = connect(port, &format!("vehicle-{i}"), true);
        subscribe(&mut sub, &format!("fleet/{i}/cmd"), QoS::AtLeastOnce);
        subscribe(&mut sub, "fleet/all/cmd", QoS::AtLeastOnce);
        disconnect(sub);
    }
    let (mut publisher, _) = connect(port, "ops", false);
    for n in 0..MESSAGES {
        publish(
            &mut publisher,
            n + 1,
            "fleet/all/cmd",
            &format!("{n:0>200}"),
            QoS::AtLeastOnce,
            false,
        );
    }
    disconnect(publisher);
    stop(broker);
    let bytes: u64 = walk(dir.path());
    let started = std::time::Instant::now();
    let broker = start(dir.path(), |_| {});
    let start_took = started.elapsed();
    let total = broker::metrics::Snapshot::total(&broker.handle.fresh_snapshots());
    println!(
        "{SESSIONS} sessions, {} subscriptions, {} queued messages; state on disk {bytes} bytes; \
         start() took {start_took:?}, slowest shard's recovery {} ms",
        SESSIONS * 2,
        total.queued_messages,
        total.recovery_ms
    );
    assert_eq!(
        total.queued_messages,
        (SESSIONS * usize::from(MESSAGES)) as u64
    );
    stop(broker);
}

fn walk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

#[test]
fn fewer_shards_after_a_restart_take_over_the_state_of_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |c| c.shards = 3);
    let port = broker.port();
    let ids: Vec<String> = (0..8).map(|i| format!("van-{i}")).collect();
    for id in &ids {
        let (mut sub, _) = connect(port, id, true);
        subscribe(&mut sub, "depot/#", QoS::AtLeastOnce);
        disconnect(sub);
    }
    let (mut publisher, _) = connect(port, "ops", false);
    publish(
        &mut publisher,
        1,
        "depot/1",
        "open",
        QoS::AtLeastOnce,
        false,
    );
    disconnect(publisher);
    stop(broker);

    let broker = start(dir.path(), |c| c.shards = 1);
    for id in &ids {
        let (mut sub, present) = connect(broker.port(), id, true);
        assert!(present, "{id}");
        let got: Vec<String> = until_marker(broker.port(), &mut sub, "depot/marker")
            .iter()
            .map(text)
            .collect();
        assert_eq!(got, vec!["open"], "{id}");
        disconnect(sub);
    }
    stop(broker);
    // The taken-over directories are gone; their state lives in shard 0's snapshot now.
    assert!(!dir.path().join("shard-1").exists());
    assert!(!dir.path().join("shard-2").exists());
    let broker = start(dir.path(), |c| c.shards = 2);
    let (_sub, present) = connect(broker.port(), &ids[7], true);
    assert!(present);
    stop(broker);
}

#[test]
fn batch_and_periodic_fsync_keep_everything_across_a_clean_stop() {
    use broker::config::FsyncPolicy;
    for policy in [FsyncPolicy::Batch, FsyncPolicy::Periodic] {
        let dir = tempfile::tempdir().unwrap();
        let with_policy = |c: &mut broker::Config| c.persistence.fsync = policy;
        let broker = start(dir.path(), with_policy);
        subscribed_offline(broker.port(), "sub", "t", QoS::ExactlyOnce);
        let (mut publisher, _) = connect(broker.port(), "pub", false);
        publish_numbered(&mut publisher, "t", 20, QoS::ExactlyOnce);
        disconnect(publisher);
        stop(broker);
        let broker = start(dir.path(), with_policy);
        let (mut sub, present) = connect(broker.port(), "sub", true);
        assert!(present, "{policy:?}");
        let got: Vec<String> = until_marker(broker.port(), &mut sub, "t")
            .iter()
            .map(text)
            .collect();
        let want: Vec<String> = (0..20).map(|n| format!("m{n}")).collect();
        assert_eq!(got, want, "{policy:?}");
        stop(broker);
    }
}

/// Measures what `fsync = "always"` costs a publisher: `cargo test -p fleetmq-broker --test
/// persistence -- --ignored --nocapture publish_latency`.
#[test]
#[ignore = "a measurement; prints publish round trips with and without persistence"]
fn publish_latency_with_and_without_persistence() {
    for (label, persist) in [("off", false), ("always", true)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let broker = TestBroker::with(move |c| {
            c.persistence.enabled = persist;
            c.persistence.dir = path;
        });
        let port = broker.port();
        // Subscribers on both shards, offline: every publish queues for them.
        for i in 0..4 {
            let (mut sub, _) = connect(port, &format!("sub-{i}"), true);
            subscribe(&mut sub, "t", QoS::AtLeastOnce);
            disconnect(sub);
        }
        let (mut publisher, _) = connect(port, "pub", false);
        let mut rtts = Vec::new();
        for n in 0..500u16 {
            let t = std::time::Instant::now();
            publish(
                &mut publisher,
                n + 1,
                "t",
                "reading",
                QoS::AtLeastOnce,
                false,
            );
            rtts.push(t.elapsed());
        }
        rtts.sort();
        println!(
            "persistence {label}: QoS 1 publish to 4 offline persistent sessions: median {:?}, p99 {:?}",
            rtts[rtts.len() / 2],
            rtts[rtts.len() * 99 / 100]
        );
        stop(broker);
    }
}

#[test]
fn a_second_broker_on_the_same_state_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path(), |_| {});
    let mut config = broker::Config {
        mqtt: "127.0.0.1:0".parse().unwrap(),
        http: None,
        shards: 1,
        ..broker::Config::default()
    };
    config.persistence.dir = dir.path().to_path_buf();
    match broker::start(config.clone()) {
        Err(broker::BrokerError::Persistence(why)) => assert!(why.contains("in use"), "{why}"),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a second broker started on the same state directory"),
    }
    stop(first);
    // Released with the first broker.
    let second = broker::start(config).unwrap();
    second.shutdown();
    second.join().unwrap();
}
