//! Standalone ingest: the archive as a client of any MQTT broker (mosquitto, EMQX, HiveMQ, or
//! fleetmq's own), for when the archive runs apart from the broker.
//!
//! Each worker is one glommio executor with one MQTT connection and its own write-ahead log
//! (worker `i` uses the log of "shard" `i`). The connection keeps a persistent session at QoS 1,
//! so messages published while the worker is down wait in the broker; a message is acknowledged
//! only once its record is durable in the log, so a crash loses nothing (the broker redelivers
//! what was not acknowledged, and the archive's exactly-once index drops what it already has).
//! Several workers share the load through an MQTT 5 shared subscription (`$share/{group}/...`).
//!
//! One process owns a data directory: the exactly-once index lives in its [`Archive`]. To scale
//! across machines, run one process per data directory with the same share group.

mod subscriber;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use protocol::Protocol;

use crate::{Archive, ArchiveError, ShardWal};

pub use subscriber::SubscriberError;

/// How a standalone ingest process reaches its broker.
#[derive(Debug, Clone)]
pub struct StandaloneConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id of worker 0; worker `i` appends `-{i}`. Stable across restarts, so the
    /// broker keeps the sessions.
    pub client_id: String,
    /// Topic filters to archive.
    pub topics: Vec<String>,
    /// Share group; `None` subscribes plainly (one worker only).
    pub share_group: Option<String>,
    /// MQTT 3.1.1 or 5.0 (shared subscriptions need 5.0 on most brokers).
    pub protocol: Protocol,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Keep alive, seconds.
    pub keep_alive: u16,
    /// Worker executors (connections).
    pub workers: usize,
}

impl StandaloneConfig {
    /// The filters as subscribed: `$share/{group}/{filter}` when sharing.
    pub fn subscriptions(&self) -> Vec<String> {
        self.topics
            .iter()
            .map(|t| match &self.share_group {
                Some(group) => format!("$share/{group}/{t}"),
                None => t.clone(),
            })
            .collect()
    }

    /// Checks what the type system does not.
    ///
    /// # Errors
    /// A message naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.topics.is_empty() {
            return Err("--topic: give at least one topic filter".into());
        }
        for t in &self.topics {
            protocol::validate_topic_filter(t).map_err(|e| format!("--topic {t:?}: {e}"))?;
        }
        if self.workers == 0 {
            return Err("--workers must be at least 1".into());
        }
        if self.workers > 1 && self.share_group.is_none() {
            return Err(
                "--workers above 1 needs --share GROUP, or every worker gets every message".into(),
            );
        }
        if self.client_id.is_empty() {
            return Err("--client-id must not be empty: the broker keeps the session by it".into());
        }
        Ok(())
    }
}

/// Counters of a standalone run.
#[derive(Debug, Default)]
pub struct StandaloneStats {
    /// PUBLISH packets received.
    pub received: AtomicU64,
    /// PUBLISH packets acknowledged (durable).
    pub acknowledged: AtomicU64,
    /// Connections made (reconnections included).
    pub connects: AtomicU64,
    /// Connections currently up.
    pub connected: AtomicU64,
}

/// A running standalone ingest.
pub struct Standalone {
    /// Live counters.
    pub stats: Arc<StandaloneStats>,
    stop: Arc<AtomicBool>,
    threads: glommio::PoolThreadHandles<Result<(), String>>,
    archive: Arc<Archive>,
}

impl Standalone {
    /// Starts the workers; returns at once.
    ///
    /// # Errors
    /// Executors that cannot start.
    pub fn start(
        config: StandaloneConfig,
        archive: Arc<Archive>,
    ) -> Result<Standalone, ArchiveError> {
        let stats = Arc::new(StandaloneStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let next_worker = Arc::new(AtomicU64::new(0));
        let (cfg, st, sp, ar) = (config.clone(), stats.clone(), stop.clone(), archive.clone());
        let threads = LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(config.workers))
            .name("fleetmq-ingest")
            .on_all_shards(move || async move {
                let worker = next_worker.fetch_add(1, Ordering::Relaxed) as usize;
                run_worker(cfg, worker, ar, st, sp).await
            })
            .map_err(|e| ArchiveError::Config(format!("cannot start ingest workers: {e}")))?;
        Ok(Standalone {
            stats,
            stop,
            threads,
            archive,
        })
    }

    /// Asks the workers to stop: they disconnect (the session stays with the broker), close
    /// their logs, and the archive publishes what it buffers.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for the workers, then closes the archive.
    ///
    /// # Errors
    /// The first worker failure, or the archive's.
    pub fn join(self) -> Result<(), ArchiveError> {
        let mut first = None;
        for result in self.threads.join_all() {
            let outcome = result.map_err(|e| e.to_string()).and_then(|r| r);
            if let (Err(e), None) = (outcome, &first) {
                first = Some(e);
            }
        }
        self.archive.close()?;
        match first {
            Some(e) => Err(ArchiveError::Config(e)),
            None => Ok(()),
        }
    }
}

async fn run_worker(
    config: StandaloneConfig,
    worker: usize,
    archive: Arc<Archive>,
    stats: Arc<StandaloneStats>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let (wal, replayed, _) = ShardWal::open(archive, worker)
        .await
        .map_err(|e| e.to_string())?;
    if !replayed.is_empty() {
        tracing::info!(
            worker,
            records = replayed.len(),
            "write-ahead log replayed into the archive"
        );
    }
    let wal = std::rc::Rc::new(wal);
    let client_id = if worker == 0 {
        config.client_id.clone()
    } else {
        format!("{}-{worker}", config.client_id)
    };
    let mut backoff = Duration::from_millis(250);
    while !stop.load(Ordering::Relaxed) {
        let session = subscriber::Session::new(&config, &client_id, &wal, &stats, &stop);
        match session.run().await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(worker, client_id = %client_id, error = %e, retry_in = ?backoff, "ingest connection lost");
                let mut waited = Duration::ZERO;
                while waited < backoff && !stop.load(Ordering::Relaxed) {
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                    waited += Duration::from_millis(100);
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    match std::rc::Rc::try_unwrap(wal) {
        Ok(wal) => wal.close().await.map_err(|e| e.to_string()),
        Err(_) => Err("write-ahead log still shared at shutdown".into()),
    }
}
