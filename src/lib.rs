//! fleetmq assembled: the MQTT broker (crate `broker`, which knows nothing about Parquet) with
//! the Parquet archive (crate `ingest`) plugged in as its durable sink and the dispatch
//! dashboard as its static files. The `fleetmq` command line is built on this.
//!
//! # Layout
//! - [`settings`]: [`Settings`], the broker's configuration plus the `[archive]` section.
//! - [`archive_sink`]: [`archive_sink::ArchiveSink`], the archive behind the broker's sink trait.
//! - [`dashboard`]: the dashboard's files, embedded at build time.

pub mod archive_sink;
pub mod dashboard;
pub mod settings;

use std::sync::Arc;

pub use settings::{ArchiveSettings, Settings};

/// A broker running with its archive.
pub struct Pipeline {
    /// The broker.
    pub broker: broker::BrokerHandle,
    /// Its archive, when archiving is on (for its figures; the broker closes it on stop).
    pub archive: Option<Arc<ingest::Archive>>,
}

/// Why the pipeline did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong; the message names it and the fix.
    #[error("{0}")]
    Settings(String),
    /// The archive's directory cannot be used.
    #[error("archive: {0}")]
    Archive(#[from] ingest::ArchiveError),
    /// The broker did not start.
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
}

/// Opens the archive (when enabled) and starts the broker with it and the dashboard.
///
/// # Errors
/// Invalid settings, an archive directory that cannot be used, or a broker that cannot start.
pub fn start(settings: &Settings) -> Result<Pipeline, StartError> {
    // The broker checks its own part when it starts.
    settings.archive.validate().map_err(StartError::Settings)?;
    let mut archive_settings = settings.archive.clone();
    // Shards open files from their own threads; a relative data directory must not depend on
    // anything but the directory the broker was started in.
    archive_settings.data = std::path::absolute(&archive_settings.data).map_err(|e| {
        StartError::Settings(format!(
            "archive.data {}: {e}",
            archive_settings.data.display()
        ))
    })?;
    settings
        .coldchain
        .validate()
        .map_err(StartError::Settings)?;
    let rules = settings.coldchain.to_json();
    let archive = if archive_settings.enabled {
        let archive = ingest::Archive::open(archive_settings.to_ingest())?;
        // The reports over this archive judge excursions by the same rules as the dashboards.
        settings
            .coldchain
            .write_to_archive(&archive_settings.data)
            .map_err(StartError::Settings)?;
        tracing::info!(data = %archive_settings.data.display(), topics = ?archive_settings.topics, "archive open");
        Some(archive)
    } else {
        None
    };
    let extensions = broker::Extensions {
        sink: archive.clone().map(|archive| {
            let sink: Arc<dyn broker::Sink> = Arc::new(archive_sink::ArchiveSink::new(
                archive,
                archive_settings.topics.clone(),
            ));
            sink
        }),
        static_files: Some(Arc::new(dashboard::Dashboard)),
        retained: vec![(
            telemetry::coldchain::TOPIC.to_owned(),
            bytes::Bytes::from(rules.into_bytes()),
        )],
    };
    let config = settings::with_state_dir(settings.broker.clone(), &archive_settings.data);
    match broker::start_with(config, extensions) {
        Ok(broker) => Ok(Pipeline { broker, archive }),
        Err(e) => {
            // Release the data directory, so that the caller may try again (on other ports).
            if let Some(archive) = &archive {
                if let Err(close) = archive.close() {
                    tracing::warn!(error = %close, "closing the archive after a failed start");
                }
            }
            Err(e.into())
        }
    }
}
