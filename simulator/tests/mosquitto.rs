//! The same fleet check against mosquitto (the Debian package), started here on a free port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A mosquitto process, killed when dropped.
struct Mosquitto(Child);

impl Drop for Mosquitto {
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

fn mosquitto() -> (Mosquitto, u16) {
    let port = free_port();
    let child = Command::new("/usr/sbin/mosquitto")
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto runs (apt-get install mosquitto)");
    let guard = Mosquitto(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (guard, port)
}

#[test]
#[ignore = "needs mosquitto (Debian package); .ci/run installs it"]
fn every_message_arrives_through_mosquitto_3_1_1() {
    let (_mosquitto, port) = mosquitto();
    let config = common::run_config(port, common::model(40), protocol::Protocol::V3_1_1);
    let (seen, truth, invalid) = common::run_and_watch(port, config);
    common::check(&seen, &truth, invalid);
    common::check_gap(&seen, &truth);
}

#[test]
#[ignore = "needs mosquitto (Debian package); .ci/run installs it"]
fn every_message_arrives_through_mosquitto_5_qos_2() {
    let (_mosquitto, port) = mosquitto();
    let mut config = common::run_config(port, common::model(12), protocol::Protocol::V5);
    config.qos = protocol::QoS::ExactlyOnce;
    let (seen, truth, invalid) = common::run_and_watch(port, config);
    common::check(&seen, &truth, invalid);
    common::check_gap(&seen, &truth);
}
