//! The telemetry archive: a crash-safe, exactly-once Parquet archive of fleet telemetry.
//!
//! A shard of the broker appends each archived message to its [`ShardWal`] (one write-ahead
//! log per shard, on glommio DMA files); many appends share one fdatasync (group commit), and
//! a QoS 1 PUBLISH is acknowledged once its record is durable. Durable records go to the
//! [`Archive`], whose writer threads (plain std threads: Parquet encoding and zstd are slow
//! and synchronous) decode them, drop duplicates, buffer rows per hive partition and publish
//! sorted, zstd-compressed Parquet files atomically. Once a file is published, the archive
//! moves the shard's checkpoint, and the log below it can be deleted. Whenever a writer holds
//! nothing unpublished it saves its exactly-once index beside the log; on restart the archive
//! loads those snapshots, adds the few files published after them, and the log replays what
//! may be missing.
//!
//! Layout on disk (the archive layout is a contract, see `design.md`):
//! ```text
//! {data}/gps/date=YYYY-MM-DD/hour=H/part-{writer}-{n}.parquet
//! {data}/reefer/date=YYYY-MM-DD/hour=H/part-{writer}-{n}.parquet
//! {data}/rejects/date=YYYY-MM-DD/part-{writer}-{n}.parquet
//! {data}/wal/shard-{shard}/{segment:020}.wal, checkpoint
//! {data}/wal/exactly-once/writer-{writer}
//! ```
//!
//! # Layout of the crate
//! - [`config`]: the [`ArchiveConfig`].
//! - [`record`]: the [`Record`] and [`WalPosition`].
//! - [`wal`]: the [`ShardWal`], its framing, segments and replay.
//! - `archive`: [`Archive`], routing records to writer threads.
//! - `writer`: a writer thread's partitions, rows, rotation and atomic file publication.
//! - `classify`: reading, reject or skip; `dedup`: the exactly-once index.
//! - `checkpoint`: per-shard log progress and its persistence; `snapshot`: the exactly-once
//!   index saved beside it; `recovery`: the start (snapshots plus the files after them).
//! - [`stats`]: the [`ArchiveStats`].
//! - [`standalone`]: the archive as a client of any MQTT broker (`fleetmq ingest`).

mod archive;
mod checkpoint;
mod classify;
pub mod config;
mod dedup;
mod error;
mod maintenance;
mod merge;
mod partition;
pub mod record;
mod recovery;
mod snapshot;
pub mod standalone;
pub mod stats;
pub mod wal;
mod writer;

pub use archive::Archive;
pub use config::ArchiveConfig;
pub use error::ArchiveError;
pub use maintenance::MaintenanceReport;
pub use record::{Record, WalPosition};
pub use stats::ArchiveStats;
pub use wal::{ShardWal, WalTicket};
