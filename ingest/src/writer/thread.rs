//! The writer thread: a plain std thread per [`Writer`], fed by a channel, so Parquet encoding
//! and zstd never run on a glommio network executor.

use std::{
    sync::mpsc::{Receiver, RecvTimeoutError, SyncSender},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{stats::sub, ArchiveError, Record, WalPosition};

use super::Writer;

/// What the archive handle asks of a writer thread.
pub(crate) enum Command {
    /// Records of the log range `(start, end]` of `shard` routed to this writer.
    Batch {
        shard: usize,
        start: WalPosition,
        end: WalPosition,
        records: Vec<Record>,
        /// Bytes counted in `queued_bytes` for this batch.
        bytes: u64,
    },
    /// Publish everything, then reply.
    Flush(SyncSender<Result<(), ArchiveError>>),
    /// Publish everything, reply, and exit.
    Stop(SyncSender<Result<(), ArchiveError>>),
}

/// Starts the thread of `writer`; it wakes at least every `tick` to rotate aged files.
pub(crate) fn spawn(
    writer: Writer,
    commands: Receiver<Command>,
    tick: Duration,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("archive-writer-{}", writer.id))
        .spawn(move || run(writer, commands, tick))
}

fn run(mut writer: Writer, commands: Receiver<Command>, tick: Duration) {
    let mut next_tick = Instant::now() + tick;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match commands.recv_timeout(wait) {
            Ok(Command::Batch {
                shard,
                start,
                end,
                records,
                bytes,
            }) => {
                sub(&writer.shared.counters.queued_bytes, bytes);
                // Failures are logged and counted where they happen; the rows stay buffered.
                let _ = writer
                    .accept(shard, start, end, &records)
                    .and_then(|()| writer.persist_if_published());
            }
            Ok(Command::Flush(reply)) => {
                let _ = reply.send(writer.flush_all());
            }
            Ok(Command::Stop(reply)) => {
                let _ = reply.send(writer.flush_all());
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if let Err(e) = writer.flush_all() {
                    tracing::error!(writer = writer.id, error = %e, "final flush failed");
                }
                return;
            }
        }
        if Instant::now() >= next_tick {
            let _ = writer.tick();
            next_tick = Instant::now() + tick;
        }
    }
}
