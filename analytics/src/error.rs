//! The errors of the analytics crate.

use datafusion::error::DataFusionError;

/// What went wrong, with enough context for the user to act on it.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// The SQL does not parse or does not plan (unknown table or column, type mismatch): the
    /// user's to fix. The message is DataFusion's, which names the problem.
    #[error("bad SQL: {0}")]
    Sql(DataFusionError),
    /// A query failed while running (unreadable file, resource limit).
    #[error("query failed: {0}")]
    Execution(DataFusionError),
    /// A flag or option value that cannot be used (time, band, polygon file...).
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Encoding the output.
    #[error("writing output: {0}")]
    Output(String),
}

impl AnalyticsError {
    /// True when the user can fix it by changing the command (SQL, flags): exit code 2.
    pub fn is_usage(&self) -> bool {
        matches!(self, AnalyticsError::Sql(_) | AnalyticsError::Invalid(_))
    }
}
