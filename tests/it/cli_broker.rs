//! The `fleetmq broker` command as a user runs it: flags and config errors exit 2 naming the
//! field, and SIGTERM stops it cleanly, telling 5.0 clients why.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::Duration;

use protocol::{Packet, Protocol, ReasonCode};
use support::{fleetmq, Killed, MqttClient};

#[test]
fn bad_flags_and_config_exit_2_naming_the_field() {
    let out = fleetmq()
        .args(["broker", "--shards", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--shards"));

    let out = fleetmq()
        .args(["broker", "--mqtt", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mqtt"));

    let dir = std::env::temp_dir().join(format!("fleetmq-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bad.toml");
    std::fs::write(&config, "[limits]\nmax_inflight = 0\n").unwrap();
    let out = fleetmq()
        .args(["broker", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.max_inflight"));

    std::fs::write(&config, "[limits]\nmax_infligt = 5\n").unwrap();
    let out = fleetmq()
        .args(["broker", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_infligt"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_disconnects_v5_clients_with_server_shutting_down_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, listening) = support::spawn_broker(
        fleetmq().current_dir(dir.path()).args([
            "broker",
            "--mqtt",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--http",
            "off",
        ]),
        &dir.path().join("broker.log"),
        false,
    );
    let port = listening.port();
    let mut client = MqttClient::connect(port, Protocol::V5, "shutdown-watcher");
    let status = broker.terminate(Duration::from_secs(15));
    match client.next() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::SERVER_SHUTTING_DOWN),
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
    assert_eq!(status.code(), Some(0));
    // The archive is on by default, in ./fleet-data.
    assert!(dir.path().join("fleet-data/wal").is_dir());
}

/// The shards bind with SO_REUSEPORT, which would let a second broker on the same port start
/// and quietly take some of the first one's clients; it must refuse instead, naming the port.
#[test]
fn a_second_broker_on_a_port_in_use_refuses_to_start() {
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |dir: &std::path::Path, mqtt: &str| {
        let mut command = fleetmq();
        command
            .current_dir(dir)
            .args(["broker", "--mqtt", mqtt])
            .args(["--http", "off", "--no-archive", "--no-persistence"]);
        command
    };
    // The first takes a port of its own choosing; the second is pointed at it.
    let (_first, listening) = support::spawn_broker(
        &mut start(first_dir.path(), "127.0.0.1:0"),
        &first_dir.path().join("broker.log"),
        false,
    );
    let port = listening.port();
    let mut second = Killed(
        start(second_dir.path(), &format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = second.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a second broker is running on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains(&port.to_string()), "{stderr}");
}
