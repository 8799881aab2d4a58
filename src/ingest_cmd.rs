//! `fleetmq ingest`: the archive as a client of any MQTT broker, until SIGINT or SIGTERM.

use std::{
    path::PathBuf,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Args;
use ingest::{
    standalone::{Standalone, StandaloneConfig},
    Archive, ArchiveConfig,
};

use crate::exit::UsageError;

/// Flags of `fleetmq ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Broker to archive from: mqtt://HOST:PORT.
    #[arg(long, value_name = "URL")]
    broker: String,
    /// Data directory of the archive.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Topic filter to archive (repeatable) [default: fleet/+/gps and fleet/+/reefer].
    #[arg(long = "topic", value_name = "FILTER")]
    topics: Vec<String>,
    /// Worker connections (each with its own write-ahead log); above 1 needs --share.
    #[arg(long, default_value_t = 1, value_name = "N")]
    workers: usize,
    /// Subscribe as share group GROUP ($share/GROUP/...), so several workers or processes
    /// split the messages.
    #[arg(long, value_name = "GROUP")]
    share: Option<String>,
    /// Client id of the persistent session (worker i adds -i).
    #[arg(long, default_value = "fleetmq-ingest", value_name = "ID")]
    client_id: String,
    /// MQTT version: 3.1.1 or 5.
    #[arg(long, default_value = "5", value_name = "V")]
    mqtt_version: String,
    /// User name.
    #[arg(long)]
    username: Option<String>,
    /// Password.
    #[arg(long)]
    password: Option<String>,
    /// Delete whole days of the archive older than N days [default: keep everything].
    #[arg(long, value_name = "N")]
    retention_days: Option<u32>,
}

/// Splits `mqtt://host:port`.
fn parse_broker(url: &str) -> Result<(String, u16), UsageError> {
    if url.starts_with("mqtts://") {
        return Err(UsageError(
            "--broker: mqtts:// is not supported by fleetmq ingest yet; use mqtt:// on a trusted network".into(),
        ));
    }
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| UsageError(format!("--broker {url:?}: expected mqtt://HOST:PORT")))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse()
                .map_err(|_| UsageError(format!("--broker {url:?}: bad port {p:?}")))?,
        ),
        None => (rest, 1883),
    };
    if host.is_empty() {
        return Err(UsageError(format!("--broker {url:?}: no host")));
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// Runs the standalone ingest.
pub fn run(args: IngestArgs) -> anyhow::Result<()> {
    let (host, port) = parse_broker(&args.broker)?;
    let protocol = match args.mqtt_version.as_str() {
        "3.1.1" | "4" => protocol::Protocol::V3_1_1,
        "5" | "5.0" => protocol::Protocol::V5,
        other => {
            return Err(UsageError(format!("--mqtt-version {other:?}: use 3.1.1 or 5")).into())
        }
    };
    let topics = if args.topics.is_empty() {
        vec!["fleet/+/gps".to_string(), "fleet/+/reefer".to_string()]
    } else {
        args.topics.clone()
    };
    let config = StandaloneConfig {
        host,
        port,
        client_id: args.client_id.clone(),
        topics,
        share_group: args.share.clone(),
        protocol,
        username: args.username.clone(),
        password: args.password.clone(),
        keep_alive: 30,
        workers: args.workers,
    };
    config.validate().map_err(UsageError)?;
    let archive_config = ArchiveConfig {
        retention_days: args.retention_days,
        ..ArchiveConfig::new(
            std::path::absolute(&args.data)
                .with_context(|| format!("--data {}", args.data.display()))?,
        )
    };
    archive_config
        .validate()
        .map_err(|e| UsageError(format!("--retention-days: {e}")))?;
    let archive = Archive::open(archive_config).context("opening the archive")?;
    eprintln!(
        "fleetmq ingest: {} -> {} ({} worker(s), filters {:?})",
        args.broker,
        args.data.display(),
        config.workers,
        config.subscriptions()
    );
    let running = Standalone::start(config, archive.clone()).context("starting the workers")?;
    let stats = running.stats.clone();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;
    let handle = signals.handle();
    let progress = std::thread::spawn(move || {
        let started = Instant::now();
        let mut last = Instant::now();
        while !handle.is_closed() {
            std::thread::sleep(Duration::from_millis(250));
            if last.elapsed() < Duration::from_secs(10) {
                continue;
            }
            last = Instant::now();
            let a = archive.stats();
            eprintln!(
                "{:>6.0}s connected {} received {} acknowledged {} | archived gps {} reefer {} rejects {} files {} duplicates {} lag {}",
                started.elapsed().as_secs_f64(),
                stats.connected.load(Ordering::Relaxed),
                stats.received.load(Ordering::Relaxed),
                stats.acknowledged.load(Ordering::Relaxed),
                a.gps_rows, a.reefer_rows, a.reject_rows, a.files, a.duplicates, a.lag
            );
        }
    });
    if let Some(signal) = signals.forever().next() {
        tracing::info!(
            signal,
            "stopping: acknowledged messages are flushed to Parquet"
        );
    }
    signals.handle().close();
    running.stop();
    running.join().context("stopping the ingest")?;
    let _ = progress.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_broker("mqtt://127.0.0.1:1884").unwrap(),
            ("127.0.0.1".into(), 1884)
        );
        assert_eq!(
            parse_broker("mqtt://broker").unwrap(),
            ("broker".into(), 1883)
        );
        assert!(parse_broker("mqtts://broker:8883")
            .unwrap_err()
            .0
            .contains("mqtts"));
        assert!(parse_broker("http://x").is_err());
        assert!(parse_broker("mqtt://x:notaport").is_err());
    }
}
