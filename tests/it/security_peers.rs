//! `fleetmq passwd` and `fleetmq broker` against mosquitto: password files work in both
//! directions, SIGHUP reloads the ACL while clients stay connected, and no secret reaches the
//! log even at debug level.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};
use support::{free_port, Killed};

fn fleetmq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleetmq"))
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `fleetmq passwd FILE USER` with the password piped in.
fn add_user(file: &Path, user: &str, password: &str) {
    let mut child = fleetmq()
        .args(["passwd", file.to_str().unwrap(), user])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait().unwrap().success());
}

fn pub_ok(port: u16, user: &str, password: &str, topic: &str) -> (bool, String) {
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args([
            "-u", user, "-P", password, "-t", topic, "-m", "x", "-V", "mqttv5",
        ])
        .output()
        .expect("mosquitto_pub installed");
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.success() && said.is_empty(), said)
}

/// Starts `fleetmq broker` on a port of its choosing in `dir` with extra flags; its stderr goes
/// to `dir/broker.log`.
fn start_broker(dir: &Path, extra: &[&str]) -> (Killed, u16) {
    let log = dir.join("broker.log");
    let mut child = fleetmq()
        .current_dir(dir)
        .env("RUST_LOG", "debug")
        .args(["broker", "--http", "off", "--no-archive", "--shards", "2"])
        .args(["--mqtt", "127.0.0.1:0"])
        .args(extra)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let port = support::wait_for_listeners(&mut child, &log, false).port();
    (Killed(child), port)
}

#[test]
#[ignore = "needs mosquitto and mosquitto-clients (Debian); .ci/run installs them"]
fn password_files_work_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    // Theirs, read by us.
    let theirs = dir.path().join("theirs");
    let status = Command::new("mosquitto_passwd")
        .args(["-c", "-b", theirs.to_str().unwrap(), "v1", "their-pw"])
        .status()
        .expect("mosquitto_passwd installed");
    assert!(status.success());
    let (_broker, port) = start_broker(dir.path(), &["--password-file", theirs.to_str().unwrap()]);
    assert!(pub_ok(port, "v1", "their-pw", "fleet/v1/gps").0);
    let (ok, said) = pub_ok(port, "v1", "wrong", "fleet/v1/gps");
    assert!(!ok && said.contains("Bad User Name or Password"), "{said}");

    // Ours, read by mosquitto.
    let ours = dir.path().join("ours");
    add_user(&ours, "v2", "our-pw");
    let port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    // As root, mosquitto would switch to user `mosquitto`, who cannot read a 0600 file.
    let me = Command::new("id").arg("-un").output().unwrap();
    let me = String::from_utf8_lossy(&me.stdout).trim().to_string();
    std::fs::write(
        &conf,
        format!(
            "user {me}\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            ours.display()
        ),
    )
    .unwrap();
    let _mosquitto = Killed(
        Command::new("mosquitto")
            .args(["-c", conf.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto installed"),
    );
    wait_for_port(port);
    assert!(
        pub_ok(port, "v2", "our-pw", "fleet/v2/gps").0,
        "mosquitto accepts our hash"
    );
    assert!(!pub_ok(port, "v2", "wrong", "fleet/v2/gps").0);
}

#[test]
#[ignore = "needs mosquitto-clients (Debian); .ci/run installs them"]
fn sighup_reloads_the_acl_while_clients_stay_connected_and_no_secret_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    add_user(&passwd, "v1", "hunter2-vehicle");
    add_user(&passwd, "dashboard", "hunter2-dash");
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "user dashboard\ntopic read fleet/#\npattern write fleet/%u/#\n",
    )
    .unwrap();
    let (mut broker, port) = start_broker(
        dir.path(),
        &[
            "--password-file",
            passwd.to_str().unwrap(),
            "--acl-file",
            acl.to_str().unwrap(),
        ],
    );
    // A dashboard that stays connected across the reload.
    let mut sub = Killed(
        Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-v"])
            .args(["-u", "dashboard", "-P", "hunter2-dash", "-t", "fleet/#"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    support::wait_for_log_lines(&dir.path().join("broker.log"), "subscriptions applied", 1);
    assert!(pub_ok(port, "v1", "hunter2-vehicle", "fleet/v1/gps").0);
    assert!(!pub_ok(port, "v1", "wrong-secret-pw", "fleet/v1/gps").0);

    // Vehicles lose write access to gps; SIGHUP.
    std::fs::write(
        &acl,
        "user dashboard\ntopic read fleet/#\npattern write fleet/%u/status\n",
    )
    .unwrap();
    let pid = broker.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    support::wait_for_log_lines(
        &dir.path().join("broker.log"),
        "security settings reloaded",
        1,
    );
    let (_, said) = pub_ok(port, "v1", "hunter2-vehicle", "fleet/v1/gps");
    assert!(said.contains("Not authorized"), "after reload: {said}");
    assert!(pub_ok(port, "v1", "hunter2-vehicle", "fleet/v1/status").0);

    // The dashboard saw the first gps and the status, nothing denied, without reconnecting
    // (after the broker's own retained configuration, `fleet/_config/...`).
    let mut lines = BufReader::new(sub.0.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .filter(|l| !l.starts_with("fleet/_config/"));
    assert_eq!(lines.next().unwrap(), "fleet/v1/gps x");
    assert_eq!(lines.next().unwrap(), "fleet/v1/status x");

    // Stop the broker and read everything it logged at debug level.
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let _ = sub.0.kill();
    broker.0.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("broker.log")).unwrap();
    assert!(log.contains("security settings reloaded"), "{log}");
    assert!(log.contains("authentication failed"), "{log}");
    for secret in ["hunter2", "wrong-secret-pw", "$7$"] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
}
