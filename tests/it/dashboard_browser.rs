//! The dispatch page in a real browser, served by the `fleetmq` binary itself: the page from the
//! HTTP listener, its MQTT over WebSocket at `/mqtt`, the fleet published over MQTT/TCP.
//!
//! The browser side is `dashboard/test/run.py` (python3, standard library only, driving Debian's
//! chromium over the DevTools protocol). It checks the online count, the list, sorting, alarms,
//! the detail panel and a reconnect with 12 vehicles, then counts 5000 vehicles at 1 Hz and
//! reports the page's frame times. Screenshots and `report.json` land in
//! `target/tmp/dashboard-browser/`.
//!
//! Run: `cargo test --test dashboard_browser -- --ignored --nocapture`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

#[test]
#[ignore = "needs chromium (Debian package) and node/python deps; .ci/run installs them"]
fn dashboard_counts_and_draws_the_fleet_in_chromium() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-browser");
    // A fresh working and data directory: the test counts exactly the vehicles it publishes, so
    // nothing may be left over from an earlier run. No archive: this test is about the page at
    // 10 000 messages/s, and a debug build's write-ahead log would throttle the publisher.
    let work = out.join(format!("broker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let log_path = out.join("broker.log");

    // On subscribing, the page is sent every vehicle's retained status: 5000 at QoS 1, more than
    // the default per-client queue (1000, like mosquitto's) holds, so the rest would be dropped.
    // A dispatch dashboard for a large fleet needs a larger queue; the test sets one.
    let config = work.join("broker.toml");
    std::fs::write(
        &config,
        "[limits]\nmax_queued_messages = 100000\nmax_outbox_packets = 65536\n",
    )
    .unwrap();

    // Ports of the broker's own choosing, read back from its log.
    let (broker, listening) = support::spawn_broker(
        Command::new(env!("CARGO_BIN_EXE_fleetmq"))
            .args(["broker", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--config")
            .arg(&config)
            .arg("--data")
            .arg(work.join("data"))
            .arg("--no-archive")
            .current_dir(&work),
        &log_path,
        true,
    );
    let (mqtt, http) = (listening.port(), listening.http_port());

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard/test/run.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let run = Command::new(&python)
        .arg(&script)
        .args(["--base", &format!("http://127.0.0.1:{http}")])
        .args(["--mqtt-port", &mqtt.to_string()])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("running {python} {}: {e}", script.display()));
    println!("{}", String::from_utf8_lossy(&run.stdout));
    eprintln!("{}", String::from_utf8_lossy(&run.stderr));
    drop(broker);
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        run.status.success(),
        "the browser test failed ({}); screenshots, report.json and broker.log are in {}",
        run.status,
        out.display()
    );
}

/// A `fleetmq broker` on ports of its choosing in `work` (its archive, if any, in
/// `work/data`), with `extra` flags; its log in `work/broker.log`.
fn broker_in(work: &Path, extra: &[&std::ffi::OsStr]) -> (support::Killed, support::Listening) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleetmq"));
    command
        .args(["broker", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(extra)
        .arg("--data")
        .arg(work.join("data"))
        .current_dir(work);
    if !extra.iter().any(|a| *a == "--config") {
        command.arg("--no-archive");
    }
    support::spawn_broker(&mut command, &work.join("broker.log"), true)
}

/// Runs `dashboard/test/{script}` against the broker listening on `listening` (its page and,
/// with `mqtt`, its MQTT port) with `args`; returns whether it passed and what it printed.
fn page_script(
    script: &str,
    listening: &support::Listening,
    mqtt: bool,
    args: &[&str],
) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dashboard/test")
        .join(script);
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut command = Command::new(&python);
    command.arg(&script).args([
        "--base",
        &format!("http://127.0.0.1:{}", listening.http_port()),
    ]);
    if mqtt {
        command.args(["--mqtt-port", &listening.port().to_string()]);
    }
    let run = command
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {python} {}: {e}", script.display()));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    println!("{printed}");
    (run.status.success(), printed)
}

/// Cross-site WebSocket hijacking, in a real browser: a page from another origin cannot open
/// MQTT over WebSocket at the broker, while the broker's own dashboard page can
/// (`dashboard/test/origin.py`).
#[test]
#[ignore = "needs chromium (Debian package); .ci/run installs it"]
fn a_page_of_another_origin_cannot_use_the_broker_from_chromium() {
    let work = tempfile::tempdir().unwrap();
    let (broker, listening) = broker_in(work.path(), &[]);
    let (passed, printed) = page_script("origin.py", &listening, false, &[]);
    drop(broker);
    assert!(passed, "{printed}");
    let log = std::fs::read_to_string(work.path().join("broker.log")).unwrap();
    assert!(
        log.contains("WebSocket upgrade refused"),
        "the broker logged the refusal"
    );
}

/// The page logs in to a broker that needs passwords (a file made by mosquitto_passwd), is told
/// when a password is wrong, and then sees only what its user's ACL lets it read
/// (`dashboard/test/login.py`).
#[test]
#[ignore = "needs chromium and mosquitto_passwd (Debian packages); .ci/run installs them"]
fn the_page_logs_in_and_its_acl_applies_in_chromium() {
    let work = tempfile::tempdir().unwrap();
    let passwords = work.path().join("passwords");
    for (i, (user, password)) in [("truck", "truck-pw"), ("dispatch", "dispatch-pw")]
        .iter()
        .enumerate()
    {
        let mut command = Command::new("mosquitto_passwd");
        if i == 0 {
            command.arg("-c");
        }
        let status = command
            .arg("-b")
            .arg(&passwords)
            .args([user, password])
            .status()
            .expect("mosquitto_passwd installed");
        assert!(status.success());
    }
    let acl = work.path().join("acl");
    std::fs::write(
        &acl,
        "user truck\ntopic write fleet/#\n\nuser dispatch\ntopic read fleet/+/gps\n",
    )
    .unwrap();
    let flags = [
        "--password-file".as_ref(),
        passwords.as_os_str(),
        "--acl-file".as_ref(),
        acl.as_os_str(),
    ];
    let (broker, listening) = broker_in(work.path(), &flags);
    let args = [
        "--publisher",
        "truck:truck-pw",
        "--dispatcher",
        "dispatch:dispatch-pw",
    ];
    let (passed, printed) = page_script("login.py", &listening, true, &args);
    drop(broker);
    assert!(
        passed,
        "{printed}\n{}",
        std::fs::read_to_string(work.path().join("broker.log")).unwrap_or_default()
    );
}

/// One set of cold-chain rules: the broker hands its `[coldchain]` to the page (retained) and
/// to the reports (beside the archive), and the page's alarm and `fleetmq report excursions`
/// agree on an excursion's start and end (`dashboard/test/excursion.py`).
#[test]
#[ignore = "needs chromium (Debian package); .ci/run installs it"]
fn the_page_and_the_report_agree_on_an_excursion_in_chromium() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("broker.toml");
    // Files every second, so the report sees the readings at once; an alarm after 2 minutes.
    std::fs::write(
        &config,
        "[archive]\nrotate_age = 1\n\n[coldchain]\nalarm_after_s = 120\n",
    )
    .unwrap();
    let (broker, listening) = broker_in(work.path(), &["--config".as_ref(), config.as_os_str()]);
    let data = work.path().join("data");
    let args = [
        "--fleetmq",
        env!("CARGO_BIN_EXE_fleetmq"),
        "--data",
        data.to_str().unwrap(),
    ];
    let (passed, printed) = page_script("excursion.py", &listening, true, &args);
    drop(broker);
    assert!(passed, "{printed}");
    let rules = std::fs::read_to_string(data.join("coldchain.json")).unwrap();
    assert!(rules.contains("\"alarm_after_s\":120"), "{rules}");
}
