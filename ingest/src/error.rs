//! The one error type of the archive, carrying the path or shard it concerns.

use std::path::PathBuf;

/// Why an archive operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The configuration cannot work (a zero bound, no writer thread).
    #[error("invalid archive configuration: {0}")]
    Config(String),
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A Parquet file could not be written or read.
    #[error("{path}: parquet: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What the parquet crate reported.
        source: parquet::errors::ParquetError,
    },
    /// Arrow arrays could not be assembled into a batch (a bug: the schemas are fixed).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// An existing archive file holds something this version cannot index.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The write-ahead log of a shard failed; records appended after the failure are not durable.
    #[error("write-ahead log of shard {shard}: {message}")]
    Wal {
        /// The shard.
        shard: usize,
        /// The underlying error.
        message: String,
    },
    /// A writer thread failed to publish a file (its rows stay buffered and are retried).
    #[error("archive writer {writer}: {message}")]
    Writer {
        /// The writer thread index.
        writer: usize,
        /// The underlying error.
        message: String,
    },
    /// The archive was closed.
    #[error("the archive is closed")]
    Closed,
}

impl ArchiveError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ArchiveError::Io {
            path: path.into(),
            source,
        }
    }
}
