//! Start-up time and exactly-once index memory of an archive a year old.
//!
//! `cargo bench -p fleetmq-ingest --bench archive_start` writes (once; kept in `DATA`, default
//! `/var/tmp/fleetmq-year-archive`) a synthetic archive of `VEHICLES` (default 1,000) vehicles
//! over `DAYS` (default 365) days: every hour, one GPS and one reefer reading per vehicle, in
//! one file per table and hour (17,520 files for a year). The files are small; what matters is
//! their number and the vehicles' sequence numbers. It then times `Archive::open` three ways:
//! with the saved index (what a restart does), without it (an archive of an earlier version:
//! every file is read once), and with it again; and prints the index's size.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use common::env;
use ingest::{Archive, ArchiveConfig, Record, WalPosition};

const T0: i64 = 1_704_067_200_000; // 2024-01-01 00:00 UTC
const HOUR: i64 = 3_600_000;

fn config(data: &PathBuf) -> ArchiveConfig {
    ArchiveConfig {
        rotate_age: Duration::from_secs(3600),
        writer_threads: 1,
        ..ArchiveConfig::new(data)
    }
}

fn main() {
    let vehicles = env("VEHICLES", 1000);
    let days = env("DAYS", 365);
    let data = PathBuf::from(
        std::env::var("DATA").unwrap_or_else(|_| "/var/tmp/fleetmq-year-archive".into()),
    );
    if !data.join("wal/exactly-once").is_dir() {
        let _ = std::fs::remove_dir_all(&data);
        let started = Instant::now();
        let archive = Archive::open(config(&data)).unwrap();
        for hour in 0..days * 24 {
            let ts = T0 + hour as i64 * HOUR;
            let mut records = Vec::with_capacity(2 * vehicles as usize);
            for v in 0..vehicles {
                let topic = |kind: &str| format!("fleet/truck-{v:04}/{kind}");
                let (gps, reefer) = (2 * hour, 2 * hour + 1);
                records.push(Record::new(
                    topic("gps"),
                    format!(
                        r#"{{"ts":{ts},"seq":{gps},"lat":52.5,"lon":13.4,"speed_kmh":50.0,"heading_deg":90.0}}"#
                    ),
                    ts + 400,
                ));
                records.push(Record::new(
                    topic("reefer"),
                    format!(
                        r#"{{"ts":{},"seq":{reefer},"temp_c":4.5,"setpoint_c":4.0,"door_open":false,"compressor_on":true}}"#,
                        ts + 1000
                    ),
                    ts + 1400,
                ));
            }
            archive.submit(0, WalPosition::new(1, hour + 1), records);
            archive.flush().unwrap();
        }
        archive.close().unwrap();
        println!(
            "wrote {} files for {vehicles} vehicles x {days} days in {:.0} s into {}",
            archive.stats().files,
            started.elapsed().as_secs_f64(),
            data.display()
        );
    }
    let open = |label: &str| {
        let started = Instant::now();
        let archive = Archive::open(config(&data)).unwrap();
        let took = started.elapsed();
        let stats = archive.stats();
        println!(
            "{label:<36} open {:>7.3} s, exactly-once index {:>6.2} MB",
            took.as_secs_f64(),
            stats.index_bytes as f64 / 1e6
        );
        archive.close().unwrap();
    };
    open("with the saved index");
    let saved = data.join("wal/exactly-once");
    let aside = data.join("wal/exactly-once.aside");
    std::fs::rename(&saved, &aside).unwrap();
    open("without it (every file read)");
    // That start saved nothing (it archived nothing); put the snapshot back.
    let _ = std::fs::remove_dir_all(&saved);
    std::fs::rename(&aside, &saved).unwrap();
    open("with the saved index, again");
}
