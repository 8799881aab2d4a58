//! Why the broker could not start, or stopped with an error.

use std::net::SocketAddr;

use crate::security::SecurityError;

/// Why the broker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The executors could not be started.
    #[error("cannot start shard executors: {0}")]
    Executor(String),
    /// A shard thread panicked or failed.
    #[error("shard failed: {0}")]
    Shard(String),
    /// The durable sink could not be opened or closed.
    #[error("{0}")]
    Sink(String),
    /// A password, ACL, certificate or key file cannot be used.
    #[error("{0}")]
    Security(#[from] SecurityError),
    /// The broker's state directory cannot be read or written.
    #[error("persistence: {0}")]
    Persistence(String),
}
