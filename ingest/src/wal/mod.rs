//! The per-shard write-ahead log, on glommio files ([`seglog`]: direct I/O where the
//! filesystem takes it, the page cache and fdatasync where it does not).
//!
//! A shard appends each archived message ([`ShardWal::append`], synchronous and cheap) and
//! awaits [`ShardWal::durable`] before acknowledging it. One background task per log takes
//! everything appended since its last round, writes it with one write, syncs
//! once (fdatasync), wakes every waiter of that round and hands the now durable records to the
//! [`Archive`]. While it syncs, the next round accumulates: that is the group commit, and its
//! batch grows by itself with the load, while a lone record is synced at once. A round can
//! also be made to gather for `commit_delay` after its first record arrives (fewer syncs at a
//! trickle, for later acknowledgements), unless it is already full enough that waiting would
//! only delay its acknowledgements, or fewer than four sources appended lately (a lone client
//! that waits for each acknowledgement would only be slowed down).
//!
//! The log is a sequence of segment files `{segment:020}.wal` in `{data}/wal/shard-{n}/`; a
//! new segment starts past `wal_segment_bytes` and at every open (so a replayed segment is
//! never appended to). Segments wholly below the archive's checkpoint are deleted.

mod frame;
mod segment;

use std::{
    cell::RefCell,
    path::{Path, PathBuf},
    rc::Rc,
    sync::Arc,
    task::{Poll, Waker},
};

use futures_lite::future::poll_fn;
use seglog::{blocking, AppendFile, IoMode};

use crate::{writer::file::ensure_dir, Archive, ArchiveError, Record, WalPosition};

/// Identifies an appended record until it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalTicket(u64);

/// The write-ahead log of one shard. `!Send`: it lives on the shard's executor.
#[derive(Debug)]
pub struct ShardWal {
    inner: Rc<Inner>,
    task: glommio::Task<Result<(), ArchiveError>>,
}

#[derive(Debug)]
struct Inner {
    shard: usize,
    state: RefCell<State>,
}

#[derive(Debug, Default)]
struct State {
    pending: Vec<Record>,
    /// Tickets issued so far.
    next_ticket: u64,
    /// Tickets below this are durable.
    durable: u64,
    /// Set once a write or sync failed: nothing appended since can become durable.
    failed: Option<String>,
    closing: bool,
    waiters: Vec<Waker>,
    task_waker: Option<Waker>,
    /// Rounds committed so far.
    round: u64,
    /// The last few distinct sources that appended, with the round in which each last did.
    siblings: [Option<(u64, u64)>; SIBLING_SLOTS],
}

impl State {
    /// Notes that `source` appended in the current round: refreshes its slot, or takes the
    /// slot of the source heard from longest ago.
    fn note_source(&mut self, source: u64) {
        let round = self.round;
        if let Some(slot) = self
            .siblings
            .iter_mut()
            .flatten()
            .find(|(s, _)| *s == source)
        {
            slot.1 = round;
            return;
        }
        let oldest = self
            .siblings
            .iter_mut()
            .min_by_key(|slot| slot.map_or(0, |(_, r)| r + 1));
        if let Some(slot) = oldest {
            *slot = Some((source, round));
        }
    }

    /// Distinct sources that appended within the last [`SIBLING_ROUNDS`] rounds.
    fn active_siblings(&self) -> usize {
        self.siblings
            .iter()
            .flatten()
            .filter(|(_, r)| r + SIBLING_ROUNDS >= self.round)
            .count()
    }
}

impl ShardWal {
    /// Opens (or creates) `{data}/wal/shard-{shard}/` and replays the records after the
    /// archive's checkpoint of `shard`.
    ///
    /// The replayed records are **already submitted** to `archive` (submitting them is part of
    /// opening, so that no caller can forget it and let the checkpoint pass unarchived
    /// records); they are returned for the caller's information, with the position after the
    /// last of them (the checkpoint when there are none). Duplicates among them, records
    /// published before a crash whose checkpoint was not yet persisted, are dropped by the
    /// archive's exactly-once index.
    ///
    /// A torn or corrupt tail is cut off at the first frame that does not check out, with a
    /// warning; the zero padding of the last synced block is not a tear.
    ///
    /// # Errors
    /// The log directory or a segment cannot be read, listed, truncated or created.
    pub async fn open(
        archive: Arc<Archive>,
        shard: usize,
    ) -> Result<(ShardWal, Vec<Record>, WalPosition), ArchiveError> {
        let dir = archive.config().wal_dir(shard);
        let wal_err = |op: &str, e: &dyn std::fmt::Display| ArchiveError::Wal {
            shard,
            message: format!(
                "{op} {e}. The write-ahead log directory must be readable and writable by this \
                 user, on a filesystem mounted read-write with space left; moving it aside \
                 starts without replaying it (what it holds that is not yet in Parquet is then \
                 not archived)"
            ),
        };
        let segments = {
            let dir = dir.clone();
            blocking(move || {
                ensure_dir(&dir)?;
                segment::list(&dir).map_err(|e| ArchiveError::io(&dir, e))
            })
            .await?
        };
        let io = seglog::probe(&dir).await;
        let checkpoint = archive.checkpoint(shard);
        let mut replayed = Vec::new();
        let mut end = checkpoint;
        for &seg in &segments {
            let path = segment::path(&dir, seg);
            if seg < checkpoint.segment {
                remove(path).await;
                continue;
            }
            let buf = segment::read(&path)
                .await
                .map_err(|e| wal_err(&format!("reading {}:", path.display()), &e))?;
            let scan = segment::scan(seg, &buf);
            if let Some((offset, reason)) = scan.torn {
                tracing::warn!(
                    shard,
                    segment = seg,
                    offset,
                    reason,
                    cut_bytes = buf.len() as u64 - scan.valid_len,
                    "write-ahead log: torn or corrupt tail cut off"
                );
            }
            if scan.valid_len < buf.len() as u64 {
                truncate(path, scan.valid_len).await?;
            }
            for (record, position) in scan.records {
                if position > checkpoint {
                    replayed.push(record);
                    end = position;
                }
            }
        }
        // A fresh segment, numbered past everything on disk and past the checkpoint, so that
        // new positions are above every position the archive has seen.
        let next = segments
            .last()
            .map_or(0, |last| last + 1)
            .max(checkpoint.segment + 1);
        let oldest = segments
            .iter()
            .copied()
            .find(|s| *s >= checkpoint.segment)
            .unwrap_or(next);
        let writer = create_segment(&dir, io, next)
            .await
            .map_err(|e| wal_err("creating a segment:", &e))?;
        if !replayed.is_empty() {
            tracing::info!(shard, records = replayed.len(), %end, "write-ahead log replayed");
            archive.submit(shard, end, replayed.clone());
        }
        let inner = Rc::new(Inner {
            shard,
            state: RefCell::new(State::default()),
        });
        let log = Log {
            shard,
            segment_bytes: archive.config().wal_segment_bytes,
            commit_delay: archive.config().commit_delay,
            archive,
            dir,
            io,
            segment: next,
            oldest,
            writer,
            buf: Vec::new(),
        };
        let task = glommio::spawn_local(run(inner.clone(), log));
        Ok((ShardWal { inner, task }, replayed, end))
    }

    /// Buffers `record` for the next group commit and returns its ticket. `source` names who
    /// appended it (the broker passes its connection's id): a round waits `commit_delay` for
    /// more only while several sources append.
    pub fn append(&self, record: Record, source: u64) -> WalTicket {
        let mut state = self.inner.state.borrow_mut();
        state.note_source(source);
        state.pending.push(record);
        let ticket = WalTicket(state.next_ticket);
        state.next_ticket += 1;
        if let Some(waker) = state.task_waker.take() {
            waker.wake();
        }
        ticket
    }

    /// Resolves once the record of `ticket` is written and fdatasync'ed.
    ///
    /// # Errors
    /// [`ArchiveError::Wal`] if the log failed before the record became durable.
    pub async fn durable(&self, ticket: WalTicket) -> Result<(), ArchiveError> {
        poll_fn(|cx| {
            let mut state = self.inner.state.borrow_mut();
            if ticket.0 < state.durable {
                Poll::Ready(Ok(()))
            } else if let Some(message) = &state.failed {
                Poll::Ready(Err(ArchiveError::Wal {
                    shard: self.inner.shard,
                    message: message.clone(),
                }))
            } else {
                state.waiters.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Commits what is pending, syncs and closes the current segment, and stops the task.
    ///
    /// # Errors
    /// The log's failure, if it failed.
    pub async fn close(self) -> Result<(), ArchiveError> {
        {
            let mut state = self.inner.state.borrow_mut();
            state.closing = true;
            if let Some(waker) = state.task_waker.take() {
                waker.wake();
            }
        }
        self.task.await
    }
}

/// The writing side, owned by the background task.
struct Log {
    shard: usize,
    archive: Arc<Archive>,
    dir: PathBuf,
    io: IoMode,
    segment_bytes: u64,
    commit_delay: std::time::Duration,
    segment: u64,
    /// Lowest segment that may still be on disk.
    oldest: u64,
    writer: AppendFile,
    /// Encoding buffer, reused across commits.
    buf: Vec<u8>,
}

impl Log {
    /// Writes and syncs `records`; returns the position after the last.
    async fn commit(&mut self, records: &[Record]) -> Result<WalPosition, String> {
        self.buf.clear();
        self.buf
            .reserve(records.iter().map(frame::encoded_len).sum::<usize>());
        for record in records {
            frame::encode(record, &mut self.buf);
        }
        self.writer
            .write_all(&self.buf)
            .await
            .map_err(|e| e.to_string())?;
        self.writer.sync().await.map_err(|e| e.to_string())?;
        Ok(WalPosition::new(self.segment, self.writer.position()))
    }

    /// Starts a new segment once the current one is full.
    async fn rotate_if_full(&mut self) -> Result<(), String> {
        if self.writer.position() < self.segment_bytes {
            return Ok(());
        }
        let next = create_segment(&self.dir, self.io, self.segment + 1).await?;
        let full = std::mem::replace(&mut self.writer, next);
        self.segment += 1;
        full.close().await.map_err(|e| e.to_string())
    }

    /// Deletes the segments wholly below the archive's checkpoint.
    async fn delete_archived(&mut self) {
        let checkpoint = self.archive.checkpoint(self.shard);
        while self.oldest < checkpoint.segment && self.oldest < self.segment {
            remove(segment::path(&self.dir, self.oldest)).await;
            self.oldest += 1;
        }
    }
}

async fn run(inner: Rc<Inner>, mut log: Log) -> Result<(), ArchiveError> {
    loop {
        let first = poll_fn(|cx| {
            let mut state = inner.state.borrow_mut();
            if !state.pending.is_empty() || state.closing {
                Poll::Ready(())
            } else {
                state.task_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        });
        first.await;
        if gather_first(&inner.state.borrow(), log.commit_delay) {
            glommio::timer::sleep(log.commit_delay).await;
        }
        let batch = poll_fn(|cx| {
            let mut state = inner.state.borrow_mut();
            if !state.pending.is_empty() {
                Poll::Ready(Some(std::mem::take(&mut state.pending)))
            } else if state.closing {
                Poll::Ready(None)
            } else {
                state.task_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let Some(records) = batch else {
            break;
        };
        inner.state.borrow_mut().round += 1;
        let committed = log.commit(&records).await;
        let committed = match committed {
            Ok(end) => log.rotate_if_full().await.map(|()| end),
            Err(e) => Err(e),
        };
        let end = {
            let mut state = inner.state.borrow_mut();
            match committed {
                Ok(end) => {
                    state.durable += records.len() as u64;
                    wake_all(&mut state.waiters);
                    end
                }
                Err(message) => {
                    tracing::error!(shard = inner.shard, error = %message, "write-ahead log failed");
                    state.failed = Some(message.clone());
                    wake_all(&mut state.waiters);
                    return Err(ArchiveError::Wal {
                        shard: inner.shard,
                        message,
                    });
                }
            }
        };
        log.archive.submit(inner.shard, end, records);
        log.delete_archived().await;
    }
    log.writer.close().await.map_err(|e| ArchiveError::Wal {
        shard: inner.shard,
        message: e.to_string(),
    })
}

/// Records a round holds already that make waiting for more pointless: under load the
/// records that arrive during one sync fill the next round by themselves, and waiting would
/// only add `commit_delay` to every acknowledgement.
const FULL_ROUND: usize = 64;

/// Distinct sources (connections) that must have appended lately for a round to wait
/// `commit_delay`, as PostgreSQL's `commit_siblings`. A lone client that waits for each
/// acknowledgement before it sends the next would only be slowed down by the wait: nobody
/// else's record would join its round. Many independent clients (a fleet, each vehicle on its
/// own connection) fill the wait with each other's records.
const COMMIT_SIBLINGS: usize = 4;

/// How many rounds back a source still counts as appending lately.
const SIBLING_ROUNDS: u64 = 16;

/// Sources remembered; more than [`COMMIT_SIBLINGS`] so that a few busy ones cannot hide the
/// others.
const SIBLING_SLOTS: usize = 8;

/// Should this round wait `commit_delay` for more records before it syncs? Only a small round
/// (a trickle, where each sync would otherwise carry a record or two) of records from several
/// sources, and not while closing.
fn gather_first(state: &State, commit_delay: std::time::Duration) -> bool {
    !state.closing
        && !commit_delay.is_zero()
        && state.pending.len() < FULL_ROUND
        && state.active_siblings() >= COMMIT_SIBLINGS
}

fn wake_all(waiters: &mut Vec<Waker>) {
    for waker in waiters.drain(..) {
        waker.wake();
    }
}

/// Creates segment `segment` in `dir` and makes its directory entry durable.
async fn create_segment(dir: &Path, io: IoMode, segment: u64) -> Result<AppendFile, String> {
    let path = segment::path(dir, segment);
    let file = AppendFile::create(&path, io, seglog::LOG_BUFFER)
        .await
        .map_err(|e| e.to_string())?;
    seglog::sync_dir(dir).await.map_err(|e| e.to_string())?;
    Ok(file)
}

/// Deletes a segment file; a failure is logged (the file is retried at the next open).
async fn remove(path: PathBuf) {
    let shown = path.display().to_string();
    if let Err(e) = blocking(move || std::fs::remove_file(path)).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = shown, error = %e, "cannot delete an archived log segment");
        }
    }
}

/// Cuts a segment to its valid prefix, durably.
async fn truncate(path: PathBuf, len: u64) -> Result<(), ArchiveError> {
    blocking(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(len).and_then(|()| f.sync_all()))
            .map_err(|e| ArchiveError::io(&path, e))
    })
    .await
}
