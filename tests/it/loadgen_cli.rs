//! `fleetmq loadgen` against a real `fleetmq broker`: the patterns the side-by-side harness
//! relies on deliver what they claim, and `--idle` really holds its connections open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::Stdio,
    time::{Duration, Instant},
};

use support::{fleetmq, Killed};

/// A broker with its HTTP listener (for /metrics), 2 shards, nothing on disk.
fn broker(dir: &std::path::Path) -> (Killed, u16, u16) {
    let (broker, listening) = support::spawn_broker(
        fleetmq()
            .current_dir(dir)
            .args(["broker", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--shards", "2", "--no-archive", "--no-persistence"]),
        &dir.join("broker.log"),
        true,
    );
    (broker, listening.port(), listening.http_port())
}

/// Runs a load to its end and returns its `--json` summary.
fn load(mqtt: u16, args: &[&str]) -> serde_json::Value {
    let out = fleetmq()
        .args([
            "loadgen",
            "--broker",
            &format!("mqtt://127.0.0.1:{mqtt}"),
            "--json",
        ])
        .args([
            "--duration",
            "2s",
            "--payload-size",
            "100",
            "--threads",
            "2",
        ])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "loadgen failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

fn connections(http: u16) -> u64 {
    let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| l.starts_with("fleetmq_connections{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn pairs_deliver_each_message_once_and_shared_to_every_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, mqtt, _) = broker(dir.path());

    let pairs = load(
        mqtt,
        &[
            "--publishers",
            "4",
            "--subscribers",
            "4",
            "--pattern",
            "pairs",
            "--rate",
            "400",
            "--qos",
            "1",
        ],
    );
    let sent = pairs["sent"].as_u64().unwrap();
    assert!(sent > 400, "{pairs}");
    assert_eq!(pairs["received"].as_u64(), Some(sent), "{pairs}");
    assert_eq!(pairs["acked"].as_u64(), Some(sent), "{pairs}");
    assert_eq!(pairs["dropped"].as_u64(), Some(0), "{pairs}");
    assert!(pairs["latency_us"]["p99"].as_u64().unwrap() > 0);
    assert!(pairs["delivery_seconds"].as_f64().unwrap() > 1.0, "{pairs}");

    let shared = load(
        mqtt,
        &[
            "--publishers",
            "3",
            "--subscribers",
            "2",
            "--rate",
            "300",
            "--qos",
            "0",
        ],
    );
    let sent = shared["sent"].as_u64().unwrap();
    assert!(sent > 300, "{shared}");
    assert_eq!(shared["received"].as_u64(), Some(2 * sent), "{shared}");
}

#[test]
fn idle_connections_are_all_up_while_held_and_gone_after() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, mqtt, http) = broker(dir.path());
    let mut gen = Killed(
        fleetmq()
            .args(["loadgen", "--broker", &format!("mqtt://127.0.0.1:{mqtt}")])
            .args([
                "--idle",
                "300",
                "--duration",
                "3s",
                "--json",
                "--threads",
                "2",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(gen.0.stdout.take().unwrap()).lines();
    let up: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(up["event"], "connected");
    assert_eq!(up["connected"].as_u64(), Some(300), "{up}");
    assert_eq!(up["failures"].as_u64(), Some(0), "{up}");
    // /metrics is refreshed once a second.
    wait_for_connections(http, 300);

    let closed: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(closed["event"], "closed");
    assert!(gen.0.wait().unwrap().success());
    wait_for_connections(http, 0);
}

fn wait_for_connections(http: u16, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = connections(http);
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} connections, expected {expected}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_loadgen_flags_name_the_flag() {
    for (args, flag) in [
        (&["--pattern", "ring"][..], "--pattern"),
        (&["--payload-size", "8"][..], "--payload-size"),
        (&["--idle", "0"][..], "--idle"),
    ] {
        let out = fleetmq().arg("loadgen").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(flag),
            "{args:?}: {out:?}"
        );
    }
}
