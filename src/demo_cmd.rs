//! `fleetmq demo`: the whole pipeline on one machine. A broker with its archive and dashboard,
//! a simulated fleet publishing hours of fleet time in about a minute, then a summary of what
//! was archived (checked against what the fleet published) and the next commands to try.

use std::{
    io::IsTerminal,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Args;
use simulator::{
    mqtt::{BrokerUrl, ClientOptions},
    run::{self, RunConfig, Stats},
    Fleet, ModelConfig,
};

use crate::exit::UsageError;

/// Marks a data directory as written by the demo, so a later demo may replace it.
const MARKER: &str = ".fleetmq-demo";

/// Flags of `fleetmq demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Data directory for the archive (replaced if an earlier demo wrote it).
    #[arg(long, default_value = "fleet-data", value_name = "DIR")]
    data: PathBuf,
    /// Vehicles in the simulated fleet.
    #[arg(long, default_value_t = 200, value_name = "N")]
    vehicles: usize,
    /// Wall-clock duration of the simulation, e.g. 60s.
    #[arg(long, default_value = "60s", value_name = "DUR")]
    duration: String,
    /// Fleet seconds per wall second (the default turns a minute into three hours).
    #[arg(long, default_value_t = 180.0, value_name = "X")]
    speedup: f64,
    /// Seed of the fleet.
    #[arg(long, default_value_t = 1, value_name = "S")]
    seed: u64,
    /// MQTT listener (another free port is used if this one is taken).
    #[arg(long, default_value = "127.0.0.1:1883", value_name = "ADDR")]
    mqtt: SocketAddr,
    /// HTTP listener for the dashboard (another free port is used if this one is taken).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    http: SocketAddr,
    /// Keep the broker and dashboard running after the fleet finishes, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
}

/// Prepares the data directory: new, empty, or an earlier demo's (replaced).
fn prepare_data(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !empty && !dir.join(MARKER).exists() {
            return Err(UsageError(format!(
                "--data {}: the directory holds data the demo did not write; \
                 give another --data or remove it",
                dir.display()
            ))
            .into());
        }
        if !empty {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("replacing the earlier demo's {}", dir.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), b"written by fleetmq demo\n")
        .with_context(|| format!("writing {}", dir.join(MARKER).display()))?;
    Ok(())
}

/// Starts the broker, moving to free ports if the wanted ones are taken.
fn start_broker(args: &DemoArgs) -> anyhow::Result<fleetmq::Pipeline> {
    let mut settings = fleetmq::Settings::default();
    settings.broker.mqtt = args.mqtt;
    settings.broker.http = Some(args.http);
    settings.archive.data = args.data.clone();
    // Publish files often so the archive fills while the fleet drives.
    settings.archive.rotate_age = 10;
    for _ in 0..3 {
        match fleetmq::start(&settings) {
            Ok(pipeline) => return Ok(pipeline),
            Err(fleetmq::StartError::Broker(broker::BrokerError::Bind { addr, source }))
                if source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                eprintln!("fleetmq demo: {addr} is taken; using a free port instead");
                if addr.port() == settings.broker.mqtt.port() {
                    settings.broker.mqtt.set_port(0);
                } else {
                    settings.broker.http = Some(SocketAddr::new(args.http.ip(), 0));
                }
            }
            Err(e) => return Err(e).context("starting the broker"),
        }
    }
    anyhow::bail!("no free ports for the broker")
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let duration = humantime::parse_duration(&args.duration)
        .map_err(|e| UsageError(format!("--duration `{}`: {e}", args.duration)))?;
    if duration.is_zero() || args.vehicles == 0 || !(args.speedup > 0.0 && args.speedup <= 10_000.0)
    {
        return Err(UsageError(
            "--duration and --vehicles must be positive, --speedup in (0, 10000]".into(),
        )
        .into());
    }
    prepare_data(&args.data)?;
    let fleetmq::Pipeline {
        broker: handle,
        archive,
    } = start_broker(&args)?;
    let mqtt = handle.mqtt_addr();
    eprintln!(
        "fleetmq demo: broker on mqtt://{mqtt}, archive in {}",
        args.data.display()
    );
    if let Some(http) = handle.http_addr() {
        eprintln!("fleetmq demo: live dashboard on http://{http}/  (open it now)");
    }

    let fleet = Fleet::new(
        ModelConfig {
            seed: args.seed,
            vehicles: args.vehicles,
            ..ModelConfig::default()
        },
        None,
    )
    .map_err(UsageError)?;
    let url = BrokerUrl::parse(&format!("mqtt://{mqtt}")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = RunConfig {
        fleet,
        client: ClientOptions {
            url,
            protocol: protocol::Protocol::V3_1_1,
            username: None,
            password: None,
            keep_alive_s: 60,
            max_inflight: 20,
            tls: None,
            connect_timeout: Duration::from_secs(10),
        },
        qos: protocol::QoS::AtLeastOnce,
        duration,
        speedup: args.speedup,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ramp_per_s: 1000.0,
        drain_timeout: Duration::from_secs(30),
    };
    let fleet_hours = config.fleet_seconds() as f64 / 3600.0;
    eprintln!(
        "fleetmq demo: {} vehicles drive {fleet_hours:.1} h of fleet time in {:?} (seed {})",
        args.vehicles, duration, args.seed
    );
    let run = run::start(config).context("starting the simulated fleet")?;
    let stats = run.stats.clone();
    let progress = {
        let stats = stats.clone();
        let vehicles = args.vehicles as u64;
        std::thread::spawn(move || show_progress(&stats, vehicles))
    };
    let report = run.join().context("running the simulated fleet")?;
    let _ = progress.join();

    if args.keep_running {
        eprintln!("fleetmq demo: the fleet is done; broker and dashboard stay up until Ctrl-C");
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .context("installing signal handlers")?;
        signals.forever().next();
    }
    handle.shutdown();
    handle.join().context("stopping the broker")?;

    let truth_path = args.data.join("truth.json");
    report
        .truth
        .write_json(&truth_path)
        .with_context(|| format!("writing {}", truth_path.display()))?;
    let (mut gps, mut reefer) = (0u64, 0u64);
    for v in &report.truth.vehicles {
        gps += v.published.gps.count;
        reefer += v.published.reefer.count;
    }
    let stats = archive.map(|a| a.stats()).unwrap_or_default();
    println!();
    println!(
        "fleetmq demo: done in {:.0} s",
        report.elapsed.as_secs_f64()
    );
    println!("  published   {gps:>10} gps readings, {reefer:>8} reefer readings");
    println!(
        "  archived    {:>10} gps rows,     {:>8} reefer rows, {} rejects, in {} Parquet files",
        stats.gps_rows, stats.reefer_rows, stats.reject_rows, stats.files
    );
    println!(
        "  exactly once: {} redelivered duplicates dropped; {}",
        stats.duplicates,
        if stats.gps_rows == gps && stats.reefer_rows == reefer {
            "every published reading is in the archive once".to_string()
        } else {
            format!(
                "MISMATCH: {} gps and {} reefer readings differ",
                gps as i64 - stats.gps_rows as i64,
                reefer as i64 - stats.reefer_rows as i64
            )
        }
    );
    let data = args.data.display();
    println!("  data        {data}/gps, {data}/reefer (hive-partitioned by date and hour)");
    println!(
        "  truth       {} (what the simulator really did)",
        truth_path.display()
    );
    print_summary_report(&args.data);
    println!();
    println!("Next:");
    println!("  fleetmq broker --data {data}                  # broker + dashboard, archiving");
    println!("  fleetmq simulate --vehicles 500 --speedup 60  # drive a fleet against it");
    println!("  fleetmq report summary --data {data}          # every vehicle, as above");
    println!("  fleetmq report excursions --data {data} --chart excursions.svg");
    println!(
        "  fleetmq query --data {data} \"SELECT vehicle_id, max(speed_kmh) FROM gps GROUP BY 1 ORDER BY 2 DESC LIMIT 5\""
    );
    println!(
        "  duckdb -c \"SELECT vehicle_id, count(*) FROM read_parquet('{data}/gps/**/*.parquet', hive_partitioning=true) GROUP BY 1 ORDER BY 2 DESC LIMIT 5\""
    );
    if gps == 0 {
        anyhow::bail!("the fleet published nothing: see the errors above");
    }
    if stats.gps_rows != gps || stats.reefer_rows != reefer {
        anyhow::bail!("the archive does not match what the fleet published");
    }
    Ok(())
}

/// Prints the first vehicles of the fleet summary report over the new archive.
fn print_summary_report(data: &Path) {
    use analytics::{report, Catalog, Format, ReportKind, ReportOptions};
    let printed = (|| -> Result<(), analytics::AnalyticsError> {
        let catalog = Catalog::open(data)?;
        let report = report::run(
            &catalog,
            ReportKind::Summary,
            &ReportOptions {
                rules: telemetry::coldchain::ColdChainRules::of_archive(data)
                    .map_err(analytics::AnalyticsError::Invalid)?,
                ..ReportOptions::default()
            },
            false,
        )?;
        let (schema, batch) = report.rows.to_batch()?;
        let shown = batch.slice(0, batch.num_rows().min(8));
        println!();
        println!(
            "Fleet summary (fleetmq report summary; {} of {} vehicles):",
            shown.num_rows(),
            batch.num_rows()
        );
        analytics::output::write(Format::Table, &schema, &[shown], std::io::stdout())
    })();
    if let Err(e) = printed {
        eprintln!("fleetmq demo: the summary report failed: {e}");
    }
}

fn show_progress(stats: &Arc<Stats>, vehicles: u64) {
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last_print = Instant::now();
    while stats.finished.load(Ordering::Relaxed) < vehicles {
        std::thread::sleep(Duration::from_millis(250));
        if !terminal && last_print.elapsed() < Duration::from_secs(5) {
            continue;
        }
        last_print = Instant::now();
        let line = format!(
            "{:>5.0}s  vehicles online {:>5}  readings sent {:>9}  acknowledged {:>9}  buffered offline {:>6}",
            started.elapsed().as_secs_f64(),
            stats.connected.load(Ordering::Relaxed),
            stats.sent.load(Ordering::Relaxed),
            stats.acked.load(Ordering::Relaxed),
            stats.buffered.load(Ordering::Relaxed),
        );
        if terminal {
            eprint!("\r{line}");
        } else {
            eprintln!("{line}");
        }
    }
    if terminal {
        eprintln!();
    }
}
