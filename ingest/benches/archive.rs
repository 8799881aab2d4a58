//! Throughput of the archive.
//!
//! - `writer/decode_sort_parquet`: records through decode -> dedup -> rows -> sort -> Arrow ->
//!   zstd Parquet -> atomic publish, on one writer thread (`Archive::submit` + `flush`, no log).
//! - `wal/append_group_commit`: records appended to a `ShardWal` and awaited durable
//!   (write + fdatasync per group commit), the archive consuming them in the background.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::{LocalExecutorBuilder, Placement};
use ingest::{Archive, ArchiveConfig, Record, ShardWal, WalPosition};

const T0: i64 = 1_700_000_000_000;

/// `n` GPS readings of 100 vehicles, seqs from `first` on (so every run is new data).
fn records(first: u64, n: u64) -> Vec<Record> {
    (first..first + n)
        .map(|i| {
            let (vehicle, seq) = (i % 100, i / 100);
            let ts = T0 + seq as i64 * 1000;
            let payload = format!(
                r#"{{"ts":{ts},"seq":{seq},"lat":52.{i:06},"lon":13.{seq:06},"speed_kmh":{}.5,"heading_deg":{}.0,"hdop":0.9}}"#,
                i % 120,
                i % 360
            );
            Record::new(format!("fleet/truck-{vehicle:04}/gps"), payload, ts + 800)
        })
        .collect()
}

fn writer(c: &mut Criterion) {
    const N: u64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(ArchiveConfig {
        rotate_age: Duration::from_secs(3600),
        ..ArchiveConfig::new(dir.path())
    })
    .unwrap();
    let mut group = c.benchmark_group("writer");
    group.throughput(Throughput::Elements(N)).sample_size(10);
    let mut next = 0;
    group.bench_function("decode_sort_parquet", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch = records(next * N, N);
                next += 1;
                let start = Instant::now();
                archive.submit(0, WalPosition::new(1, next), batch);
                archive.flush().unwrap();
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
    archive.close().unwrap();
}

fn wal(c: &mut Criterion) {
    const N: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(ArchiveConfig {
        rotate_age: Duration::from_secs(3600),
        ..ArchiveConfig::new(dir.path())
    })
    .unwrap();
    let mut group = c.benchmark_group("wal");
    group.throughput(Throughput::Elements(N)).sample_size(10);
    let mut next = 0;
    group.bench_function("append_group_commit", |b| {
        b.iter_custom(|iters| {
            let archive = archive.clone();
            let first = next;
            next += iters;
            LocalExecutorBuilder::new(Placement::Unbound)
                .io_memory(1 << 20)
                .make()
                .unwrap()
                .run(async move {
                    let (wal, _, _) = ShardWal::open(archive, 0).await.unwrap();
                    let mut total = Duration::ZERO;
                    for i in first..first + iters {
                        let batch = records(i * N, N);
                        let start = Instant::now();
                        // Publishers interleave with commits: append in groups of 100.
                        let mut last = None;
                        for chunk in batch.chunks(100) {
                            for record in chunk {
                                last = Some(wal.append(record.clone(), 0));
                            }
                            futures_lite::future::yield_now().await;
                        }
                        wal.durable(last.unwrap()).await.unwrap();
                        total += start.elapsed();
                    }
                    wal.close().await.unwrap();
                    total
                })
        })
    });
    group.finish();
    archive.close().unwrap();
}

criterion_group!(benches, writer, wal);
criterion_main!(benches);
