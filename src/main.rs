//! `fleetmq`: the command line. Each subcommand is a thin module that turns flags into a
//! validated configuration and calls into the library crates.

mod broker_cmd;
mod demo_cmd;
mod exit;
mod ingest_cmd;
mod loadgen_cmd;
mod mqtt_args;
mod passwd_cmd;
mod query_cmd;
mod report_cmd;
mod simulate_cmd;

use clap::{Parser, Subcommand};

/// fleetmq: fleet telemetry over MQTT — broker, archive, simulator and analytics.
#[derive(Debug, Parser)]
#[command(name = "fleetmq", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline: broker, archive, dashboard and a simulated fleet, then a summary.
    Demo(Box<demo_cmd::DemoArgs>),
    /// Archive telemetry from any MQTT broker into Parquet (persistent session, QoS 1).
    Ingest(Box<ingest_cmd::IngestArgs>),
    /// Run the MQTT broker (3.1, 3.1.1 and 5.0), one shard per core.
    Broker(Box<broker_cmd::BrokerArgs>),
    /// Add a user or change a password in a mosquitto-format password file (or --delete).
    Passwd(passwd_cmd::PasswdArgs),
    /// Simulate a fleet of refrigerated vehicles publishing over MQTT (seeded, reproducible).
    Simulate(Box<simulate_cmd::SimulateArgs>),
    /// Generate MQTT load (fixed rate or flat out) and measure end-to-end latency.
    Loadgen(Box<loadgen_cmd::LoadgenArgs>),
    /// SQL over the archive (tables gps, reefer, rejects): table, CSV, JSON or Parquet output.
    Query(Box<query_cmd::QueryArgs>),
    /// Route and cold-chain reports: summary, trips, stops, distance, overspeed, geofence,
    /// excursions, mkt, doors; optional SVG chart.
    Report(Box<report_cmd::ReportArgs>),
}

fn main() {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Demo(args) => demo_cmd::run(*args),
        Command::Broker(args) => broker_cmd::run(*args),
        Command::Passwd(args) => passwd_cmd::run(args),
        Command::Ingest(args) => ingest_cmd::run(*args),
        Command::Simulate(args) => simulate_cmd::run(*args),
        Command::Loadgen(args) => loadgen_cmd::run(*args),
        Command::Query(args) => query_cmd::run(*args),
        Command::Report(args) => report_cmd::run(*args),
    };
    std::process::exit(exit::code(result));
}

/// Logs go to stderr; `RUST_LOG` picks what (default: info for fleetmq's crates).
fn init_tracing() {
    // glommio logs, at error level, that the file system does not support polled I/O for the
    // write-ahead log; it falls back by itself, so that line is noise to a user. rustls warns on
    // every handshake from clients (mosquitto_pub among them) that send an IP address as SNI.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,glommio::reactor=off,rustls::msgs::handshake=error",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
