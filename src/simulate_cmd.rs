//! `fleetmq simulate`: flags -> fleet model + MQTT settings -> a running fleet, with progress
//! on a terminal (plain lines when piped), a summary, and the ground truth file.

use std::{
    io::IsTerminal,
    path::PathBuf,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use clap::Args;
use simulator::{
    run::{self, RunConfig, Stats},
    Fleet, ModelConfig, World,
};

use crate::exit::UsageError;
use crate::mqtt_args::MqttArgs;

/// Flags of `fleetmq simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    mqtt: MqttArgs,
    /// Number of vehicles (one MQTT connection each).
    #[arg(long, default_value_t = 100, value_name = "N")]
    vehicles: usize,
    /// Wall-clock duration (fleet time = duration x speedup), e.g. 60s, 5m.
    #[arg(long, default_value = "60s", value_name = "DUR")]
    duration: String,
    /// Fleet seconds per wall second (60: an hour of fleet time per minute).
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    speedup: f64,
    /// Seed: the same seed and flags give the same fleet, byte for byte.
    #[arg(long, default_value_t = 1, value_name = "S")]
    seed: u64,
    /// Write the ground truth here (JSON).
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
    /// New connections per second while ramping up (0: all at once).
    #[arg(long, default_value_t = 1000.0, value_name = "PER_S")]
    ramp: f64,
    /// Seconds between GPS readings.
    #[arg(long, default_value_t = 1, value_name = "S")]
    gps_interval: u32,
    /// Seconds between reefer readings.
    #[arg(long, default_value_t = 30, value_name = "S")]
    reefer_interval: u32,
    /// GPS position error (standard deviation), metres.
    #[arg(long, default_value_t = 3.0, value_name = "M")]
    gps_noise: f64,
    /// GPS dropouts (no fix, 5-60 s) per vehicle and hour.
    #[arg(long, default_value_t = 1.0, value_name = "PER_H")]
    dropouts: f64,
    /// Coverage gaps (offline 20 s - 5 min, store-and-forward) per vehicle and hour.
    #[arg(long, default_value_t = 0.5, value_name = "PER_H")]
    coverage_gaps: f64,
    /// Compressor faults (1-2.5 h, causing excursions) per vehicle and hour.
    #[arg(long, default_value_t = 0.02, value_name = "PER_H")]
    faults: f64,
    /// Share of vehicles with frozen loads (the rest are 2-8 °C).
    #[arg(long, default_value_t = 0.3, value_name = "SHARE")]
    frozen_share: f64,
    /// Drive the LineStrings of this GeoJSON file instead of a generated city.
    #[arg(long, value_name = "FILE")]
    routes: Option<PathBuf>,
    /// Fleet time of the first reading: RFC 3339 (2025-01-06T06:00:00Z) or `now`
    /// [default: 2025-01-06T06:00:00Z, so runs are reproducible].
    #[arg(long, value_name = "TIME")]
    start: Option<String>,
    /// Vehicle ids are PREFIX-00000, PREFIX-00001, ...
    #[arg(long, default_value = "truck", value_name = "PREFIX")]
    id_prefix: String,
    /// Seconds allowed at the end to publish buffered readings and collect acks.
    #[arg(long, default_value_t = 15, value_name = "S")]
    drain: u64,
    /// Run the model only (no broker): print the counts and write the truth.
    #[arg(long)]
    dry_run: bool,
    /// Also subscribe to fleet/+/gps and fleet/+/reefer and check that every published reading arrived, valid per
    /// the payload contract (exit 1 otherwise).
    #[arg(long, conflicts_with = "dry_run")]
    verify: bool,
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

fn parse_start(text: Option<&str>) -> anyhow::Result<Option<i64>> {
    match text {
        None => Ok(None),
        Some("now") => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
            Ok(Some(now.as_millis() as i64))
        }
        Some(t) => {
            let time = humantime::parse_rfc3339_weak(t)
                .map_err(|e| usage(format!("--start `{t}`: {e} (expected RFC 3339 or `now`)")))?;
            let ms = time
                .duration_since(UNIX_EPOCH)
                .map_err(|_| usage("--start must be after 1970"))?;
            Ok(Some(ms.as_millis() as i64))
        }
    }
}

/// Turns the flags into the fleet model and run configuration.
fn config(args: &SimulateArgs) -> anyhow::Result<RunConfig> {
    let duration = humantime::parse_duration(&args.duration)
        .map_err(|e| usage(format!("--duration `{}`: {e}", args.duration)))?;
    if duration.is_zero() {
        return Err(usage("--duration must be positive"));
    }
    if !(args.speedup > 0.0 && args.speedup <= 100_000.0) {
        return Err(usage("--speedup must be in (0, 100000]"));
    }
    if args.vehicles == 0 {
        return Err(usage("--vehicles must be at least 1"));
    }
    let qos = args.mqtt.qos()?;
    if let Some(truth) = &args.truth {
        if truth.extension().is_some_and(|e| e == "parquet") {
            return Err(usage(
                "--truth: Parquet is not supported yet; give a .json file",
            ));
        }
    }
    let client = args.mqtt.client_options()?;
    let mut model = ModelConfig {
        seed: args.seed,
        vehicles: args.vehicles,
        id_prefix: args.id_prefix.clone(),
        gps_interval_s: args.gps_interval,
        reefer_interval_s: args.reefer_interval,
        gps_noise_m: args.gps_noise,
        gps_dropouts_per_hour: args.dropouts,
        coverage_gaps_per_hour: args.coverage_gaps,
        faults_per_hour: args.faults,
        frozen_share: args.frozen_share,
        ..ModelConfig::default()
    };
    if let Some(start) = parse_start(args.start.as_deref())? {
        model.start_ms = start;
    }
    let world = match &args.routes {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("--routes {}: {e}", path.display())))?;
            Some(
                World::from_geojson(&text)
                    .map_err(|e| usage(format!("--routes {}: {e}", path.display())))?,
            )
        }
        None => None,
    };
    let fleet = Fleet::new(model, world).map_err(usage)?;
    let threads = args.mqtt.threads()?;
    Ok(RunConfig {
        fleet,
        client,
        qos,
        duration,
        speedup: args.speedup,
        threads,
        ramp_per_s: args.ramp.max(0.0),
        drain_timeout: Duration::from_secs(args.drain),
    })
}

/// Runs the fleet (or only its model with `--dry-run`).
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    if args.dry_run {
        let (_, truth) = config.fleet.run_offline(config.fleet_seconds());
        let (gps, reefer): (u64, u64) = truth.vehicles.iter().fold((0, 0), |(g, r), v| {
            (g + v.generated.gps.count, r + v.generated.reefer.count)
        });
        eprintln!(
            "fleetmq simulate (dry run): {} vehicles, {} fleet seconds, {gps} gps + {reefer} reefer readings",
            truth.vehicles.len(),
            config.fleet_seconds()
        );
        return write_truth(args.truth.as_ref(), &truth);
    }
    eprintln!(
        "fleetmq simulate: {} vehicles -> {} ({}, QoS {}), {:?} wall x{} = {} fleet seconds, {} threads",
        config.fleet.config.vehicles,
        config.client.url,
        if config.client.protocol.is_v5() { "MQTT 5.0" } else { "MQTT 3.1.1" },
        config.qos as u8,
        config.duration,
        config.speedup,
        config.fleet_seconds(),
        config.threads,
    );
    let duration = config.duration;
    let vehicles = config.fleet.config.vehicles as u64;
    let verifier = if args.verify {
        Some(
            simulator::verify::Verifier::start(config.client.clone())
                .context("starting the verifying subscriber")?,
        )
    } else {
        None
    };
    let handle = run::start(config).context("starting the fleet")?;
    let stats = handle.stats.clone();
    let stop_stats = stats.clone();
    // Ctrl-C: stop producing, publish what is buffered, write the truth.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            stop_stats.stop.store(true, Ordering::Relaxed);
        }
    });
    let progress = std::thread::spawn(move || show_progress(&stats, duration, vehicles));
    let report = handle.join().context("running the fleet")?;
    let _ = progress.join();
    let truth = &report.truth;
    let (mut generated, mut published, mut online) = (0u64, 0u64, 0u64);
    for v in &truth.vehicles {
        generated += v.generated.gps.count + v.generated.reefer.count;
        published += v.published.gps.count + v.published.reefer.count;
        online += v.published.status_online;
    }
    let secs = report.elapsed.as_secs_f64();
    eprintln!(
        "fleetmq simulate: published {published} of {generated} readings ({:.0}/s) and {online} online statuses in {secs:.1} s",
        published as f64 / secs.max(1e-9)
    );
    write_truth(args.truth.as_ref(), truth)?;
    if let Some(verifier) = verifier {
        let observed = verifier.finish();
        let mismatches = observed.mismatches(truth);
        eprintln!(
            "fleetmq simulate: verify: {} telemetry messages received ({} duplicates), {} invalid, {} vehicles mismatching the truth",
            observed.received,
            observed.duplicates,
            observed.invalid,
            mismatches.len()
        );
        for line in observed.reasons.iter().chain(mismatches.iter()).take(20) {
            eprintln!("  {line}");
        }
        if observed.invalid > 0 || !mismatches.is_empty() {
            anyhow::bail!("verification failed");
        }
    }
    if published < generated {
        anyhow::bail!(
            "{} readings were not published (broker unreachable or slow to acknowledge)",
            generated - published
        );
    }
    Ok(())
}

fn write_truth(path: Option<&PathBuf>, truth: &simulator::Truth) -> anyhow::Result<()> {
    if let Some(path) = path {
        truth
            .write_json(path)
            .with_context(|| format!("writing the ground truth to {}", path.display()))?;
        eprintln!(
            "fleetmq simulate: ground truth written to {}",
            path.display()
        );
    }
    Ok(())
}

/// A progress bar on a terminal; a plain line a second when piped.
fn show_progress(stats: &Arc<Stats>, duration: Duration, vehicles: u64) {
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::new(duration.as_millis() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = Instant::now();
    let mut last_sent = 0;
    let mut last = Instant::now();
    while stats.finished.load(Ordering::Relaxed) < vehicles {
        std::thread::sleep(Duration::from_millis(if terminal { 200 } else { 1000 }));
        let sent = stats.sent.load(Ordering::Relaxed);
        let rate = (sent - last_sent) as f64 / last.elapsed().as_secs_f64().max(1e-9);
        let (now_sent, now) = (sent, Instant::now());
        let line = format!(
            "connected {} sent {} ({:.0}/s) acked {} buffered {} reconnects {} failures {}",
            stats.connected.load(Ordering::Relaxed),
            sent,
            rate,
            stats.acked.load(Ordering::Relaxed),
            stats.buffered.load(Ordering::Relaxed),
            stats
                .connects
                .load(Ordering::Relaxed)
                .saturating_sub(vehicles),
            stats.connect_failures.load(Ordering::Relaxed),
        );
        match &bar {
            Some(bar) => {
                bar.set_position(started.elapsed().as_millis() as u64);
                bar.set_message(line);
            }
            None => eprintln!("{:>6.1}s {line}", started.elapsed().as_secs_f64()),
        }
        if !terminal || last.elapsed() >= Duration::from_secs(1) {
            last_sent = now_sent;
            last = now;
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}
