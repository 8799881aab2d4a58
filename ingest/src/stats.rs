//! Counters of the archive, shared by the writer threads and read by `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the archive's counters (since [`crate::Archive::open`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// GPS rows in published files.
    pub gps_rows: u64,
    /// Reefer rows in published files.
    pub reefer_rows: u64,
    /// Reject rows in published files.
    pub reject_rows: u64,
    /// Files published.
    pub files: u64,
    /// Records dropped because their `(vehicle_id, seq)` is already archived or buffered.
    pub duplicates: u64,
    /// Records that are valid but not archived (status messages).
    pub skipped: u64,
    /// Vehicles whose sequence counter restarted (a reboot): a new epoch each.
    pub epochs: u64,
    /// Bytes the exactly-once index takes, all writers together (updated about once a second).
    pub index_bytes: u64,
    /// Files merged away by compaction.
    pub compacted_files: u64,
    /// `date=` partitions deleted by the retention.
    pub expired_days: u64,
    /// Bytes of rows buffered in open files, all writers together.
    pub buffered_bytes: u64,
    /// Bytes of records submitted but not yet taken by a writer thread.
    pub queued_bytes: u64,
    /// Records submitted and not yet settled (published, found duplicate or skipped).
    pub lag: u64,
    /// Files that failed to publish (their rows stay buffered and are retried).
    pub write_errors: u64,
}

/// The live counters behind [`ArchiveStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub gps_rows: AtomicU64,
    pub reefer_rows: AtomicU64,
    pub reject_rows: AtomicU64,
    pub files: AtomicU64,
    pub duplicates: AtomicU64,
    pub skipped: AtomicU64,
    pub epochs: AtomicU64,
    pub index_bytes: AtomicU64,
    pub compacted_files: AtomicU64,
    pub expired_days: AtomicU64,
    pub buffered_bytes: AtomicU64,
    pub queued_bytes: AtomicU64,
    pub submitted: AtomicU64,
    pub settled: AtomicU64,
    pub write_errors: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Subtracts `n` from a gauge.
pub(crate) fn sub(counter: &AtomicU64, n: u64) {
    counter.fetch_sub(n, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ArchiveStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        // `settled` is read first: read the other way round, a record settled in between
        // could make lag negative.
        let settled = get(&self.settled);
        let submitted = get(&self.submitted);
        ArchiveStats {
            gps_rows: get(&self.gps_rows),
            reefer_rows: get(&self.reefer_rows),
            reject_rows: get(&self.reject_rows),
            files: get(&self.files),
            duplicates: get(&self.duplicates),
            skipped: get(&self.skipped),
            epochs: get(&self.epochs),
            index_bytes: get(&self.index_bytes),
            compacted_files: get(&self.compacted_files),
            expired_days: get(&self.expired_days),
            buffered_bytes: get(&self.buffered_bytes),
            queued_bytes: get(&self.queued_bytes),
            lag: submitted.saturating_sub(settled),
            write_errors: get(&self.write_errors),
        }
    }
}
