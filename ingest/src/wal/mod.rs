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
    rc::Rc,
    sync::Arc,
    task::{Context, Poll},
};

use futures_lite::future::poll_fn;
use seglog::{blocking, AppendFile, GroupCommit, IoMode, Segments, Ticket};

use crate::{writer::file::ensure_dir, Archive, ArchiveError, Record, WalPosition};

/// The extension of the log's segment files.
const EXTENSION: &str = "wal";

/// Identifies an appended record until it is durable: the number of appends to the log since
/// it was opened, this one included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalTicket(pub u64);

/// The write-ahead log of one shard. `!Send`: it lives on the shard's executor.
#[derive(Debug)]
pub struct ShardWal {
    inner: Rc<Inner>,
    task: glommio::Task<Result<(), ArchiveError>>,
}

#[derive(Debug)]
struct Inner {
    shard: usize,
    log: GroupCommit<Vec<Record>>,
    siblings: RefCell<Siblings>,
}

/// Who appended lately, for the commit delay's "siblings" rule.
#[derive(Debug, Default)]
struct Siblings {
    /// Rounds committed so far.
    round: u64,
    /// The last few distinct sources that appended, with the round in which each last did.
    slots: [Option<(u64, u64)>; SIBLING_SLOTS],
}

impl Siblings {
    /// Notes that `source` appended in the current round: refreshes its slot, or takes the
    /// slot of the source heard from longest ago.
    fn note(&mut self, source: u64) {
        let round = self.round;
        if let Some(slot) = self.slots.iter_mut().flatten().find(|(s, _)| *s == source) {
            slot.1 = round;
            return;
        }
        let oldest = self
            .slots
            .iter_mut()
            .min_by_key(|slot| slot.map_or(0, |(_, r)| r + 1));
        if let Some(slot) = oldest {
            *slot = Some((source, round));
        }
    }

    /// Distinct sources that appended within the last [`SIBLING_ROUNDS`] rounds.
    fn active(&self) -> usize {
        self.slots
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
        let segments = Segments::new(&dir, EXTENSION);
        let wal_err = |op: &str, e: &dyn std::fmt::Display| ArchiveError::Wal {
            shard,
            message: format!(
                "{op} {e}. The write-ahead log directory must be readable and writable by this \
                 user, on a filesystem mounted read-write with space left; moving it aside \
                 starts without replaying it (what it holds that is not yet in Parquet is then \
                 not archived)"
            ),
        };
        let on_disk = {
            let (dir, segments) = (dir.clone(), segments.clone());
            blocking(move || {
                ensure_dir(&dir)?;
                segments.list().map_err(|e| ArchiveError::io(&dir, e))
            })
            .await?
        };
        let io = seglog::probe(&dir).await;
        let checkpoint = archive.checkpoint(shard);
        let mut replayed = Vec::new();
        let mut end = checkpoint;
        for &seg in &on_disk {
            let path = segments.path(seg);
            if seg < checkpoint.segment {
                segments.remove(seg).await;
                continue;
            }
            let buf = seglog::read_whole(&path)
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
                segments
                    .truncate(seg, scan.valid_len)
                    .await
                    .map_err(|e| ArchiveError::io(&path, e))?;
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
        let next = on_disk
            .last()
            .map_or(0, |last| last + 1)
            .max(checkpoint.segment + 1);
        let oldest = on_disk
            .iter()
            .copied()
            .find(|s| *s >= checkpoint.segment)
            .unwrap_or(next);
        let writer = segments
            .create(next, io)
            .await
            .map_err(|e| wal_err("creating a segment:", &e))?;
        if !replayed.is_empty() {
            tracing::info!(shard, records = replayed.len(), %end, "write-ahead log replayed");
            archive.submit(shard, end, replayed.clone());
        }
        let inner = Rc::new(Inner {
            shard,
            log: GroupCommit::new(),
            siblings: RefCell::new(Siblings::default()),
        });
        let log = Log {
            shard,
            segment_bytes: archive.config().wal_segment_bytes,
            commit_delay: archive.config().commit_delay,
            archive,
            segments,
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
        self.inner.siblings.borrow_mut().note(source);
        WalTicket(self.inner.log.append(|pending| pending.push(record)).0)
    }

    /// Resolves once the record of `ticket` is written and fdatasync'ed.
    ///
    /// # Errors
    /// [`ArchiveError::Wal`] if the log failed before the record became durable.
    pub async fn durable(&self, ticket: WalTicket) -> Result<(), ArchiveError> {
        poll_fn(|cx| self.poll_durable(ticket, cx)).await
    }

    /// [`ShardWal::durable`] as a poll: ready once `ticket` is durable or the log failed.
    pub fn poll_durable(
        &self,
        ticket: WalTicket,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), ArchiveError>> {
        self.inner
            .log
            .poll_durable(Ticket(ticket.0), cx)
            .map_err(|message| ArchiveError::Wal {
                shard: self.inner.shard,
                message,
            })
    }

    /// Commits what is pending, syncs and closes the current segment, and stops the task.
    ///
    /// # Errors
    /// The log's failure, if it failed.
    pub async fn close(self) -> Result<(), ArchiveError> {
        self.inner.log.close();
        self.task.await
    }
}

/// The writing side, owned by the background task.
struct Log {
    shard: usize,
    archive: Arc<Archive>,
    segments: Segments,
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
        let next = self
            .segments
            .create(self.segment + 1, self.io)
            .await
            .map_err(|e| e.to_string())?;
        let full = std::mem::replace(&mut self.writer, next);
        self.segment += 1;
        full.close().await.map_err(|e| e.to_string())
    }

    /// Deletes the segments wholly below the archive's checkpoint.
    async fn delete_archived(&mut self) {
        let checkpoint = self.archive.checkpoint(self.shard);
        while self.oldest < checkpoint.segment && self.oldest < self.segment {
            self.segments.remove(self.oldest).await;
            self.oldest += 1;
        }
    }
}

async fn run(inner: Rc<Inner>, mut log: Log) -> Result<(), ArchiveError> {
    while inner.log.work().await {
        let pending = inner.log.inspect(Vec::len);
        let siblings = inner.siblings.borrow().active();
        if gather_first(inner.log.is_closing(), pending, siblings, log.commit_delay) {
            glommio::timer::sleep(log.commit_delay).await;
        }
        let Some(round) = inner.log.take_round() else {
            continue;
        };
        inner.siblings.borrow_mut().round += 1;
        let committed = match log.commit(&round.batch).await {
            Ok(end) => log.rotate_if_full().await.map(|()| end),
            Err(e) => Err(e),
        };
        match committed {
            Ok(end) => {
                inner.log.complete(round.upto, Ok(()));
                log.archive.submit(inner.shard, end, round.batch);
                log.delete_archived().await;
            }
            Err(message) => {
                tracing::error!(shard = inner.shard, error = %message, "write-ahead log failed");
                inner.log.complete(round.upto, Err(message.clone()));
                return Err(ArchiveError::Wal {
                    shard: inner.shard,
                    message,
                });
            }
        }
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
fn gather_first(
    closing: bool,
    pending: usize,
    siblings: usize,
    commit_delay: std::time::Duration,
) -> bool {
    !closing && !commit_delay.is_zero() && pending < FULL_ROUND && siblings >= COMMIT_SIBLINGS
}
