//! `fleetmq broker`: flags and config file -> `broker::Config` -> running shards until SIGINT
//! or SIGTERM.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use clap::Args;

use crate::exit::UsageError;

/// Flags of `fleetmq broker`; each overrides the same setting of the config file.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// TOML config file (keys: mqtt, shards, [limits]...).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// MQTT listener address [default: 127.0.0.1:1883].
    #[arg(long, value_name = "ADDR")]
    mqtt: Option<SocketAddr>,
    /// HTTP listener: dashboard, MQTT over WebSocket at /mqtt, /metrics; "off" disables it
    /// [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR|off", value_parser = parse_http)]
    http: Option<HttpListen>,
    /// Data directory: the archive ({data}/gps, reefer, rejects) and its write-ahead log
    /// [default: ./fleet-data].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Do not archive telemetry (no write-ahead log, no Parquet).
    #[arg(long)]
    no_archive: bool,
    /// Number of shards (executor threads) [default: one per core].
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
}

/// `--http` takes an address or `off`.
#[derive(Debug, Clone, Copy)]
enum HttpListen {
    At(SocketAddr),
    Off,
}

fn parse_http(text: &str) -> Result<HttpListen, String> {
    if text == "off" {
        return Ok(HttpListen::Off);
    }
    text.parse()
        .map(HttpListen::At)
        .map_err(|e| format!("{e}: give an address like 127.0.0.1:8080, or off"))
}

/// Reads the config file (if any) and applies the flags over it.
fn config(args: &BrokerArgs) -> Result<broker::Config, UsageError> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                UsageError(format!("cannot read config file {}: {e}", path.display()))
            })?;
            toml::from_str(&text)
                .map_err(|e| UsageError(format!("config file {}: {e}", path.display())))?
        }
        None => broker::Config::default(),
    };
    if let Some(mqtt) = args.mqtt {
        config.mqtt = mqtt;
    }
    match args.http {
        Some(HttpListen::At(addr)) => config.http = Some(addr),
        Some(HttpListen::Off) => config.http = None,
        None => {}
    }
    if let Some(data) = &args.data {
        config.archive.data = data.clone();
    }
    if args.no_archive {
        config.archive.enabled = false;
    }
    if let Some(shards) = args.shards {
        if shards == 0 {
            return Err(UsageError(
                "--shards must be at least 1 (omit it for one per core)".into(),
            ));
        }
        config.shards = shards;
    }
    config.validate().map_err(UsageError)?;
    Ok(config)
}

/// Runs the broker until SIGINT or SIGTERM.
pub fn run(args: BrokerArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    let handle = broker::start(config).context("starting the broker")?;
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;
    eprintln!("fleetmq broker: MQTT on {}", handle.mqtt_addr());
    if let Some(http) = handle.http_addr() {
        eprintln!("fleetmq broker: dashboard on http://{http}/ (MQTT over WebSocket at /mqtt, metrics at /metrics)");
    }
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "shutting down");
    }
    handle.shutdown();
    handle.join().context("stopping the broker")?;
    Ok(())
}
