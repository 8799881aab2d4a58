//! How the archive rotates files, bounds memory and sizes its log.

use std::{path::PathBuf, time::Duration};

use crate::ArchiveError;

/// Configuration of an [`crate::Archive`] and its [`crate::ShardWal`]s.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// Root of the archive: `{data}/gps/...`, `{data}/reefer/...`, `{data}/rejects/...`,
    /// `{data}/wal/...`.
    pub data_dir: PathBuf,
    /// An open file is published once it holds this many rows.
    pub rotate_rows: usize,
    /// An open file is published once its buffered rows take this many bytes.
    pub rotate_bytes: usize,
    /// An open file is published at the latest this long after its first row arrived, so that
    /// readers see data within a bounded delay even at a trickle.
    pub rotate_age: Duration,
    /// A write-ahead log segment is closed and a new one started past this size.
    pub wal_segment_bytes: u64,
    /// Once a record waits, a group commit gathers for this long before it syncs, if at least
    /// four sources (the broker's connections) appended lately. Zero (the default here; the
    /// broker's is 5 ms) syncs at once: a lone message is acknowledged after one fdatasync,
    /// and under load the records that arrive during one sync make the next round by
    /// themselves. A fleet whose readings arrive evenly spread gets about one fdatasync per
    /// reading that way; a few milliseconds here trade acknowledgement latency for fewer syncs
    /// and less CPU (BENCHMARKS.md measures both). A round that already holds 64 records syncs
    /// without waiting, and a lone source that waits for each acknowledgement never waits.
    pub commit_delay: Duration,
    /// Number of writer threads; records are spread over them by a hash of the vehicle id, so
    /// each vehicle's rows (and its exactly-once index) live in exactly one thread.
    pub writer_threads: usize,
    /// Bound of the rows buffered by all writers together; past it the largest open files
    /// are published early.
    pub max_buffered_bytes: usize,
    /// Merge the files of closed hours into files of up to `rotate_rows` rows.
    pub compact: bool,
    /// An hour is compacted once it ended this long ago and no reading of it arrived for as
    /// long (store-and-forward data reopens an hour; it is compacted again later).
    pub compact_delay: Duration,
    /// Delete whole days (`date=` partitions of every table) older than this many days;
    /// `None` keeps everything.
    pub retention_days: Option<u32>,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            data_dir: PathBuf::from("fleet-data"),
            rotate_rows: 1_000_000,
            rotate_bytes: 64 << 20,
            rotate_age: Duration::from_secs(60),
            wal_segment_bytes: 64 << 20,
            commit_delay: Duration::ZERO,
            writer_threads: 1,
            max_buffered_bytes: 256 << 20,
            compact: true,
            compact_delay: Duration::from_secs(600),
            retention_days: None,
        }
    }
}

impl ArchiveConfig {
    /// The defaults, with the archive rooted at `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ArchiveConfig {
            data_dir: data_dir.into(),
            ..ArchiveConfig::default()
        }
    }

    /// Checks that every bound can be met.
    ///
    /// # Errors
    /// [`ArchiveError::Config`] naming the field.
    pub fn validate(&self) -> Result<(), ArchiveError> {
        let zero = |name: &str| Err(ArchiveError::Config(format!("`{name}` must be above 0")));
        if self.rotate_rows == 0 {
            return zero("rotate_rows");
        }
        if self.rotate_bytes == 0 {
            return zero("rotate_bytes");
        }
        if self.rotate_age.is_zero() {
            return zero("rotate_age");
        }
        if self.wal_segment_bytes == 0 {
            return zero("wal_segment_bytes");
        }
        if self.writer_threads == 0 {
            return zero("writer_threads");
        }
        if self.max_buffered_bytes == 0 {
            return zero("max_buffered_bytes");
        }
        if self.retention_days == Some(0) {
            return Err(ArchiveError::Config(
                "`retention_days` must be above 0 (leave it out to keep everything)".into(),
            ));
        }
        Ok(())
    }

    /// The share of [`ArchiveConfig::max_buffered_bytes`] each writer thread may hold.
    pub(crate) fn per_writer_buffer(&self) -> usize {
        (self.max_buffered_bytes / self.writer_threads.max(1)).max(1)
    }

    /// `{data}/wal/shard-{shard}`.
    pub(crate) fn wal_dir(&self, shard: usize) -> PathBuf {
        self.data_dir.join("wal").join(format!("shard-{shard}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(ArchiveConfig::default().validate().is_ok());
    }

    #[test]
    fn zero_bounds_are_refused_by_name() {
        let config = ArchiveConfig {
            writer_threads: 0,
            ..ArchiveConfig::new("x")
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("writer_threads"), "{err}");
    }
}
