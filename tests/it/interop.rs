//! Interoperability with independent clients: runs the Python suite in `tests/interop/`
//! (Paho MQTT 3.1/3.1.1/5.0 clients, hand-built raw sockets, the mosquitto command line clients)
//! against the `fleetmq` binary.
//!
//! The same suite is validated against the reference broker with
//! `tests/interop/run_against_mosquitto.sh`, so a failure here is fleetmq's, not the test's.
//! Ignored by default because it needs python3 with paho-mqtt and pytest, and mosquitto-clients;
//! `.ci/run` installs them and runs it with `--include-ignored`.

// Test-only code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Upper bound for the whole pytest run (it takes about a minute against mosquitto).
const SUITE: Duration = Duration::from_secs(300);

/// A scratch directory and the processes running in it: killed and removed on drop, so a failing
/// assertion (a panic) never leaves a broker behind.
struct Scratch {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("fleetmq-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch {
            dir,
            children: Vec::new(),
        }
    }

    fn log(&self, name: &str) -> (PathBuf, File) {
        let path = self.dir.join(name);
        let file = File::create(&path).unwrap();
        (path, file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The last 200 lines of a log file.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {path:?}: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(200)..].join("\n")
}

/// Waits for `child` with a deadline; kills it when the deadline passes.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs python3 with paho-mqtt and pytest, and mosquitto-clients; .ci/run installs them"]
fn paho_and_mosquitto_clients_interoperate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut scratch = Scratch::new("interop");
    // The broker runs in the scratch directory, so any state it keeps (./fleet-data) goes there.
    let (broker_log, broker_out) = scratch.log("broker.log");
    let broker = Command::new(env!("CARGO_BIN_EXE_fleetmq"))
        .args([
            "broker",
            "--mqtt",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--http",
            "off",
        ])
        .current_dir(&scratch.dir)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(broker_out.try_clone().unwrap())
        .stderr(broker_out)
        .spawn()
        .expect("spawn the fleetmq binary");
    scratch.children.push(broker);

    // It binds port 0 and says which port it got.
    let port = support::wait_for_listeners(&mut scratch.children[0], &broker_log, false).port();

    let (pytest_log, pytest_out) = scratch.log("pytest.log");
    let mut pytest = Command::new("python3")
        .args([
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "tests/interop",
        ])
        .current_dir(root)
        .env("FLEETMQ_HOST", "127.0.0.1")
        .env("FLEETMQ_PORT", port.to_string())
        .env("FLEETMQ_PEER", "fleetmq")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(pytest_out.try_clone().unwrap())
        .stderr(pytest_out)
        .spawn()
        .expect("run python3 -m pytest (is python3 installed?)");
    let status = wait_bounded(&mut pytest, SUITE);
    let output = fs::read_to_string(&pytest_log).unwrap_or_default();
    println!("{output}");

    let broker_alive = scratch.children[0].try_wait().unwrap().is_none();
    match status {
        Some(s) if s.success() && broker_alive => {}
        other => {
            let what = match other {
                None => format!("did not finish within {SUITE:?}"),
                Some(s) => format!("exited with {s}"),
            };
            panic!(
                "the interop suite {what}{}; broker output:\n{}",
                if broker_alive {
                    ""
                } else {
                    " and the broker died"
                },
                tail(&broker_log)
            );
        }
    }
}
