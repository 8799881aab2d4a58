//! Publishing one Parquet file atomically: a reader sees a complete file or none.
//!
//! The file is written under a dot-prefixed temporary name in its final directory (readers
//! that glob `*.parquet` skip it, and the rename stays within one file system), fsynced, then
//! hard-linked to its final name and the temporary name removed, then the directory fsynced.
//! A hard link fails if the target exists, where `rename` would silently replace it: a name
//! collision (another process writing the same directory, a miscounted sequence number) can
//! therefore never overwrite a published file; the writer moves on to the next number.

use std::{
    fs::File,
    io::ErrorKind,
    path::{Path, PathBuf},
};

use arrow_array::RecordBatch;
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, Encoding, ZstdLevel},
    file::{
        metadata::SortingColumn,
        properties::{EnabledStatistics, WriterProperties},
    },
    schema::types::ColumnPath,
};

use crate::{partition::Table, ArchiveError};

/// The zstd level of archive files, chosen by measurement on the demo's fleet: level 1 gives
/// 4.03 bytes per GPS row, 3 gives 3.96, 6 gives 3.87 and 9 no more than 3.86, at the same
/// records per second (most columns are delta-packed before zstd sees them; BENCHMARKS.md,
/// "Archive: bytes per row").
const ZSTD_LEVEL: i32 = 6;

/// Parquet settings of the files of `table`.
///
/// - zstd on every column; page-level statistics (which also write the column and offset
///   indexes readers prune pages with).
/// - `DELTA_BINARY_PACKED` for the integers that change little from row to row once the rows
///   are sorted by vehicle and time: the timestamps, `seq`, and the decimal coordinates and
///   odometer. A 1 Hz vehicle's `ts` steps by 1000 every row, which packs to almost nothing.
/// - Dictionaries only where values repeat: `vehicle_id` (one entry per vehicle, run-length
///   encoded over the sorted rows), `hdop` (a receiver reports a few dozen distinct values),
///   `topic` and `reason` of rejects.
/// - A bloom filter on `vehicle_id`, sized for a fleet of 10,000 vehicles, so a point lookup of
///   one vehicle skips files that do not hold it.
/// - The sort order recorded (`sorting_columns`), so an engine can rely on it.
pub fn writer_properties(table: Table) -> WriterProperties {
    let (delta, dictionary, sorted): (&[&str], &[&str], &[usize]) = match table {
        // Column positions of vehicle_id, ts and seq.
        Table::Gps => (
            &["ts", "seq", "lat", "lon", "odometer_km", "received_at"],
            &["vehicle_id", "hdop"],
            &[0, 1, 2],
        ),
        Table::Reefer => (&["ts", "seq", "received_at"], &["vehicle_id"], &[0, 1, 2]),
        // received_at.
        Table::Rejects => (&["received_at"], &["topic", "reason"], &[3]),
    };
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default(),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_enabled(false)
        .set_sorting_columns(Some(
            sorted
                .iter()
                .map(|&column| SortingColumn {
                    column_idx: column as i32,
                    descending: false,
                    nulls_first: false,
                })
                .collect(),
        ));
    for column in delta {
        builder =
            builder.set_column_encoding(ColumnPath::from(*column), Encoding::DELTA_BINARY_PACKED);
    }
    for column in dictionary {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(*column), true);
    }
    if table != Table::Rejects {
        let vehicle = ColumnPath::from("vehicle_id");
        builder = builder
            .set_column_bloom_filter_enabled(vehicle.clone(), true)
            .set_column_bloom_filter_max_ndv(vehicle, 10_000);
    }
    builder.build()
}

/// Hands out file numbers of one writer: `part-{writer}-{n}.parquet`, `n` increasing.
#[derive(Debug, Clone)]
pub struct FileNamer {
    writer: usize,
    next: u64,
}

impl FileNamer {
    /// A namer starting at `next` (one past the highest number found on disk).
    pub fn new(writer: usize, next: u64) -> Self {
        FileNamer { writer, next }
    }

    /// The number the next file will get (or a higher one, if that name is taken).
    pub fn next(&self) -> u64 {
        self.next
    }

    fn final_name(&self, n: u64) -> String {
        format!("part-{}-{n}.parquet", self.writer)
    }

    fn temp_name(&self, n: u64) -> String {
        format!(".part-{}-{n}.parquet.tmp", self.writer)
    }
}

/// Parses `part-{writer}-{n}.parquet` into `(writer, n)`.
pub fn parse_name(name: &str) -> Option<(usize, u64)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (writer, n) = rest.split_once('-')?;
    Some((writer.parse().ok()?, n.parse().ok()?))
}

/// Whether `name` is one of our temporary files (left behind by a crash mid-write).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(".part-") && name.ends_with(".parquet.tmp")
}

/// Writes `batch` as a new file in `dir` and publishes it; returns its path.
///
/// # Errors
/// Any I/O or Parquet error; the temporary file is removed and nothing is published.
pub fn publish(
    dir: &Path,
    namer: &mut FileNamer,
    batch: &RecordBatch,
    props: &WriterProperties,
) -> Result<PathBuf, ArchiveError> {
    ensure_dir(dir)?;
    let temp = dir.join(namer.temp_name(namer.next));
    let result = write_file(&temp, batch, props).and_then(|()| link_final(dir, &temp, namer));
    if let Err(e) = std::fs::remove_file(&temp) {
        if e.kind() != ErrorKind::NotFound {
            tracing::warn!(path = %temp.display(), error = %e, "cannot remove temporary file");
        }
    }
    let path = result?;
    sync_dir(dir)?;
    Ok(path)
}

/// Writes `batch` as a complete, fsynced Parquet file at `temp`.
pub fn write_file(
    temp: &Path,
    batch: &RecordBatch,
    props: &WriterProperties,
) -> Result<(), ArchiveError> {
    let parquet_err = |source| ArchiveError::Parquet {
        path: temp.to_owned(),
        source,
    };
    let file = File::create(temp).map_err(|e| ArchiveError::io(temp, e))?;
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(props.clone())).map_err(parquet_err)?;
    writer.write(batch).map_err(parquet_err)?;
    let file = writer.into_inner().map_err(parquet_err)?;
    file.sync_all().map_err(|e| ArchiveError::io(temp, e))
}

/// Links `temp` to the first free final name from `namer.next` on.
fn link_final(dir: &Path, temp: &Path, namer: &mut FileNamer) -> Result<PathBuf, ArchiveError> {
    loop {
        let n = namer.next;
        namer.next += 1;
        let path = dir.join(namer.final_name(n));
        match std::fs::hard_link(temp, &path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                tracing::warn!(path = %path.display(), "archive file name taken; using the next number");
            }
            Err(e) => return Err(ArchiveError::io(path, e)),
        }
    }
}

/// Creates `dir` and any missing parents, fsyncing each parent whose entries changed, so a
/// published file's directory survives a crash along with the file.
pub fn ensure_dir(dir: &Path) -> Result<(), ArchiveError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        ensure_dir(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(ArchiveError::io(dir, e)),
    }
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Atomically replaces `{dir}/{name}` with `bytes`: written to a temporary file, fsynced,
/// renamed over the old one, the directory fsynced. A crash leaves the old file or the new one.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
    use std::io::Write;
    ensure_dir(dir)?;
    let temp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut file = File::create(&temp).map_err(|e| ArchiveError::io(&temp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| ArchiveError::io(&temp, e))?;
    std::fs::rename(&temp, &path).map_err(|e| ArchiveError::io(&path, e))?;
    sync_dir(dir)
}

/// fsyncs a directory, making renames, links and unlinks in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ArchiveError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let namer = FileNamer::new(3, 0);
        assert_eq!(parse_name(&namer.final_name(17)), Some((3, 17)));
        assert!(is_temp_name(&namer.temp_name(17)));
        assert!(!is_temp_name(&namer.final_name(17)));
        assert_eq!(parse_name(".part-3-17.parquet.tmp"), None);
        assert_eq!(parse_name("part-x-1.parquet"), None);
    }

    #[test]
    fn a_taken_name_is_skipped_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let batch = RecordBatch::new_empty(telemetry::schema::rejects());
        std::fs::write(dir.path().join("part-0-0.parquet"), b"someone else's").unwrap();
        let mut namer = FileNamer::new(0, 0);
        let path = publish(
            dir.path(),
            &mut namer,
            &batch,
            &writer_properties(Table::Rejects),
        )
        .unwrap();
        assert_eq!(path.file_name().unwrap(), "part-0-1.parquet");
        assert_eq!(
            std::fs::read(dir.path().join("part-0-0.parquet")).unwrap(),
            b"someone else's"
        );
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(namer.next, 2);
    }
}
