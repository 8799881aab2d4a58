//! The archive handle: routes submitted records to the writer threads and answers for
//! checkpoints, flushes and statistics.

use std::{
    sync::{
        mpsc::{self, Sender},
        Arc, Mutex, RwLock,
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::{
    checkpoint::Progress,
    classify::{vehicle_of, writer_of},
    maintenance::{self, Maintenance, MaintenanceReport},
    recovery,
    stats::{add, ArchiveStats, Counters},
    writer::{
        file::ensure_dir,
        thread::{self, Command},
        Shared, Writer,
    },
    ArchiveConfig, ArchiveError, Record, WalPosition,
};

/// The Parquet writer side of the archive: writer threads fed by channels.
///
/// `Send + Sync`; share it with `Arc`. [`Archive::submit`] never blocks: the channels are
/// unbounded, because a shard's executor thread must not stall its sockets on a slow disk.
/// Memory is bounded instead by what the shard admits: the records submitted come from the
/// shard's write-ahead log, and [`ArchiveStats::queued_bytes`] and [`ArchiveStats::lag`] tell
/// the broker when to stop reading from publishers (back-pressure at the source).
#[derive(Debug)]
pub struct Archive {
    config: ArchiveConfig,
    shared: Arc<Shared>,
    senders: Vec<Sender<Command>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// An exclusive lock on `{data}/.lock`, held while the archive is open: a second process
    /// (or a second archive in this one) on the same directory would delete this one's
    /// half-written files on its recovery scan and corrupt the exactly-once index.
    /// Released by [`Archive::close`]: a closed archive writes nothing more.
    lock: Mutex<Option<std::fs::File>>,
    /// Compaction and retention state, shared by the maintenance thread and
    /// [`Archive::maintain`].
    maintenance: Arc<Mutex<Maintenance>>,
    /// The maintenance thread and the channel that stops it.
    maintainer: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl Archive {
    /// Opens the archive at `config.data_dir` (creating it), loads the exactly-once index,
    /// removes half-written files and what an interrupted compaction left, and starts the
    /// writer threads and the maintenance thread (compaction, retention).
    ///
    /// # Errors
    /// An invalid configuration, an unreadable archive file or directory, a thread that
    /// cannot start.
    pub fn open(config: ArchiveConfig) -> Result<Arc<Archive>, ArchiveError> {
        config.validate()?;
        let wal_root = config.data_dir.join("wal");
        ensure_dir(&wal_root)?;
        let lock = lock_data_dir(&config.data_dir)?;
        maintenance::clean_up(&config.data_dir)?;
        let recovered = recovery::scan(&config.data_dir, config.writer_threads)?;
        tracing::info!(
            data = %config.data_dir.display(),
            snapshots = recovered.snapshots,
            files_read = recovered.files,
            rows_read = recovered.rows,
            vehicles = recovered.dedup.iter().map(|d| d.vehicles()).sum::<usize>(),
            index_bytes = recovered.dedup.iter().map(|d| d.approximate_bytes()).sum::<u64>(),
            "exactly-once index loaded"
        );
        let shared = Arc::new(Shared {
            data_dir: config.data_dir.clone(),
            progress: Progress::load(&wal_root, config.writer_threads)?,
            counters: Counters::default(),
            publishing: RwLock::new(()),
            covered: Mutex::new(recovered.covered.clone()),
        });
        let tick = config.rotate_age.min(Duration::from_secs(1));
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        let pairs = recovered.dedup.into_iter().zip(recovered.next_file);
        for (id, (dedup, next_file)) in pairs.enumerate() {
            let writer = Writer::new(id, &config, shared.clone(), dedup, next_file);
            let (tx, rx) = mpsc::channel();
            let handle = thread::spawn(writer, rx, tick)
                .map_err(|e| ArchiveError::io(format!("archive-writer-{id}"), e))?;
            senders.push(tx);
            threads.push(handle);
        }
        let maintenance = Arc::new(Mutex::new(Maintenance::default()));
        let (stop_maintenance, stopped) = mpsc::channel::<()>();
        let maintainer = {
            let (shared, config, maintenance) =
                (shared.clone(), config.clone(), maintenance.clone());
            std::thread::Builder::new()
                .name("archive-maintenance".into())
                .spawn(move || {
                    // Until the archive closes (the sender is dropped or sends).
                    while let Err(mpsc::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(maintenance::INTERVAL)
                    {
                        let mut state = maintenance.lock().unwrap_or_else(|p| p.into_inner());
                        if let Err(e) = state.run(&shared, &config, unix_ms()) {
                            tracing::warn!(error = %e, "archive maintenance failed; retried in a minute");
                        }
                    }
                })
                .map_err(|e| ArchiveError::io("archive-maintenance", e))?
        };
        Ok(Arc::new(Archive {
            config,
            shared,
            senders,
            threads: Mutex::new(threads),
            lock: Mutex::new(Some(lock)),
            maintenance,
            maintainer: Mutex::new(Some((stop_maintenance, maintainer))),
        }))
    }

    /// The configuration the archive was opened with.
    pub fn config(&self) -> &ArchiveConfig {
        &self.config
    }

    /// Hands durable log records of `shard` to the writers; `end` is the log position just
    /// after the last of them. Batches of one shard must be submitted in log order, from one
    /// thread; a batch whose `end` is not past the previous one is ignored (it was submitted
    /// already). Returns at once.
    pub fn submit(&self, shard: usize, end: WalPosition, records: Vec<Record>) {
        let Some(start) = self.shared.progress.begin_batch(shard, end) else {
            tracing::debug!(shard, %end, "batch already submitted; ignored");
            return;
        };
        add(&self.shared.counters.submitted, records.len() as u64);
        let writers = self.senders.len();
        let mut shares: Vec<Vec<Record>> = if writers == 1 {
            vec![records]
        } else {
            let mut shares = vec![Vec::new(); writers];
            for record in records {
                let writer = writer_of(vehicle_of(&record.topic), writers);
                shares[writer].push(record);
            }
            shares
        };
        // Every writer gets the batch, even an empty share, so each knows the log moved on.
        for (sender, records) in self.senders.iter().zip(shares.drain(..)) {
            let bytes: u64 = records
                .iter()
                .map(|r| (r.topic.len() + r.payload.len()) as u64)
                .sum();
            add(&self.shared.counters.queued_bytes, bytes);
            let command = Command::Batch {
                shard,
                start,
                end,
                records,
                bytes,
            };
            if sender.send(command).is_err() {
                tracing::error!(shard, %end,
                    "archive is closed; records stay in the write-ahead log for the next start");
            }
        }
    }

    /// Highest log position of `shard` below which every record is in a published file (or a
    /// rejects file, or was a duplicate or skipped): log segments wholly below it may be
    /// deleted.
    pub fn checkpoint(&self, shard: usize) -> WalPosition {
        self.shared.progress.checkpoint(shard)
    }

    /// Publishes every open file now and persists the checkpoints; returns once done.
    /// Blocks the calling thread: for shutdown and tests, not for a shard's hot path.
    ///
    /// # Errors
    /// The first writer that failed to publish.
    pub fn flush(&self) -> Result<(), ArchiveError> {
        self.ask_all(Command::Flush)
    }

    /// Publishes every open file, then stops the writer threads. Records submitted afterwards
    /// are not archived (they stay in the log).
    ///
    /// # Errors
    /// The first writer that failed its final flush.
    pub fn close(&self) -> Result<(), ArchiveError> {
        let maintainer = self
            .maintainer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((stop, thread)) = maintainer {
            let _ = stop.send(());
            if thread.join().is_err() {
                tracing::error!("the archive maintenance thread panicked");
            }
        }
        let result = self.ask_all(Command::Stop);
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for handle in threads {
            if handle.join().is_err() {
                tracing::error!("an archive writer thread panicked");
            }
        }
        // Every writer has stopped: another archive may now open the directory.
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()).take());
        result
    }

    fn ask_all(
        &self,
        command: fn(mpsc::SyncSender<Result<(), ArchiveError>>) -> Command,
    ) -> Result<(), ArchiveError> {
        let mut replies = Vec::new();
        for sender in &self.senders {
            let (tx, rx) = mpsc::sync_channel(1);
            if sender.send(command(tx)).is_ok() {
                replies.push(rx);
            }
        }
        if replies.is_empty() {
            return Err(ArchiveError::Closed);
        }
        let mut result = Ok(());
        for reply in replies {
            let answer = reply.recv().unwrap_or(Err(ArchiveError::Closed));
            if result.is_ok() {
                result = answer;
            }
        }
        result
    }

    /// The counters.
    pub fn stats(&self) -> ArchiveStats {
        self.shared.counters.snapshot()
    }

    /// Runs one maintenance pass now (the maintenance thread runs one a minute): compacts the
    /// closed hours whose files the saved exactly-once index covers, and deletes the days past
    /// the retention.
    ///
    /// # Errors
    /// The first I/O or Parquet error; the archive is left whole.
    pub fn maintain(&self) -> Result<MaintenanceReport, ArchiveError> {
        let mut state = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        state.run(&self.shared, &self.config, unix_ms())
    }
}

impl Drop for Archive {
    /// Dropping the last handle without [`Archive::close`] still lets the writer threads
    /// publish what they hold (the channels disconnect), but does not wait for them.
    fn drop(&mut self) {
        self.senders.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The broker shares one archive between shard threads.
    #[test]
    fn archive_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<Archive>();
        shared::<ArchiveError>();
    }

    #[test]
    fn a_batch_submitted_twice_is_archived_once() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(ArchiveConfig::new(dir.path())).unwrap();
        let record = Record::new(
            "fleet/v/gps",
            r#"{"ts":1,"seq":0,"lat":0,"lon":0,"speed_kmh":0,"heading_deg":0}"#,
            1,
        );
        let end = WalPosition::new(1, 10);
        archive.submit(0, end, vec![record.clone()]);
        archive.submit(0, end, vec![record]);
        archive.close().unwrap();
        let stats = archive.stats();
        assert_eq!((stats.gps_rows, stats.duplicates, stats.lag), (1, 0, 0));
        assert_eq!(archive.checkpoint(0), end);
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Takes the data directory's exclusive lock, or says who has it.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, ArchiveError> {
    let path = dir.join(".lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ArchiveError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ArchiveError::Config(format!(
            "{} is in use by another archive (a broker or `fleetmq ingest`): \
             one process per data directory; give this one another data directory",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(ArchiveError::io(&path, e)),
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    /// Regression: two brokers on one data directory made the second's recovery scan delete
    /// the first's half-written files.
    #[test]
    fn a_second_archive_on_the_same_directory_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().unwrap();
        let first = Archive::open(ArchiveConfig::new(dir.path())).unwrap();
        let second = Archive::open(ArchiveConfig::new(dir.path()));
        match second {
            Err(ArchiveError::Config(message)) => assert!(message.contains("in use")),
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("two archives opened one directory"),
        }
        first.close().unwrap();
        Archive::open(ArchiveConfig::new(dir.path()))
            .unwrap()
            .close()
            .unwrap();
    }
}
