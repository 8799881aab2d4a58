//! fleetmq's log, under both the broker's state log and the archive's write-ahead log:
//! checksummed frames in numbered segment files, written by group commit, with a torn tail
//! cut off at recovery.
//!
//! Both logs append frames to segment files from a glommio executor and must make them durable
//! before anything is acknowledged. Direct I/O (`O_DIRECT`, glommio's DMA files) keeps the log
//! out of the page cache, but not every filesystem a user puts `--data` on accepts it: ramfs,
//! tmpfs before Linux 6.6, many FUSE and network filesystems refuse it. [`probe`] tries it once
//! per directory, and [`AppendFile`] then writes either way with the same guarantee: data is
//! durable once [`AppendFile::sync`] returns (an fdatasync in the buffered case).
//!
//! Reading is always buffered ([`read_whole`]): logs are read once, at start-up, whole, and the
//! page cache reads any file on any filesystem, whatever its size or how it was written.
//!
//! # Layout
//! - [`frame`]: a record's frame (length, crc32, body) and the recovery scan that stops at a
//!   torn or corrupt tail.
//! - [`segments`]: [`Segments`], a directory of numbered segment files.
//! - [`group`]: [`GroupCommit`], tickets, rounds and waiters of the group commit.
//! - [`io_mode`]: [`IoMode`] and [`probe`], which picks it for a directory.
//! - [`append`]: [`AppendFile`], the segment writer.
//! - [`fs`]: whole-file reads, directory syncs, blocking work off the executor.

#![warn(missing_docs)]

pub mod append;
pub mod frame;
pub mod fs;
pub mod group;
pub mod io_mode;
pub mod segments;

pub use append::{AppendFile, LOG_BUFFER};
pub use fs::{blocking, read_whole, sync_dir};
pub use group::{GroupCommit, Round, Ticket};
pub use io_mode::{probe, IoMode};
pub use segments::Segments;
