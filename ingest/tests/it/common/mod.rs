//! Helpers shared by the integration tests: payloads, an executor, reading the archive back.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
};

use arrow_array::{
    cast::AsArray,
    types::{Int32Type, Int64Type, TimestampMillisecondType},
    Array, RecordBatch, StringArray,
};
use glommio::{LocalExecutorBuilder, Placement};
use ingest::Record;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// 2023-11-14 22:13:20 UTC.
pub const T0: i64 = 1_700_000_000_000;
pub const HOUR: i64 = 3_600_000;

pub fn gps(vehicle: &str, seq: u64, ts: i64) -> Record {
    let payload = format!(
        r#"{{"ts":{ts},"seq":{seq},"lat":52.5,"lon":13.4,"speed_kmh":{},"heading_deg":90.0}}"#,
        seq % 100
    );
    Record::new(format!("fleet/{vehicle}/gps"), payload, ts + 500)
}

pub fn reefer(vehicle: &str, seq: u64, ts: i64) -> Record {
    let payload = format!(
        r#"{{"ts":{ts},"seq":{seq},"temp_c":4.5,"setpoint_c":4.0,"door_open":false,"compressor_on":true}}"#
    );
    Record::new(format!("fleet/{vehicle}/reefer"), payload, ts + 500)
}

/// Runs `f` on a fresh glommio executor with a small io_memory (the memlock limit is low).
pub fn run<T: 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 << 10)
        .make()
        .expect("executor")
        .run(f)
}

/// The published Parquet files of `table`, skipping dot-prefixed temporaries like a reader.
pub fn files(data: &Path, table: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "parquet")
                && !path.file_name().unwrap().to_str().unwrap().starts_with('.')
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&data.join(table), &mut out);
    out.sort();
    out
}

pub fn read(path: &Path) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    arrow_select_concat(&batches)
}

fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    assert_eq!(
        batches.len(),
        1,
        "test files are small enough for one batch"
    );
    batches[0].clone()
}

/// One reading row: vehicle, seq, ts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Row {
    pub vehicle: String,
    pub seq: i64,
    pub ts: i64,
}

/// The rows of a gps or reefer file, in file order.
pub fn rows(batch: &RecordBatch) -> Vec<Row> {
    let ids = batch
        .column_by_name("vehicle_id")
        .unwrap()
        .as_dictionary::<Int32Type>();
    let names = ids.values().as_any().downcast_ref::<StringArray>().unwrap();
    let seq = batch
        .column_by_name("seq")
        .unwrap()
        .as_primitive::<Int64Type>();
    let ts = batch
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<TimestampMillisecondType>();
    (0..batch.num_rows())
        .map(|i| Row {
            vehicle: names.value(ids.keys().value(i) as usize).to_owned(),
            seq: seq.value(i),
            ts: ts.value(i),
        })
        .collect()
}

/// Every (vehicle, seq) of the gps and reefer tables with the number of times it appears.
pub fn archived(data: &Path) -> HashMap<(String, i64), usize> {
    let mut seen = HashMap::new();
    for table in ["gps", "reefer"] {
        for path in files(data, table) {
            for row in rows(&read(&path)) {
                *seen.entry((row.vehicle, row.seq)).or_default() += 1;
            }
        }
    }
    seen
}

/// The `date=.../hour=..` directory a reading of time `ts` belongs in.
pub fn partition_of(ts: i64) -> String {
    // Days since epoch to a civil date, independently of the crate's own conversion: walk
    // from 2023-01-01 (day 19358), which covers the test times.
    let days = ts.div_euclid(86_400_000);
    let hour = ts.rem_euclid(86_400_000) / HOUR;
    let (mut y, mut m, mut d, mut day) = (2023, 1, 1, 19_358);
    let month_len = |y: i64, m: u32| match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    assert!(days >= day, "test times are after 2023");
    while day < days {
        d += 1;
        if d > month_len(y, m) {
            d = 1;
            m += 1;
            if m > 12 {
                m = 1;
                y += 1;
            }
        }
        day += 1;
    }
    format!("date={y:04}-{m:02}-{d:02}/hour={hour:02}")
}

pub fn is_sorted(rows: &[Row]) -> bool {
    rows.windows(2)
        .all(|w| (&w[0].vehicle, w[0].ts) <= (&w[1].vehicle, w[1].ts))
}
