//! Bytes per row of the archive, per column, on a simulated fleet shaped like the demo's.
//!
//! `cargo bench -p fleetmq-ingest --bench archive_size` drives the seeded fleet model offline
//! (`VEHICLES`, default 200, for `HOURS` of fleet time, default 3), stamps each reading with the
//! receive time the demo's broker would give it (fleet time compressed `SPEEDUP` times, default
//! 180, plus up to 40 ms of jitter), archives everything through [`Archive`] and prints, per
//! table, the compressed bytes per row of each column and of the whole files (footers, indexes
//! and bloom filters included), and the JSON-to-Parquet rate on one writer thread.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::env;
use ingest::{Archive, ArchiveConfig, Record, WalPosition};
use parquet::file::reader::{FileReader, SerializedFileReader};
use simulator::{Event, Fleet, ModelConfig};

fn main() {
    let vehicles = env("VEHICLES", 200) as usize;
    let hours = env("HOURS", 3);
    let speedup = env("SPEEDUP", 180) as i64;
    let fleet = Fleet::new(
        ModelConfig {
            vehicles,
            ..ModelConfig::default()
        },
        None,
    )
    .unwrap();
    let start_ms = fleet.config.start_ms;
    let (events, _truth) = fleet.run_offline(hours * 3600);
    let mut records = Vec::new();
    for (index, timed) in events.iter().enumerate() {
        let id = fleet.vehicle(index).id().to_owned();
        for t in timed {
            if let Event::Publish(r) = &t.event {
                // What a broker receiving the demo's compressed time would stamp.
                let jitter = (r.seq.wrapping_mul(2_654_435_761) % 40) as i64;
                let received = start_ms + (t.at_ms - start_ms) / speedup + jitter;
                let topic = telemetry::topic::build(&id, r.kind);
                records.push((t.at_ms, Record::new(topic, r.payload.clone(), received)));
            }
        }
    }
    // In the order a broker would pass them on: by fleet time.
    records.sort_by_key(|(at, _)| *at);
    let records: Vec<Record> = records.into_iter().map(|(_, r)| r).collect();
    let count = records.len();

    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(ArchiveConfig {
        rotate_age: Duration::from_secs(24 * 3600),
        writer_threads: 1,
        ..ArchiveConfig::new(dir.path())
    })
    .unwrap();
    let started = Instant::now();
    for (n, chunk) in records.chunks(10_000).enumerate() {
        archive.submit(0, WalPosition::new(1, n as u64 + 1), chunk.to_vec());
    }
    archive.flush().unwrap();
    let took = started.elapsed();
    archive.close().unwrap();
    println!(
        "{vehicles} vehicles, {hours} h of fleet time: {count} readings archived in {:.2} s on one writer ({:.0} readings/s)",
        took.as_secs_f64(),
        count as f64 / took.as_secs_f64()
    );
    for table in ["gps", "reefer"] {
        report(&dir.path().join(table));
    }
}

/// Prints bytes per row of every column and of the files of one table.
fn report(table: &Path) {
    let mut files = Vec::new();
    walk(table, &mut files);
    let (mut rows, mut file_bytes) = (0u64, 0u64);
    let mut columns: BTreeMap<usize, (String, u64, String)> = BTreeMap::new();
    for path in &files {
        file_bytes += std::fs::metadata(path).unwrap().len();
        let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
        for group in reader.metadata().row_groups() {
            rows += group.num_rows() as u64;
            for (i, column) in group.columns().iter().enumerate() {
                let entry = columns.entry(i).or_insert_with(|| {
                    let encodings: Vec<String> =
                        column.encodings().map(|e| format!("{e:?}")).collect();
                    (column.column_path().string(), 0, encodings.join("+"))
                });
                entry.1 += column.compressed_size() as u64;
            }
        }
    }
    let name = table.file_name().unwrap().to_string_lossy();
    println!(
        "{name}: {rows} rows in {} files, {file_bytes} bytes, {:.2} bytes per row",
        files.len(),
        file_bytes as f64 / rows.max(1) as f64
    );
    for (column, bytes, encodings) in columns.values() {
        println!(
            "  {column:<14} {:>6.3} B/row  {encodings}",
            *bytes as f64 / rows.max(1) as f64
        );
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
}
