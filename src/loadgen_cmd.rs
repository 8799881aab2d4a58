//! `fleetmq loadgen`: publishers at a fixed aggregate rate (or flat out) and subscribers that
//! measure end-to-end latency; a report every second and at the end. With `--idle N` it holds
//! N idle connections instead, to measure what they cost the broker. `--json` ends with one
//! machine-readable line, for the side-by-side harness (benches/side_by_side.py).

use std::{
    io::IsTerminal,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use simulator::loadgen::{self, LoadConfig, LoadStats, Pattern};

use crate::exit::UsageError;
use crate::mqtt_args::MqttArgs;

/// Flags of `fleetmq loadgen`.
#[derive(Debug, Args)]
pub struct LoadgenArgs {
    #[command(flatten)]
    mqtt: MqttArgs,
    /// Publishing connections.
    #[arg(long, default_value_t = 10, value_name = "N")]
    publishers: usize,
    /// Subscribing connections (each receives every message).
    #[arg(long, default_value_t = 1, value_name = "N")]
    subscribers: usize,
    /// Aggregate messages per second, or `max` for as fast as the broker takes them.
    #[arg(long, default_value = "10000", value_name = "PER_S|max")]
    rate: String,
    /// Payload size in bytes (at least 32).
    #[arg(long, default_value_t = 128, value_name = "BYTES")]
    payload_size: usize,
    /// How long to publish (or, with --idle, to hold the connections), e.g. 30s.
    #[arg(long, default_value = "10s", value_name = "DUR")]
    duration: String,
    /// Topics are PREFIX/{publisher}.
    #[arg(long, default_value = "fleetmq-load", value_name = "PREFIX")]
    topic_prefix: String,
    /// `shared`: every subscriber takes PREFIX/# (fan-in, fan-out); `pairs`: subscriber i takes
    /// publisher i's topic alone (one-to-one).
    #[arg(long, default_value = "shared", value_name = "shared|pairs")]
    pattern: String,
    /// Instead of a load, open N connections that stay idle for --duration once all are up.
    #[arg(long, value_name = "N", conflicts_with_all = ["rate", "subscribers", "publishers"])]
    idle: Option<usize>,
    /// End with one JSON line of results on stdout (per-second reports still go to stderr).
    #[arg(long)]
    json: bool,
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

fn config(args: &LoadgenArgs) -> anyhow::Result<LoadConfig> {
    let duration = humantime::parse_duration(&args.duration)
        .map_err(|e| usage(format!("--duration `{}`: {e}", args.duration)))?;
    let rate = match args.rate.as_str() {
        "max" => None,
        r => Some(
            r.parse::<f64>()
                .ok()
                .filter(|r| *r > 0.0 && r.is_finite())
                .ok_or_else(|| usage(format!("--rate `{r}`: a positive number or `max`")))?,
        ),
    };
    if args.publishers == 0 {
        return Err(usage("--publishers must be at least 1"));
    }
    if args.payload_size < 32 || args.payload_size > 1 << 20 {
        return Err(usage("--payload-size must be between 32 and 1048576 bytes"));
    }
    let pattern = match args.pattern.as_str() {
        "shared" => Pattern::Shared,
        "pairs" => Pattern::Pairs,
        other => return Err(usage(format!("--pattern `{other}`: use shared or pairs"))),
    };
    protocol::validate_topic_name(&args.topic_prefix)
        .map_err(|e| usage(format!("--topic-prefix: {e}")))?;
    Ok(LoadConfig {
        client: args.mqtt.client_options()?,
        publishers: args.publishers,
        subscribers: args.subscribers,
        rate,
        payload_size: args.payload_size,
        qos: args.mqtt.qos()?,
        duration,
        threads: args.mqtt.threads()?,
        topic_prefix: args.topic_prefix.clone(),
        pattern,
    })
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn latency(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "latency -".into();
    }
    format!(
        "latency ms p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    )
}

/// Counter values at one moment.
#[derive(Clone, Copy, Default)]
struct Snapshot {
    sent: u64,
    acked: u64,
    received: u64,
    dropped: u64,
}

impl Snapshot {
    fn take(stats: &LoadStats) -> Snapshot {
        Snapshot {
            sent: stats.sent.load(Ordering::Relaxed),
            acked: stats.acked.load(Ordering::Relaxed),
            received: stats.received.load(Ordering::Relaxed),
            dropped: stats.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Runs the load (or holds idle connections) and reports.
pub fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    if let Some(connections) = args.idle {
        return run_idle(&args, connections);
    }
    let config = config(&args)?;
    let json = args.json;
    let qos = config.qos;
    eprintln!(
        "fleetmq loadgen: {} publishers, {} subscribers -> {} (QoS {}), rate {}, {} B payloads, {:?}",
        config.publishers,
        config.subscribers,
        config.client.url,
        qos as u8,
        config.rate.map_or("max".to_owned(), |r| format!("{r}/s")),
        config.payload_size,
        config.duration
    );
    let total = config.duration;
    let handle = loadgen::start(config).context("starting the load")?;
    let stats = handle.stats.clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reporter = {
        let done = done.clone();
        std::thread::spawn(move || report_loop(&stats, &done, total, json))
    };
    let result = handle.join();
    done.store(true, Ordering::Relaxed);
    let _ = reporter.join();
    result.context("running the load")
}

fn report_loop(
    stats: &LoadStats,
    done: &std::sync::atomic::AtomicBool,
    total: Duration,
    json: bool,
) {
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = Instant::now();
    let mut prev = Snapshot::default();
    let mut prev_at = Instant::now();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1000));
        let now = Snapshot::take(stats);
        let dt = prev_at.elapsed().as_secs_f64().max(1e-9);
        let line = format!(
            "{:>6.1}s sent {:.0}/s acked {:.0}/s received {:.0}/s dropped {} {}",
            started.elapsed().as_secs_f64(),
            (now.sent - prev.sent) as f64 / dt,
            (now.acked - prev.acked) as f64 / dt,
            (now.received - prev.received) as f64 / dt,
            now.dropped - prev.dropped,
            latency(&stats.take_interval()),
        );
        match &bar {
            Some(bar) => {
                bar.set_position(started.elapsed().as_millis() as u64);
                bar.println(&line);
            }
            None => eprintln!("{line}"),
        }
        prev = now;
        prev_at = Instant::now();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let end = Snapshot::take(stats);
    let secs = total.as_secs_f64().max(1e-9);
    if json {
        let h = stats.total();
        let quantile = |q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q));
        let line = serde_json::json!({
            "sent": end.sent,
            "acked": end.acked,
            "received": end.received,
            "dropped": end.dropped,
            "failures": stats.failures.load(Ordering::Relaxed),
            "publish_seconds": secs,
            "delivery_seconds": stats
                .last_receive_us
                .load(Ordering::Relaxed)
                .checked_sub(stats.publish_start_us.load(Ordering::Relaxed))
                .map(|us| us as f64 / 1e6),
            "latency_us": {
                "p50": quantile(0.5),
                "p99": quantile(0.99),
                "p999": quantile(0.999),
                "max": (!h.is_empty()).then(|| h.max()),
            },
        });
        println!("{line}");
        return;
    }
    println!(
        "sent {} ({:.0}/s) acked {} received {} dropped {} failures {}",
        end.sent,
        end.sent as f64 / secs,
        end.acked,
        end.received,
        end.dropped,
        stats.failures.load(Ordering::Relaxed)
    );
    println!("{}", latency(&stats.total()));
}

/// `--idle N`: connects, reports when all are up, holds them for --duration, closes them.
fn run_idle(args: &LoadgenArgs, connections: usize) -> anyhow::Result<()> {
    let hold = humantime::parse_duration(&args.duration)
        .map_err(|e| usage(format!("--duration `{}`: {e}", args.duration)))?;
    if connections == 0 {
        return Err(usage("--idle must be at least 1"));
    }
    let mut client = args.mqtt.client_options()?;
    // Idle in every sense: not even a PINGREQ while they are held.
    let hold_s = u16::try_from(hold.as_secs().saturating_add(60)).unwrap_or(u16::MAX);
    client.keep_alive_s = client.keep_alive_s.max(hold_s);
    eprintln!(
        "fleetmq loadgen: {connections} idle connections -> {}, held {hold:?}",
        client.url
    );
    let started = Instant::now();
    let handle = loadgen::hold_idle(client, connections, hold, args.mqtt.threads()?)
        .context("opening the connections")?;
    while !handle.all_connected() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let connected = handle.stats.connected.load(Ordering::Relaxed);
    let failures = handle.stats.failures.load(Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let line = serde_json::json!({
            "event": "connected",
            "connected": connected,
            "failures": failures,
            "seconds": seconds,
        });
        println!("{line}");
    } else {
        println!("connected {connected} ({failures} failed) in {seconds:.1}s; holding {hold:?}");
    }
    // The harness reads the line above while we hold: it must not sit in a pipe buffer.
    std::io::Write::flush(&mut std::io::stdout()).context("writing to stdout")?;
    handle.join().context("holding the connections")?;
    if args.json {
        println!("{}", serde_json::json!({ "event": "closed" }));
    }
    Ok(())
}
