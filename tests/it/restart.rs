//! The restart matrix: `fleetmq broker` started again on a data directory it wrote, on every
//! kind of filesystem a user puts `--data` on, comes up, keeps everything it acknowledged, and
//! exits 0 on SIGTERM.
//!
//! For each place (the default `./fleet-data` on the disk the tests run on, tmpfs, and, as
//! root, ramfs, which refuses `O_DIRECT`, and overlayfs, Docker's default), each way of
//! stopping (SIGTERM, SIGKILL) and each state (empty; one retained message; a persistent
//! session with queued messages and archived readings, compacted into snapshots many times;
//! the same with a torn record at the end of every log): start, fill, stop, start again and
//! check, stop with SIGTERM (exit 0), and start a third time on what the second run wrote.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use protocol::{Packet, Properties, Protocol, PubAck, QoS, ReasonCode};
use support::{fleetmq, Killed, MqttClient};

/// How the first broker stops.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Term,
    Kill,
}

/// What the first broker leaves behind.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// No session, no retained message: a broker started and stopped.
    Empty,
    /// One retained message.
    Tiny,
    /// A persistent session owed `QUEUED` messages, a retained message and `READINGS`
    /// archived GPS readings, with snapshots every few KiB of log.
    Compacted,
    /// `Compacted`, then a half-written record appended to every log (state and archive).
    Torn,
}

const QUEUED: usize = 120;
const READINGS: usize = 30;
const SHARDS: &str = "2";

/// A data directory under test: the broker runs in `cwd`, with `--data` when `data` is set.
struct Place {
    cwd: PathBuf,
    data: Option<PathBuf>,
}

impl Place {
    /// The archive and state directory the broker uses.
    fn data_dir(&self) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(|| self.cwd.join("fleet-data"))
    }
}

/// A started broker.
struct Broker {
    process: Killed,
    port: u16,
}

/// `fleetmq broker` on `place`, on a port of its own choosing, with snapshots every 2 KiB of
/// state log (the compacted states go through many of them).
fn broker_command(place: &Place) -> Command {
    let config = place.cwd.join("fleetmq.toml");
    fs::write(&config, "[persistence]\ncompact_bytes = 2048\n").unwrap();
    let mut command = fleetmq();
    command.current_dir(&place.cwd).args([
        "broker",
        "--config",
        config.to_str().unwrap(),
        "--mqtt",
        "127.0.0.1:0",
        "--http",
        "off",
        "--shards",
        SHARDS,
    ]);
    if let Some(data) = &place.data {
        command.args(["--data", data.to_str().unwrap()]);
    }
    command
}

fn start(place: &Place, run: usize) -> Broker {
    let mut command = broker_command(place);
    let log_path = place.cwd.join(format!("broker-{run}.log"));
    let log = fs::File::create(&log_path).unwrap();
    let mut process = Killed(command.stdout(Stdio::null()).stderr(log).spawn().unwrap());
    let port = support::wait_for_listeners(&mut process.0, &log_path, false).port();
    Broker { process, port }
}

fn stop(mut broker: Broker, how: Stop) {
    match how {
        Stop::Term => {
            let status = broker.process.terminate(Duration::from_secs(20));
            assert!(status.success(), "SIGTERM: exit status {status}");
        }
        Stop::Kill => {
            broker.process.0.kill().unwrap();
            broker.process.0.wait().unwrap();
        }
    }
}

fn reading(seq: usize) -> String {
    format!(
        r#"{{"ts":{},"seq":{seq},"lat":52.1,"lon":4.3,"speed_kmh":61.5,"heading_deg":90}}"#,
        1_764_000_000_000_u64 + seq as u64 * 1000
    )
}

/// Leaves `state` in the running broker, everything acknowledged.
fn fill(broker: &Broker, state: State) {
    if state == State::Empty {
        return;
    }
    let mut publisher = MqttClient::connect(broker.port, Protocol::V3_1_1, "ops");
    publisher.publish_acked_with("depot/gate", "open", true);
    if state == State::Tiny {
        return;
    }
    let (mut truck, present) =
        MqttClient::connect_session(broker.port, Protocol::V5, "truck-1", false);
    assert!(!present);
    truck.subscribe("cmd/truck-1/#", QoS::AtLeastOnce);
    drop(truck);
    // The session is offline once its connection is gone; messages published from now on
    // are queued for it.
    wait_offline(broker.port, "truck-1");
    for n in 0..QUEUED {
        publisher.publish_acked(
            "cmd/truck-1/setpoint",
            format!("setpoint {n} {}", "x".repeat(64)),
        );
    }
    for seq in 0..READINGS {
        publisher.publish_acked("fleet/truck-1/gps", reading(seq));
    }
}

/// A takeover of a persistent session is the one way to be sure the broker has handled the
/// end of its previous connection: connect again, and leave with DISCONNECT.
fn wait_offline(port: u16, client_id: &str) {
    let (mut again, present) = MqttClient::connect_session(port, Protocol::V5, client_id, false);
    assert!(present, "session of {client_id} kept while connected");
    again.send(&Packet::Disconnect(protocol::Disconnect {
        reason: ReasonCode::SUCCESS,
        properties: Properties::default(),
    }));
    while again.next().is_some() {}
}

/// Appends half of a record to the newest file of every log in `dir` (recursively): what a
/// crash in the middle of a write leaves. Zero padding after the data (direct I/O pads its
/// last block) is overwritten, as the next write would.
fn tear_logs(dir: &Path) -> usize {
    let mut torn = 0;
    for shard_dir in ["state", "wal"]
        .iter()
        .flat_map(|kind| fs::read_dir(dir.join(kind)).into_iter().flatten())
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
    {
        let newest = fs::read_dir(&shard_dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("log" | "wal")))
            .max();
        let Some(newest) = newest else { continue };
        let bytes = fs::read(&newest).unwrap();
        let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        let mut file = fs::OpenOptions::new().write(true).open(&newest).unwrap();
        file.set_len(end as u64).unwrap();
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(end as u64)).unwrap();
        // A header announcing 40 bytes, a checksum that cannot match, and 10 of the 40.
        file.write_all(&40u32.to_le_bytes()).unwrap();
        file.write_all(&0x1234_5678u32.to_le_bytes()).unwrap();
        file.write_all(&[0xab; 10]).unwrap();
        file.sync_all().unwrap();
        torn += 1;
    }
    torn
}

/// Checks that the restarted broker has everything `state` acknowledged.
fn check(broker: &Broker, state: State) {
    if state == State::Empty {
        return;
    }
    let mut watcher = MqttClient::connect(broker.port, Protocol::V3_1_1, "watcher");
    watcher.subscribe("depot/#", QoS::AtMostOnce);
    match watcher.next() {
        Some(Packet::Publish(p)) => {
            assert_eq!(&p.topic[..], "depot/gate");
            assert_eq!(&p.payload[..], b"open");
            assert!(p.retain);
        }
        other => panic!("expected the retained message, got {other:?}"),
    }
    if state == State::Tiny {
        return;
    }
    let (mut truck, present) =
        MqttClient::connect_session(broker.port, Protocol::V5, "truck-1", false);
    assert!(present, "the persistent session came back");
    for n in 0..QUEUED {
        match truck.next() {
            Some(Packet::Publish(p)) => {
                let expected = format!("setpoint {n} {}", "x".repeat(64));
                assert_eq!(&p.payload[..], expected.as_bytes(), "message {n}");
                truck.send(&Packet::PubAck(PubAck {
                    pkid: p.pkid,
                    reason: ReasonCode::SUCCESS,
                    properties: Properties::default(),
                }));
            }
            other => panic!("queued message {n}: expected PUBLISH, got {other:?}"),
        }
    }
    // The subscription is still there: a new message reaches the session.
    let mut publisher = MqttClient::connect(broker.port, Protocol::V3_1_1, "ops-2");
    publisher.publish_acked("cmd/truck-1/setpoint", "after restart");
    match truck.next() {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"after restart"),
        other => panic!("expected the new message, got {other:?}"),
    }
}

/// The rows `sql` selects from the archive in `data`, as CSV lines without the header.
fn query(data: &Path, sql: &str) -> Vec<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_fleetmq"))
        .args([
            "query",
            "--data",
            data.to_str().unwrap(),
            sql,
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "query failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    text.lines().skip(1).map(str::to_owned).collect()
}

/// Readings of `truck-1` in the archive, distinct by sequence number.
fn archived_readings(data: &Path) -> (usize, usize) {
    let rows = query(
        data,
        "SELECT count(*) AS n, count(DISTINCT seq) AS d FROM gps WHERE vehicle_id = 'truck-1'",
    );
    let row = rows.first().cloned().unwrap_or_default();
    let mut numbers = row.split(',').map(|n| n.trim().parse::<usize>().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

/// Runs one cell of the matrix in a fresh place.
fn scenario(place: &Place, how: Stop, state: State) {
    let _logs = LogsOnFailure(&place.cwd, format!("{how:?} after {state:?}"));
    let first = start(place, 1);
    fill(&first, state);
    stop(first, how);
    if state == State::Torn {
        assert!(tear_logs(&place.data_dir()) >= 2, "no logs to tear");
    }
    let second = start(place, 2);
    check(&second, state);
    stop(second, Stop::Term);
    if state == State::Torn {
        let log = fs::read_to_string(place.cwd.join("broker-2.log")).unwrap();
        assert!(log.contains("torn"), "the torn tails were not reported");
    }
    // The second run wrote its own snapshot and logs: they must start a broker too.
    let third = start(place, 3);
    stop(third, Stop::Term);
    if matches!(state, State::Compacted | State::Torn) {
        assert_eq!(
            archived_readings(&place.data_dir()),
            (READINGS, READINGS),
            "every acknowledged reading archived exactly once"
        );
    }
}

/// Every cell of the matrix, each in a fresh directory made by `fresh`.
fn matrix(mut fresh: impl FnMut(&str) -> Place) {
    for how in [Stop::Term, Stop::Kill] {
        for state in [State::Empty, State::Tiny, State::Compacted, State::Torn] {
            let place = fresh(&format!("{how:?}-{state:?}").to_lowercase());
            scenario(&place, how, state);
        }
    }
}

/// Prints the logs of the brokers of a failed scenario.
struct LogsOnFailure<'a>(&'a Path, String);

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        eprintln!("==== scenario {} in {} ====", self.1, self.0.display());
        for run in 1..=3 {
            if let Ok(log) = fs::read_to_string(self.0.join(format!("broker-{run}.log"))) {
                eprintln!("---- broker run {run} ----\n{log}");
            }
        }
    }
}

#[test]
fn restarts_on_the_default_data_directory() {
    let root = tempfile::tempdir().unwrap();
    matrix(|name| {
        let cwd = root.path().join(name);
        fs::create_dir_all(&cwd).unwrap();
        Place { cwd, data: None }
    });
}

#[test]
fn restarts_on_tmpfs() {
    let shm = Path::new("/dev/shm");
    assert!(shm.is_dir(), "/dev/shm (tmpfs) is missing");
    let root = tempfile::Builder::new()
        .prefix("fleetmq-restart-")
        .tempdir_in(shm)
        .unwrap();
    matrix_under(root.path());
}

/// A filesystem mounted for the test and unmounted when it ends.
struct Mounted {
    point: tempfile::TempDir,
    /// What the filesystem lives on (an image, overlay layers), removed after the unmount.
    _backing: Option<tempfile::TempDir>,
}

impl Mounted {
    fn new(args: &[&str], backing: Option<tempfile::TempDir>) -> Mounted {
        let point = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(args)
            .arg(point.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mount {args:?} failed (this test needs root)"
        );
        Mounted {
            point,
            _backing: backing,
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.point.path()).status();
    }
}

/// The matrix with every data directory under `root` (the brokers' logs and config elsewhere).
fn matrix_under(root: &Path) {
    let logs = tempfile::tempdir().unwrap();
    matrix(|name| {
        let cwd = logs.path().join(name);
        fs::create_dir_all(&cwd).unwrap();
        Place {
            cwd,
            data: Some(root.join(name)),
        }
    });
}

/// ramfs refuses `O_DIRECT` (as tmpfs did before Linux 6.6, and many FUSE and network
/// filesystems do): the logs fall back to the page cache and fdatasync.
#[test]
#[ignore = "mounts a ramfs: needs root (CI runs it)"]
fn restarts_on_a_filesystem_that_refuses_direct_io() {
    let mounted = Mounted::new(&["-t", "ramfs", "ramfs"], None);
    let probe = mounted.point.path().join("probe");
    let refused = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags_o_direct()
        .open(&probe);
    assert!(
        refused.is_err(),
        "ramfs took O_DIRECT: the test proves nothing"
    );
    matrix_under(mounted.point.path());
}

/// xfs, on a loop device over a sparse image file.
#[test]
#[ignore = "mounts an xfs image: needs root and mkfs.xfs (CI installs xfsprogs and runs it)"]
fn restarts_on_xfs() {
    let image_dir = tempfile::tempdir().unwrap();
    let image = image_dir.path().join("xfs.img");
    fs::File::create(&image)
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    let made = Command::new("mkfs.xfs")
        .arg("-q")
        .arg(&image)
        .status()
        .expect("running mkfs.xfs (Debian package xfsprogs)");
    assert!(made.success(), "mkfs.xfs failed");
    let mounted = Mounted::new(&["-o", "loop", image.to_str().unwrap()], Some(image_dir));
    matrix_under(mounted.point.path());
}

/// overlayfs is the root filesystem of a Docker container.
#[test]
#[ignore = "mounts an overlayfs: needs root (CI runs it)"]
fn restarts_on_overlayfs() {
    let layers = tempfile::tempdir().unwrap();
    for dir in ["lower", "upper", "work"] {
        fs::create_dir(layers.path().join(dir)).unwrap();
    }
    let options = format!(
        "lowerdir={0}/lower,upperdir={0}/upper,workdir={0}/work",
        layers.path().display()
    );
    let mounted = Mounted::new(&["-t", "overlay", "overlay", "-o", &options], Some(layers));
    matrix_under(mounted.point.path());
}

/// `OpenOptions` with `O_DIRECT`, spelled without a libc dependency.
trait DirectFlag {
    fn custom_flags_o_direct(&mut self) -> &mut Self;
}

impl DirectFlag for fs::OpenOptions {
    fn custom_flags_o_direct(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        /// `O_DIRECT` on x86-64 and aarch64 Linux.
        #[cfg(target_arch = "aarch64")]
        const O_DIRECT: i32 = 0o200000;
        #[cfg(not(target_arch = "aarch64"))]
        const O_DIRECT: i32 = 0o40000;
        self.custom_flags(O_DIRECT)
    }
}

/// A start-up that cannot read its state exits 1 and says which file, what it was doing and
/// what the user can do, without serving anything meanwhile.
#[test]
fn a_state_that_cannot_be_read_fails_the_start_with_the_file_and_the_fix() {
    let root = tempfile::tempdir().unwrap();
    let place = Place {
        cwd: root.path().to_path_buf(),
        data: None,
    };
    let first = start(&place, 1);
    stop(first, Stop::Term);
    // A directory where the snapshot should be: reading it fails on any filesystem, as root too.
    let snapshot = place.data_dir().join("state/shard-0/snapshot");
    fs::remove_file(&snapshot).unwrap();
    fs::create_dir(&snapshot).unwrap();
    let output = broker_command(&place).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The process is gone (output() waited for it): nothing half started is left serving.
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit code; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("reading {}", snapshot.display())),
        "file and operation named:\n{stderr}"
    );
    assert!(
        stderr.contains("move the shard's directory aside"),
        "fix named:\n{stderr}"
    );
    assert!(
        !stderr.contains("MQTT on"),
        "the broker said it was serving:\n{stderr}"
    );
}

/// One connection with 100 QoS 1 messages in flight (a gateway forwarding a fleet): the broker
/// reads on while earlier messages wait for their group commit, and still acknowledges none
/// before it is durable. Killed with SIGKILL in the middle of the stream, the broker comes
/// back with every acknowledged reading in the archive, once.
#[test]
fn no_reading_is_acknowledged_before_it_is_durable_with_100_in_flight() {
    const TOTAL: usize = 3000;
    const IN_FLIGHT: usize = 100;
    const KILL_AFTER: usize = 2000;
    let root = tempfile::tempdir().unwrap();
    let place = Place {
        cwd: root.path().to_path_buf(),
        data: None,
    };
    let _logs = LogsOnFailure(&place.cwd, "100 in flight, then SIGKILL".into());
    let mut broker = start(&place, 1);
    let mut gateway = MqttClient::connect(broker.port, Protocol::V3_1_1, "gateway");
    let mut acked = std::collections::BTreeSet::new();
    let mut sent = 0;
    while acked.len() < KILL_AFTER {
        if sent < TOTAL && sent - acked.len() < IN_FLIGHT {
            // Packet identifiers 1..=TOTAL: one per reading, none reused.
            gateway.send(&Packet::Publish(protocol::Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: protocol::ByteStr::from("fleet/gw-1/gps"),
                pkid: sent as u16 + 1,
                payload: reading(sent).into(),
                properties: Properties::default(),
            }));
            sent += 1;
            continue;
        }
        match gateway.next() {
            Some(Packet::PubAck(ack)) => assert!(acked.insert(usize::from(ack.pkid) - 1)),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    assert!(sent - acked.len() > 0, "nothing was in flight at the kill");
    broker.process.0.kill().unwrap();
    broker.process.0.wait().unwrap();
    let again = start(&place, 2);
    stop(again, Stop::Term);
    let archived: Vec<usize> = query(
        &place.data_dir(),
        "SELECT seq FROM gps WHERE vehicle_id = 'gw-1' ORDER BY seq",
    )
    .iter()
    .map(|l| l.trim().parse().unwrap())
    .collect();
    let distinct: std::collections::BTreeSet<usize> = archived.iter().copied().collect();
    assert_eq!(distinct.len(), archived.len(), "a reading archived twice");
    let lost: Vec<_> = acked.difference(&distinct).collect();
    assert!(lost.is_empty(), "acknowledged but not archived: {lost:?}");
}
