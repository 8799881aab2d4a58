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
