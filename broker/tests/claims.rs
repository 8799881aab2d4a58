//! The session claim protocol under a burst: connections reusing one client id arrive at once
//! on both shards, some vanishing right after their CONNECT. MQTT says the newest takes the
//! session over; whatever the order the shards see them in, every connection must be answered
//! promptly (a CONNACK, or the connection closed), never left waiting for the claim timeout.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    raw::Raw,
    v5::{connect, disconnect},
    TestBroker,
};
use protocol::{Packet, Protocol};

/// Far below the 10 s a claim waits for an answer before it gives up.
const PROMPT: Duration = Duration::from_secs(4);

#[test]
fn a_burst_of_connections_with_one_client_id_is_answered_promptly() {
    let broker = TestBroker::start();
    let port = broker.port();
    for round in 0..40 {
        let id = format!("dup-{round}");
        let mut kept = Vec::new();
        for i in 0..6 {
            let mut raw = Raw::open(port, Protocol::V5);
            let mut connect = Raw::connect_packet(Protocol::V5, &id, 60, None);
            if let Packet::Connect(c) = &mut connect {
                // Half of them ask for a lasting session, so sessions move with their state.
                c.clean_start = i % 2 == 0;
                c.properties.session_expiry_interval = (i % 2 == 1).then_some(600);
            }
            raw.send(&connect);
            if i % 3 == 1 {
                continue; // gone right after CONNECT: its socket closes here
            }
            kept.push((i, raw));
        }
        for (i, mut raw) in kept {
            let started = Instant::now();
            // `recv` panics if nothing came within PROMPT; None is a closed connection.
            match raw.recv(PROMPT) {
                Some(Packet::ConnAck(_)) | None => {}
                Some(other) => panic!("round {round}, connection {i}: got {other:?}"),
            }
            assert!(
                started.elapsed() < PROMPT,
                "round {round}, connection {i} waited {:?}",
                started.elapsed()
            );
        }
        // After the burst the claims still chain: one more connection with the id is
        // answered at once too.
        let started = Instant::now();
        let (last, _) = connect(port, &id, true);
        assert!(
            started.elapsed() < PROMPT,
            "round {round}: the last one waited"
        );
        disconnect(last);
    }
}
