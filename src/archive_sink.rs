//! The Parquet archive as the broker's durable sink: each shard appends archived messages to
//! its own write-ahead log ([`ingest::ShardWal`]), whose group commit makes them durable before
//! their acknowledgement, and whose rounds feed the archive's Parquet writers.

use std::{
    cell::RefCell,
    fmt::Write,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll},
};

use broker::sink::{LocalFuture, ShardSink, Sink, SinkMessage, Ticket};
use ingest::{Archive, ArchiveStats, Record, ShardWal, WalTicket};

/// The archive, plugged into the broker for `topics`.
#[derive(Debug)]
pub struct ArchiveSink {
    archive: Arc<Archive>,
    topics: Vec<String>,
}

impl ArchiveSink {
    /// Archives the messages of `topics` into `archive`.
    pub fn new(archive: Arc<Archive>, topics: Vec<String>) -> ArchiveSink {
        ArchiveSink { archive, topics }
    }
}

impl Sink for ArchiveSink {
    fn topics(&self) -> Vec<String> {
        self.topics.clone()
    }

    fn open_shard(&self, shard: usize) -> LocalFuture<'_, Result<Rc<dyn ShardSink>, String>> {
        Box::pin(async move {
            // Replays what the log holds beyond the archive's checkpoint (into the archive)
            // before the shard takes clients.
            let (wal, replayed, end) = ShardWal::open(self.archive.clone(), shard)
                .await
                .map_err(|e| e.to_string())?;
            if !replayed.is_empty() {
                tracing::info!(shard, records = replayed.len(), %end, "write-ahead log replayed into the archive");
            }
            let writer: Rc<dyn ShardSink> = Rc::new(WalWriter {
                wal: RefCell::new(Some(wal)),
            });
            Ok(writer)
        })
    }

    fn prometheus(&self) -> String {
        prometheus(&self.archive.stats())
    }

    fn close(&self) -> Result<(), String> {
        self.archive.close().map_err(|e| e.to_string())
    }
}

/// One shard's write-ahead log, until the shard closes it.
struct WalWriter {
    wal: RefCell<Option<ShardWal>>,
}

/// Why a message appended after the log closed never becomes durable.
const CLOSED: &str = "the archive's write-ahead log is closed (the broker is stopping)";

impl ShardSink for WalWriter {
    fn append(&self, message: SinkMessage<'_>) -> Ticket {
        let record = Record::new(
            message.topic.clone(),
            message.payload.clone(),
            message.received_at_ms,
        );
        match &*self.wal.borrow() {
            Some(wal) => Ticket(wal.append(record, message.source).0),
            // Never durable: poll_durable answers CLOSED for it.
            None => Ticket(u64::MAX),
        }
    }

    fn poll_durable(&self, ticket: Ticket, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        match &*self.wal.borrow() {
            Some(wal) => wal
                .poll_durable(WalTicket(ticket.0), cx)
                .map_err(|e| e.to_string()),
            None => Poll::Ready(Err(CLOSED.to_string())),
        }
    }

    fn close(&self) -> LocalFuture<'_, Result<(), String>> {
        let wal = self.wal.borrow_mut().take();
        Box::pin(async move {
            match wal {
                Some(wal) => wal.close().await.map_err(|e| e.to_string()),
                None => Ok(()),
            }
        })
    }
}

/// Prometheus text for the archive's counters.
pub fn prometheus(stats: &ArchiveStats) -> String {
    /// Name, type, help, and (kind label, value) samples.
    type Family<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, u64)]);
    let families: [Family; 8] = [
        (
            "archive_rows_total",
            "counter",
            "Rows written to published Parquet files, by kind.",
            &[
                ("gps", stats.gps_rows),
                ("reefer", stats.reefer_rows),
                ("rejects", stats.reject_rows),
            ],
        ),
        (
            "archive_files_total",
            "counter",
            "Parquet files published.",
            &[("", stats.files)],
        ),
        (
            "archive_duplicates_total",
            "counter",
            "Records already archived (QoS 1 redelivery, replay), not written again.",
            &[("", stats.duplicates)],
        ),
        (
            "archive_sequence_epochs_total",
            "counter",
            "Vehicles whose sequence counter restarted (a reboot); their readings start a new epoch.",
            &[("", stats.epochs)],
        ),
        (
            "archive_exactly_once_index_bytes",
            "gauge",
            "Bytes the exactly-once index takes (about once a second).",
            &[("", stats.index_bytes)],
        ),
        (
            "archive_lag_records",
            "gauge",
            "Records durable in the log and not yet in a published file.",
            &[("", stats.lag)],
        ),
        (
            "archive_buffered_bytes",
            "gauge",
            "Bytes of rows buffered in open files.",
            &[("", stats.buffered_bytes + stats.queued_bytes)],
        ),
        (
            "archive_write_errors_total",
            "counter",
            "Files that failed to publish (retried).",
            &[("", stats.write_errors)],
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, samples) in families {
        let _ = writeln!(out, "# HELP fleetmq_{name} {help}");
        let _ = writeln!(out, "# TYPE fleetmq_{name} {kind}");
        for (label, value) in samples {
            if label.is_empty() {
                let _ = writeln!(out, "fleetmq_{name} {value}");
            } else {
                let _ = writeln!(out, "fleetmq_{name}{{kind=\"{label}\"}} {value}");
            }
        }
    }
    out
}
