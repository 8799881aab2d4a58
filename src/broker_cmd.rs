//! `fleetmq broker`: flags and config file -> `broker::Config` -> running shards until SIGINT
//! or SIGTERM; SIGHUP reloads the password file, the ACL file and the TLS certificate.

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
    /// Do not keep sessions, subscriptions, retained and queued messages across restarts
    /// (otherwise kept in {data}/state).
    #[arg(long)]
    no_persistence: bool,
    /// Number of shards (executor threads) [default: one per core; one on two cores or fewer].
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// How plain MQTT connections are read: epoll (one readiness list per shard) or glommio
    /// (glommio's own streams) [default: epoll].
    #[arg(long, value_name = "epoll|glommio")]
    socket_io: Option<broker::SocketIo>,
    /// MQTT over TLS listener address (needs --tls-cert and --tls-key), e.g. 0.0.0.0:8883.
    #[arg(long, value_name = "ADDR")]
    mqtts: Option<SocketAddr>,
    /// HTTPS listener: the HTTP listener over TLS, with MQTT over secure WebSocket at /mqtt.
    #[arg(long, value_name = "ADDR")]
    https: Option<SocketAddr>,
    /// PEM certificate chain for --mqtts and --https (reloaded on SIGHUP).
    #[arg(long, value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert; must not be readable by others (chmod 600).
    #[arg(long, value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates that client certificates are verified against.
    #[arg(long, value_name = "PEM")]
    client_ca: Option<PathBuf>,
    /// Refuse TLS clients without a certificate signed by --client-ca.
    #[arg(long)]
    require_client_cert: bool,
    /// Which client-certificate field becomes the user name: cn, san or off [default: cn].
    #[arg(long, value_name = "cn|san|off")]
    cert_identity: Option<broker::config::CertIdentity>,
    /// mosquitto-format password file (write it with `fleetmq passwd`); reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// mosquitto-format ACL file; reloaded on SIGHUP. Without one, clients may do anything.
    #[arg(long, value_name = "FILE")]
    acl_file: Option<PathBuf>,
    /// Accept clients without credentials, also on addresses beyond loopback.
    #[arg(long)]
    allow_anonymous: bool,
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
fn settings(args: &BrokerArgs) -> Result<fleetmq::Settings, UsageError> {
    let mut settings = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                UsageError(format!("cannot read config file {}: {e}", path.display()))
            })?;
            fleetmq::Settings::from_toml(&text)
                .map_err(|e| UsageError(format!("config file {}: {e}", path.display())))?
        }
        None => fleetmq::Settings::default(),
    };
    let config = &mut settings.broker;
    if let Some(mqtt) = args.mqtt {
        config.mqtt = mqtt;
    }
    match args.http {
        Some(HttpListen::At(addr)) => config.http = Some(addr),
        Some(HttpListen::Off) => config.http = None,
        None => {}
    }
    if let Some(data) = &args.data {
        settings.archive.data = data.clone();
    }
    if args.no_archive {
        settings.archive.enabled = false;
    }
    if args.no_persistence {
        config.persistence.enabled = false;
    }
    if let Some(shards) = args.shards {
        if shards == 0 {
            return Err(UsageError(
                "--shards must be at least 1 (omit it for one per core)".into(),
            ));
        }
        config.shards = shards;
    }
    if let Some(io) = args.socket_io {
        config.socket_io = io;
    }
    apply_security(args, &mut settings.broker);
    settings.validate().map_err(UsageError)?;
    Ok(settings)
}

/// The TLS and authentication flags over the file's `[tls]` and `[auth]`.
fn apply_security(args: &BrokerArgs, config: &mut broker::Config) {
    if args.mqtts.is_some() {
        config.mqtts = args.mqtts;
    }
    if args.https.is_some() {
        config.https = args.https;
    }
    let tls = &mut config.tls;
    for (flag, field) in [
        (&args.tls_cert, &mut tls.cert),
        (&args.tls_key, &mut tls.key),
        (&args.client_ca, &mut tls.client_ca),
    ] {
        if flag.is_some() {
            field.clone_from(flag);
        }
    }
    tls.require_client_cert |= args.require_client_cert;
    if let Some(which) = args.cert_identity {
        tls.cert_identity = which;
    }
    let auth = &mut config.auth;
    for (flag, field) in [
        (&args.password_file, &mut auth.password_file),
        (&args.acl_file, &mut auth.acl_file),
    ] {
        if flag.is_some() {
            field.clone_from(flag);
        }
    }
    auth.allow_anonymous |= args.allow_anonymous;
}

/// Runs the broker until SIGINT or SIGTERM.
pub fn run(args: BrokerArgs) -> anyhow::Result<()> {
    let settings = settings(&args)?;
    let handle = match fleetmq::start(&settings) {
        Ok(pipeline) => pipeline.broker,
        // A file named in the configuration that cannot be used is the user's to fix.
        Err(
            e @ (fleetmq::StartError::Settings(_)
            | fleetmq::StartError::Broker(
                broker::BrokerError::Security(_) | broker::BrokerError::Config(_),
            )),
        ) => return Err(UsageError(e.to_string()).into()),
        Err(e) => return Err(e).context("starting the broker"),
    };
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .context("installing signal handlers")?;
    eprintln!("fleetmq broker: MQTT on {}", handle.mqtt_addr());
    if let Some(http) = handle.http_addr() {
        eprintln!("fleetmq broker: dashboard on http://{http}/ (MQTT over WebSocket at /mqtt, metrics at /metrics)");
    }
    if let Some(addr) = handle.mqtts_addr() {
        eprintln!("fleetmq broker: MQTT over TLS on {addr}");
    }
    if let Some(addr) = handle.https_addr() {
        eprintln!("fleetmq broker: HTTPS on https://{addr}/ (secure WebSocket at /mqtt)");
    }
    for signal in signals.forever() {
        if signal == signal_hook::consts::SIGHUP {
            // A bad file keeps the old settings in force; the broker goes on either way.
            if let Err(e) = handle.reload() {
                tracing::error!(error = %e, "reload failed; previous security settings kept");
            }
            continue;
        }
        tracing::info!(signal, "shutting down");
        break;
    }
    handle.shutdown();
    handle.join().context("stopping the broker")?;
    Ok(())
}
