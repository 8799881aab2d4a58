//! Keeping the archive compact and bounded: closed hours compacted into few large files, and
//! whole days deleted past the retention.
//!
//! With the default 60 s rotation a writer publishes a file a minute into the hour it is
//! filling, 1,440 a day per table; engines slow down on thousands of small files. Once an hour
//! has been closed for `compact_delay` (no reading of it arrived meanwhile), its files are
//! merged, sorted again, into files of up to `rotate_rows` rows.
//!
//! Readers must never see a row twice or miss one, and Parquet has no transactions: the new
//! files are written into a staging directory next to the archive (`{data}/compaction/`),
//! together with hard links to the files of the hour that stay, and the staging directory is
//! then exchanged with the hour's directory in one `renameat2(RENAME_EXCHANGE)`. A reader that
//! lists the hour sees the old set or the new set, never both or neither; a query that listed
//! the old files just before the exchange may fail to open one of them (not found) and can be
//! run again. Writers publish under a shared lock the exchange takes exclusively, so no file
//! lands in the old directory after it was staged.
//!
//! Exactly once: only files the writers' saved exactly-once index already covers are merged
//! (see [`crate::snapshot`]); the merged files are named `compacted-…`, which a start never
//! needs to read. A crash leaves the hour whole (old or new) and staging debris that the next
//! start deletes.
//!
//! Retention (`retention_days`, off by default) deletes whole `date=` partitions of every
//! table once the day is older than that many days: renamed out of the archive (atomically),
//! then deleted.

use std::{
    collections::HashMap,
    ffi::CString,
    fs::File,
    io::ErrorKind,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use parquet::{file::reader::FileReader, file::serialized_reader::SerializedFileReader};

use crate::{
    partition::{days_from_civil, Table},
    stats::add,
    writer::{
        file::{ensure_dir, parse_name, sync_dir, writer_properties},
        Shared,
    },
    ArchiveConfig, ArchiveError,
};

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// Where compaction stages its work and retention parks what it deletes.
pub(crate) fn work_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("compaction")
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Hours compacted.
    pub hours_compacted: u64,
    /// Files merged away (replaced by fewer, larger ones).
    pub files_merged: u64,
    /// Files written by the merges.
    pub files_written: u64,
    /// `date=` partitions deleted by the retention.
    pub days_expired: u64,
}

/// State kept between passes: the modification time each hour directory had when it was last
/// looked at, so that a pass reads only hours that changed.
#[derive(Debug, Default)]
pub(crate) struct Maintenance {
    seen: HashMap<PathBuf, SystemTime>,
    /// Set once the file system refused the directory exchange: compaction stops, retention
    /// goes on.
    cannot_exchange: bool,
}

impl Maintenance {
    /// One pass at `now_ms` (Unix epoch ms).
    ///
    /// # Errors
    /// The first I/O or Parquet error; the archive is left as it was for that hour.
    pub fn run(
        &mut self,
        shared: &Arc<Shared>,
        config: &ArchiveConfig,
        now_ms: i64,
    ) -> Result<MaintenanceReport, ArchiveError> {
        let mut report = MaintenanceReport::default();
        if let Some(days) = config.retention_days {
            expire(shared, now_ms, days, &mut report)?;
        }
        if config.compact && !self.cannot_exchange {
            for table in [Table::Gps, Table::Reefer] {
                let table_dir = shared.data_dir.join(table.dir_name());
                for (day, hour, dir) in hours(&table_dir)? {
                    let hour_end = day * MS_PER_DAY + (hour + 1) * MS_PER_HOUR;
                    if now_ms - hour_end < config.compact_delay.as_millis() as i64 {
                        continue;
                    }
                    let modified = std::fs::metadata(&dir)
                        .and_then(|m| m.modified())
                        .map_err(|e| ArchiveError::io(&dir, e))?;
                    let quiet = SystemTime::now()
                        .duration_since(modified)
                        .is_ok_and(|d| d >= config.compact_delay);
                    if !quiet || self.seen.get(&dir) == Some(&modified) {
                        continue;
                    }
                    match compact_hour(shared, config, table, &dir, now_ms, &mut report) {
                        // Looked at again when the writers' saved index covers every file.
                        Ok(Hour::NotCovered) => continue,
                        Ok(Hour::Compacted | Hour::NothingToMerge) => {}
                        Err(Exchange::Unsupported(e)) => {
                            tracing::warn!(error = %e, "the file system cannot exchange directories atomically; compaction is off");
                            self.cannot_exchange = true;
                            return Ok(report);
                        }
                        // One hour that cannot be merged (files of two schema versions, a
                        // damaged file) must not hold the others back; it is tried again
                        // when its directory changes.
                        Err(Exchange::Failed(e)) => {
                            tracing::warn!(hour = %dir.display(), error = %e, "cannot compact this hour; left as it is");
                        }
                    }
                    // What the directory looks like now (after an exchange, the new one).
                    if let Ok(modified) = std::fs::metadata(&dir).and_then(|m| m.modified()) {
                        self.seen.insert(dir, modified);
                    }
                }
            }
        }
        Ok(report)
    }
}

/// Every `date=…/hour=…` directory below `table_dir`: `(day, hour, path)`, in either hour
/// form (`hour=7` or an earlier version's `hour=07`).
fn hours(table_dir: &Path) -> Result<Vec<(i64, i64, PathBuf)>, ArchiveError> {
    let mut out = Vec::new();
    for (day, date_dir) in days(table_dir)? {
        for entry in list(&date_dir)? {
            let name = entry.file_name();
            let hour = name
                .to_str()
                .and_then(|n| n.strip_prefix("hour="))
                .and_then(|h| h.parse::<i64>().ok());
            if let Some(hour) = hour.filter(|h| (0..24).contains(h)) {
                out.push((day, hour, entry.path()));
            }
        }
    }
    Ok(out)
}

/// Every `date=YYYY-MM-DD` directory below `table_dir` with its day number.
fn days(table_dir: &Path) -> Result<Vec<(i64, PathBuf)>, ArchiveError> {
    let mut out = Vec::new();
    for entry in list(table_dir)? {
        let name = entry.file_name();
        let day = name
            .to_str()
            .and_then(|n| n.strip_prefix("date="))
            .and_then(parse_date);
        if let Some(day) = day {
            out.push((day, entry.path()));
        }
    }
    Ok(out)
}

fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let y = parts.next()?.parse().ok()?;
    let m = parts.next()?.parse().ok()?;
    let d = parts.next()?.parse().ok()?;
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then(|| days_from_civil(y, m, d))
}

fn list(dir: &Path) -> Result<Vec<std::fs::DirEntry>, ArchiveError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.map_err(|e| ArchiveError::io(dir, e)))
            .collect(),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ArchiveError::io(dir, e)),
    }
}

/// Deletes the `date=` partitions older than `days` days in every table.
fn expire(
    shared: &Arc<Shared>,
    now_ms: i64,
    retention_days: u32,
    report: &mut MaintenanceReport,
) -> Result<(), ArchiveError> {
    let oldest_kept = now_ms.div_euclid(MS_PER_DAY) - i64::from(retention_days);
    let work = work_dir(&shared.data_dir);
    for table in [Table::Gps, Table::Reefer, Table::Rejects] {
        let table_dir = shared.data_dir.join(table.dir_name());
        for (day, dir) in days(&table_dir)? {
            if day >= oldest_kept {
                continue;
            }
            ensure_dir(&work)?;
            let parked = work.join(format!("expired-{}-{day}-{now_ms}", table.dir_name()));
            {
                // No writer is publishing into it while it goes (a very late reading).
                let _exclusive = shared.publishing.write().unwrap_or_else(|p| p.into_inner());
                std::fs::rename(&dir, &parked).map_err(|e| ArchiveError::io(&dir, e))?;
            }
            sync_dir(&table_dir)?;
            std::fs::remove_dir_all(&parked).map_err(|e| ArchiveError::io(&parked, e))?;
            tracing::info!(partition = %dir.display(), "retention: day deleted");
            report.days_expired += 1;
            add(&shared.counters.expired_days, 1);
        }
    }
    Ok(())
}

/// Why an hour was not compacted.
enum Exchange {
    /// The file system has no atomic directory exchange.
    Unsupported(std::io::Error),
    /// Anything else.
    Failed(ArchiveError),
}

impl From<ArchiveError> for Exchange {
    fn from(e: ArchiveError) -> Self {
        Exchange::Failed(e)
    }
}

/// What became of one hour.
enum Hour {
    Compacted,
    /// Its files are few or large enough already.
    NothingToMerge,
    /// A file is not in the writers' saved exactly-once index yet.
    NotCovered,
}

/// A Parquet file of an hour directory and its row count.
struct Part {
    name: String,
    rows: u64,
}

/// Compacts one hour if it has files to merge.
fn compact_hour(
    shared: &Arc<Shared>,
    config: &ArchiveConfig,
    table: Table,
    dir: &Path,
    now_ms: i64,
    report: &mut MaintenanceReport,
) -> Result<Hour, Exchange> {
    let Some(parts) = covered_parts(shared, dir)? else {
        return Ok(Hour::NotCovered);
    };
    let groups = group(parts, config.rotate_rows as u64);
    if groups.iter().all(|g| g.len() < 2) {
        return Ok(Hour::NothingToMerge);
    }
    let work = work_dir(&shared.data_dir);
    ensure_dir(&work)?;
    let staging = work.join(format!(
        "staging-{}-{}",
        table.dir_name(),
        dir.strip_prefix(&shared.data_dir)
            .unwrap_or(dir)
            .to_string_lossy()
            .replace(['/', '='], "_")
    ));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| ArchiveError::io(&staging, e))?;
    }
    std::fs::create_dir(&staging).map_err(|e| ArchiveError::io(&staging, e))?;
    let result = stage_and_exchange(shared, table, dir, &staging, &groups, now_ms, report);
    // After an exchange the staging directory holds the old files; otherwise what was staged.
    if let Err(e) = std::fs::remove_dir_all(&staging) {
        tracing::warn!(path = %staging.display(), error = %e, "cannot remove compaction staging");
    }
    result.map(|()| Hour::Compacted)
}

fn stage_and_exchange(
    shared: &Arc<Shared>,
    table: Table,
    dir: &Path,
    staging: &Path,
    groups: &[Vec<Part>],
    now_ms: i64,
    report: &mut MaintenanceReport,
) -> Result<(), Exchange> {
    let props = writer_properties(table);
    let mut merged: Vec<&str> = Vec::new();
    let mut written = 0;
    for (i, group) in groups.iter().filter(|g| g.len() >= 2).enumerate() {
        let path = staging.join(format!("compacted-{now_ms}-{i}.parquet"));
        let inputs: Vec<PathBuf> = group.iter().map(|p| dir.join(&p.name)).collect();
        crate::merge::merge_sorted(&inputs, &path, &props)?;
        merged.extend(group.iter().map(|p| p.name.as_str()));
        written += 1;
    }
    let _exclusive = shared.publishing.write().unwrap_or_else(|p| p.into_inner());
    // Everything in the hour that is not merged stays: linked into the new directory,
    // including files published since the hour was listed.
    for entry in list(dir)? {
        let name = entry.file_name();
        let Some(text) = name.to_str() else { continue };
        if merged.contains(&text) {
            continue;
        }
        let target = staging.join(&name);
        std::fs::hard_link(entry.path(), &target).map_err(|e| ArchiveError::io(&target, e))?;
    }
    for name in &merged {
        if !dir.join(name).is_file() {
            return Err(Exchange::Failed(ArchiveError::Corrupt {
                path: dir.join(name),
                message: "disappeared while its hour was being compacted".into(),
            }));
        }
    }
    sync_dir(staging)?;
    exchange(dir, staging)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    sync_dir(&work_dir(&shared.data_dir))?;
    tracing::info!(hour = %dir.display(), merged = merged.len(), written, "hour compacted");
    report.hours_compacted += 1;
    report.files_merged += merged.len() as u64;
    report.files_written += written;
    add(&shared.counters.compacted_files, merged.len() as u64);
    Ok(())
}

/// The hour's Parquet files if every one is in the writers' saved exactly-once index (else
/// `None`: the hour waits for the next snapshot).
fn covered_parts(shared: &Shared, dir: &Path) -> Result<Option<Vec<Part>>, ArchiveError> {
    let covered = shared
        .covered
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut parts = Vec::new();
    for entry in list(dir)? {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.ends_with(".parquet") || name.starts_with('.') {
            continue;
        }
        let in_index = name.starts_with("compacted-")
            || parse_name(name).is_some_and(|(w, n)| covered.get(&w).is_some_and(|&c| n < c));
        if !in_index {
            return Ok(None);
        }
        let path = entry.path();
        let file = File::open(&path).map_err(|e| ArchiveError::io(&path, e))?;
        let reader = SerializedFileReader::new(file).map_err(|source| ArchiveError::Parquet {
            path: path.clone(),
            source,
        })?;
        let rows = reader.metadata().file_metadata().num_rows().max(0) as u64;
        parts.push(Part {
            name: name.to_owned(),
            rows,
        });
    }
    parts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(parts))
}

/// Groups files, in name order, into merges of at most `max_rows` rows (a file that big alone
/// stays as it is).
fn group(parts: Vec<Part>, max_rows: u64) -> Vec<Vec<Part>> {
    let mut groups: Vec<Vec<Part>> = Vec::new();
    let mut rows = 0;
    for part in parts {
        let fits = groups.last().is_some_and(|g| !g.is_empty()) && rows + part.rows <= max_rows;
        if !fits {
            groups.push(Vec::new());
            rows = 0;
        }
        rows += part.rows;
        if let Some(last) = groups.last_mut() {
            last.push(part);
        }
    }
    groups
}

/// Swaps two directories in one step (`renameat2` with `RENAME_EXCHANGE`).
fn exchange(a: &Path, b: &Path) -> Result<(), Exchange> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes()).map_err(|e| {
            Exchange::Failed(ArchiveError::io(p, std::io::Error::other(e.to_string())))
        })
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => Err(Exchange::Unsupported(error)),
        _ => Err(Exchange::Failed(ArchiveError::io(a, error))),
    }
}

/// Deletes what a crash left in the work directory (staging of an unfinished compaction, or
/// an expired day not yet deleted). The archive itself is whole either way.
pub(crate) fn clean_up(data_dir: &Path) -> Result<(), ArchiveError> {
    let work = work_dir(data_dir);
    for entry in list(&work)? {
        let path = entry.path();
        tracing::info!(path = %path.display(), "removing what an interrupted compaction or retention left");
        std::fs::remove_dir_all(&path).map_err(|e| ArchiveError::io(&path, e))?;
    }
    Ok(())
}

/// How long the maintenance thread sleeps between passes.
pub(crate) const INTERVAL: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Shared` over `data`, with no writer's index saved yet.
    fn shared(data: &Path) -> Arc<Shared> {
        Arc::new(Shared {
            data_dir: data.to_owned(),
            progress: crate::checkpoint::Progress::load(&data.join("wal"), 1).unwrap(),
            counters: crate::stats::Counters::default(),
            publishing: std::sync::RwLock::new(()),
            covered: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Publishes `files` GPS files of 10 rows each into the hour that starts at `hour_ms`.
    fn publish_files(data: &Path, hour_ms: i64, files: u64) -> PathBuf {
        use crate::writer::{
            file::{publish, FileNamer},
            rows::{GpsRow, Rows},
        };
        let key = crate::partition::PartitionKey::of(Table::Gps, hour_ms);
        let dir = key.dir(data);
        let mut namer = FileNamer::new(0, 0);
        for f in 0..files {
            let rows: Vec<GpsRow> = (0..10)
                .map(|i| GpsRow {
                    vehicle: std::sync::Arc::from("van"),
                    gps: telemetry::Gps {
                        ts: hour_ms + (f * 10 + i) as i64 * 1000,
                        seq: f * 10 + i,
                        lat: 52.5,
                        lon: 13.4,
                        speed_kmh: 30.0,
                        heading_deg: 90.0,
                        odometer_km: None,
                        hdop: None,
                    },
                    received_at: hour_ms,
                })
                .collect();
            let batch = Rows::Gps(rows).to_batch().unwrap();
            publish(&dir, &mut namer, &batch, &writer_properties(Table::Gps)).unwrap();
        }
        dir
    }

    /// Regression: an hour first looked at before the writers' index covered its files was
    /// remembered as done, and never compacted while its directory stayed the same.
    #[test]
    fn an_hour_waits_for_the_saved_index_and_is_compacted_once_covered() {
        let dir = tempfile::tempdir().unwrap();
        let hour = 1_700_000_000_000 / MS_PER_HOUR * MS_PER_HOUR - 5 * MS_PER_HOUR;
        let hour_dir = publish_files(dir.path(), hour, 4);
        let shared = shared(dir.path());
        let config = ArchiveConfig {
            compact_delay: Duration::ZERO,
            ..ArchiveConfig::new(dir.path())
        };
        let now = hour + 10 * MS_PER_HOUR;
        let mut maintenance = Maintenance::default();
        let report = maintenance.run(&shared, &config, now).unwrap();
        assert_eq!(report.hours_compacted, 0, "not covered: left alone");
        shared.covered.lock().unwrap().insert(0, 4);
        let report = maintenance.run(&shared, &config, now).unwrap();
        assert_eq!((report.hours_compacted, report.files_merged), (1, 4));
        let names: Vec<String> = std::fs::read_dir(&hour_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("compacted-"), "{names:?}");
    }

    #[test]
    fn an_hour_that_cannot_be_merged_does_not_hold_the_others_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = 1_700_000_000_000 / MS_PER_HOUR * MS_PER_HOUR - 6 * MS_PER_HOUR;
        // Hour one: two files, one of them of another schema (a rejects file).
        let odd = publish_files(dir.path(), first, 1);
        let rejects = crate::writer::rows::Rows::Rejects(vec![crate::writer::rows::RejectRow {
            topic: "fleet/van/gps".into(),
            payload: bytes::Bytes::from_static(b"{"),
            reason: "not JSON".into(),
            received_at: first,
        }])
        .to_batch()
        .unwrap();
        let mut namer = crate::writer::file::FileNamer::new(0, 50);
        crate::writer::file::publish(
            &odd,
            &mut namer,
            &rejects,
            &writer_properties(Table::Rejects),
        )
        .unwrap();
        // Hour two: four good files.
        publish_files(dir.path(), first + MS_PER_HOUR, 4);
        let shared = shared(dir.path());
        shared.covered.lock().unwrap().insert(0, 100);
        let config = ArchiveConfig {
            compact_delay: Duration::ZERO,
            ..ArchiveConfig::new(dir.path())
        };
        let report = Maintenance::default()
            .run(&shared, &config, first + 10 * MS_PER_HOUR)
            .unwrap();
        assert_eq!((report.hours_compacted, report.files_merged), (1, 4));
        assert_eq!(
            std::fs::read_dir(&odd).unwrap().count(),
            2,
            "left as it was"
        );
    }

    #[test]
    fn dates_parse_to_day_numbers() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2025-01-06"), Some(20_094));
        assert_eq!(parse_date("2025-13-01"), None);
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn files_are_grouped_up_to_the_row_bound() {
        let parts = |rows: &[u64]| -> Vec<Part> {
            rows.iter()
                .enumerate()
                .map(|(i, &rows)| Part {
                    name: format!("part-0-{i}.parquet"),
                    rows,
                })
                .collect()
        };
        let sizes =
            |groups: Vec<Vec<Part>>| -> Vec<usize> { groups.iter().map(Vec::len).collect() };
        assert_eq!(sizes(group(parts(&[10, 10, 10, 10]), 25)), vec![2, 2]);
        assert_eq!(sizes(group(parts(&[30, 10, 10]), 25)), vec![1, 2]);
        assert_eq!(sizes(group(parts(&[5]), 25)), vec![1]);
    }
}
