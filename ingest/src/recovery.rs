//! Rebuilding the writer state on open: the exactly-once index, the next file number of each
//! writer, and the removal of files a crash left half-written.
//!
//! The index comes from the writers' snapshots ([`crate::snapshot`]) plus the rows of the
//! files published after them; only an archive without snapshots (written by an earlier
//! version, or whose snapshot is damaged) has all of a writer's files read, once. Of a file,
//! only `vehicle_id`, `seq` and `ts` are read (a projection).

use std::{
    collections::HashMap,
    fs::File,
    io::ErrorKind,
    path::{Path, PathBuf},
};

use arrow_array::{
    cast::AsArray,
    types::{Int32Type, Int64Type, TimestampMillisecondType},
    Array, StringArray,
};
use arrow_schema::DataType;
use parquet::arrow::{arrow_reader::ParquetRecordBatchReaderBuilder, ProjectionMask};

use crate::{
    classify::writer_of,
    dedup::DedupIndex,
    partition::Table,
    snapshot,
    writer::file::{is_temp_name, parse_name},
    ArchiveError,
};

/// What the archive on disk tells the writers.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Per writer, the index of the vehicles routed to it.
    pub dedup: Vec<DedupIndex>,
    /// Per writer, one past the highest file number on disk.
    pub next_file: Vec<u64>,
    /// Snapshots loaded.
    pub snapshots: usize,
    /// Per writer that saved one, the file number its snapshot covers up to.
    pub covered: HashMap<usize, u64>,
    /// Files read (those published after the snapshots).
    pub files: usize,
    /// Rows read from them.
    pub rows: u64,
}

/// Recovers the state of a writer pool of `writers` threads over `data_dir`.
///
/// # Errors
/// A directory that cannot be listed, a Parquet file that cannot be read or lacks the key
/// columns: better to refuse to start than to archive duplicates silently.
pub(crate) fn scan(data_dir: &Path, writers: usize) -> Result<Recovered, ArchiveError> {
    let mut snapshots = snapshot::load_all(&data_dir.join("wal"))?;
    // Oldest first, so that a vehicle in two snapshots (the pool changed size) ends up with
    // the later state.
    snapshots.sort_by_key(|s| s.saved_at_ms);
    let mut index = DedupIndex::new();
    let mut covered: HashMap<usize, u64> = HashMap::new();
    let loaded = snapshots.len();
    for s in snapshots {
        covered.insert(s.writer, s.next_file);
        index.overlay(s.index);
    }
    // Numbers are tracked for every writer index seen, so that shrinking the pool and growing
    // it again cannot reuse a name either.
    let mut next: HashMap<usize, u64> = HashMap::new();
    let mut unindexed: Vec<(u64, usize, PathBuf)> = Vec::new();
    for table in [Table::Gps, Table::Reefer, Table::Rejects] {
        let mut files = Vec::new();
        walk(&data_dir.join(table.dir_name()), &mut files)?;
        for path in files {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if is_temp_name(name) {
                tracing::warn!(path = %path.display(), "removing a file left half-written by a crash");
                std::fs::remove_file(&path).map_err(|e| ArchiveError::io(&path, e))?;
                continue;
            }
            let Some((writer, n)) = parse_name(name) else {
                continue;
            };
            let slot = next.entry(writer).or_default();
            *slot = (*slot).max(n + 1);
            let after_snapshot = n >= covered.get(&writer).copied().unwrap_or(0);
            if table != Table::Rejects && after_snapshot {
                unindexed.push((n, writer, path));
            }
        }
    }
    // In the order they were published, near enough: each writer numbers its files in order.
    unindexed.sort();
    let mut recovered = Recovered {
        dedup: Vec::new(),
        next_file: vec![0; writers],
        snapshots: loaded,
        covered: covered.clone(),
        files: unindexed.len(),
        rows: 0,
    };
    for (_, _, path) in &unindexed {
        recovered.rows += index_file(path, &mut index)?;
    }
    recovered.dedup = index.split(writers, |id| writer_of(id.as_bytes(), writers));
    for (writer, n) in next {
        if let Some(slot) = recovered.next_file.get_mut(writer) {
            *slot = n;
        }
    }
    Ok(recovered)
}

/// Collects every file below `dir` (none if it does not exist).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ArchiveError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ArchiveError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| ArchiveError::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| ArchiveError::io(&path, e))?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Adds the readings of one file to the index.
fn index_file(path: &Path, index: &mut DedupIndex) -> Result<u64, ArchiveError> {
    let parquet_err = |source| ArchiveError::Parquet {
        path: path.to_owned(),
        source,
    };
    let corrupt = |message: &str| ArchiveError::Corrupt {
        path: path.to_owned(),
        message: message.to_owned(),
    };
    let file = File::open(path).map_err(|e| ArchiveError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), ["vehicle_id", "seq", "ts"]);
    let reader = builder.with_projection(mask).build().map_err(parquet_err)?;
    let mut rows = 0;
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(&e.to_string()))?;
        let (Some(ids), Some(seqs), Some(ts)) = (
            batch.column_by_name("vehicle_id"),
            batch.column_by_name("seq"),
            batch.column_by_name("ts"),
        ) else {
            return Err(corrupt("no vehicle_id, seq or ts column"));
        };
        let seqs = seqs
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| corrupt("seq is not Int64"))?;
        let ts = ts
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| corrupt("ts is not a millisecond timestamp"))?;
        let mut admit = |id: &str, row: usize| {
            if !seqs.is_null(row) && !ts.is_null(row) {
                let seq = u64::try_from(seqs.value(row)).unwrap_or(0);
                index.admit(id, seq, ts.value(row));
            }
        };
        match ids.data_type() {
            DataType::Dictionary(_, _) => {
                let dict = ids
                    .as_dictionary_opt::<Int32Type>()
                    .ok_or_else(|| corrupt("vehicle_id keys are not Int32"))?;
                let values = dict
                    .values()
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| corrupt("vehicle_id values are not strings"))?;
                for (row, key) in dict.keys().iter().enumerate() {
                    if let Some(key) = key {
                        let key = usize::try_from(key).map_err(|_| corrupt("negative key"))?;
                        if key < values.len() {
                            admit(values.value(key), row);
                        }
                    }
                }
            }
            DataType::Utf8 => {
                for (row, id) in ids.as_string::<i32>().iter().enumerate() {
                    if let Some(id) = id {
                        admit(id, row);
                    }
                }
            }
            _ => return Err(corrupt("vehicle_id is not a string column")),
        }
        rows += batch.num_rows() as u64;
    }
    Ok(rows)
}
