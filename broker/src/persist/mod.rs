//! Per-shard persistence of the broker's state: sessions, subscriptions, retained messages,
//! QoS 1/2 messages in flight or queued and delayed Wills, on glommio DMA files.
//!
//! Each shard owns `{state}/shard-{n}/`: a `snapshot` of its whole state and a log of the
//! changes since, in segments `{n:020}.log`. The shard appends a [`Record`] synchronously
//! ([`Persist::append`]: an encode into a buffer); a background task writes everything appended
//! since its last round with one write and one sync (group commit), so the event loop never
//! waits on the disk. A publisher's acknowledgement waits for [`Persist::durable`] only under
//! `fsync = "always"`.
//!
//! Past `compact_bytes` of log, the task writes a new snapshot (temp file, sync, rename, sync
//! of the directory), continues in a new segment and deletes the old ones. The snapshot is the
//! state at one instant; records appended just before it may land in the new segment too,
//! which is harmless because every record is redo-safe ([`state::Recovered::apply`]).
//!
//! Recovery ([`recover`]) loads the snapshot, replays the segments after it, cuts a torn or
//! corrupt tail at the last frame whose checksum holds (reported, never fatal), and hands back
//! the sessions and retained messages; [`Persist::start`] then writes a fresh snapshot so the
//! replayed segments can go.

mod codec;
mod files;
pub mod record;
pub mod state;
mod values;

use std::{
    cell::{Cell, RefCell},
    path::Path,
    rc::Rc,
    time::{Duration, Instant},
};

use seglog::{frame, AppendFile, GroupCommit, IoMode, Segments};

use files::{blocking, read_file, segments, write_snapshot, SNAPSHOT};
pub use files::{lock_state_dir, orphan_shards, remove_shard_dir, shard_dir};
pub use record::Record;
pub use state::Recovered;

use crate::config::{FsyncPolicy, PersistenceSettings};

/// Why the state directory cannot be used. Its message names the file, what was being done
/// to it and what the user can do.
#[derive(Debug, thiserror::Error)]
#[error(
    "broker state of shard {shard}: {op} {path}: {message}. The state directory must be \
     readable and writable by this user, on a filesystem mounted read-write with space left; \
     to start without this state, move the shard's directory aside (its sessions, \
     subscriptions and retained messages are then not restored) or run with --no-persistence"
)]
pub struct PersistError {
    /// The shard.
    pub shard: usize,
    /// What was being done: "reading", "creating", ...
    pub op: &'static str,
    /// The file or directory.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// Identifies an appended record until it is durable.
pub use seglog::Ticket;

/// Figures for `$SYS` and `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct PersistStats {
    /// Bytes of the current log segment plus the snapshot.
    pub log_bytes: u64,
    /// Records appended since start.
    pub records: u64,
    /// Snapshots written since start.
    pub snapshots: u64,
    /// Milliseconds recovery took at start.
    pub recovery_ms: u64,
    /// Torn or corrupt tails cut off at start.
    pub torn_tails: u64,
}

/// One item of a shard's state, as a snapshot walks it.
#[derive(Debug, Clone)]
pub enum StateKey {
    /// A session, by client id.
    Session(protocol::ByteStr),
    /// A retained message, by topic.
    Retained(protocol::ByteStr),
    /// A Will waiting for its delay, by client id.
    Will(protocol::ByteStr),
}

/// The state a snapshot is taken of. A snapshot lists the keys at one instant, then takes
/// the items a few at a time, yielding in between so the shard keeps serving: items are
/// taken at different instants, which replaying the log from the first one makes exact again
/// (every record is redo-safe, and every change after the listing is in the new segment).
pub trait StateSource {
    /// Everything to snapshot, as it is now.
    fn keys(&self) -> Vec<StateKey>;
    /// The record of one item as it is now; `None` if it is gone.
    fn record(&self, key: &StateKey) -> Option<Record>;
}

/// The state source of a shard, as the log task holds it.
pub type SnapshotSource = Box<dyn StateSource>;

/// The state log of one shard. `!Send`: it lives on the shard's executor.
pub struct Persist {
    inner: Rc<Inner>,
    task: RefCell<Option<glommio::Task<()>>>,
}

impl std::fmt::Debug for Persist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persist")
            .field("shard", &self.inner.shard)
            .finish()
    }
}

struct Inner {
    shard: usize,
    policy: FsyncPolicy,
    /// Encoded frames gathering for the next round.
    log: GroupCommit<Vec<u8>>,
    stats: Cell<PersistStats>,
}

/// What [`recover`] found.
#[derive(Debug)]
pub struct Recovery {
    /// The state (taken by the caller as it installs it).
    pub state: Recovered,
    /// Segment files read (deleted once the next snapshot is written).
    segments: Vec<u64>,
    /// Records replayed from the log after the snapshot.
    pub replayed: u64,
    /// Torn or corrupt tails cut off.
    pub torn: u64,
    /// When recovery began.
    started: Instant,
    /// How the shard's directory is written (probed once, at recovery).
    io: IoMode,
}

/// Loads shard `shard`'s snapshot and replays its log.
///
/// A torn or corrupt tail is cut off with a warning (and counted); it never stops the broker.
///
/// # Errors
/// The directory cannot be created or listed, or a file cannot be read or truncated.
pub async fn recover(
    settings: &PersistenceSettings,
    shard: usize,
) -> Result<Recovery, PersistError> {
    let started = Instant::now();
    let dir = shard_dir(settings, shard);
    let err = |op: &'static str, path: &Path, message: String| PersistError {
        shard,
        op,
        path: path.display().to_string(),
        message,
    };
    let log = segments(&dir);
    let on_disk = {
        let (listed, log) = (dir.clone(), log.clone());
        blocking(move || std::fs::create_dir_all(&listed).and_then(|()| log.list()))
            .await
            .map_err(|e| err("creating or listing", &dir, e.to_string()))?
    };
    let io = seglog::probe(&dir).await;
    let mut state = Recovered::default();
    let mut torn = 0;
    let mut first_segment = 0;
    let snapshot = dir.join(SNAPSHOT);
    if snapshot.exists() {
        let buf = read_file(&snapshot)
            .await
            .map_err(|e| err("reading", &snapshot, e))?;
        let scan = frame::scan(&buf);
        if let Some((offset, why)) = scan.torn {
            // Snapshots are renamed into place only once synced: this is damage on disk.
            torn += 1;
            tracing::error!(shard, path = %snapshot.display(), offset, why, "broker state: snapshot damaged; keeping what checks out");
        }
        for (body, _) in scan.bodies {
            match Record::decode(body) {
                Some(Record::SnapshotHeader { next_segment }) => first_segment = next_segment,
                Some(record) => state.apply(record),
                None => {
                    torn += 1;
                    tracing::error!(
                        shard,
                        "broker state: undecodable record in the snapshot skipped"
                    );
                }
            }
        }
    }
    let mut replayed = 0;
    for &seg in on_disk.iter().filter(|s| **s >= first_segment) {
        let path = log.path(seg);
        let buf = read_file(&path)
            .await
            .map_err(|e| err("reading", &path, e))?;
        let scan = frame::scan(&buf);
        let mut valid = scan.valid_len;
        let mut why = scan.torn;
        let mut start = 0;
        for (body, end) in scan.bodies {
            match Record::decode(body) {
                Some(record) => {
                    replayed += 1;
                    state.apply(record);
                }
                None => {
                    // The checksum held but the record is not one we know: stop here too.
                    why = Some((start, "undecodable record"));
                    valid = start;
                    break;
                }
            }
            start = end;
        }
        if let Some((offset, reason)) = why {
            torn += 1;
            tracing::warn!(
                shard,
                segment = seg,
                offset,
                reason,
                cut_bytes = buf.len() as u64 - valid,
                "broker state: torn or corrupt log tail cut off; state recovered up to it"
            );
            log.truncate(seg, valid)
                .await
                .map_err(|e| err("cutting the torn tail of", &path, e.to_string()))?;
        }
    }
    Ok(Recovery {
        state,
        segments: on_disk,
        replayed,
        torn,
        started,
        io,
    })
}

/// The writing side, owned by the background task.
struct Log {
    segments: Segments,
    io: IoMode,
    segment: u64,
    writer: AppendFile,
    compact_bytes: u64,
    sync_interval: Duration,
    last_sync: Instant,
    snapshot_bytes: u64,
    source: SnapshotSource,
}

impl Persist {
    /// Starts the log of a recovered shard: writes a snapshot of the state `source` describes
    /// now (the recovered state, installed), starts a fresh segment, deletes the replayed ones
    /// and spawns the writer task.
    ///
    /// # Errors
    /// The snapshot or the new segment cannot be written.
    pub async fn start(
        settings: &PersistenceSettings,
        shard: usize,
        recovery: Recovery,
        source: SnapshotSource,
    ) -> Result<Persist, PersistError> {
        let dir = shard_dir(settings, shard);
        let segment = recovery.segments.last().map_or(0, |s| s + 1);
        let err = |op: &'static str| {
            let path = dir.display().to_string();
            move |message: String| PersistError {
                shard,
                op,
                path,
                message,
            }
        };
        let io = recovery.io;
        let snapshot_bytes = write_snapshot(&dir, io, segment, source.as_ref())
            .await
            .map_err(err("writing a snapshot in"))?;
        let log = segments(&dir);
        let writer = log
            .create(segment, io)
            .await
            .map_err(|e| err("creating a log segment in")(e.to_string()))?;
        for old in recovery.segments {
            log.remove(old).await;
        }
        let stats = PersistStats {
            log_bytes: snapshot_bytes,
            recovery_ms: recovery.started.elapsed().as_millis() as u64,
            torn_tails: recovery.torn,
            snapshots: 1,
            ..PersistStats::default()
        };
        let inner = Rc::new(Inner {
            shard,
            policy: settings.fsync,
            log: GroupCommit::new(),
            stats: Cell::new(stats),
        });
        let log = Log {
            segments: log,
            io,
            segment,
            writer,
            compact_bytes: settings.compact_bytes,
            sync_interval: Duration::from_millis(settings.sync_interval_ms),
            last_sync: Instant::now(),
            snapshot_bytes,
            source,
        };
        let task = glommio::spawn_local(run(inner.clone(), log));
        Ok(Persist {
            inner,
            task: RefCell::new(Some(task)),
        })
    }

    /// Buffers `record` for the next group commit. Once the log has failed nothing is
    /// buffered (it could never be written, and memory must stay bounded); the failure was
    /// logged, and [`Persist::durable`] reports it to whoever waits.
    pub fn append(&self, record: &Record) -> Ticket {
        let mut w = codec::Writer::default();
        record.encode(&mut w);
        let ticket = self
            .inner
            .log
            .append(|frames| frame::encode(&w.buf, frames));
        let mut stats = self.inner.stats.get();
        stats.records += 1;
        self.inner.stats.set(stats);
        ticket
    }

    /// The ticket of the last record appended: durable once everything appended so far is.
    pub fn last_ticket(&self) -> Ticket {
        self.inner.log.last_ticket()
    }

    /// True when acknowledgements wait for durability (`fsync = "always"`).
    pub fn acks_wait(&self) -> bool {
        self.inner.policy == FsyncPolicy::Always
    }

    /// Resolves once the record of `ticket` (and all before it) is written and synced.
    ///
    /// # Errors
    /// The log failed before the record became durable.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), String> {
        self.inner.log.durable(ticket).await
    }

    /// Current figures.
    pub fn stats(&self) -> PersistStats {
        self.inner.stats.get()
    }

    /// Writes and syncs what is pending, closes the segment and stops the task.
    pub async fn close(&self) {
        self.inner.log.close();
        let task = self.task.borrow_mut().take();
        if let Some(task) = task {
            task.await;
        }
    }
}

async fn run(inner: Rc<Inner>, mut log: Log) {
    let periodic = inner.policy == FsyncPolicy::Periodic;
    // Periodic policy: something was written since the last sync.
    let mut unsynced = false;
    loop {
        let work = if periodic && unsynced {
            // Sync at the end of the interval even if nothing more is appended.
            let left = log.sync_interval.saturating_sub(log.last_sync.elapsed());
            futures_lite::future::or(async { Some(inner.log.work().await) }, async {
                glommio::timer::sleep(left).await;
                None
            })
            .await
        } else {
            Some(inner.log.work().await)
        };
        let Some(work) = work else {
            if let Err(e) = log.writer.sync().await {
                tracing::error!(shard = inner.shard, error = %e, "broker state log: sync failed");
                let upto = inner.log.last_ticket();
                inner.log.complete(upto, Err(e.to_string()));
                return;
            }
            log.last_sync = Instant::now();
            unsynced = false;
            continue;
        };
        if !work {
            break;
        }
        let Some(round) = inner.log.take_round() else {
            continue;
        };
        let sync = !periodic || log.last_sync.elapsed() >= log.sync_interval;
        unsynced = !sync;
        let written = log.write(&round.batch, sync).await;
        if let Err(message) = &written {
            tracing::error!(shard = inner.shard, error = %message, "broker state log failed; state changes are no longer persisted");
        }
        let failed = written.is_err();
        inner.log.complete(round.upto, written);
        if failed {
            return;
        }
        let mut stats = inner.stats.get();
        stats.log_bytes = log.snapshot_bytes + log.writer.position();
        inner.stats.set(stats);
        if log.writer.position() >= log.compact_bytes {
            match log.compact().await {
                Ok(()) => {
                    let mut stats = inner.stats.get();
                    stats.snapshots += 1;
                    stats.log_bytes = log.snapshot_bytes;
                    inner.stats.set(stats);
                }
                Err(e) => {
                    // The old segments stay; recovery reads them. Try again at the next bound.
                    tracing::warn!(shard = inner.shard, error = %e, "broker state: snapshot failed");
                    log.compact_bytes = log.compact_bytes.saturating_mul(2);
                }
            }
        }
        if periodic {
            // Let a batch gather between rounds; durability is promised only per interval.
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }
    if let Err(e) = log.writer.sync().await {
        tracing::warn!(shard = inner.shard, error = %e, "broker state: final sync failed");
    }
    let _ = log.writer.close().await;
}

impl Log {
    async fn write(&mut self, frames: &[u8], sync: bool) -> Result<(), String> {
        self.writer
            .write_all(frames)
            .await
            .map_err(|e| e.to_string())?;
        if sync {
            self.writer.sync().await.map_err(|e| e.to_string())?;
            self.last_sync = Instant::now();
        } else {
            self.writer.flush().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Snapshot now, continue in a new segment, delete the old one.
    async fn compact(&mut self) -> Result<(), String> {
        let next = self.segment + 1;
        let new_writer = self
            .segments
            .create(next, self.io)
            .await
            .map_err(|e| e.to_string())?;
        // Everything appended from now on, and what is still pending, goes to the new segment
        // (redo-safe over the snapshot).
        self.snapshot_bytes =
            write_snapshot(self.segments.dir(), self.io, next, self.source.as_ref()).await?;
        let old = std::mem::replace(&mut self.writer, new_writer);
        let _ = old.close().await;
        self.segments.remove(self.segment).await;
        self.segment = next;
        Ok(())
    }
}
