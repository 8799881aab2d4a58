//! `fleetmq demo` end to end: it must run on a fresh directory, fill the archive with exactly
//! what the simulated fleet published, and refuse to overwrite data it did not write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn demo(dir: &std::path::Path, data: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fleetmq"))
        .current_dir(dir)
        .args([
            "demo",
            "--vehicles",
            "8",
            "--duration",
            "4s",
            "--speedup",
            "60",
            "--data",
            data,
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap()
}

#[test]
fn demo_archives_exactly_what_the_fleet_published() {
    let dir = tempfile::tempdir().unwrap();
    let out = demo(dir.path(), "fleet-data");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("every published reading is in the archive once"),
        "{stdout}"
    );
    assert!(dir.path().join("fleet-data/truth.json").is_file());
    assert!(dir.path().join("fleet-data/gps").is_dir());

    // The archive answers SQL and reports, and agrees with the simulator's ground truth.
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("fleet-data/truth.json")).unwrap())
            .unwrap();
    let vehicles = truth["vehicles"].as_array().unwrap();
    let published: u64 = vehicles
        .iter()
        .map(|v| v["published"]["gps"]["count"].as_u64().unwrap())
        .sum();
    let fleetmq = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_fleetmq"))
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let count = fleetmq(&[
        "query",
        "--data",
        "fleet-data",
        "--format",
        "json",
        "SELECT count(*) AS n, count(DISTINCT vehicle_id) AS v FROM gps",
    ]);
    assert_eq!(count[0]["n"].as_u64(), Some(published));
    assert_eq!(count[0]["v"].as_u64(), Some(vehicles.len() as u64));
    let summary = fleetmq(&[
        "report",
        "summary",
        "--data",
        "fleet-data",
        "--format",
        "json",
    ]);
    let rows = summary.as_array().unwrap();
    assert_eq!(rows.len(), vehicles.len());
    for row in rows {
        let id = row["vehicle_id"].as_str().unwrap();
        let truth_m = vehicles
            .iter()
            .find(|v| v["vehicle_id"] == id)
            .and_then(|v| v["distance_m"].as_f64())
            .unwrap();
        let measured = row["distance_m"].as_f64().unwrap();
        // Four minutes of fleet time: a kilometre or two each, where the road driven after the
        // last fix (or during a GPS dropout at the end) weighs a lot; the 1 % accuracy on
        // hours of driving is the analytics crate's own test. Here: 2 % or 50 m.
        assert!(
            (measured - truth_m).abs() <= (truth_m * 0.02).max(50.0),
            "{id}: report {measured:.1} m, truth {truth_m:.1} m"
        );
    }

    // A second demo replaces its own earlier data and archives the same fleet again.
    let again = demo(dir.path(), "fleet-data");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Data the demo did not write is never deleted.
    std::fs::create_dir_all(dir.path().join("precious")).unwrap();
    std::fs::write(dir.path().join("precious/keep.txt"), "mine").unwrap();
    let refused = demo(dir.path(), "precious");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--data"));
    assert!(dir.path().join("precious/keep.txt").is_file());
}
