//! Rebuilding the writer state from the archive on open: the exactly-once index, the next
//! file number of each writer, and the removal of files a crash left half-written.
//!
//! Only the `vehicle_id` and `seq` columns of the `gps` and `reefer` files are read (a
//! projection), which is a small fraction of each file.

use std::{
    collections::HashMap,
    fs::File,
    io::ErrorKind,
    path::{Path, PathBuf},
};

use arrow_array::{cast::AsArray, types::Int32Type, types::Int64Type, Array, StringArray};
use arrow_schema::DataType;
use parquet::arrow::{arrow_reader::ParquetRecordBatchReaderBuilder, ProjectionMask};

use crate::{
    classify::writer_of,
    dedup::DedupIndex,
    partition::Table,
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
    /// Files read.
    pub files: usize,
    /// `(vehicle_id, seq)` pairs indexed.
    pub rows: u64,
}

/// Scans `data_dir` for a writer pool of `writers` threads.
///
/// # Errors
/// A directory that cannot be listed, a Parquet file that cannot be read or lacks the key
/// columns: better to refuse to start than to archive duplicates silently.
pub(crate) fn scan(data_dir: &Path, writers: usize) -> Result<Recovered, ArchiveError> {
    let mut recovered = Recovered {
        dedup: (0..writers).map(|_| DedupIndex::new()).collect(),
        next_file: vec![0; writers],
        files: 0,
        rows: 0,
    };
    // Numbers are tracked for every writer index seen, so that shrinking the pool and growing
    // it again cannot reuse a name either.
    let mut next: HashMap<usize, u64> = HashMap::new();
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
            if table != Table::Rejects {
                recovered.rows += index_file(&path, &mut recovered.dedup)?;
                recovered.files += 1;
            }
        }
    }
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

/// Adds the `(vehicle_id, seq)` pairs of one file to the index of their writers.
fn index_file(path: &Path, dedup: &mut [DedupIndex]) -> Result<u64, ArchiveError> {
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
    let mask = ProjectionMask::columns(builder.parquet_schema(), ["vehicle_id", "seq"]);
    let reader = builder.with_projection(mask).build().map_err(parquet_err)?;
    let mut rows = 0;
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(&e.to_string()))?;
        let (Some(ids), Some(seqs)) = (
            batch.column_by_name("vehicle_id"),
            batch.column_by_name("seq"),
        ) else {
            return Err(corrupt("no vehicle_id or seq column"));
        };
        let seqs = seqs
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| corrupt("seq is not Int64"))?;
        let mut insert = |id: &str, seq: i64| {
            let seq = u64::try_from(seq).unwrap_or(0);
            let writer = writer_of(id.as_bytes(), dedup.len());
            if let Some(index) = dedup.get_mut(writer) {
                index.insert(id, seq);
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
                for (key, seq) in dict.keys().iter().zip(seqs.iter()) {
                    if let (Some(key), Some(seq)) = (key, seq) {
                        let key = usize::try_from(key).map_err(|_| corrupt("negative key"))?;
                        if key < values.len() {
                            insert(values.value(key), seq);
                        }
                    }
                }
            }
            DataType::Utf8 => {
                for (id, seq) in ids.as_string::<i32>().iter().zip(seqs.iter()) {
                    if let (Some(id), Some(seq)) = (id, seq) {
                        insert(id, seq);
                    }
                }
            }
            _ => return Err(corrupt("vehicle_id is not a string column")),
        }
        rows += batch.num_rows() as u64;
    }
    Ok(rows)
}
