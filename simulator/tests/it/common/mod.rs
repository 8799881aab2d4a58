//! Shared by the end-to-end tests: run a small fleet against a broker on 127.0.0.1 while an
//! independent client (rumqttc) subscribes to `fleet/#`, then check every message against the
//! payload contract and the ground truth.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use simulator::{
    mqtt::{BrokerUrl, ClientOptions},
    run::{self, RunConfig},
    Fleet, ForcedGap, ModelConfig, Truth,
};
use telemetry::{decode_message, Message, Status};

/// What the subscriber saw of one vehicle.
#[derive(Debug, Default)]
pub struct Seen {
    /// `seq` of each telemetry message in arrival order (duplicates included).
    pub arrivals: Vec<u64>,
    pub gps: BTreeMap<u64, i64>,
    pub reefer: BTreeMap<u64, i64>,
    pub status: Vec<Status>,
}

pub fn model(vehicles: usize) -> ModelConfig {
    ModelConfig {
        seed: 77,
        vehicles,
        coverage_gaps_per_hour: 0.0,
        forced_gaps: vec![ForcedGap {
            vehicle: 3,
            start_s: 30,
            duration_s: 40,
        }],
        ..ModelConfig::default()
    }
}

pub fn run_config(port: u16, model: ModelConfig, protocol: protocol::Protocol) -> RunConfig {
    RunConfig {
        fleet: Fleet::new(model, None).unwrap(),
        client: ClientOptions {
            url: BrokerUrl::parse(&format!("mqtt://127.0.0.1:{port}")).unwrap(),
            protocol,
            username: None,
            password: None,
            keep_alive_s: 30,
            max_inflight: 20,
            tls: None,
            connect_timeout: Duration::from_secs(5),
        },
        qos: protocol::QoS::AtLeastOnce,
        duration: Duration::from_secs(2),
        speedup: 60.0,
        threads: 2,
        ramp_per_s: 0.0,
        drain_timeout: Duration::from_secs(5),
    }
}

/// Runs the fleet while a subscriber records everything; returns what it saw and the truth.
pub fn run_and_watch(port: u16, config: RunConfig) -> (HashMap<String, Seen>, Truth, u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut opts = MqttOptions::new("watcher", "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_inflight(200);
        // The fleet's map (fleet/_world) is tens of kilobytes; rumqttc takes 10 KiB by default.
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
        client.subscribe("fleet/#", QoS::AtLeastOnce).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
                Ok(Ok(_)) => {}
                other => panic!("no SUBACK: {other:?}"),
            }
        }
        let fleet_run = tokio::task::spawn_blocking(move || {
            let handle = run::start(config).expect("fleet starts");
            if std::env::var_os("SIM_DEBUG").is_some() {
                let stats = handle.stats.clone();
                std::thread::spawn(move || loop {
                    std::thread::sleep(Duration::from_millis(500));
                    eprintln!("{stats:?}");
                });
            }
            let report = handle.join().expect("fleet runs");
            if std::env::var_os("SIM_DEBUG").is_some() {
                eprintln!("fleet joined after {:?}", report.elapsed);
            }
            report
        });
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let mut invalid = 0u64;
        let mut done: Option<Truth> = None;
        let mut fleet_run = Some(fleet_run);
        loop {
            // After the fleet has finished, wait until the stream has been quiet for a second.
            let quiet = if done.is_some() { 1 } else { 30 };
            tokio::select! {
                event = tokio::time::timeout(Duration::from_secs(quiet), eventloop.poll()) => {
                    match event {
                        Err(_) if done.is_some() => break,
                        Err(_) => panic!("no traffic for {quiet} s"),
                        // The fleet's shared topics (`fleet/_world`, ...) are not a vehicle's.
                        Ok(Ok(Event::Incoming(Packet::Publish(p)))) if p.topic.starts_with("fleet/_") => {}
                        Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                            match decode_message(&p.topic, &p.payload) {
                                Ok((id, msg)) => {
                                    let s = seen.entry(id.to_owned()).or_default();
                                    match msg {
                                        Message::Gps(g) => {
                                            s.arrivals.push(g.seq);
                                            s.gps.insert(g.seq, g.ts);
                                        }
                                        Message::Reefer(r) => {
                                            s.arrivals.push(r.seq);
                                            s.reefer.insert(r.seq, r.ts);
                                        }
                                        Message::Status(st) => s.status.push(st),
                                    }
                                }
                                Err(e) => {
                                    eprintln!("invalid message on {}: {e}", p.topic);
                                    invalid += 1;
                                }
                            }
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => panic!("watcher lost its connection: {e}"),
                    }
                }
                truth = async { fleet_run.as_mut().unwrap().await }, if fleet_run.is_some() => {
                    fleet_run = None;
                    done = Some(truth.expect("fleet thread").truth);
                }
            }
        }
        (seen, done.unwrap(), invalid)
    })
}

/// Every reading the truth says was published arrived, valid, and matches the truth's counts;
/// first arrivals are in `seq` order (store-and-forward delivers late but in order).
pub fn check(seen: &HashMap<String, Seen>, truth: &Truth, invalid: u64) {
    assert_eq!(invalid, 0, "invalid messages");
    assert!(!truth.vehicles.is_empty());
    let mut total = 0;
    for vt in &truth.vehicles {
        let s = seen
            .get(&vt.vehicle_id)
            .unwrap_or_else(|| panic!("nothing from {}", vt.vehicle_id));
        assert_eq!(
            vt.published.gps, vt.generated.gps,
            "{}: gps not all published",
            vt.vehicle_id
        );
        assert_eq!(
            vt.published.reefer, vt.generated.reefer,
            "{}: not all published",
            vt.vehicle_id
        );
        let missing: Vec<u64> = (0..vt.published.gps.last_seq.unwrap_or(0) + 1)
            .filter(|q| !s.gps.contains_key(q) && !s.reefer.contains_key(q))
            .take(5)
            .collect();
        assert_eq!(
            s.gps.len() as u64,
            vt.published.gps.count,
            "{} gps; first seqs not received: {missing:?}; first arrivals {:?}",
            vt.vehicle_id,
            &s.arrivals[..s.arrivals.len().min(8)]
        );
        assert_eq!(
            s.reefer.len() as u64,
            vt.published.reefer.count,
            "{} reefer",
            vt.vehicle_id
        );
        assert_eq!(s.gps.keys().next().copied(), vt.published.gps.first_seq);
        assert_eq!(s.gps.keys().last().copied(), vt.published.gps.last_seq);
        assert_eq!(
            s.reefer.keys().last().copied(),
            vt.published.reefer.last_seq
        );
        // Together the two topics carry every seq from 0, with no gap.
        let n = (s.gps.len() + s.reefer.len()) as u64;
        assert!(
            s.gps.keys().chain(s.reefer.keys()).all(|&q| q < n),
            "{}: seq gap",
            vt.vehicle_id
        );
        let mut max = None;
        for &seq in &s.arrivals {
            if max.is_none_or(|m| seq > m) {
                max = Some(seq);
            } else {
                // A repeat of something already seen is a QoS 1 redelivery; anything else is
                // a reading overtaken by a later one.
                assert!(
                    s.gps.contains_key(&seq) || s.reefer.contains_key(&seq),
                    "{}: seq {seq} arrived out of order",
                    vt.vehicle_id
                );
            }
        }
        let firsts: Vec<u64> = {
            let mut seen_once = std::collections::HashSet::new();
            s.arrivals
                .iter()
                .copied()
                .filter(|q| seen_once.insert(*q))
                .collect()
        };
        assert!(
            firsts.windows(2).all(|w| w[0] < w[1]),
            "{}: out of order",
            vt.vehicle_id
        );
        assert!(s.status.contains(&Status::Online));
        assert!(vt.published.status_online >= 1);
        total += n;
    }
    assert!(total > 1000, "only {total} messages");
}

/// The vehicle with the forced coverage gap went offline (its Will), came back, and its
/// readings from inside the gap arrived.
pub fn check_gap(seen: &HashMap<String, Seen>, truth: &Truth) {
    let vt = &truth.vehicles[3];
    let gap = vt.coverage_gaps.first().expect("the forced gap");
    let s = &seen[&vt.vehicle_id];
    let during = s
        .gps
        .values()
        .filter(|&&ts| ts >= gap.start && ts < gap.end)
        .count();
    assert!(
        during >= 39,
        "only {during} readings from inside the gap arrived"
    );
    let offline = s.status.iter().position(|st| *st == Status::Offline);
    let online_again = s.status.iter().rposition(|st| *st == Status::Online);
    assert!(
        matches!((offline, online_again), (Some(a), Some(b)) if a < b),
        "expected the Will and then online again: {:?}",
        s.status
    );
}
