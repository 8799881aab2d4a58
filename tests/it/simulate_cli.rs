//! `fleetmq simulate` as a user runs it: the same seed writes the same truth, a run against a
//! broker publishes and verifies every reading, and bad flags exit 2 naming the flag.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use support::fleetmq;

#[test]
fn same_seed_same_truth_and_the_truth_has_the_contracted_keys() {
    let dir = tempfile::tempdir().unwrap();
    let truth = |name: &str, seed: &str| {
        let path = dir.path().join(name);
        let out = fleetmq()
            .args([
                "simulate",
                "--dry-run",
                "--vehicles",
                "5",
                "--duration",
                "20s",
                "--speedup",
                "60",
            ])
            .args(["--seed", seed, "--truth"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(path).unwrap()
    };
    let a = truth("a.json", "7");
    assert_eq!(a, truth("b.json", "7"), "same seed, different truth");
    assert_ne!(a, truth("c.json", "8"), "the seed changes nothing");
    let text = String::from_utf8(a).unwrap();
    for key in [
        "\"vehicles\"",
        "\"vehicle_id\"",
        "\"distance_m\"",
        "\"trips\"",
        "\"stops\"",
        "\"excursions\"",
        "\"door_openings\"",
        "\"published\"",
    ] {
        assert!(text.contains(key), "truth lacks {key}");
    }
}

#[test]
fn a_run_against_the_broker_verifies_every_reading() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, listening) = support::spawn_broker(
        fleetmq().current_dir(dir.path()).args([
            "broker",
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "off",
            "--no-archive",
        ]),
        &dir.path().join("broker.log"),
        false,
    );
    let port = listening.port();
    let out = fleetmq()
        .args(["simulate", "--broker", &format!("mqtt://127.0.0.1:{port}")])
        .args([
            "--vehicles",
            "20",
            "--duration",
            "4s",
            "--speedup",
            "30",
            "--threads",
            "1",
            "--verify",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("0 invalid, 0 vehicles mismatching the truth"),
        "{stderr}"
    );
    // The fleet left its map for dispatch pages: streets, depots and customers, retained.
    let mut page = support::MqttClient::connect(port, protocol::Protocol::V5, "map-reader");
    page.subscribe("fleet/_world", protocol::QoS::AtLeastOnce);
    let world = loop {
        match page.next() {
            Some(protocol::Packet::Publish(p)) => break p,
            Some(_) => continue,
            None => panic!("no retained fleet/_world"),
        }
    };
    assert!(world.retain);
    let geo: serde_json::Value = serde_json::from_slice(&world.payload).unwrap();
    let features = geo["features"].as_array().unwrap();
    let kinds = |kind: &str| {
        features
            .iter()
            .filter(|f| f["properties"]["kind"] == kind)
            .count()
    };
    let customers = features
        .iter()
        .find(|f| f["properties"]["kind"] == "customer")
        .map_or(0, |f| {
            f["geometry"]["coordinates"].as_array().unwrap().len()
        });
    assert!(kinds("depot") >= 1 && customers >= 20, "{geo}");
    assert!(
        features
            .iter()
            .filter(|f| f["geometry"]["type"] == "LineString")
            .count()
            >= 20,
        "streets"
    );
}

#[test]
fn bad_flags_exit_2_naming_them() {
    for (args, flag) in [
        (vec!["--qos", "3"], "--qos"),
        (vec!["--duration", "soon"], "--duration"),
        (vec!["--mqtt-version", "4.5"], "--mqtt-version"),
        (vec!["--truth", "x.parquet", "--dry-run"], "--truth"),
    ] {
        let out = fleetmq().arg("simulate").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(flag),
            "{args:?}"
        );
    }
}
