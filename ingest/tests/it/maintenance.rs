//! Compaction and retention: closed hours merged into few files while a reader keeps querying
//! (it never sees a row twice or misses one), exactly-once intact afterwards, and whole days
//! deleted past the retention.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::*;
use ingest::{Archive, ArchiveConfig, Record, WalPosition};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Small files (a few dozen rows each, by bytes), merged up to 10,000 rows, hours closed at
/// once.
fn config(data: &Path) -> ArchiveConfig {
    ArchiveConfig {
        rotate_bytes: 4_000,
        rotate_rows: 10_000,
        writer_threads: 2,
        rotate_age: Duration::from_secs(3600),
        compact_delay: Duration::ZERO,
        ..ArchiveConfig::new(data)
    }
}

/// The `*.parquet` files below `dir`, as a reader globbing it would list them.
fn listed(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

/// What one query over the whole `gps` table saw: its `(vehicle, seq)` keys, or `None` when
/// a listed file was gone before it was opened (the query is to be run again).
fn query(data: &Path) -> Option<Vec<(String, i64)>> {
    let mut keys = Vec::new();
    for path in listed(&data.join("gps")) {
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("{}: {e}", path.display()),
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            keys.extend(
                rows(&batch.unwrap())
                    .into_iter()
                    .map(|r| (r.vehicle, r.seq)),
            );
        }
    }
    Some(keys)
}

/// Round `round` of GPS readings of 6 vehicles: 270 each (seqs go on from round to round),
/// spread over the three hours from `base`, which ended 2 to 5 hours ago.
fn readings(base: i64, round: u64) -> Vec<Record> {
    (0..6)
        .flat_map(|v| {
            (0..270u64).map(move |i| {
                let ts = base + i as i64 * 40_000 + round as i64 * 500;
                gps(&format!("van-{v}"), round * 270 + i, ts)
            })
        })
        .collect()
}

#[test]
fn closed_hours_are_compacted_while_a_reader_sees_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let hour_start = (now_ms() / HOUR - 5) * HOUR;
    let archive = Archive::open(config(&data)).unwrap();
    // The reader queries while compaction runs, not while new files are being published (a
    // query then may see part of them, which is not what this test is about).
    let publishing = Arc::new(std::sync::Mutex::new(()));
    let mut batch = 0;
    let mut submit = |records: Vec<Record>| {
        let _alone = publishing.lock().unwrap();
        batch += 1;
        archive.submit(0, WalPosition::new(1, batch), records);
        archive.flush().unwrap();
    };
    // 1,080 readings over 3 hours; then three more rounds of store-and-forward readings that
    // land in the same, already compacted, hours.
    let rounds: Vec<Vec<Record>> = (0..4).map(|r| readings(hour_start, r)).collect();
    // Every total a reader may see: before and after each round.
    let totals: Vec<usize> = (1..=4).map(|r| r * 270 * 6).collect();
    submit(rounds[0].clone());
    let files_before = listed(&data.join("gps")).len();
    assert!(files_before > 20, "{files_before} files");

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (data, stop, totals) = (data.clone(), stop.clone(), totals.clone());
        let publishing = publishing.clone();
        std::thread::spawn(move || {
            let (mut complete, mut retried) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let seen = {
                    let _between_publications = publishing.lock().unwrap();
                    query(&data)
                };
                let Some(keys) = seen else {
                    retried += 1;
                    continue;
                };
                let distinct: HashSet<_> = keys.iter().collect();
                assert_eq!(distinct.len(), keys.len(), "a reader saw a row twice");
                assert!(
                    totals.contains(&keys.len()),
                    "a reader saw {} rows, not one of {totals:?}",
                    keys.len()
                );
                complete += 1;
            }
            (complete, retried)
        })
    };
    let mut merged = 0;
    for (round, records) in rounds.iter().enumerate() {
        if round > 0 {
            submit(records.clone());
        }
        let report = archive.maintain().unwrap();
        assert!(report.hours_compacted >= 3, "round {round}: {report:?}");
        merged += report.files_merged;
    }
    stop.store(true, Ordering::Relaxed);
    let (complete, retried) = reader.join().unwrap();
    assert!(
        complete > 0,
        "the reader completed no query ({retried} retried)"
    );
    eprintln!("reader: {complete} queries complete, {retried} run again");

    // Few files: one per hour and table, and nothing more to do.
    let files_after = listed(&data.join("gps"));
    assert!(files_after.len() <= 4, "{files_after:?}");
    assert!(merged >= files_before as u64);
    assert_eq!(archive.maintain().unwrap().hours_compacted, 0);
    assert_eq!(archive.stats().compacted_files, merged);
    // Sorted within each merged file, and every reading once.
    for path in &files_after {
        let file = std::fs::File::open(path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let all: Vec<Row> = reader.flat_map(|b| rows(&b.unwrap())).collect();
        let order: Vec<_> = all.iter().map(|r| (&r.vehicle, r.ts, r.seq)).collect();
        assert!(
            order.windows(2).all(|w| w[0] <= w[1]),
            "{} is sorted by vehicle, ts, seq",
            path.display()
        );
    }
    let keys = query(&data).unwrap();
    assert_eq!(keys.len(), totals[3]);

    // Exactly once across the compaction and a restart: everything again is duplicates.
    let all: Vec<Record> = rounds.concat();
    submit(all.clone());
    archive.close().unwrap();
    let archive = Archive::open(config(&data)).unwrap();
    archive.submit(0, WalPosition::new(1, 100), all.clone());
    archive.close().unwrap();
    assert_eq!(archive.stats().duplicates, all.len() as u64);
    assert_eq!(query(&data).unwrap().len(), totals[3]);
}

#[test]
fn retention_deletes_whole_days_past_it_in_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let day = 24 * HOUR;
    let today = now_ms() / day * day + HOUR;
    let archive = Archive::open(ArchiveConfig {
        retention_days: Some(3),
        ..config(data)
    })
    .unwrap();
    let mut records = Vec::new();
    for (n, days_ago) in [10i64, 5, 1, 0].iter().enumerate() {
        let ts = today - days_ago * day;
        records.push(gps("van", n as u64 * 2, ts));
        records.push(reefer("van", n as u64 * 2 + 1, ts));
        records.push(Record::new("fleet/van/gps", "not json", ts));
    }
    archive.submit(0, WalPosition::new(1, 1), records);
    archive.flush().unwrap();
    let dates = |table: &str| -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(data.join(table))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    };
    assert_eq!(dates("gps").len(), 4);
    let report = archive.maintain().unwrap();
    assert_eq!(report.days_expired, 2 * 3, "{report:?}");
    for table in ["gps", "reefer", "rejects"] {
        let kept = dates(table);
        assert_eq!(kept.len(), 2, "{table}: {kept:?}");
    }
    assert_eq!(archive.stats().expired_days, 6);
    archive.close().unwrap();
}
