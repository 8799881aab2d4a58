//! The writer side: one [`Writer`] per writer thread owns the open files (partitions) of the
//! vehicles routed to it, their exactly-once index, and publishes files on rotation.
//!
//! A `Writer` is plain synchronous code driven by its thread (`thread.rs`), so it can be
//! tested and benchmarked without threads.

pub(crate) mod file;
pub(crate) mod rows;
pub(crate) mod thread;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use parquet::file::properties::WriterProperties;

use crate::{
    checkpoint::Progress,
    classify::{classify, Classified},
    dedup::{DedupIndex, Verdict, WINDOW},
    partition::{PartitionKey, Table},
    snapshot,
    stats::{add, sub, Counters},
    ArchiveConfig, ArchiveError, Record, WalPosition,
};
use file::FileNamer;
use rows::{GpsRow, ReeferRow, RejectRow, Rows, GPS_ROW_SIZE, REEFER_ROW_SIZE};

/// State shared by the archive handle and its writer threads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub data_dir: PathBuf,
    pub progress: Progress,
    pub counters: Counters,
    /// Writers publish files holding it shared; compaction and retention take it exclusively
    /// to swap or remove a partition directory, so no file lands in one as it goes.
    pub publishing: RwLock<()>,
    /// Per writer, the file number below which its saved exactly-once index covers its files:
    /// only those may be compacted.
    pub covered: Mutex<HashMap<usize, u64>>,
}

/// How long rotation and memory-bound flushes wait after a failed publish before trying again,
/// so a full disk does not turn every batch into a failing write.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One open file.
#[derive(Debug)]
struct Partition {
    rows: Rows,
    bytes: usize,
    opened: Instant,
    /// Per shard, the start of the oldest batch with a row in here: the log below it is not
    /// held by this file.
    holds: Vec<(usize, WalPosition)>,
}

/// The archive writer of one thread.
#[derive(Debug)]
pub(crate) struct Writer {
    id: usize,
    shared: Arc<Shared>,
    rotate_rows: usize,
    rotate_bytes: usize,
    rotate_age: Duration,
    budget: usize,
    /// Parquet settings per table.
    props: HashMap<Table, WriterProperties>,
    dedup: DedupIndex,
    namer: FileNamer,
    partitions: HashMap<PartitionKey, Partition>,
    /// Per shard, the end of the last batch seen.
    received: HashMap<usize, WalPosition>,
    buffered: usize,
    retry_at: Option<Instant>,
    published: bool,
    /// Readings were admitted since the exactly-once index was last saved.
    index_changed: bool,
    /// The index's size this writer last added to the shared gauge.
    index_bytes: u64,
}

impl Writer {
    /// A writer with the index and file counter recovered from disk.
    pub fn new(
        id: usize,
        config: &ArchiveConfig,
        shared: Arc<Shared>,
        dedup: DedupIndex,
        next_file: u64,
    ) -> Self {
        let index_bytes = dedup.approximate_bytes();
        add(&shared.counters.index_bytes, index_bytes);
        Writer {
            id,
            shared,
            rotate_rows: config.rotate_rows,
            rotate_bytes: config.rotate_bytes,
            rotate_age: config.rotate_age,
            budget: config.per_writer_buffer(),
            props: [Table::Gps, Table::Reefer, Table::Rejects]
                .into_iter()
                .map(|t| (t, file::writer_properties(t)))
                .collect(),
            dedup,
            namer: FileNamer::new(id, next_file),
            partitions: HashMap::new(),
            received: HashMap::new(),
            buffered: 0,
            retry_at: None,
            published: false,
            index_changed: false,
            index_bytes,
        }
    }

    /// Takes the batch `(start, end]` of `shard`: decodes, deduplicates and buffers each
    /// record, then publishes the files that are full and those the memory bound demands.
    ///
    /// # Errors
    /// A file that could not be published; the records are buffered regardless.
    pub fn accept(
        &mut self,
        shard: usize,
        start: WalPosition,
        end: WalPosition,
        records: &[Record],
    ) -> Result<(), ArchiveError> {
        let now = Instant::now();
        let mut result = Ok(());
        for record in records {
            // A file is published the moment it is full, so no file exceeds the bounds.
            if let Some(full) = self.add(shard, start, record, now) {
                keep_first(&mut result, self.flush_partition(full, false));
            }
            if self.buffered > self.budget {
                keep_first(&mut result, self.enforce_budget());
            }
        }
        let received = self.received.entry(shard).or_insert(end);
        *received = (*received).max(end);
        self.report();
        result
    }

    /// Buffers one record; returns its partition when that is now full.
    fn add(
        &mut self,
        shard: usize,
        start: WalPosition,
        record: &Record,
        now: Instant,
    ) -> Option<PartitionKey> {
        let received_at = record.received_at_ms;
        let (key, row) = match classify(record) {
            Classified::Gps(vehicle, gps) => match self.admit(vehicle, gps.seq, gps.ts) {
                Admission::Archive(vehicle) => (
                    PartitionKey::of(Table::Gps, gps.ts),
                    Row::Gps(GpsRow {
                        vehicle,
                        gps,
                        received_at,
                    }),
                ),
                Admission::Duplicate => return None,
                Admission::Reject(reason) => reject_row(record, reason),
            },
            Classified::Reefer(vehicle, reefer) => match self.admit(vehicle, reefer.seq, reefer.ts)
            {
                Admission::Archive(vehicle) => (
                    PartitionKey::of(Table::Reefer, reefer.ts),
                    Row::Reefer(ReeferRow {
                        vehicle,
                        reefer,
                        received_at,
                    }),
                ),
                Admission::Duplicate => return None,
                Admission::Reject(reason) => reject_row(record, reason),
            },
            Classified::Skip => {
                add(&self.shared.counters.skipped, 1);
                add(&self.shared.counters.settled, 1);
                return None;
            }
            Classified::Reject(reason) => reject_row(record, reason),
        };
        let part = self.partitions.entry(key).or_insert_with(|| Partition {
            rows: Rows::new(key.table),
            bytes: 0,
            opened: now,
            holds: Vec::new(),
        });
        if !part.holds.iter().any(|(s, _)| *s == shard) {
            part.holds.push((shard, start));
        }
        let size = match (&mut part.rows, row) {
            (Rows::Gps(rows), Row::Gps(row)) => {
                rows.push(row);
                GPS_ROW_SIZE
            }
            (Rows::Reefer(rows), Row::Reefer(row)) => {
                rows.push(row);
                REEFER_ROW_SIZE
            }
            (Rows::Rejects(rows), Row::Reject(row)) => {
                let size = row.size();
                rows.push(row);
                size
            }
            // The key's table was derived from the row's kind just above.
            _ => 0,
        };
        part.bytes += size;
        self.buffered += size;
        add(&self.shared.counters.buffered_bytes, size as u64);
        (part.rows.len() >= self.rotate_rows || part.bytes >= self.rotate_bytes).then_some(key)
    }

    /// Asks the exactly-once index about a reading (a duplicate is counted and settled here).
    fn admit(&mut self, vehicle: &str, seq: u64, ts: i64) -> Admission {
        let epochs = self.dedup.epochs_started();
        match self.dedup.admit(vehicle, seq, ts) {
            Verdict::New(vehicle) => {
                self.index_changed = true;
                add(
                    &self.shared.counters.epochs,
                    self.dedup.epochs_started() - epochs,
                );
                Admission::Archive(vehicle)
            }
            Verdict::Duplicate => {
                add(&self.shared.counters.duplicates, 1);
                add(&self.shared.counters.settled, 1);
                Admission::Duplicate
            }
            Verdict::BeyondWindow { newest } => Admission::Reject(format!(
                "seq {seq} is {} below the newest seq of {vehicle} ({newest}): older than the \
                 exactly-once window of {WINDOW}, so whether it is archived already cannot be \
                 told; kept here rather than risk archiving it twice",
                newest - seq
            )),
        }
    }

    /// Publishes one open file. With `force` false, does nothing while backing off after a
    /// failure.
    fn flush_partition(&mut self, key: PartitionKey, force: bool) -> Result<(), ArchiveError> {
        if !force && self.retry_at.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        let Some(part) = self.partitions.get_mut(&key).filter(|p| !p.rows.is_empty()) else {
            return Ok(());
        };
        part.rows.sort();
        let batch = part.rows.to_batch()?;
        let dir = key.dir(&self.shared.data_dir);
        let counters = &self.shared.counters;
        let props = self
            .props
            .get(&key.table)
            .cloned()
            .unwrap_or_else(|| file::writer_properties(key.table));
        let published = {
            let _shared = self
                .shared
                .publishing
                .read()
                .unwrap_or_else(|p| p.into_inner());
            file::publish(&dir, &mut self.namer, &batch, &props)
        };
        match published {
            Ok(path) => {
                let rows = batch.num_rows() as u64;
                tracing::debug!(writer = self.id, path = %path.display(), rows, "published");
                let table_rows = match key.table {
                    Table::Gps => &counters.gps_rows,
                    Table::Reefer => &counters.reefer_rows,
                    Table::Rejects => &counters.reject_rows,
                };
                add(table_rows, rows);
                add(&counters.files, 1);
                add(&counters.settled, rows);
                sub(&counters.buffered_bytes, part.bytes as u64);
                self.buffered -= part.bytes;
                self.partitions.remove(&key);
                self.retry_at = None;
                self.published = true;
                Ok(())
            }
            Err(e) => {
                add(&counters.write_errors, 1);
                tracing::error!(writer = self.id, dir = %dir.display(), error = %e,
                    "cannot publish archive file; rows stay buffered");
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
                Err(e)
            }
        }
    }

    /// Publishes the largest open files until the buffered rows fit the budget.
    fn enforce_budget(&mut self) -> Result<(), ArchiveError> {
        while self.buffered > self.budget {
            let Some(key) = self
                .partitions
                .iter()
                .max_by_key(|(_, p)| p.bytes)
                .map(|(key, _)| *key)
            else {
                break;
            };
            let before = self.buffered;
            self.flush_partition(key, false)?;
            if self.buffered == before {
                break; // backing off after a failure
            }
        }
        Ok(())
    }

    /// Once a file is older than the rotation age, publishes it and every other open file
    /// (a writer with nothing unpublished can save its exactly-once index), then persists the
    /// checkpoints.
    ///
    /// # Errors
    /// The first failure.
    pub fn tick(&mut self) -> Result<(), ArchiveError> {
        let aged = self
            .partitions
            .values()
            .any(|p| p.opened.elapsed() >= self.rotate_age);
        let mut result = Ok(());
        if aged {
            let keys: Vec<PartitionKey> = self.partitions.keys().copied().collect();
            for key in keys {
                keep_first(&mut result, self.flush_partition(key, false));
            }
        }
        self.report();
        keep_first(&mut result, self.persist());
        result
    }

    /// Publishes every open file and persists the checkpoints.
    ///
    /// # Errors
    /// The first failure (the other files are still attempted).
    pub fn flush_all(&mut self) -> Result<(), ArchiveError> {
        let keys: Vec<PartitionKey> = self.partitions.keys().copied().collect();
        let mut result = Ok(());
        for key in keys {
            keep_first(&mut result, self.flush_partition(key, true));
        }
        self.report();
        self.published = true;
        keep_first(&mut result, self.persist());
        result
    }

    /// Persists checkpoints if a file was published since the last time.
    pub fn persist_if_published(&mut self) -> Result<(), ArchiveError> {
        if self.published {
            self.persist()
        } else {
            Ok(())
        }
    }

    fn persist(&mut self) -> Result<(), ArchiveError> {
        self.published = false;
        let bytes = self.dedup.approximate_bytes();
        let gauge = &self.shared.counters.index_bytes;
        add(gauge, bytes);
        sub(gauge, std::mem::replace(&mut self.index_bytes, bytes));
        self.shared.progress.persist()?;
        if self.partitions.is_empty() && self.index_changed {
            // Nothing unpublished: the index describes exactly the files below `namer.next`.
            let wal_root = self.shared.data_dir.join("wal");
            snapshot::save(&wal_root, self.id, self.namer.next(), &self.dedup)?;
            self.index_changed = false;
            self.shared
                .covered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(self.id, self.namer.next());
        }
        Ok(())
    }

    /// Tells the shared progress, per shard, below which position this writer holds nothing.
    fn report(&self) {
        for (shard, end) in &self.received {
            let held = self
                .partitions
                .values()
                .flat_map(|p| p.holds.iter())
                .filter(|(s, _)| s == shard)
                .map(|(_, start)| *start)
                .min();
            let safe = held.map_or(*end, |h| h.min(*end));
            self.shared.progress.report(self.id, *shard, safe);
        }
    }
}

/// What becomes of a reading.
enum Admission {
    /// Archived, with the interned vehicle id.
    Archive(Arc<str>),
    /// Already archived: settled.
    Duplicate,
    /// Kept in `rejects/` with this reason.
    Reject(String),
}

/// The `rejects/` row of `record`, with the reason it was refused.
fn reject_row(record: &Record, reason: String) -> (PartitionKey, Row) {
    (
        PartitionKey::of(Table::Rejects, record.received_at_ms),
        Row::Reject(RejectRow {
            topic: String::from_utf8_lossy(&record.topic).into_owned(),
            payload: record.payload.clone(),
            reason,
            received_at: record.received_at_ms,
        }),
    )
}

enum Row {
    Gps(GpsRow),
    Reefer(ReeferRow),
    Reject(RejectRow),
}

fn keep_first(result: &mut Result<(), ArchiveError>, next: Result<(), ArchiveError>) {
    if result.is_ok() {
        *result = next;
    }
}
