//! `fleetmq query`'s engine: the archive's tables, their partition columns, pruning, output
//! formats and errors, against an archive written by the real writer.

#![allow(clippy::unwrap_used)]

use crate::common;

use analytics::{output, AnalyticsError, Catalog, Format};

fn setup() -> (tempfile::TempDir, simulator::Truth, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let truth = common::archive_fleet(common::hard_fleet(3, 7), 2 * 3600, dir.path());
    let catalog = Catalog::open(dir.path()).unwrap();
    (dir, truth, catalog)
}

fn render(catalog: &Catalog, sql: &str, format: Format) -> String {
    let result = catalog.sql(sql).unwrap();
    let mut out = Vec::new();
    output::write(format, &result.schema, &result.batches, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// The single value of a one-row, one-column result.
fn scalar(catalog: &Catalog, sql: &str) -> String {
    let csv = render(catalog, sql, Format::Csv);
    let mut lines = csv.lines();
    lines.next();
    lines.next().unwrap().to_owned()
}

#[test]
fn tables_hold_what_the_fleet_published() {
    let (_dir, truth, catalog) = setup();
    let gps: u64 = truth.vehicles.iter().map(|v| v.published.gps.count).sum();
    let reefer: u64 = truth
        .vehicles
        .iter()
        .map(|v| v.published.reefer.count)
        .sum();
    assert_eq!(
        scalar(&catalog, "SELECT count(*) FROM gps"),
        gps.to_string()
    );
    assert_eq!(
        scalar(&catalog, "SELECT count(*) FROM reefer"),
        reefer.to_string()
    );
    assert_eq!(scalar(&catalog, "SELECT count(*) FROM rejects"), "0");
    // Per vehicle, through the dictionary-encoded id.
    let v0 = &truth.vehicles[0];
    let sql = format!(
        "SELECT count(*) FROM gps WHERE vehicle_id = '{}'",
        v0.vehicle_id
    );
    assert_eq!(scalar(&catalog, &sql), v0.published.gps.count.to_string());
}

#[test]
fn partition_columns_select_and_prune() {
    let (_dir, truth, catalog) = setup();
    // The run starts 2025-01-06 06:00 UTC and lasts two hours: hours 6 and 7.
    let hours = render(
        &catalog,
        "SELECT date, hour, count(*) AS n FROM gps GROUP BY date, hour ORDER BY hour",
        Format::Csv,
    );
    let lines: Vec<&str> = hours.lines().collect();
    assert_eq!(lines[0], "date,hour,n");
    assert!(lines[1].starts_with("2025-01-06,6,"), "{hours}");
    assert!(lines[2].starts_with("2025-01-06,7,"), "{hours}");
    assert_eq!(lines.len(), 3);
    let in_hour_7 = scalar(
        &catalog,
        "SELECT count(*) FROM gps WHERE ts >= '2025-01-06T07:00:00Z' AND ts < '2025-01-06T08:00:00Z'",
    );
    let by_partition = scalar(
        &catalog,
        "SELECT count(*) FROM gps WHERE date = '2025-01-06' AND hour = 7",
    );
    assert_eq!(in_hour_7, by_partition);
    // The plan prunes: partitions by the listing, row groups by statistics on ts.
    let plan = render(
        &catalog,
        "EXPLAIN SELECT * FROM gps WHERE hour = 7 AND ts >= '2025-01-06T07:30:00Z'",
        Format::Csv,
    );
    assert!(plan.contains("pruning_predicate"), "{plan}");
    assert!(
        !plan.contains("hour=6/"),
        "hour 6 files are not even listed: {plan}"
    );
    let _ = truth;
}

#[test]
fn formats() {
    let (_dir, _truth, catalog) = setup();
    let sql = "SELECT vehicle_id, count(*) AS fixes, max(speed_kmh) AS max_speed_kmh \
               FROM gps GROUP BY vehicle_id ORDER BY vehicle_id";
    let table = render(&catalog, sql, Format::Table);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("vehicle_id   fixes  max_speed_kmh"),
        "{table}"
    );
    assert!(lines[1].starts_with("-----------  -----"), "{table}");
    assert_eq!(lines.last(), Some(&"(3 rows)"));
    let json: serde_json::Value =
        serde_json::from_str(&render(&catalog, sql, Format::Json)).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["vehicle_id"], "truck-00000");
    assert!(rows[0]["fixes"].as_i64().unwrap() > 6000);
    let nulls = render(
        &catalog,
        "SELECT 1 AS a, CAST(NULL AS DOUBLE) AS b_m",
        Format::Json,
    );
    assert_eq!(nulls.trim(), r#"[{"a":1,"b_m":null}]"#);
    let empty = render(
        &catalog,
        "SELECT * FROM gps WHERE speed_kmh < 0",
        Format::Json,
    );
    assert_eq!(empty.trim(), "[]");
    let empty = render(
        &catalog,
        "SELECT lat, lon FROM gps WHERE speed_kmh < 0",
        Format::Csv,
    );
    assert_eq!(empty.trim(), "lat,lon");
    // Parquet: a file DataFusion reads back with the same rows.
    let result = catalog.sql(sql).unwrap();
    let path = _dir.path().join("out.parquet");
    let file = std::fs::File::create(&path).unwrap();
    output::write(Format::Parquet, &result.schema, &result.batches, file).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 3);
}

#[test]
fn bad_sql_is_a_usage_error_that_names_the_problem() {
    let (_dir, _truth, catalog) = setup();
    for (sql, names) in [
        ("SELEC * FROM gps", "SELEC"),
        ("SELECT nope FROM gps", "nope"),
        ("SELECT * FROM trucks", "trucks"),
    ] {
        let err = catalog.sql(sql).unwrap_err();
        assert!(matches!(err, AnalyticsError::Sql(_)), "{sql}: {err}");
        assert!(err.is_usage());
        assert!(err.to_string().contains(names), "{sql}: {err}");
    }
}

#[test]
fn an_empty_archive_has_empty_tables() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(dir.path()).unwrap();
    assert_eq!(
        scalar(&catalog, "SELECT count(*) FROM gps WHERE hour = 3"),
        "0"
    );
    assert!(Catalog::open(&dir.path().join("missing"))
        .unwrap_err()
        .is_usage());
}

#[test]
fn rejects_are_queryable_with_their_reason() {
    use ingest::{Archive, ArchiveConfig, Record, WalPosition};
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(ArchiveConfig::new(dir.path())).unwrap();
    let t = 1_736_143_200_000;
    archive.submit(
        0,
        WalPosition::new(1, 1),
        vec![
            Record::new("fleet/t-1/gps", &b"{\"ts\":1"[..], t),
            Record::new("fleet/t-1/reefer", &b"{\"ts\":1,\"seq\":0}"[..], t + 1),
        ],
    );
    archive.close().unwrap();
    let catalog = Catalog::open(dir.path()).unwrap();
    let csv = render(
        &catalog,
        "SELECT date, topic, reason FROM rejects ORDER BY received_at",
        Format::Csv,
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].starts_with("2025-01-06,fleet/t-1/gps,"), "{csv}");
    assert!(
        lines[2].starts_with("2025-01-06,fleet/t-1/reefer,"),
        "{csv}"
    );
}

/// An archive an earlier version wrote (`hour=06`, doubles for the coordinates) and files of
/// this one (`hour=7`, decimals) read as one table: every hour is found by `hour = N`, and the
/// old file's doubles come back as written.
#[test]
fn archives_of_earlier_versions_read_alongside_the_new_layout() {
    use datafusion::arrow::{
        array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray},
        compute::cast,
        datatypes::{DataType, Field, Schema},
        record_batch::RecordBatch,
    };
    use datafusion::parquet::arrow::ArrowWriter;
    use std::sync::Arc;

    let (dir, _truth, catalog) = setup();
    let count = |catalog: &Catalog, hour: u32| {
        scalar(
            catalog,
            &format!("SELECT count(*) FROM gps WHERE date = '2025-01-06' AND hour = {hour}"),
        )
    };
    let (hour_6, hour_7) = (count(&catalog, 6), count(&catalog, 7));
    let day = dir.path().join("gps/date=2025-01-06");
    std::fs::rename(day.join("hour=6"), day.join("hour=06")).unwrap();
    // A version-1 file: doubles where this version writes decimals.
    let v1 = Arc::new(Schema::new(
        telemetry::schema::gps()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Decimal128(..) => {
                    Field::new(f.name(), DataType::Float64, f.is_nullable())
                }
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ));
    let ts = 1_736_150_400_000i64; // 2025-01-06 08:00 UTC
    let times = || -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from(vec![ts, ts + 1000]).with_timezone("UTC"))
    };
    let floats = |a: f64, b: f64| -> ArrayRef { Arc::new(Float64Array::from(vec![a, b])) };
    let ids: ArrayRef = Arc::new(StringArray::from(vec!["old-van", "old-van"]));
    let columns = vec![
        cast(&ids, v1.field(0).data_type()).unwrap(),
        times(),
        Arc::new(Int64Array::from(vec![1, 2])),
        floats(53.123_456_789_012, 53.1),
        floats(10.987_654_321_098, 10.2),
        floats(30.5, 31.5),
        floats(90.0, 91.0),
        floats(1_234.567_891, 1_234.6),
        floats(0.9, 1.0),
        times(),
    ];
    let batch = RecordBatch::try_new(v1.clone(), columns).unwrap();
    let old_hour = day.join("hour=08");
    std::fs::create_dir_all(&old_hour).unwrap();
    let file = std::fs::File::create(old_hour.join("part-0-0.parquet")).unwrap();
    let mut writer = ArrowWriter::try_new(file, v1, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let catalog = Catalog::open(dir.path()).unwrap();
    assert_eq!(count(&catalog, 6), hour_6, "hour=06 is found by hour = 6");
    assert_eq!(count(&catalog, 7), hour_7);
    assert_eq!(count(&catalog, 8), "2");
    assert_eq!(
        scalar(
            &catalog,
            "SELECT lat FROM gps WHERE hour = 8 AND vehicle_id = 'old-van' AND seq = 1"
        ),
        "53.123456789012"
    );
    // Both kinds of file in one query.
    let total = scalar(
        &catalog,
        "SELECT count(*) FROM gps WHERE lat > 0 AND odometer_km >= 0",
    );
    assert!(total.parse::<u64>().unwrap() > 2, "{total}");
}

/// Queries running while compaction swaps hours for merged files always answer in full: a
/// query that listed the old files just before the swap is run again, never short or doubled.
/// One catalog serves every round: it sees files published after it was opened.
#[test]
fn queries_while_hours_are_compacted_answer_in_full() {
    use ingest::{Archive, ArchiveConfig, Record, WalPosition};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    const HOUR: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = (now / HOUR - 5) * HOUR;
    let archive = Archive::open(ArchiveConfig {
        // Files of a few dozen rows, merged once their hour is closed (at once here).
        rotate_bytes: 4_000,
        rotate_rows: 100_000,
        rotate_age: Duration::from_secs(3600),
        compact_delay: Duration::ZERO,
        ..ArchiveConfig::new(dir.path())
    })
    .unwrap();
    let mut catalog = None;
    let mut total = 0;
    for round in 0..4u64 {
        // Each round brings late readings to the same three closed hours.
        let records: Vec<Record> = (0..6)
            .flat_map(|v| {
                (0..270u64).map(move |i| {
                    let ts = base + i as i64 * 40_000 + round as i64 * 500;
                    let payload = format!(
                        r#"{{"ts":{ts},"seq":{},"lat":52.5,"lon":13.4,"speed_kmh":1.0,"heading_deg":0.0}}"#,
                        round * 270 + i
                    );
                    Record::new(format!("fleet/van-{v}/gps"), payload, ts)
                })
            })
            .collect();
        total += records.len();
        archive.submit(0, WalPosition::new(1, round + 1), records);
        archive.flush().unwrap();
        // Opened once the table's directory exists (before, it is an empty table).
        let catalog = catalog.get_or_insert_with(|| Catalog::open(dir.path()).unwrap());
        let compacting = {
            let archive = archive.clone();
            std::thread::spawn(move || archive.maintain().unwrap())
        };
        let mut queries = 0;
        while !compacting.is_finished() || queries == 0 {
            assert_eq!(
                scalar(catalog, "SELECT count(*) FROM gps"),
                total.to_string(),
                "round {round}"
            );
            queries += 1;
        }
        let report = compacting.join().unwrap();
        assert!(report.hours_compacted >= 3, "round {round}: {report:?}");
    }
    archive.close().unwrap();
}
