//! The `fleetmq broker` command as a user runs it: flags and config errors exit 2 naming the
//! field, and SIGTERM stops it cleanly, telling 5.0 clients why.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use protocol::{decode, encode, ByteStr, Connect, Packet, Properties, Protocol, ReasonCode};

fn fleetmq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleetmq"))
}

/// Kills the broker if the test fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn connect_with_retry(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("broker never listened on {port}: {e}"),
        }
    }
}

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
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("fleetmq-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = fleetmq()
        .current_dir(&dir)
        .args([
            "broker",
            "--mqtt",
            &format!("127.0.0.1:{port}"),
            "--shards",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut broker = Running(child);
    let mut stream = connect_with_retry(port);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = BytesMut::new();
    let connect = Packet::Connect(Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive: 60,
        client_id: ByteStr::from("shutdown-watcher"),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    });
    encode(&connect, Protocol::V5, &mut out).unwrap();
    stream.write_all(&out).unwrap();

    let mut buf = BytesMut::new();
    let mut next = |stream: &mut TcpStream| loop {
        if let Some(p) = decode(&mut buf, Protocol::V5, u32::MAX).unwrap() {
            return Some(p);
        }
        let mut chunk = [0u8; 1024];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    assert!(matches!(next(&mut stream), Some(Packet::ConnAck(_))));

    let status = Command::new("kill")
        .args(["-TERM", &broker.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    match next(&mut stream) {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::SERVER_SHUTTING_DOWN),
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(status) = broker.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "broker did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(0));
    // The archive is on by default, in ./fleet-data.
    assert!(dir.join("fleet-data/wal").is_dir());
    let _ = std::fs::remove_dir_all(&dir);
}
