//! Crash recovery: a child process logs records, gets some of them published, and aborts
//! (no flush, no close, no destructors); the parent reopens the archive and checks that every
//! durable record is archived exactly once.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use ingest::{Archive, ArchiveConfig, ShardWal};

const DIR_VAR: &str = "INGEST_CRASH_DIR";
const BATCHES: u64 = 4;
const BATCH: u64 = 60;
/// Records made durable before the crash.
const DURABLE: u64 = (BATCHES + 1) * BATCH;

fn config(data: &Path) -> ArchiveConfig {
    ArchiveConfig {
        rotate_rows: 100,
        rotate_age: Duration::from_secs(3600),
        ..ArchiveConfig::new(data)
    }
}

fn record(seq: u64) -> ingest::Record {
    let vehicle = if seq.is_multiple_of(2) { "a" } else { "b" };
    gps(vehicle, seq, T0 + seq as i64)
}

/// The child: 4 durable batches of 60 (two files of 100 rows get published on the way, the
/// second in the middle of the fourth batch), one more durable batch, then abort.
#[test]
#[ignore = "child process of the crash tests; does nothing unless INGEST_CRASH_DIR is set"]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let data = PathBuf::from(dir);
    let archive = Archive::open(config(&data)).unwrap();
    run(async move {
        let (wal, _, _) = ShardWal::open(archive.clone(), 0).await.unwrap();
        let mut seq = 0;
        let mut log_batch = async |wal: &ShardWal| {
            let tickets: Vec<_> = (0..BATCH)
                .map(|_| {
                    seq += 1;
                    wal.append(record(seq - 1), 0)
                })
                .collect();
            for ticket in tickets {
                wal.durable(ticket).await.unwrap();
            }
        };
        for _ in 0..BATCHES {
            log_batch(&wal).await;
        }
        // Let the writer publish its two full files and persist the checkpoint.
        let checkpoint = data.join("wal/shard-0/checkpoint");
        let deadline = Instant::now() + Duration::from_secs(20);
        let settled = || {
            let stats = archive.stats();
            let cp = archive.checkpoint(0);
            let persisted = std::fs::read_to_string(&checkpoint).unwrap_or_default();
            // 240 submitted, 200 published: the writer is done with the fourth batch.
            stats.files >= 2
                && stats.lag == 40
                && persisted.trim() == format!("{} {}", cp.segment, cp.offset)
        };
        while !settled() && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(archive.stats().files, 2);
        log_batch(&wal).await;
        std::process::abort();
    });
}

/// Runs the child on `data` and waits for it to die.
fn crash(data: &Path) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::crash_child",
            "--exact",
            "--include-ignored",
            "--nocapture",
        ])
        .env(DIR_VAR, data)
        .status()
        .unwrap();
    assert!(!status.success(), "the child should have aborted");
    assert!(
        data.join("wal/shard-0/checkpoint").exists(),
        "child did not get far"
    );
}

/// Reopens, replays, flushes; returns the number of records replayed.
fn restart(data: &Path) -> (usize, ingest::ArchiveStats) {
    let archive = Archive::open(config(data)).unwrap();
    let replayed = run({
        let archive = archive.clone();
        async move {
            let (wal, replayed, _) = ShardWal::open(archive, 0).await.unwrap();
            wal.close().await.unwrap();
            replayed.len()
        }
    });
    archive.close().unwrap();
    (replayed, archive.stats())
}

fn assert_all_once(data: &Path) {
    let archived = archived(data);
    assert_eq!(archived.len() as u64, DURABLE, "durable records lost");
    assert!(archived.values().all(|&n| n == 1), "records duplicated");
}

#[test]
fn a_crash_loses_no_durable_record_and_duplicates_none() {
    let dir = tempfile::tempdir().unwrap();
    crash(dir.path());
    // Before the restart the archive holds exactly the two published files.
    assert_eq!(archived(dir.path()).len(), 200);
    let (replayed, stats) = restart(dir.path());
    // Only the log after the persisted checkpoint is replayed: the checkpoint stopped at the
    // start of the fourth batch, whose first 20 records the second file holds (they are
    // duplicates now), and the 40 after them plus the fifth batch were never published.
    assert_eq!(replayed as u64, DURABLE - 3 * BATCH);
    assert_eq!(stats.duplicates, 20);
    assert_eq!(stats.gps_rows, 100);
    assert_all_once(dir.path());
    // A second restart replays nothing.
    let (replayed, _) = restart(dir.path());
    assert_eq!(replayed, 0);
    assert_all_once(dir.path());
}

#[test]
fn a_torn_tail_is_cut_off_and_the_records_before_it_survive() {
    let dir = tempfile::tempdir().unwrap();
    crash(dir.path());
    // A torn write after the last durable record: a plausible header, then garbage.
    let wal_dir = dir.path().join("wal/shard-0");
    let mut segments: Vec<_> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    let last = segments.last().unwrap().clone();
    let original = std::fs::metadata(&last).unwrap().len();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    file.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, b'g', b'a', b'r', b'b'])
        .unwrap();
    drop(file);

    let (replayed, _) = restart(dir.path());
    assert_eq!(replayed as u64, DURABLE - 3 * BATCH);
    assert_all_once(dir.path());
    // The tail is gone from the segment (only the valid prefix remains).
    assert!(std::fs::metadata(&last).unwrap().len() <= original);
}
