//! Delayed Wills (MQTT 5.0 Will Delay Interval) and session expiry across restarts of the
//! in-process broker. A Will waiting for its delay when the broker stops is published when
//! the delay runs out after the restart, at once if it ran out while the broker was down, and
//! not at all if its client comes back first; a session whose expiry ran out while the
//! broker was down is gone, and its Will published. (And without a restart: a Will waits for
//! its delay, and a client back in time cancels it.) Clients are raw MQTT 5.0 peers placed on
//! chosen shards, so every case crosses shards. (`tests/it/persistence.rs` at the workspace root
//! does the same across a SIGKILL of the `fleetmq broker` process.)

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{
    raw::Raw,
    raw_on_shard,
    v5::{connect_on, disconnect, publish, subscribe, text, until_marker, WAIT},
    TestBroker,
};
use protocol::{Packet, Properties, Protocol, Publish, QoS, Will};

/// Wall-clock and timer jitter allowed when checking that a Will was not early.
const EARLY_SLACK: Duration = Duration::from_millis(250);

fn start(dir: &Path) -> TestBroker {
    let dir = dir.to_path_buf();
    TestBroker::with(move |c| {
        c.persistence.enabled = true;
        c.persistence.dir = dir;
    })
}

fn stop(broker: TestBroker) {
    broker.handle.shutdown();
    broker.handle.join().unwrap();
}

/// The Will of vehicle `id`: `offline` on `fleet/{id}/status`, at QoS 1.
fn will(id: &str, delay_secs: u32, retain: bool) -> Will {
    Will {
        topic: format!("fleet/{id}/status").into(),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::AtLeastOnce,
        retain,
        properties: Properties {
            will_delay_interval: Some(delay_secs),
            ..Default::default()
        },
    }
}

/// Connects `id` on `shard` with a session lasting `expiry` seconds (0: none) and a Will.
fn connect_at(
    broker: &TestBroker,
    shard: usize,
    id: &str,
    expiry: u32,
    will: Option<Will>,
) -> (Raw, bool) {
    connect_on(raw_on_shard(broker, shard, Protocol::V5), id, expiry, will)
}

/// truck-0 on shard 0 and truck-1 on shard 1 connect with an hour's session and a Will of
/// `delay_secs` (retained where `retained(shard)`), and vanish. Returns when each Will is due
/// at the earliest, by its topic: the broker starts the delay a moment after the truck left.
fn trucks_leave(
    broker: &TestBroker,
    delay_secs: u32,
    retained: impl Fn(usize) -> bool,
) -> HashMap<String, Instant> {
    let mut due = HashMap::new();
    for shard in 0..2 {
        let id = format!("truck-{shard}");
        let will = will(&id, delay_secs, retained(shard));
        let (raw, _) = connect_at(broker, shard, &id, 3600, Some(will));
        let left = Instant::now();
        raw.vanish(WAIT);
        let at = left + Duration::from_secs(u64::from(delay_secs));
        due.insert(format!("fleet/{id}/status"), at);
    }
    due
}

/// The earliest of the times [`trucks_leave`] returned.
fn first(due: &HashMap<String, Instant>) -> Instant {
    due.values().copied().min().unwrap()
}

/// The latest of the times [`trucks_leave`] returned.
fn last(due: &HashMap<String, Instant>) -> Instant {
    due.values().copied().max().unwrap()
}

/// A client without a lasting session, on `shard`, subscribed to every vehicle's status.
fn watcher(broker: &TestBroker, shard: usize, id: &str) -> Raw {
    let (mut raw, _) = connect_at(broker, shard, id, 0, None);
    subscribe(&mut raw, "fleet/+/status", QoS::AtLeastOnce);
    raw
}

/// The PUBLISH packets that arrive until `want` have or `until` passes, each with when it was
/// read (what already waits is read even past `until`).
fn publishes_until(raw: &mut Raw, want: usize, until: Instant) -> Vec<(Publish, Instant)> {
    let mut out = Vec::new();
    while out.len() < want {
        let left = until.saturating_duration_since(Instant::now());
        let step = left.clamp(Duration::from_millis(20), Duration::from_millis(100));
        match raw.recv_within(step) {
            Some(Packet::Publish(p)) => out.push((p, Instant::now())),
            _ if left.is_zero() => break,
            _ => {}
        }
    }
    out
}

/// Topics of what arrived, sorted, with their payloads.
fn topics(got: &[(Publish, Instant)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = got
        .iter()
        .map(|(p, _)| (p.topic.to_string(), text(p)))
        .collect();
    out.sort();
    out
}

/// The retained status messages a new subscriber gets, sorted.
fn retained_statuses(broker: &TestBroker) -> Vec<(String, String)> {
    let mut raw = watcher(broker, 0, "late-subscriber");
    let mut out: Vec<(String, String)> =
        until_marker(broker.port(), &mut raw, "fleet/marker/status")
            .iter()
            .map(|p| {
                assert!(p.retain, "a retained message arrives flagged retained");
                (p.topic.to_string(), text(p))
            })
            .collect();
    out.sort();
    disconnect(raw);
    out
}

fn offline(id: &str) -> (String, String) {
    (format!("fleet/{id}/status"), "offline".to_string())
}

#[test]
fn a_delayed_will_waits_for_its_delay_and_a_client_back_in_time_cancels_it() {
    const DELAY: u32 = 2;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let mut watchers: Vec<Raw> = (0..2)
        .map(|shard| watcher(&broker, shard, &format!("watcher-{shard}")))
        .collect();
    let due = trucks_leave(&broker, DELAY, |_| false);
    // truck-0 comes back, on the other shard than its Will's; truck-1 does not.
    let (_truck, present) = connect_at(&broker, 1, "truck-0", 3600, None);
    assert!(present);
    assert!(
        Instant::now() < due["fleet/truck-0/status"],
        "truck-0 came back too late to prove anything"
    );
    for (shard, w) in watchers.iter_mut().enumerate() {
        let got = publishes_until(w, 2, last(&due) + Duration::from_millis(1500));
        assert_eq!(
            topics(&got),
            vec![offline("truck-1")],
            "watcher on shard {shard}"
        );
        let (_, at) = &got[0];
        assert!(
            *at + EARLY_SLACK >= due["fleet/truck-1/status"],
            "the Will came before its delay ran out"
        );
    }
    stop(broker);
}

/// Restarted twice: the second start finds the Wills only in the snapshot the first one
/// wrote (a start snapshots what it recovered and deletes the log it replayed).
#[test]
fn a_delayed_will_pending_across_clean_restarts_is_published_after_the_rest_of_its_delay() {
    const DELAY: u32 = 5;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    // One Will on each shard; truck-0's is retained.
    let due_at = trucks_leave(&broker, DELAY, |shard| shard == 0);
    let due = first(&due_at);
    stop(broker);
    stop(start(dir.path()));

    let broker = start(dir.path());
    // Watchers that connect after the restart, on both shards: each gets both Wills.
    let mut watchers: Vec<Raw> = (0..2)
        .map(|shard| watcher(&broker, shard, &format!("watcher-{shard}")))
        .collect();
    assert!(
        Instant::now() + Duration::from_secs(1) < due,
        "the restart took so long that the Wills may be due already; the test proves nothing"
    );
    for (shard, w) in watchers.iter_mut().enumerate() {
        let got = publishes_until(w, 2, due + Duration::from_secs(5));
        assert_eq!(
            topics(&got),
            vec![offline("truck-0"), offline("truck-1")],
            "watcher on shard {shard}"
        );
        for (p, at) in &got {
            let due = due_at[p.topic.as_ref()];
            assert!(
                *at + EARLY_SLACK >= due,
                "{} arrived {:?} before its delay ran out",
                p.topic,
                due.saturating_duration_since(*at)
            );
        }
    }
    // Published with its RETAIN flag: truck-0's Will is the retained status now, truck-1's not.
    assert_eq!(retained_statuses(&broker), vec![offline("truck-0")]);
    stop(broker);
}

#[test]
fn a_will_that_fell_due_while_the_broker_was_down_is_published_at_the_restart() {
    const DELAY: u32 = 2;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    // An offline persistent subscriber on shard 1 is owed every status published.
    let (mut dispatch, _) = connect_at(&broker, 1, "dispatch", 3600, None);
    subscribe(&mut dispatch, "fleet/+/status", QoS::AtLeastOnce);
    disconnect(dispatch);
    let due = trucks_leave(&broker, DELAY, |shard| shard == 0);
    stop(broker);
    assert!(
        Instant::now() < first(&due),
        "the broker stopped after the Wills were due; the test proves nothing"
    );
    // Down until the delay has run out.
    std::thread::sleep(
        last(&due).saturating_duration_since(Instant::now()) + Duration::from_millis(500),
    );

    let broker = start(dir.path());
    // Published during recovery: the retained one is there for the first subscriber...
    assert_eq!(retained_statuses(&broker), vec![offline("truck-0")]);
    // ...and both were queued for the persistent subscriber on the other shard.
    let (mut dispatch, present) = connect_at(&broker, 1, "dispatch", 3600, None);
    assert!(present);
    let got: Vec<(String, String)> =
        until_marker(broker.port(), &mut dispatch, "fleet/marker/status")
            .iter()
            .map(|p| (p.topic.to_string(), text(p)))
            .collect();
    let mut got = got;
    got.sort();
    assert_eq!(got, vec![offline("truck-0"), offline("truck-1")]);
    stop(broker);
}

#[test]
fn a_client_back_after_the_restart_cancels_its_pending_will_for_good() {
    const DELAY: u32 = 4;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let due = trucks_leave(&broker, DELAY, |_| true);
    stop(broker);

    let broker = start(dir.path());
    let mut watchers: Vec<Raw> = (0..2)
        .map(|shard| watcher(&broker, shard, &format!("watcher-{shard}")))
        .collect();
    // truck-0 comes back on the other shard than its Will's, truck-1 on the same one.
    let mut back = Vec::new();
    for (id, shard) in [("truck-0", 1), ("truck-1", 1)] {
        let (raw, present) = connect_at(&broker, shard, id, 3600, None);
        assert!(present, "{id}: session present after the restart");
        back.push(raw);
    }
    assert!(
        Instant::now() + Duration::from_secs(1) < first(&due),
        "the clients came back after their Wills were due; the test proves nothing"
    );
    for (shard, w) in watchers.iter_mut().enumerate() {
        let got = publishes_until(w, 1, last(&due) + Duration::from_millis(1500));
        assert!(got.is_empty(), "watcher on shard {shard} got {got:?}");
    }
    for raw in back {
        disconnect(raw);
    }
    stop(broker);
    // The cancellation is in the state log: the Wills do not come back with the next start
    // either (they are retained and long due, so they would be there at once).
    let broker = start(dir.path());
    assert_eq!(retained_statuses(&broker), Vec::<(String, String)>::new());
    stop(broker);
}

#[test]
fn a_session_that_expired_while_the_broker_was_down_is_gone_and_its_will_published() {
    const EXPIRY: u32 = 2;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let mut watch = watcher(&broker, 1, "watcher");
    // truck-0 (shard 0) leaves; its session lasts 2 s, its Will waits an hour: the session's
    // end is what makes the Will due.
    let (mut truck, _) = connect_at(
        &broker,
        0,
        "truck-0",
        EXPIRY,
        Some(will("truck-0", 3600, true)),
    );
    subscribe(&mut truck, "orders/truck-0", QoS::AtLeastOnce);
    truck.vanish(WAIT);
    let expires = Instant::now() + Duration::from_secs(u64::from(EXPIRY));
    // truck-1 (shard 1), with as short a session, is still connected when the broker stops.
    let (truck1, _) = connect_at(&broker, 1, "truck-1", EXPIRY, None);
    let (mut ops, _) = connect_at(&broker, 1, "ops", 0, None);
    publish(
        &mut ops,
        1,
        "orders/truck-0",
        "load 7",
        QoS::AtLeastOnce,
        false,
    );
    disconnect(ops);
    assert!(
        until_marker(broker.port(), &mut watch, "fleet/marker/status").is_empty(),
        "the Will went out before the stop"
    );
    disconnect(watch);
    stop(broker);
    drop(truck1);
    assert!(
        Instant::now() < expires,
        "the broker stopped after the session expired; the test proves nothing"
    );
    // Down until truck-0's session has expired.
    std::thread::sleep(
        expires.saturating_duration_since(Instant::now()) + Duration::from_millis(500),
    );

    let broker = start(dir.path());
    assert_eq!(retained_statuses(&broker), vec![offline("truck-0")]);
    let (mut truck, present) = connect_at(&broker, 0, "truck-0", EXPIRY, None);
    assert!(!present, "an expired session came back");
    // A queue that came back would go out with the CONNACK, before the marker.
    subscribe(&mut truck, "orders/truck-0", QoS::AtLeastOnce);
    assert!(
        until_marker(broker.port(), &mut truck, "orders/truck-0").is_empty(),
        "an expired session's queue came back"
    );
    // A session whose connection the broker's stop cut off counts from the restart: the
    // client could not have come back while the broker was down.
    let (_truck1, present) = connect_at(&broker, 1, "truck-1", EXPIRY, None);
    assert!(
        present,
        "a session cut off by the stop expired during the outage"
    );
    stop(broker);
}
