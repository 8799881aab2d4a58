//! The exactly-once index across restarts, device reboots and very late copies: started from
//! its saved snapshot (not from the files), a counter that restarts loses nothing, and a
//! reading older than the window goes to `rejects/` with the reason.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::{collections::HashMap, path::Path, time::Duration};

use common::*;
use ingest::{Archive, ArchiveConfig, Record, WalPosition};

fn config(data: &Path) -> ArchiveConfig {
    ArchiveConfig {
        rotate_rows: 250,
        writer_threads: 2,
        rotate_age: Duration::from_secs(3600),
        ..ArchiveConfig::new(data)
    }
}

/// Submits `records` as one batch after the previous ones and waits until they are settled.
fn archive_all(archive: &Archive, batch: &mut u64, records: Vec<Record>) {
    *batch += 1;
    archive.submit(0, WalPosition::new(1, *batch), records);
    archive.flush().unwrap();
}

/// How many times each `(vehicle, ts)` is in the archive (with epochs, `seq` repeats).
fn archived_by_time(data: &Path) -> HashMap<(String, i64), usize> {
    let mut seen = HashMap::new();
    for table in ["gps", "reefer"] {
        for path in files(data, table) {
            for row in rows(&read(&path)) {
                *seen.entry((row.vehicle, row.ts)).or_default() += 1;
            }
        }
    }
    seen
}

#[test]
fn a_start_reads_the_saved_index_not_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let records: Vec<Record> = (0..12)
        .flat_map(|v| (0..100u64).map(move |s| gps(&format!("v{v}"), s, T0 + s as i64 * 1000)))
        .collect();
    let archive = Archive::open(config(data)).unwrap();
    let mut batch = 0;
    archive_all(&archive, &mut batch, records.clone());
    archive.close().unwrap();
    assert!(data.join("wal/exactly-once/writer-0").is_file());
    assert!(data.join("wal/exactly-once/writer-1").is_file());

    // Were the files read at the start, this one would stop it.
    let gps_files = files(data, "gps");
    assert!(gps_files.len() > 2);
    let spoiled = std::fs::read(&gps_files[0]).unwrap();
    std::fs::write(&gps_files[0], b"not parquet any more").unwrap();
    let archive = Archive::open(config(data)).unwrap();
    archive_all(&archive, &mut batch, records.clone());
    archive.close().unwrap();
    let stats = archive.stats();
    assert_eq!(stats.duplicates, records.len() as u64, "{stats:?}");
    assert_eq!(stats.gps_rows, 0);
    std::fs::write(&gps_files[0], spoiled).unwrap();

    // Without the snapshots (an archive of an earlier version), the files are read instead.
    std::fs::remove_dir_all(data.join("wal/exactly-once")).unwrap();
    let archive = Archive::open(config(data)).unwrap();
    archive_all(&archive, &mut batch, records.clone());
    archive.close().unwrap();
    assert_eq!(archive.stats().duplicates, records.len() as u64);
    assert!(archived(data).values().all(|&n| n == 1));
    assert_eq!(archived(data).len(), records.len());
}

#[test]
fn a_vehicle_that_reboots_twice_has_every_reading_archived_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // One reading a second; the counter restarts at 0 an hour and two hours in.
    let epoch = |start: i64, count: u64| -> Vec<Record> {
        (0..count)
            .map(|s| {
                let ts = start + s as i64 * 1000;
                if s.is_multiple_of(3) {
                    reefer("van", s, ts)
                } else {
                    gps("van", s, ts)
                }
            })
            .collect()
    };
    let first = epoch(T0, 900);
    let second = epoch(T0 + HOUR, 600);
    let third = epoch(T0 + 2 * HOUR, 300);
    let mut batch = 0;

    let archive = Archive::open(config(data)).unwrap();
    archive_all(&archive, &mut batch, first.clone());
    archive_all(&archive, &mut batch, second[..400].to_vec());
    archive.close().unwrap();
    // Restarted between the reboots: the epochs come back from the snapshot.
    let archive = Archive::open(config(data)).unwrap();
    let mut late = second[400..].to_vec();
    // Redeliveries: of the running epoch, and late copies of the one before the reboot.
    late.extend(second[100..150].iter().cloned());
    late.extend(first[800..900].iter().cloned());
    archive_all(&archive, &mut batch, late);
    archive_all(&archive, &mut batch, third.clone());
    // The third epoch's copies, and the second's once more.
    archive_all(&archive, &mut batch, third[..50].to_vec());
    archive_all(&archive, &mut batch, second[590..].to_vec());
    archive.close().unwrap();

    let stats = archive.stats();
    assert_eq!(stats.epochs, 1, "one reboot seen after the restart");
    assert_eq!(stats.duplicates, 50 + 100 + 50 + 10, "{stats:?}");
    let archived = archived_by_time(data);
    assert_eq!(archived.len(), 900 + 600 + 300);
    assert!(archived.values().all(|&n| n == 1), "each reading once");
}

#[test]
fn a_copy_older_than_the_window_goes_to_rejects_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let archive = Archive::open(ArchiveConfig {
        writer_threads: 1,
        ..config(data)
    })
    .unwrap();
    let mut batch = 0;
    let count = 70_000u64;
    let readings: Vec<Record> = (0..count)
        .map(|s| gps("busy", s, T0 + s as i64 * 100))
        .collect();
    archive_all(&archive, &mut batch, readings);
    // Seq 10 again: far older than the window below seq 69,999.
    archive_all(&archive, &mut batch, vec![gps("busy", 10, T0 + 1000)]);
    archive.close().unwrap();
    let stats = archive.stats();
    assert_eq!((stats.gps_rows, stats.reject_rows), (count, 1), "{stats:?}");
    let rejects = files(data, "rejects");
    let batch = read(&rejects[0]);
    let reasons = batch
        .column_by_name("reason")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .unwrap();
    let reason = reasons.value(0);
    assert!(
        reason.contains("seq 10") && reason.contains("older than the exactly-once window"),
        "{reason}"
    );
}
