//! The settings of `fleetmq broker`: the broker's own ([`broker::Config`]) plus the archive
//! it writes ([`ArchiveSettings`], the file's `[archive]` section), read from one TOML file.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

/// How long a write-ahead log round of the broker's archive gathers records from many
/// connections: at a fleet's rate (readings spread evenly over thousands of connections) one
/// fdatasync per reading was the largest cost of archiving; 5 ms cut the broker's CPU per
/// reading by about a third (BENCHMARKS.md, the fleet workload).
pub const DEFAULT_COMMIT_DELAY_MS: u64 = 5;

/// Which topics are archived, where, and how files are cut: the `[archive]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveSettings {
    /// Archive at all.
    pub enabled: bool,
    /// The data directory: `{data}/gps`, `{data}/reefer`, `{data}/rejects`, `{data}/wal`, and
    /// the broker's state in `{data}/state` unless `persistence.dir` says otherwise.
    pub data: PathBuf,
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
    /// Milliseconds a write-ahead log round gathers records before its fdatasync, when at least
    /// four connections appended lately (0: sync at once; fewer syncs at a fleet's trickle, at
    /// most this much more QoS 1 acknowledgement latency; a lone client is never held).
    pub commit_delay_ms: u64,
    /// Merge the files of closed hours into few large ones.
    pub compact: bool,
    /// Seconds after an hour ends (and after its last late reading) before it is compacted.
    pub compact_delay: u64,
    /// Delete whole days older than this many days (every table); absent keeps everything.
    pub retention_days: Option<u32>,
}

impl Default for ArchiveSettings {
    fn default() -> ArchiveSettings {
        let defaults = ingest::ArchiveConfig::default();
        ArchiveSettings {
            enabled: true,
            data: PathBuf::from("fleet-data"),
            topics: vec!["fleet/+/gps".into(), "fleet/+/reefer".into()],
            rotate_rows: defaults.rotate_rows,
            rotate_bytes: defaults.rotate_bytes,
            rotate_age: defaults.rotate_age.as_secs(),
            writer_threads: defaults.writer_threads,
            max_buffered_bytes: defaults.max_buffered_bytes,
            // A fleet's vehicles each on their own connection: a round waits this long only
            // when several connections append lately, so a lone client is never held.
            commit_delay_ms: DEFAULT_COMMIT_DELAY_MS,
            compact: defaults.compact,
            compact_delay: defaults.compact_delay.as_secs(),
            retention_days: defaults.retention_days,
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
            commit_delay: Duration::from_millis(self.commit_delay_ms),
            compact: self.compact,
            compact_delay: Duration::from_secs(self.compact_delay),
            retention_days: self.retention_days,
            ..ingest::ArchiveConfig::new(self.data.clone())
        }
    }

    /// Checks what the types do not.
    ///
    /// # Errors
    /// A message naming the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        for filter in &self.topics {
            protocol::validate_topic_filter(filter).map_err(|e| {
                format!("archive.topics: {filter:?} is not a valid topic filter: {e}")
            })?;
        }
        if self.enabled {
            self.to_ingest()
                .validate()
                .map_err(|e| format!("archive: {e}"))?;
        }
        Ok(())
    }
}

/// Everything `fleetmq broker` runs with.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The broker: listeners, shards, limits, security, its state.
    pub broker: broker::Config,
    /// The archive the broker writes.
    pub archive: ArchiveSettings,
    /// The cold-chain rules (`[coldchain]`): the bands the dashboards alarm on and the reports
    /// count excursions by.
    pub coldchain: telemetry::coldchain::ColdChainRules,
}

impl Settings {
    /// Reads a settings file: the broker's keys and sections, plus `[archive]` and
    /// `[coldchain]`.
    ///
    /// # Errors
    /// The TOML does not parse, or a key is unknown or has the wrong type; the message names
    /// it.
    pub fn from_toml(text: &str) -> Result<Settings, String> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let archive = match table.remove("archive") {
            Some(section) => section
                .try_into::<ArchiveSettings>()
                .map_err(|e| format!("[archive]: {e}"))?,
            None => ArchiveSettings::default(),
        };
        let coldchain = match table.remove("coldchain") {
            Some(section) => section
                .try_into::<telemetry::coldchain::ColdChainRules>()
                .map_err(|e| format!("[coldchain]: {e}"))?,
            None => telemetry::coldchain::ColdChainRules::default(),
        };
        let broker = toml::Value::Table(table)
            .try_into::<broker::Config>()
            .map_err(|e| e.to_string())?;
        Ok(Settings {
            broker,
            archive,
            coldchain,
        })
    }

    /// The broker's configuration with its state directory resolved ([`with_state_dir`]).
    pub fn broker_config(&self) -> broker::Config {
        with_state_dir(self.broker.clone(), &self.archive.data)
    }

    /// Checks both parts.
    ///
    /// # Errors
    /// A message naming the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        self.broker.validate()?;
        self.archive.validate()?;
        self.coldchain.validate()
    }
}

/// `config` with its state in `{data}/state` while `persistence.dir` is empty (as in the
/// README's sample file) or left at the broker's default, so that the state follows the data
/// directory wherever it is put.
pub fn with_state_dir(mut config: broker::Config, data: &std::path::Path) -> broker::Config {
    let dir = &config.persistence.dir;
    if dir.as_os_str().is_empty() || *dir == broker::config::PersistenceSettings::default().dir {
        config.persistence.dir = data.join("state");
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample file in the README is a file the broker takes as it is.
    #[test]
    fn the_readme_sample_configuration_is_valid() {
        let readme = include_str!("../README.md");
        let section = &readme[readme.find("### Configuration file").unwrap()..];
        let start = section.find("```toml\n").unwrap() + "```toml\n".len();
        let sample = &section[start..start + section[start..].find("```").unwrap()];
        let settings = Settings::from_toml(sample).unwrap();
        settings.validate().unwrap();
        assert_eq!(
            settings.coldchain,
            telemetry::coldchain::ColdChainRules::default()
        );
        assert!(settings.archive.compact);
    }

    #[test]
    fn the_archive_section_and_the_broker_keys_come_from_one_file() {
        let settings = Settings::from_toml(
            "shards = 3\n[limits]\nmax_inflight = 7\n[archive]\ndata = \"/srv/fleet\"\nrotate_age = 10\n",
        )
        .expect("parses");
        assert_eq!(settings.broker.shards, 3);
        assert_eq!(settings.broker.limits.max_inflight, 7);
        assert_eq!(settings.archive.rotate_age, 10);
        assert_eq!(
            settings.broker_config().persistence.dir,
            PathBuf::from("/srv/fleet/state")
        );
        let empty = Settings::from_toml("[persistence]\ndir = \"\"\n").expect("parses");
        assert_eq!(
            empty.broker_config().persistence.dir,
            PathBuf::from("fleet-data/state")
        );
        let given =
            Settings::from_toml("[persistence]\ndir = \"/var/lib/state\"\n").expect("parses");
        assert_eq!(
            given.broker_config().persistence.dir,
            PathBuf::from("/var/lib/state")
        );
    }

    #[test]
    fn unknown_keys_are_named_in_either_part() {
        let e = Settings::from_toml("[archive]\nrotate_rowz = 1\n").expect_err("refused");
        assert!(e.contains("[archive]") && e.contains("rotate_rowz"), "{e}");
        let e = Settings::from_toml("shardz = 1\n").expect_err("refused");
        assert!(e.contains("shardz"), "{e}");
        let e = Settings {
            archive: ArchiveSettings {
                topics: vec!["fleet/#/gps".into()],
                ..ArchiveSettings::default()
            },
            ..Settings::default()
        }
        .validate()
        .expect_err("refused");
        assert!(e.contains("archive.topics"), "{e}");
    }
}
