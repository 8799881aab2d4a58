//! What compacting one busy hour costs.
//!
//! `cargo bench -p fleetmq-ingest --bench archive_compact` archives one hour of `VEHICLES`
//! (default 1,000) vehicles reporting GPS every second, published the way the default 60 s
//! rotation does: one file a minute, 60 files. It then runs one maintenance pass, which merges
//! the hour into files of up to 1 M rows, and prints the time it took, the files before and
//! after, and the process's peak resident memory.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::env;
use ingest::{Archive, ArchiveConfig, Record, WalPosition};

const HOUR: i64 = 3_600_000;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

fn main() {
    let vehicles = env("VEHICLES", 1000);
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let hour = (now / HOUR - 3) * HOUR;
    let archive = Archive::open(ArchiveConfig {
        rotate_age: Duration::from_secs(3600),
        compact_delay: Duration::ZERO,
        ..ArchiveConfig::new(dir.path())
    })
    .unwrap();
    let started = Instant::now();
    for minute in 0..60u64 {
        let mut records = Vec::with_capacity(vehicles as usize * 60);
        for second in 0..60u64 {
            let s = minute * 60 + second;
            let ts = hour + s as i64 * 1000;
            for v in 0..vehicles {
                let lat = 53.5 + v as f64 * 1e-3 + s as f64 * 1e-5;
                let payload = format!(
                    r#"{{"ts":{ts},"seq":{s},"lat":{lat:.6},"lon":10.0,"speed_kmh":50.0,"heading_deg":90.0,"hdop":0.9}}"#
                );
                records.push(Record::new(
                    format!("fleet/truck-{v:04}/gps"),
                    payload,
                    ts + 300,
                ));
            }
        }
        archive.submit(0, WalPosition::new(1, minute + 1), records);
        // One file a minute, as the default rotation publishes them.
        archive.flush().unwrap();
    }
    let hour_dir = std::fs::read_dir(dir.path().join("gps"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|e| e.path())
        .next()
        .unwrap();
    let before = files(&hour_dir);
    println!(
        "{vehicles} vehicles x 3,600 s: {} rows in {before} files, written in {:.1} s; peak RSS so far {:.0} MB",
        vehicles * 3600,
        started.elapsed().as_secs_f64(),
        peak_rss_mb()
    );
    let started = Instant::now();
    let report = archive.maintain().unwrap();
    println!(
        "compaction: {:.2} s, {} files merged into {}, {} left in the hour; peak RSS {:.0} MB",
        started.elapsed().as_secs_f64(),
        report.files_merged,
        report.files_written,
        files(&hour_dir),
        peak_rss_mb()
    );
    archive.close().unwrap();
}
