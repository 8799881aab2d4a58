//! Broker configuration: listeners, shards and the limits every connection is held to.
//!
//! The defaults follow mosquitto's where mosquitto has one (max inflight 20, max queued 1000,
//! topic alias maximum 10), and are safer where it has none (a 1 MiB maximum packet size rather
//! than 256 MiB, listening on 127.0.0.1 only).

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

/// Everything the broker needs to start. Built by the CLI from flags and an optional TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Plain MQTT over TCP.
    pub mqtt: SocketAddr,
    /// HTTP: the dashboard at `/`, MQTT over WebSocket at `/mqtt`, `/metrics`, `/healthz`.
    /// `"off"` in the file disables it.
    #[serde(deserialize_with = "addr_or_off")]
    pub http: Option<SocketAddr>,
    /// Seconds between `$SYS/broker/...` updates; 0 disables them.
    pub sys_interval: u64,
    /// Number of shards (executor threads); 0 means one per available core.
    pub shards: usize,
    /// Limits applied to every connection.
    pub limits: Limits,
    /// The telemetry archive (write-ahead log and Parquet files).
    pub archive: ArchiveSettings,
}

/// Which topics are archived, where, and how files are cut.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveSettings {
    /// Archive at all.
    pub enabled: bool,
    /// The data directory: `{data}/gps`, `{data}/reefer`, `{data}/rejects`, `{data}/wal`.
    pub data: std::path::PathBuf,
    /// Topic filters whose messages are archived.
    pub topics: Vec<String>,
    /// Rows per Parquet file at most.
    pub rotate_rows: usize,
    /// Buffered bytes per open file at most.
    pub rotate_bytes: usize,
    /// Seconds an open file may stay unpublished.
    pub rotate_age: u64,
    /// Parquet writer threads (records are spread by vehicle).
    pub writer_threads: usize,
    /// Memory bound of all writers' buffers, bytes.
    pub max_buffered_bytes: usize,
}

impl Default for ArchiveSettings {
    fn default() -> ArchiveSettings {
        let defaults = ingest::ArchiveConfig::default();
        ArchiveSettings {
            enabled: true,
            data: std::path::PathBuf::from("fleet-data"),
            topics: vec!["fleet/+/gps".into(), "fleet/+/reefer".into()],
            rotate_rows: defaults.rotate_rows,
            rotate_bytes: defaults.rotate_bytes,
            rotate_age: defaults.rotate_age.as_secs(),
            writer_threads: defaults.writer_threads,
            max_buffered_bytes: defaults.max_buffered_bytes,
        }
    }
}

impl ArchiveSettings {
    /// The ingest crate's configuration for these settings.
    pub fn to_ingest(&self) -> ingest::ArchiveConfig {
        ingest::ArchiveConfig {
            data_dir: self.data.clone(),
            rotate_rows: self.rotate_rows,
            rotate_bytes: self.rotate_bytes,
            rotate_age: Duration::from_secs(self.rotate_age),
            writer_threads: self.writer_threads,
            max_buffered_bytes: self.max_buffered_bytes,
            ..ingest::ArchiveConfig::new(self.data.clone())
        }
    }

    /// True when `topic` is archived.
    pub fn archives(&self, topic: &str) -> bool {
        self.enabled && self.topics.iter().any(|f| protocol::matches(f, topic))
    }
}

/// Per-connection and per-session limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest packet accepted from a client, in bytes (announced to 5.0 clients in CONNACK).
    pub max_packet_size: u32,
    /// How many QoS 1/2 PUBLISH a client may have unacknowledged towards us (Receive Maximum),
    /// and the most we keep in flight towards a client that announces no limit of its own.
    pub max_inflight: u16,
    /// QoS 1/2 messages held per session beyond the in-flight window (online or offline);
    /// further messages are dropped and counted.
    pub max_queued_messages: usize,
    /// Bytes held per session in that queue.
    pub max_queued_bytes: usize,
    /// Outbound packets waiting to be written to one socket; QoS 0 beyond this is dropped.
    pub max_outbox_packets: usize,
    /// Topic aliases a 5.0 client may use towards us.
    pub topic_alias_maximum: u16,
    /// Largest keep alive accepted, in seconds; a 5.0 client asking for more (or for 0) is told
    /// this value with Server Keep Alive. 0 disables the cap.
    pub max_keepalive: u16,
    /// Time a new connection has to send CONNECT.
    #[serde(with = "humantime_secs")]
    pub connect_timeout: Duration,
    /// Maximum number of client connections per shard (0: unlimited).
    pub max_connections_per_shard: usize,
    /// Retained messages kept (a new topic beyond it is refused and counted).
    pub max_retained_messages: usize,
    /// Session expiry granted to 3.1.1 persistent sessions, seconds (u32::MAX: never).
    pub persistent_session_expiry: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mqtt: SocketAddr::from(([127, 0, 0, 1], 1883)),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            sys_interval: 10,
            shards: 0,
            limits: Limits::default(),
            archive: ArchiveSettings::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_packet_size: 1024 * 1024,
            max_inflight: 20,
            max_queued_messages: 1000,
            max_queued_bytes: 16 * 1024 * 1024,
            max_outbox_packets: 4096,
            topic_alias_maximum: 10,
            max_keepalive: 65535,
            connect_timeout: Duration::from_secs(10),
            max_connections_per_shard: 0,
            max_retained_messages: 1_000_000,
            persistent_session_expiry: u32::MAX,
        }
    }
}

/// A socket address, or `"off"`.
fn addr_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e| {
        serde::de::Error::custom(format!("{text:?} is not an address or \"off\": {e}"))
    })
}

/// Durations in the TOML file are whole seconds.
mod humantime_secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

impl Config {
    /// The number of shards to run: the configured count, or one per available core.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// Checks values that the type system does not.
    ///
    /// # Errors
    /// A message naming the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        if l.max_packet_size < 64 {
            return Err("limits.max_packet_size must be at least 64 bytes".into());
        }
        if l.max_inflight == 0 {
            return Err("limits.max_inflight must be at least 1".into());
        }
        if l.max_outbox_packets == 0 {
            return Err("limits.max_outbox_packets must be at least 1".into());
        }
        for filter in &self.archive.topics {
            protocol::validate_topic_filter(filter).map_err(|e| {
                format!("archive.topics: {filter:?} is not a valid topic filter: {e}")
            })?;
        }
        if self.archive.enabled {
            self.archive
                .to_ingest()
                .validate()
                .map_err(|e| format!("archive: {e}"))?;
        }
        if self.shards > 1024 {
            return Err("shards must be between 0 (one per core) and 1024".into());
        }
        Ok(())
    }
}
