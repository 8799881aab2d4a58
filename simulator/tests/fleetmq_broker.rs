//! The fleet against the in-process fleetmq broker (two shards): every message arrives, valid,
//! matching the ground truth, with store-and-forward across a coverage gap.

mod common;

use std::net::SocketAddr;

/// Two shards on port 0, routing only: the archive (on by default, in `./fleet-data`) is the
/// ingest's to test, and two tests sharing one data directory would trip over each other.
fn broker() -> broker::BrokerHandle {
    let mut config = broker::Config {
        mqtt: SocketAddr::from(([127, 0, 0, 1], 0)),
        shards: 2,
        ..broker::Config::default()
    };
    config.archive.enabled = false;
    broker::start(config).expect("broker starts")
}

/// Stops the broker within a bound: a broker that does not stop is reported, not waited for
/// forever (the test process ends and takes its threads with it).
fn stop(broker: broker::BrokerHandle) {
    broker.shutdown();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(broker.join().map_err(|e| e.to_string()));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(10)) {
        Ok(result) => result.expect("broker stops cleanly"),
        Err(_) => eprintln!("warning: the broker did not stop within 10 s"),
    }
}

#[test]
fn every_message_arrives_valid_and_matches_the_truth_mqtt_3_1_1() {
    let broker = broker();
    let port = broker.mqtt_addr().port();
    let config = common::run_config(port, common::model(40), protocol::Protocol::V3_1_1);
    let (seen, truth, invalid) = common::run_and_watch(port, config);
    common::check(&seen, &truth, invalid);
    common::check_gap(&seen, &truth);
    stop(broker);
}

#[test]
fn mqtt_5_and_qos_2() {
    let broker = broker();
    let port = broker.mqtt_addr().port();
    let mut config = common::run_config(port, common::model(12), protocol::Protocol::V5);
    config.qos = protocol::QoS::ExactlyOnce;
    let (seen, truth, invalid) = common::run_and_watch(port, config);
    common::check(&seen, &truth, invalid);
    common::check_gap(&seen, &truth);
    stop(broker);
}
