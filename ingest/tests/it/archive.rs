//! End to end through `ShardWal` and `Archive`: records in, Parquet files read back.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::{collections::HashSet, time::Duration};

use arrow_array::{cast::AsArray, Array};
use common::*;
use ingest::{Archive, ArchiveConfig, Record, ShardWal, WalPosition};

fn config(data: &std::path::Path) -> ArchiveConfig {
    ArchiveConfig {
        rotate_rows: 300,
        writer_threads: 2,
        rotate_age: Duration::from_secs(3600),
        ..ArchiveConfig::new(data)
    }
}

/// The workload: 12 vehicles x 150 readings alternating gps/reefer, every 9th reading five
/// hours late (store-and-forward), every 10th redelivered, plus rejects and statuses.
struct Workload {
    records: Vec<Record>,
    expected: HashSet<(String, i64)>,
    duplicates: u64,
    rejects: u64,
    statuses: u64,
}

fn workload() -> Workload {
    let mut records = Vec::new();
    let mut expected = HashSet::new();
    let mut redeliveries = Vec::new();
    for v in 0..12 {
        let vehicle = format!("truck-{v:02}");
        for seq in 0..150u64 {
            let late = seq % 9 == 4;
            let ts = T0 + seq as i64 * 1000 - if late { 5 * HOUR } else { 0 };
            let record = if seq.is_multiple_of(2) {
                gps(&vehicle, seq, ts)
            } else {
                reefer(&vehicle, seq, ts)
            };
            if seq % 10 == 3 {
                redeliveries.push(record.clone());
            }
            records.push(record);
            expected.insert((vehicle.clone(), seq as i64));
        }
    }
    let duplicates = redeliveries.len() as u64;
    records.extend(redeliveries);
    let bad: Vec<(&str, &str)> = vec![
        ("fleet/truck-00/gps", "{not json"),
        ("fleet/truck-00/gps", r#"{"ts":1,"seq":999}"#),
        (
            "fleet/truck-01/gps",
            r#"{"ts":1,"seq":998,"lat":91,"lon":0,"speed_kmh":1,"heading_deg":1}"#,
        ),
        (
            "fleet/truck-02/reefer",
            r#"{"ts":1,"seq":997,"temp_c":"cold"}"#,
        ),
        ("fleet/truck-03/speed", "{}"),
        ("elsewhere/x", "hello"),
        ("fleet/bad id/gps", "{}"),
    ];
    let rejects = bad.len() as u64;
    for (topic, payload) in bad {
        records.push(Record::new(topic, payload, T0));
    }
    let statuses = 5;
    for v in 0..statuses {
        records.push(Record::new(
            format!("fleet/truck-{v:02}/status"),
            "online",
            T0,
        ));
    }
    Workload {
        records,
        expected,
        duplicates,
        rejects,
        statuses,
    }
}

/// Appends every record, waits until all are durable, closes the log.
async fn log_all(archive: std::sync::Arc<Archive>, records: Vec<Record>) -> WalPosition {
    let (wal, replayed, _) = ShardWal::open(archive.clone(), 0).await.unwrap();
    assert!(replayed.is_empty());
    let mut tickets = Vec::new();
    for chunk in records.chunks(97) {
        for record in chunk {
            tickets.push(wal.append(record.clone(), 0));
        }
        // Yield between chunks so commits interleave with appends (several group commits).
        glommio::yield_if_needed().await;
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    for ticket in tickets {
        wal.durable(ticket).await.unwrap();
    }
    wal.close().await.unwrap();
    archive.checkpoint(0)
}

#[test]
fn every_reading_once_sorted_in_its_own_hour_with_rejects_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let w = workload();
    let archive = Archive::open(config(&data)).unwrap();
    run(log_all(archive.clone(), w.records.clone()));
    archive.flush().unwrap();
    let stats = archive.stats();
    archive.close().unwrap();

    // Counters.
    assert_eq!(stats.duplicates, w.duplicates);
    assert_eq!(stats.skipped, w.statuses);
    assert_eq!(stats.reject_rows, w.rejects);
    assert_eq!(stats.gps_rows + stats.reefer_rows, w.expected.len() as u64);
    assert_eq!(
        (stats.lag, stats.buffered_bytes, stats.queued_bytes),
        (0, 0, 0)
    );

    // Exactly once.
    let archived = archived(&data);
    let keys: HashSet<_> = archived.keys().cloned().collect();
    assert_eq!(keys, w.expected);
    assert!(
        archived.values().all(|&n| n == 1),
        "duplicates in the archive"
    );

    // Sorted within files, rotated by rows, each row in the partition of its own ts.
    let mut late_partitions = 0;
    for table in ["gps", "reefer"] {
        for path in files(&data, table) {
            let batch = read(&path);
            assert!(batch.num_rows() <= 300, "{} not rotated", path.display());
            let rows = rows(&batch);
            assert!(is_sorted(&rows), "{} not sorted", path.display());
            let dir = path.parent().unwrap();
            for row in &rows {
                assert!(
                    dir.ends_with(partition_of(row.ts)),
                    "{row:?} in {}",
                    dir.display()
                );
            }
            if dir.ends_with("hour=17") {
                late_partitions += 1;
            }
            let name = path.file_name().unwrap().to_str().unwrap();
            assert!(
                name.starts_with("part-0-") || name.starts_with("part-1-"),
                "{name}"
            );
            let received = batch.column_by_name("received_at").unwrap();
            assert_eq!(received.null_count(), 0);
        }
    }
    assert!(
        late_partitions >= 2,
        "late readings did not land in their own hour"
    );
    assert_readers_can_prune(&files(&data, "gps")[0]);

    // Rejects keep topic, payload and reason.
    let reject_files = files(&data, "rejects");
    assert!(!reject_files.is_empty());
    let mut reasons = Vec::new();
    for path in &reject_files {
        assert!(path.parent().unwrap().ends_with("rejects/date=2023-11-14"));
        let batch = read(path);
        let topic = batch.column_by_name("topic").unwrap().as_string::<i32>();
        let payload = batch.column_by_name("payload").unwrap().as_binary::<i32>();
        let reason = batch.column_by_name("reason").unwrap().as_string::<i32>();
        for i in 0..batch.num_rows() {
            assert!(!payload.value(i).is_empty() || topic.value(i).ends_with("speed"));
            reasons.push((topic.value(i).to_owned(), reason.value(i).to_owned()));
        }
    }
    assert_eq!(reasons.len() as u64, w.rejects);
    let reason_of = |t: &str| &reasons.iter().find(|(topic, _)| topic == t).unwrap().1;
    assert!(
        reason_of("elsewhere/x").contains("not fleet"),
        "{reasons:?}"
    );
    assert!(
        reason_of("fleet/truck-01/gps").contains("lat"),
        "{reasons:?}"
    );
    assert!(
        reason_of("fleet/truck-02/reefer").contains("temp_c"),
        "{reasons:?}"
    );

    // No temporary file is visible, the checkpoint covers the whole log, and the log holds
    // only its current segment.
    let tmp = walk_names(&data)
        .into_iter()
        .filter(|n| n.ends_with(".tmp"))
        .count();
    assert_eq!(tmp, 0);
}

/// zstd, page statistics with column and offset indexes, a dictionary and a bloom filter on
/// `vehicle_id`.
fn assert_readers_can_prune(path: &std::path::Path) {
    use parquet::{
        arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder},
        basic::{Compression, Encoding},
        file::metadata::PageIndexPolicy,
    };
    let file = std::fs::File::open(path).unwrap();
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap();
    let meta = builder.metadata();
    assert!(meta.column_index().is_some(), "no column index");
    assert!(meta.offset_index().is_some(), "no offset index");
    let vehicle = meta.row_group(0).column(0);
    assert!(matches!(vehicle.compression(), Compression::ZSTD(_)));
    assert!(vehicle.statistics().is_some());
    assert!(vehicle.bloom_filter_offset().is_some(), "no bloom filter");
    assert!(vehicle.encodings().any(|e| e == Encoding::RLE_DICTIONARY));
}

fn walk_names(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk_names(&path));
        } else {
            out.push(path.file_name().unwrap().to_str().unwrap().to_owned());
        }
    }
    out
}

#[test]
fn a_restart_indexes_the_archive_and_a_vehicle_replay_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let w = workload();
    let archive = Archive::open(config(&data)).unwrap();
    let end = run(log_all(archive.clone(), w.records.clone()));
    archive.close().unwrap();
    // Closing published everything, so the checkpoint reached the end of the log.
    let checkpoint = archive.checkpoint(0);
    assert!(checkpoint >= end);
    let files_before = walk_names(&data.join("gps")).len() + walk_names(&data.join("reefer")).len();

    // Restart: nothing to replay (the checkpoint covers the log), the index is rebuilt, and a
    // vehicle that sends everything again (reconnect after store-and-forward) adds nothing.
    let archive = Archive::open(config(&data)).unwrap();
    assert_eq!(archive.checkpoint(0), checkpoint);
    assert!(checkpoint > WalPosition::ZERO);
    run(log_all(archive.clone(), w.records.clone()));
    archive.close().unwrap();
    let stats = archive.stats();
    assert_eq!(stats.gps_rows + stats.reefer_rows, 0);
    assert_eq!(
        stats.duplicates,
        w.records.len() as u64 - w.rejects - w.statuses
    );
    let files_after = walk_names(&data.join("gps")).len() + walk_names(&data.join("reefer")).len();
    assert_eq!(files_before, files_after);
    // The rejects are new messages each time: they are archived again, under new names.
    assert_eq!(stats.reject_rows, w.rejects);
    let archived = archived(&data);
    assert!(archived.values().all(|&n| n == 1));
    assert_eq!(archived.len(), w.expected.len());
}

#[test]
fn memory_bound_forces_early_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let config = ArchiveConfig {
        max_buffered_bytes: 20_000,
        rotate_age: Duration::from_secs(3600),
        ..ArchiveConfig::new(&data)
    };
    let archive = Archive::open(config).unwrap();
    let records: Vec<Record> = (0..2000).map(|s| gps("v", s, T0 + s as i64)).collect();
    archive.submit(5, WalPosition::new(1, 1), records);
    // Wait for the writer without flushing: only the memory bound can have published files.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while archive.stats().lag > 300 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = archive.stats();
    assert!(stats.files >= 5, "{stats:?}");
    // The bound is enforced after each row, so it is exceeded by at most one row.
    assert!(stats.buffered_bytes <= 20_000 + 200, "{stats:?}");
    archive.close().unwrap();
    assert_eq!(archived(&data).len(), 2000);
}

#[test]
fn aged_files_are_published_without_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let config = ArchiveConfig {
        rotate_age: Duration::from_millis(200),
        ..ArchiveConfig::new(&data)
    };
    let archive = Archive::open(config).unwrap();
    archive.submit(0, WalPosition::new(1, 10), vec![gps("v", 0, T0)]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while archive.checkpoint(0) < WalPosition::new(1, 10) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(archive.stats().files, 1);
    // The checkpoint is persisted once the file is published.
    let persisted = std::fs::read_to_string(data.join("wal/shard-0/checkpoint")).unwrap();
    assert_eq!(persisted.trim(), "1 10");
    archive.close().unwrap();
}

#[test]
fn segments_rotate_and_archived_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let config = ArchiveConfig {
        wal_segment_bytes: 4096,
        rotate_age: Duration::from_secs(3600),
        ..ArchiveConfig::new(&data)
    };
    let archive = Archive::open(config.clone()).unwrap();
    let wal_dir = data.join("wal/shard-0");
    let segments = move || {
        std::fs::read_dir(&wal_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "wal")
            })
            .count()
    };
    let counted = segments.clone();
    let max_seen = run({
        let archive = archive.clone();
        async move {
            let (wal, _, _) = ShardWal::open(archive.clone(), 0).await.unwrap();
            let mut max_seen = 0;
            for round in 0..10u64 {
                // ~40 records of ~130 bytes: more than one segment per round.
                let tickets: Vec<_> = (0..40)
                    .map(|i| wal.append(gps("v", round * 40 + i, T0 + i as i64), 0))
                    .collect();
                for ticket in tickets {
                    wal.durable(ticket).await.unwrap();
                }
                max_seen = max_seen.max(counted());
                // Publish, so the next commit may delete what is below the checkpoint.
                archive.flush().unwrap();
            }
            wal.close().await.unwrap();
            max_seen
        }
    });
    // Rotation made several segments; deletion kept only the ones at or above the checkpoint.
    assert!(max_seen >= 2, "no rotation: {max_seen}");
    let left = segments();
    assert!(left <= 3, "{left} segments left");
    archive.close().unwrap();
    let archive = Archive::open(config).unwrap();
    let replayed = run({
        let archive = archive.clone();
        async move {
            let (wal, replayed, _) = ShardWal::open(archive, 0).await.unwrap();
            wal.close().await.unwrap();
            replayed.len()
        }
    });
    archive.close().unwrap();
    assert_eq!(replayed, 0);
    assert_eq!(archived(&data).len(), 400);
}

/// The commit delay gathers a trickle from many sources into one sync, but a round that is
/// already full syncs at once: with a delay far longer than the test may take, a full round
/// (from eight sources) still becomes durable promptly, and a lone record after it waits for
/// the delay, because its siblings appended lately.
#[test]
fn a_full_round_does_not_wait_for_the_commit_delay() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(ArchiveConfig {
        commit_delay: Duration::from_secs(3),
        ..config(dir.path())
    })
    .unwrap();
    let (full, trickle) = run({
        let archive = archive.clone();
        async move {
            let (wal, _, _) = ShardWal::open(archive, 0).await.unwrap();
            let started = std::time::Instant::now();
            let tickets: Vec<_> = (0..100)
                .map(|i| wal.append(gps("v", i, T0 + i as i64), i % 8))
                .collect();
            for ticket in tickets {
                wal.durable(ticket).await.unwrap();
            }
            let full = started.elapsed();
            let started = std::time::Instant::now();
            let lone = wal.append(gps("v", 100, T0 + 100), 8);
            wal.durable(lone).await.unwrap();
            let trickle = started.elapsed();
            wal.close().await.unwrap();
            (full, trickle)
        }
    });
    archive.close().unwrap();
    assert!(
        full < Duration::from_secs(2),
        "a full round waited {full:?}"
    );
    assert!(
        trickle >= Duration::from_secs(3),
        "a lone record synced after {trickle:?}"
    );
}

/// A lone client that waits for each acknowledgement before it sends the next is never held
/// for the commit delay: nobody else's record would join its round.
#[test]
fn a_lone_source_is_not_held_for_the_commit_delay() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(ArchiveConfig {
        commit_delay: Duration::from_secs(3),
        ..config(dir.path())
    })
    .unwrap();
    let took = run({
        let archive = archive.clone();
        async move {
            let (wal, _, _) = ShardWal::open(archive, 0).await.unwrap();
            let started = std::time::Instant::now();
            for i in 0..20 {
                let ticket = wal.append(gps("v", i, T0 + i as i64), 42);
                wal.durable(ticket).await.unwrap();
            }
            let took = started.elapsed();
            wal.close().await.unwrap();
            took
        }
    });
    archive.close().unwrap();
    assert!(
        took < Duration::from_secs(2),
        "20 acknowledged records one after another took {took:?}"
    );
}
