//! The fleet against the in-process fleetmq broker (two shards): every message arrives, valid,
//! matching the ground truth, with store-and-forward across a coverage gap.

use crate::common;

use std::net::SocketAddr;

/// Two shards on port 0, routing only: the broker's state (on by default, in
/// `./fleet-data/state`) is tested elsewhere, and two tests sharing one directory would trip
/// over each other.
fn broker() -> broker::BrokerHandle {
    let mut config = broker::Config {
        mqtt: SocketAddr::from(([127, 0, 0, 1], 0)),
        shards: 2,
        ..broker::Config::default()
    };
    // No broker state on disk, nor the HTTP listener (port 8080).
    config.persistence.enabled = false;
    config.http = None;
    // A fleet that comes back online flushes its buffers all at once; the default bound of
    // 1000 queued messages per session would (as configured) drop the watcher's share of that
    // burst, and this test counts every message.
    config.limits.max_queued_messages = 1_000_000;
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

/// Forwards connections from `from` to `to` (started late, it plays a broker that comes up
/// after the vehicles began trying).
fn forward(from: u16, to: u16) {
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind(("127.0.0.1", from)).expect("proxy port still free");
    std::thread::spawn(move || {
        for inbound in listener.incoming() {
            let Ok(inbound) = inbound else { return };
            let Ok(outbound) = TcpStream::connect(("127.0.0.1", to)) else {
                return;
            };
            let (Ok(in2), Ok(out2)) = (inbound.try_clone(), outbound.try_clone()) else {
                return;
            };
            for (mut a, mut b) in [(in2, out2), (outbound, inbound)] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                    let _ = b.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
}

/// Regression guard for back-off and store-and-forward across real connection failures: the
/// vehicles start while nothing listens, keep their readings, retry with back-off, and publish
/// everything once the broker is reachable.
#[test]
fn vehicles_that_start_before_the_broker_publish_everything_later() {
    let broker = broker();
    let port = broker.mqtt_addr().port();
    let late = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = common::run_config(late, common::model(20), protocol::Protocol::V3_1_1);
    config.client.connect_timeout = std::time::Duration::from_secs(1);
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1200));
        forward(late, port);
    });
    let (seen, truth, invalid) = common::run_and_watch(port, config);
    common::check(&seen, &truth, invalid);
    // Every vehicle's first readings waited for the broker and still arrived from seq 0.
    for vt in &truth.vehicles {
        assert_eq!(seen[&vt.vehicle_id].gps.keys().next(), Some(&0));
    }
    stop(broker);
}
