//! A persistent session taken over by another shard survives a restart whole, and a crash in
//! the middle of the takeover (both shards' logs holding a copy) recovers the newest copy
//! (a SIGKILL at any moment loses no acknowledged message and no session).
//!
//! The crash is reproduced by its result on disk, not by timing: the old shard's directory is
//! put back as it was before the takeover, which is what its log holds until the new shard's
//! record is durable.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;

use common::{
    raw_on_shard,
    v5::{
        connect, connect_on, disconnect, publish, subscribe, text, until_marker, until_marker_via,
    },
    TestBroker,
};
use protocol::{Protocol, QoS};

fn start(dir: &Path, shards: usize) -> TestBroker {
    let dir = dir.to_path_buf();
    TestBroker::with(move |c| {
        c.persistence.enabled = true;
        c.persistence.dir = dir;
        c.shards = shards;
    })
}

fn stop(broker: TestBroker) {
    broker.handle.shutdown();
    broker.handle.join().unwrap();
}

/// Copies the directory tree `from` to `to` (created).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `id` connects on `shard` with an hour's session; returns whether one was present.
fn connect_at(broker: &TestBroker, shard: usize, id: &str) -> (common::raw::Raw, bool) {
    connect_on(raw_on_shard(broker, shard, Protocol::V5), id, 3600, None)
}

/// A client without a session publishes `payload` on `topic` at QoS 1 (acknowledged).
fn publish_once(broker: &TestBroker, topic: &str, payload: &str) {
    let (mut publisher, _) = connect(broker.port(), "dispatcher", false);
    publish(&mut publisher, 1, topic, payload, QoS::AtLeastOnce, false);
    disconnect(publisher);
}

/// The van's session on shard 0 subscribes to commands; the van comes back on shard 1 (a
/// takeover), subscribes to alerts too, leaves, and one message of each kind is queued for
/// it there. Returns when the broker has stopped.
fn van_moves_from_shard_0_to_1(dir: &Path, before_takeover: &Path) {
    let broker = start(dir, 2);
    let (mut van, present) = connect_at(&broker, 0, "van-7");
    assert!(!present);
    subscribe(&mut van, "fleet/+/cmd", QoS::AtLeastOnce);
    disconnect(van);
    stop(broker);
    // Shard 0's log as it is until the takeover's new copy is durable.
    copy_dir(&dir.join("shard-0"), before_takeover);

    let broker = start(dir, 2);
    let (mut van, present) = connect_at(&broker, 1, "van-7");
    assert!(present, "the session moves to shard 1");
    subscribe(&mut van, "fleet/+/alerts", QoS::AtLeastOnce);
    disconnect(van);
    publish_once(&broker, "fleet/7/cmd", "c1");
    publish_once(&broker, "fleet/7/alerts", "a1");
    stop(broker);
}

/// The payloads of what the van is owed (it subscribes to commands in every test).
fn payloads(broker: &TestBroker, raw: &mut common::raw::Raw) -> Vec<String> {
    until_marker(broker.port(), raw, "fleet/marker/cmd")
        .iter()
        .map(text)
        .collect()
}

/// A one-shard broker on a copy of the shard directory `shard_dir` alone (the copy is kept
/// in the returned directory for as long as the broker runs).
fn alone(shard_dir: &Path) -> (tempfile::TempDir, TestBroker) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(shard_dir, &dir.path().join("shard-0"));
    let broker = start(dir.path(), 1);
    (dir, broker)
}

/// The van comes back (on any shard) to its session with both messages owed.
fn van_gets_its_session_back(broker: &TestBroker) {
    let (mut van, present) = connect(broker.port(), "van-7", true);
    assert!(present, "the session is kept");
    let got = payloads(broker, &mut van);
    assert_eq!(got, vec!["c1", "a1"], "the newest copy, with both queued");
    disconnect(van);
}

#[test]
fn a_session_taken_over_by_another_shard_survives_a_restart_whole() {
    let dir = tempfile::tempdir().unwrap();
    let before = tempfile::tempdir().unwrap();
    van_moves_from_shard_0_to_1(dir.path(), &before.path().join("shard-0"));
    let broker = start(dir.path(), 2);
    van_gets_its_session_back(&broker);
    // Its subscriptions came back too: a new alert reaches it.
    let (mut van, _) = connect(broker.port(), "van-7", true);
    let (mut dispatcher, _) = connect(broker.port(), "dispatcher", false);
    publish(
        &mut dispatcher,
        1,
        "fleet/8/alerts",
        "a2",
        QoS::AtLeastOnce,
        false,
    );
    let got: Vec<String> = until_marker_via(&mut dispatcher, &mut van, "fleet/marker/cmd")
        .iter()
        .map(text)
        .collect();
    assert!(got.contains(&"a2".to_string()), "{got:?}");
    disconnect(dispatcher);
    disconnect(van);
    stop(broker);
}

/// Once the new copy was durable, the shard the session left removed its own: alone, its
/// directory holds no session for the van.
#[test]
fn the_shard_a_session_left_removes_its_copy_once_the_new_one_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let before = tempfile::tempdir().unwrap();
    van_moves_from_shard_0_to_1(dir.path(), &before.path().join("shard-0"));
    let (_copy, broker) = alone(&dir.path().join("shard-0"));
    let (van, present) = connect(broker.port(), "van-7", true);
    assert!(
        !present,
        "the old shard still held the session it handed over"
    );
    disconnect(van);
    stop(broker);
}

/// Regression guard: a crash after the new shard's record of a taken-over session
/// is durable and before the old shard's removal is leaves a copy on each shard. Recovery must
/// keep the newer one, with the subscription and messages the session got after the takeover,
/// both when both shards run again and when one takes over the other's directory.
#[test]
fn a_crash_during_a_takeover_recovers_the_newest_copy_of_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let before = tempfile::tempdir().unwrap();
    van_moves_from_shard_0_to_1(dir.path(), &before.path().join("shard-0"));
    // The crash: shard 0's removal never reached its log.
    std::fs::remove_dir_all(dir.path().join("shard-0")).unwrap();
    copy_dir(&before.path().join("shard-0"), &dir.path().join("shard-0"));
    let merged = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), merged.path());

    // The shard that arbitrates the van's id sees both copies registered, in either order.
    let broker = start(dir.path(), 2);
    van_gets_its_session_back(&broker);
    stop(broker);

    // One shard left: shard 0 merges shard 1's directory into its own, stale, copy.
    let broker = start(merged.path(), 1);
    van_gets_its_session_back(&broker);
    stop(broker);
}

/// A session that goes from shard 0 to shard 1 and back stays in shard 0's log: the late
/// removal the first takeover asked of shard 0 must not delete the newer copy it logged since.
#[test]
fn a_session_taken_back_by_the_shard_it_left_stays_in_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), 2);
    for (shard, filter) in [
        (0, "fleet/+/cmd"),
        (1, "fleet/+/alerts"),
        (0, "fleet/+/eta"),
    ] {
        let (mut van, _) = connect_at(&broker, shard, "van-7");
        subscribe(&mut van, filter, QoS::AtLeastOnce);
        disconnect(van);
    }
    publish_once(&broker, "fleet/7/cmd", "c1");
    publish_once(&broker, "fleet/7/alerts", "a1");
    publish_once(&broker, "fleet/7/eta", "e1");
    stop(broker);
    // Shard 0 alone holds it whole; shard 1 removed the copy it handed back.
    for (shard, held) in [(0, true), (1, false)] {
        let name = format!("shard-{shard}");
        let (_copy, broker) = alone(&dir.path().join(&name));
        let (mut van, present) = connect(broker.port(), "van-7", true);
        assert_eq!(present, held, "{name}");
        if held {
            let got = payloads(&broker, &mut van);
            assert_eq!(got, vec!["c1", "a1", "e1"]);
        }
        disconnect(van);
        stop(broker);
    }
}

/// A session that went from shard 0 to shard 1 and whose client comes back to shard 0 with a
/// clean start is gone after a restart: neither shard's log keeps a copy of it.
#[test]
fn a_clean_start_back_on_the_shard_a_session_left_ends_it_in_both_logs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), 2);
    for shard in [0, 1] {
        let (mut van, _) = connect_at(&broker, shard, "van-7");
        subscribe(&mut van, "fleet/+/cmd", QoS::AtLeastOnce);
        disconnect(van);
    }
    let (van, present) = connect_on(raw_on_shard(&broker, 0, Protocol::V5), "van-7", 0, None);
    assert!(!present);
    disconnect(van);
    stop(broker);
    let broker = start(dir.path(), 2);
    let (van, present) = connect(broker.port(), "van-7", true);
    assert!(!present, "a session ended by a clean start came back");
    disconnect(van);
    stop(broker);
}
