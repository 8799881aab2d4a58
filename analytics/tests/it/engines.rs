//! The archive read back by engines that know nothing of fleetmq: every value DataFusion, DuckDB
//! and pyarrow read equals what was published, bit for bit, where coordinates and odometer
//! (stored as decimals) carry no more digits than the archive keeps (1e-7 degree, 1 m); and
//! each engine prunes `hour = 7` by itself (a file no engine can read sits in another hour's
//! directory, so an engine that opened it would fail).

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{collections::BTreeMap, path::Path, process::Command};

use analytics::Catalog;
use datafusion::{
    arrow::{
        array::{Array, ArrayRef, AsArray},
        compute::cast,
        datatypes::{DataType, Float64Type, Int64Type},
        record_batch::RecordBatch,
    },
    prelude::{ParquetReadOptions, SessionContext},
};

/// One GPS row as published: `(ts, lat, lon, speed, heading, odometer, hdop, received_at)`.
type Row = (i64, f64, f64, f64, f64, Option<f64>, Option<f64>, i64);
/// Rows by `(vehicle_id, seq)`.
type Rows = BTreeMap<(String, i64), Row>;

const MS_PER_HOUR: i64 = 3_600_000;
/// Units of the stored coordinates and odometer (`telemetry::schema`).
const COORDINATE: f64 = 1e7;
const ODOMETER: f64 = 1e3;

/// `value` as the archive stores it, read back as a double: rounded to the nearest unit, then
/// divided (a correctly rounded division, which is how every engine converts a decimal).
fn stored(value: f64, units: f64) -> f64 {
    (value * units).round() / units
}

/// Three hard vehicles for 2.5 hours from 06:00 (hours 6, 7 and 8 of 2025-01-06), archived;
/// returns what was published, decoded as the archive's contract reads it.
fn archive(dir: &Path) -> Rows {
    let (_truth, records) = common::archive_fleet_published(common::hard_fleet(3, 11), 9_000, dir);
    let mut rows = Rows::new();
    for record in records {
        let topic = std::str::from_utf8(&record.topic).unwrap();
        let Ok((vehicle, telemetry::TopicKind::Gps)) = telemetry::topic::parse(topic) else {
            continue;
        };
        let g = telemetry::decode_gps(&record.payload).unwrap();
        let row = (
            g.ts,
            stored(g.lat, COORDINATE),
            stored(g.lon, COORDINATE),
            g.speed_kmh,
            g.heading_deg,
            g.odometer_km.map(|km| stored(km, ODOMETER)),
            g.hdop,
            record.received_at_ms,
        );
        // The simulator publishes 6 decimals of a degree and 3 of a km: stored exactly. Only
        // the fixes the test fleet moves by hand (a teleport, full double precision) round.
        if g.seq % 1_500 != 7 {
            assert_eq!((row.1, row.2, row.5), (g.lat, g.lon, g.odometer_km));
        }
        // The first copy is the one archived.
        rows.entry((vehicle.to_owned(), g.seq as i64))
            .or_insert(row);
    }
    rows
}

/// A file in an hour of its own that no engine can read.
fn plant_unreadable_hour(dir: &Path) {
    let hour = dir.join("gps/date=2025-01-06/hour=9");
    std::fs::create_dir_all(&hour).unwrap();
    std::fs::write(hour.join("part-0-0.parquet"), b"not a parquet file").unwrap();
}

fn hour_7(rows: &Rows) -> usize {
    let start = simulator::ModelConfig::default().start_ms + MS_PER_HOUR;
    rows.values()
        .filter(|r| (start..start + MS_PER_HOUR).contains(&r.0))
        .count()
}

fn column(batch: &RecordBatch, i: usize, to: &DataType) -> ArrayRef {
    cast(batch.column(i), to).unwrap()
}

fn optional(array: &ArrayRef, row: usize) -> Option<f64> {
    let values = array.as_primitive::<Float64Type>();
    (!values.is_null(row)).then(|| values.value(row))
}

fn rows_of(batches: &[RecordBatch]) -> Rows {
    let mut out = Rows::new();
    for batch in batches {
        let ids = column(batch, 0, &DataType::Utf8);
        let ints: Vec<ArrayRef> = [1, 2, 9]
            .iter()
            .map(|&i| column(batch, i, &DataType::Int64))
            .collect();
        let floats: Vec<ArrayRef> = (3..9)
            .map(|i| column(batch, i, &DataType::Float64))
            .collect();
        let int = |c: usize, row| ints[c].as_primitive::<Int64Type>().value(row);
        let float = |c: usize, row| floats[c].as_primitive::<Float64Type>().value(row);
        for row in 0..batch.num_rows() {
            let key = (ids.as_string::<i32>().value(row).to_owned(), int(0, row));
            let value = (
                int(1, row),
                float(0, row),
                float(1, row),
                float(2, row),
                float(3, row),
                optional(&floats[4], row),
                optional(&floats[5], row),
                int(2, row),
            );
            assert!(out.insert(key.clone(), value).is_none(), "{key:?} twice");
        }
    }
    out
}

const COLUMNS: &str = "vehicle_id, seq, CAST(ts AS BIGINT), lat, lon, speed_kmh, heading_deg, \
                       odometer_km, hdop, CAST(received_at AS BIGINT)";

/// Compares what an engine read with what was published, naming the first difference.
fn assert_same(engine: &str, read: &Rows, published: &Rows) {
    assert_eq!(read.len(), published.len(), "{engine}: row count");
    for (key, want) in published {
        assert_eq!(read.get(key), Some(want), "{engine}: {key:?}");
    }
}

#[test]
fn datafusion_reads_every_published_value_and_prunes_hour_7_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let published = archive(dir.path());
    assert!(hour_7(&published) > 1000);
    // fleetmq's own SQL (its catalog reads the decimals as doubles).
    let catalog = Catalog::open(dir.path()).unwrap();
    let result = catalog.sql(&format!("SELECT {COLUMNS} FROM gps")).unwrap();
    assert_same("fleetmq query", &rows_of(&result.batches), &published);

    // Plain DataFusion, told only the file schema and that `date` and `hour` are partitions.
    plant_unreadable_hour(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ctx = SessionContext::new();
    let schema = telemetry::schema::gps();
    let options = ParquetReadOptions::default()
        .schema(&schema)
        .table_partition_cols(vec![
            ("date".to_owned(), DataType::Utf8),
            ("hour".to_owned(), DataType::Int32),
        ]);
    let path = format!("{}/gps/", dir.path().display());
    runtime
        .block_on(ctx.register_parquet("gps", &path, options))
        .unwrap();
    // With the date fixed too, DataFusion lists the directory `date=…/hour=7` alone, which the
    // zero-padded `hour=07` of earlier versions would miss.
    let sql = format!("SELECT {COLUMNS} FROM gps WHERE date = '2025-01-06' AND hour = 7");
    let batches = runtime
        .block_on(async { ctx.sql(&sql).await?.collect().await })
        .unwrap();
    let read = rows_of(&batches);
    assert_eq!(read.len(), hour_7(&published), "plain DataFusion, hour = 7");
    // Its values too: the decimals read as decimals, converted to doubles by the cast.
    for (key, row) in &read {
        assert_eq!(Some(row), published.get(key), "plain DataFusion: {key:?}");
    }
}

/// DuckDB and pyarrow: every row as JSON, `[vehicle, seq, ts, lat, lon, speed, heading,
/// odometer, hdop, received_at]` with the decimals converted to doubles as a user would
/// (DuckDB's `::DOUBLE`, Python's `float(Decimal)`); then, with `prune`, the number of rows in
/// `hour = 7`.
const SCRIPT: &str = r#"
import sys, json, duckdb, pyarrow as pa, pyarrow.compute as pc, pyarrow.dataset as ds
mode, d = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
source = f"read_parquet('{d}/gps/**/*.parquet', hive_partitioning=true)"
dataset = ds.dataset(f"{d}/gps", format="parquet", partitioning="hive")
if mode == "values":
    for row in con.execute(f"""SELECT vehicle_id, seq, epoch_ms(ts), lat::DOUBLE, lon::DOUBLE,
            speed_kmh, heading_deg, odometer_km::DOUBLE, hdop, epoch_ms(received_at)
            FROM {source}""").fetchall():
        print("duckdb\t" + json.dumps(list(row)))
    t = dataset.to_table()
    cols = [t["vehicle_id"].cast(pa.string()), t["seq"], pc.cast(t["ts"], pa.int64())]
    cols = [c.to_pylist() for c in cols]
    # Decimals come as Python Decimals, converted exactly (pyarrow's own cast to float64 may
    # be one unit in the last place off).
    for c in ["lat", "lon", "speed_kmh", "heading_deg", "odometer_km", "hdop"]:
        cols.append([None if x is None else float(x) for x in t[c].to_pylist()])
    cols.append(pc.cast(t["received_at"], pa.int64()).to_pylist())
    for row in zip(*cols):
        print("pyarrow\t" + json.dumps(list(row)))
else:
    n = con.execute(f"SELECT count(*) FROM {source} WHERE date = '2025-01-06' AND hour = 7")
    print(f"duckdb\t{n.fetchone()[0]}")
    hour_7 = (ds.field("date") == "2025-01-06") & (ds.field("hour") == 7)
    print(f"pyarrow\t{dataset.to_table(filter=hour_7).num_rows}")
"#;

fn python(mode: &str, dir: &Path) -> Vec<(String, String)> {
    let out = Command::new("python3")
        .args(["-c", SCRIPT, mode])
        .arg(dir)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (engine, rest) = l.split_once('\t').unwrap();
            (engine.to_owned(), rest.to_owned())
        })
        .collect()
}

#[test]
#[ignore = "needs python3 with duckdb and pyarrow; .ci/run installs them"]
fn duckdb_and_pyarrow_read_every_published_value_and_prune_hour_7_by_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let published = archive(dir.path());
    let mut read: BTreeMap<String, Rows> = BTreeMap::new();
    for (engine, line) in python("values", dir.path()) {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let f = |i: usize| v[i].as_f64().unwrap();
        let key = (v[0].as_str().unwrap().to_owned(), v[1].as_i64().unwrap());
        let row = (
            v[2].as_i64().unwrap(),
            f(3),
            f(4),
            f(5),
            f(6),
            v[7].as_f64(),
            v[8].as_f64(),
            v[9].as_i64().unwrap(),
        );
        read.entry(engine).or_default().insert(key, row);
    }
    for engine in ["duckdb", "pyarrow"] {
        assert_same(engine, &read[engine], &published);
    }
    plant_unreadable_hour(dir.path());
    let counts: BTreeMap<String, String> = python("prune", dir.path()).into_iter().collect();
    let want = hour_7(&published).to_string();
    assert_eq!(counts["duckdb"], want, "DuckDB, hour = 7");
    assert_eq!(counts["pyarrow"], want, "pyarrow, hour = 7");
}
