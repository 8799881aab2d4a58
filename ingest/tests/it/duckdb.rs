//! The archive read by an independent engine: DuckDB with hive partitioning, as the design's
//! contract requires, plus pyarrow's view of the Parquet metadata.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::{collections::HashMap, process::Command, time::Duration};

use common::*;
use ingest::{Archive, ArchiveConfig, Record, WalPosition};

const SCRIPT: &str = r#"
import sys, duckdb, pyarrow.parquet as pq, glob
d = sys.argv[1]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
gps = f"read_parquet('{d}/gps/**/*.parquet', hive_partitioning=true)"
rows, keys, seqs, speed, bad_hour, ts_type = con.execute(f"""
    SELECT count(*), count(DISTINCT (vehicle_id, seq)), sum(seq), round(sum(speed_kmh), 3),
           count(*) FILTER (WHERE hour::INT <> extract(hour FROM ts)
                              OR date::DATE <> ts::DATE),
           any_value(typeof(ts))
    FROM {gps}""").fetchone()
print(f"gps_rows={rows}")
print(f"gps_keys={keys}")
print(f"gps_seq_sum={seqs}")
print(f"gps_speed_sum={speed}")
print(f"gps_wrong_partition={bad_hour}")
print(f"gps_ts_type={ts_type}")
reefer = f"read_parquet('{d}/reefer/**/*.parquet', hive_partitioning=true)"
print("reefer_rows=%d" % con.execute(f"SELECT count(*) FROM {reefer}").fetchone()[0])
rejects = f"read_parquet('{d}/rejects/**/*.parquet', hive_partitioning=true)"
print("rejects_with_reason=%d" % con.execute(
    f"SELECT count(*) FROM {rejects} WHERE length(reason) > 0").fetchone()[0])
ok = True
for path in glob.glob(f"{d}/gps/**/*.parquet", recursive=True):
    md = pq.ParquetFile(path).metadata
    for g in range(md.num_row_groups):
        col = md.row_group(g).column(0)
        ok = ok and col.compression == "ZSTD" and col.is_stats_set
        ok = ok and col.has_column_index and col.has_offset_index
        # Sorted by (vehicle_id, ts, seq), and said so; timestamps and coordinates delta-packed.
        group = md.row_group(g)
        ok = ok and [c.column_index for c in group.sorting_columns] == [0, 1, 2]
        names = [group.column(i).path_in_schema for i in range(group.num_columns)]
        for name in ["ts", "seq", "lat", "lon", "received_at"]:
            ok = ok and "DELTA_BINARY_PACKED" in group.column(names.index(name)).encodings
print(f"pyarrow_metadata_ok={ok}")
"#;

#[test]
#[ignore = "needs python3 with pyarrow (and duckdb); .ci/run installs them"]
fn duckdb_reads_the_archive_with_hive_partitioning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let config = ArchiveConfig {
        rotate_rows: 250,
        writer_threads: 2,
        rotate_age: Duration::from_secs(3600),
        ..ArchiveConfig::new(data)
    };
    let archive = Archive::open(config).unwrap();
    let (mut records, mut seq_sum, mut speed_sum, mut gps_rows) = (Vec::new(), 0u64, 0f64, 0u64);
    for v in 0..7 {
        for seq in 0..400u64 {
            // Spread over 30 hours, every 13th reading 6 hours late.
            let ts = T0 + seq as i64 * 270_000 - if seq.is_multiple_of(13) { 6 * HOUR } else { 0 };
            if seq.is_multiple_of(3) {
                records.push(reefer(&format!("v{v}"), seq, ts));
            } else {
                records.push(gps(&format!("v{v}"), seq, ts));
                seq_sum += seq;
                speed_sum += (seq % 100) as f64;
                gps_rows += 1;
            }
        }
    }
    let reefer_rows = 7 * 400 - gps_rows;
    records.push(records[5].clone()); // a redelivery
    records.push(Record::new("fleet/v1/gps", "not json", T0));
    for (i, chunk) in records.chunks(500).enumerate() {
        archive.submit(0, WalPosition::new(1, i as u64 + 1), chunk.to_vec());
    }
    archive.close().unwrap();

    let out = Command::new("python3")
        .args(["-c", SCRIPT, data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let got: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(got["gps_rows"], gps_rows.to_string(), "{text}");
    assert_eq!(got["gps_keys"], gps_rows.to_string(), "{text}");
    assert_eq!(got["gps_seq_sum"], seq_sum.to_string(), "{text}");
    assert_eq!(
        got["gps_speed_sum"].parse::<f64>().unwrap(),
        speed_sum,
        "{text}"
    );
    assert_eq!(got["gps_wrong_partition"], "0", "{text}");
    assert_eq!(got["gps_ts_type"], "TIMESTAMP WITH TIME ZONE", "{text}");
    assert_eq!(got["reefer_rows"], reefer_rows.to_string(), "{text}");
    assert_eq!(got["rejects_with_reason"], "1", "{text}");
    assert_eq!(got["pyarrow_metadata_ok"], "True", "{text}");
}
