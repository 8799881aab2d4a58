//! `fleetmq ingest` as a client of a broker: everything published reaches Parquet exactly once,
//! also when the ingest process is killed mid-stream and restarted (its persistent session keeps
//! what was published meanwhile, and what was not acknowledged is redelivered).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use arrow_array::{cast::AsArray, types::Int64Type};
use protocol::Protocol;
use support::{connect_when_listening, fleetmq, free_port, Killed, MqttClient};

fn wait_port(port: u16) {
    drop(connect_when_listening(port));
}

/// Starts `fleetmq ingest` against the broker on `port`, logging at `log_level`; its stderr
/// comes back line by line.
fn spawn_ingest(port: u16, data: &Path, log_level: &str) -> (Killed, mpsc::Receiver<String>) {
    let mut child = fleetmq()
        .args([
            "ingest",
            "--broker",
            &format!("mqtt://127.0.0.1:{port}"),
            "--data",
        ])
        .arg(data)
        .args(["--client-id", "archive-test"])
        .env("RUST_LOG", log_level)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (Killed(child), rx)
}

/// Starts `fleetmq ingest`, logging each message it logs (trace), and waits until the broker
/// acknowledged its subscription.
fn start_ingest(port: u16, data: &Path) -> (Killed, mpsc::Receiver<String>) {
    let (ingest, lines) = spawn_ingest(port, data, "info,ingest::standalone=trace");
    wait_for_line(&lines, "ingest subscribed");
    (ingest, lines)
}

/// Waits for the ingest to log a line containing `text`.
fn wait_for_line(lines: &mpsc::Receiver<String>, text: &str) {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the ingest never logged {text:?}"));
        if line.contains(text) {
            return;
        }
    }
}

fn gps(seq: u64) -> String {
    format!(
        r#"{{"ts":{},"seq":{seq},"lat":48.85,"lon":2.35,"speed_kmh":30.0,"heading_deg":90.0}}"#,
        1_764_000_000_000u64 + seq * 1000
    )
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(parquet_files(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out
}

/// Every (vehicle_id, seq) in the gps archive, asserting none appears twice.
fn archived_keys(data: &Path) -> BTreeSet<(String, i64)> {
    let mut keys = BTreeSet::new();
    for file in parquet_files(&data.join("gps")) {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&file).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            // vehicle_id is dictionary-encoded (a design contract): read it through its keys.
            let vehicles = batch
                .column_by_name("vehicle_id")
                .unwrap()
                .as_any_dictionary();
            let names = vehicles.values().as_string::<i32>();
            let indexes = vehicles.normalized_keys();
            let seqs = batch
                .column_by_name("seq")
                .unwrap()
                .as_primitive::<Int64Type>();
            for (i, name) in indexes.iter().enumerate() {
                let key = (names.value(*name).to_string(), seqs.value(i));
                assert!(keys.insert(key.clone()), "{key:?} archived twice");
            }
        }
    }
    keys
}

#[test]
fn standalone_ingest_archives_everything_once_across_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, listening) = support::spawn_broker(
        Command::new(env!("CARGO_BIN_EXE_fleetmq"))
            .current_dir(dir.path())
            .args([
                "broker",
                "--mqtt",
                "127.0.0.1:0",
                "--http",
                "off",
                "--no-archive",
                "--no-persistence",
            ]),
        &dir.path().join("broker.log"),
        false,
    );
    let port = listening.port();
    archive_across_a_kill(port);
}

#[test]
#[ignore = "needs mosquitto (Debian package); .ci/run installs it"]
fn standalone_ingest_archives_from_mosquitto_once_across_a_kill() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 10000\n"),
    )
    .unwrap();
    let mosquitto = if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    };
    let _broker = Killed(
        Command::new(mosquitto)
            .arg("-c")
            .arg(&conf)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    archive_across_a_kill(port);
}

/// Publishes through a broker on `port` while an ingest archives, kills the ingest half-way,
/// restarts it, and checks the archive holds every reading once.
fn archive_across_a_kill(port: u16) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("archive");
    let (ingest, _lines) = start_ingest(port, &data);
    let mut publisher = MqttClient::connect(port, Protocol::V3_1_1, "fleet-gateway");
    let mut expected = BTreeSet::new();
    for seq in 0..30 {
        for v in 0..4 {
            publisher.publish_acked(&format!("fleet/van-{v}/gps"), gps(seq));
            expected.insert((format!("van-{v}"), seq as i64));
        }
    }
    // Killed without warning: what it acknowledged is durable in its log; the rest the broker
    // still holds in the persistent session.
    drop(ingest);
    for seq in 30..50 {
        for v in 0..4 {
            publisher.publish_acked(&format!("fleet/van-{v}/gps"), gps(seq));
            expected.insert((format!("van-{v}"), seq as i64));
        }
    }
    // A replay after a reconnect, and one unreadable payload.
    publisher.publish_acked("fleet/van-0/gps", gps(10));
    publisher.publish_acked("fleet/van-0/gps", "not json");

    let (mut ingest, lines) = start_ingest(port, &data);
    // The last message published: once the ingest has logged it, it has logged everything
    // before it (one session, delivered in order).
    publisher.publish_acked("fleet/van-last/gps", gps(0));
    expected.insert(("van-last".to_string(), 0));
    wait_for_line(&lines, "fleet/van-last/gps");
    let status = ingest.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}");

    let archived = archived_keys(&data);
    let missing: Vec<_> = expected.difference(&archived).take(5).collect();
    assert!(missing.is_empty(), "missing from the archive: {missing:?}");
    assert_eq!(archived.len(), expected.len());
    assert_eq!(parquet_files(&data.join("rejects")).len(), 1);
}

/// A broker that speaks only MQTT 3.1.1 may drop an MQTT 5 CONNECT without a CONNACK (rumqttd's
/// 3.1.1 listener does). The ingest retries, and its warning must say what is wrong and which
/// option fixes it, not only that the connection closed.
#[test]
fn a_broker_that_drops_mqtt_5_gets_a_warning_naming_the_fix() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (levels_tx, levels) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            // Fixed header (2 bytes for a small CONNECT), then "\0\x04MQTT" and the level.
            let mut head = [0u8; 9];
            if stream.read_exact(&mut head).is_ok() {
                let _ = levels_tx.send(head[8]);
            }
            // Closed without a CONNACK, as a 3.1.1-only broker does with level 5.
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (_ingest, lines) = spawn_ingest(port, dir.path(), "warn");
    assert_eq!(levels.recv_timeout(Duration::from_secs(20)).unwrap(), 5);
    let warning = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a warning about the lost connection");
        if line.contains("connection lost") {
            break line;
        }
    };
    assert!(
        warning.contains("without answering CONNECT") && warning.contains("--mqtt-version 3.1.1"),
        "{warning}"
    );
}
