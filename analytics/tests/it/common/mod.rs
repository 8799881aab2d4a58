//! Test fleets: the simulator's model run offline, its readings written through the real
//! archive writer (store-and-forward readings arrive late, as they would from the broker), with
//! an occasional GPS teleport added.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use ingest::{Archive, ArchiveConfig, Record, WalPosition};
use simulator::{Event, Fleet, ModelConfig, Truth};

/// Runs `config` for `end_s` simulated seconds and archives what the fleet published into
/// `dir`; returns the ground truth.
pub fn archive_fleet(config: ModelConfig, end_s: u64, dir: &Path) -> Truth {
    archive_fleet_published(config, end_s, dir).0
}

/// As [`archive_fleet`], also returning every record as it was handed to the archive.
pub fn archive_fleet_published(
    config: ModelConfig,
    end_s: u64,
    dir: &Path,
) -> (Truth, Vec<Record>) {
    let fleet = Fleet::new(config, None).unwrap();
    let (events, truth) = fleet.run_offline(end_s);
    let mut archive_config = ArchiveConfig::new(dir);
    // Small files, so partitions hold several and pruning has something to prune.
    archive_config.rotate_rows = 20_000;
    let archive = Archive::open(archive_config).unwrap();
    // Publication order: a vehicle offline keeps its readings and sends them when back.
    let mut published: Vec<(i64, Record)> = Vec::new();
    for (index, vehicle_events) in events.iter().enumerate() {
        let id = fleet.config.vehicle_id(index);
        let mut offline = false;
        let mut held: Vec<(i64, String, Vec<u8>)> = Vec::new();
        for timed in vehicle_events {
            match &timed.event {
                Event::LinkDown => offline = true,
                Event::LinkUp => {
                    offline = false;
                    for (_, topic, payload) in held.drain(..) {
                        published.push((timed.at_ms, Record::new(topic, payload, timed.at_ms)));
                    }
                }
                Event::Publish(r) => {
                    let topic = telemetry::topic::build(&id, r.kind);
                    let r = &teleport(r);
                    if offline {
                        held.push((r.ts, topic, r.payload.to_vec()));
                    } else {
                        let record = Record::new(topic, r.payload.clone(), timed.at_ms);
                        published.push((timed.at_ms, record));
                    }
                }
            }
        }
        // Still offline at the end: the readings come in after the run.
        let end = truth.end;
        for (_, topic, payload) in held {
            published.push((end, Record::new(topic, payload, end)));
        }
    }
    published.sort_by_key(|(at, _)| *at);
    let mut offset = 0;
    for chunk in published.chunks(5_000) {
        offset += 1;
        let records = chunk.iter().map(|(_, r)| r.clone()).collect();
        archive.submit(0, WalPosition::new(1, offset), records);
    }
    archive.flush().unwrap();
    archive.close().unwrap();
    (truth, published.into_iter().map(|(_, r)| r).collect())
}

/// Every `TELEPORT_EVERY`th GPS reading jumps 2.2 km north (multipath, a bad cold fix), as real
/// receivers now and then do; the truth is unchanged, so the reports must see through it.
const TELEPORT_EVERY: u64 = 1_500;

fn teleport(r: &simulator::Reading) -> simulator::Reading {
    if r.kind != telemetry::TopicKind::Gps || r.seq % TELEPORT_EVERY != 7 {
        return r.clone();
    }
    let mut gps = telemetry::decode_gps(&r.payload).unwrap();
    gps.lat += 0.02;
    simulator::Reading {
        payload: gps.to_json().into(),
        ..r.clone()
    }
}

/// A fleet with everything that makes GPS hard: noise, frequent dropouts, frequent coverage
/// gaps (store-and-forward), plus compressor faults forced on some vehicles so that there are
/// excursions to find.
pub fn hard_fleet(vehicles: usize, seed: u64) -> ModelConfig {
    ModelConfig {
        seed,
        vehicles,
        gps_noise_m: 4.0,
        gps_dropouts_per_hour: 4.0,
        coverage_gaps_per_hour: 3.0,
        faults_per_hour: 0.0,
        frozen_share: 0.4,
        forced_faults: vec![
            simulator::ForcedFault {
                vehicle: 0,
                start_s: 1800,
                duration_s: 5400,
            },
            simulator::ForcedFault {
                vehicle: 1,
                start_s: 3600,
                duration_s: 7200,
            },
            simulator::ForcedFault {
                vehicle: 2,
                start_s: 600,
                duration_s: 900,
            },
        ],
        ..ModelConfig::default()
    }
}
