//! `fleetmq report KIND`: the built-in route and cold-chain reports, with an optional chart.

use std::{path::PathBuf, time::Duration};

use analytics::{
    excursions::Band, geofence, output, report, Catalog, Filter, Format, ReportKind, ReportOptions,
};

use crate::{
    exit::UsageError,
    query_cmd::{classify, write_out},
};

/// Flags of `fleetmq report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// summary, trips, stops, distance, overspeed, geofence, excursions, mkt or doors.
    pub kind: String,
    /// The archive directory.
    #[arg(long, default_value = "fleet-data")]
    pub data: PathBuf,
    /// Only this vehicle.
    #[arg(long)]
    pub vehicle: Option<String>,
    /// From this time (inclusive): 2025-01-06T06:00:00Z, 2025-01-06 or epoch ms.
    #[arg(long)]
    pub from: Option<String>,
    /// Until this time (exclusive).
    #[arg(long)]
    pub to: Option<String>,
    /// Output format: table, csv or json.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Write the rows to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Draw a chart to FILE.svg or FILE.png: route map (trips, stops, distance) or
    /// temperature timeline (excursions, mkt).
    #[arg(long, value_name = "FILE.svg|FILE.png")]
    pub chart: Option<PathBuf>,
    /// Trips and stops: above this speed a vehicle is in motion, km/h.
    #[arg(long, default_value_t = 5.0)]
    pub moving_kmh: f64,
    /// Trips and stops: shortest stop (red lights and queues are shorter).
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub min_stop: Duration,
    /// Trips and stops: shortest trip, metres.
    #[arg(long, default_value_t = 200.0)]
    pub min_trip_m: f64,
    /// Trips and stops: shortest trip.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub min_trip: Duration,
    /// Distance: fixes implying more than this speed are teleports, km/h.
    #[arg(long, default_value_t = 250.0)]
    pub max_kmh: f64,
    /// Distance: fixes in the centred smoothing window (1: none).
    #[arg(long, default_value_t = 5)]
    pub smooth: usize,
    /// Excursions and summary: the band LOW,HIGH in °C (default: 2,8 for chilled setpoints,
    /// -30,-15 for frozen).
    #[arg(long, value_name = "LOW,HIGH", allow_hyphen_values = true)]
    pub band: Option<String>,
    /// Overspeed: the limit, km/h.
    #[arg(long, default_value_t = 90.0)]
    pub limit_kmh: f64,
    /// Overspeed: shortest event.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub min_overspeed: Duration,
    /// Geofence: polygons (GeoJSON FeatureCollection, Feature or geometry).
    #[arg(long, value_name = "FILE.geojson")]
    pub fences: Option<PathBuf>,
    /// MKT: one value per window of this length (e.g. 1h, 1day) instead of the whole range.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub window: Option<Duration>,
}

impl ReportArgs {
    /// The validated report configuration.
    fn options(&self) -> anyhow::Result<(ReportKind, Format, ReportOptions)> {
        let kind: ReportKind = self.kind.parse().map_err(UsageError)?;
        let format: Format = self.format.parse().map_err(UsageError)?;
        if format == Format::Parquet {
            return Err(UsageError("reports print table, csv or json".into()).into());
        }
        if let Some(chart) = &self.chart {
            if !kind.has_chart() {
                return Err(UsageError(format!(
                    "--chart: report {} has no chart (trips, stops, distance, excursions and mkt do)",
                    self.kind
                ))
                .into());
            }
            if !matches!(extension(chart).as_deref(), Some("svg" | "png")) {
                return Err(UsageError(format!(
                    "--chart {}: the file name must end in .svg or .png",
                    chart.display()
                ))
                .into());
            }
        }
        let filter = Filter::new(
            self.vehicle.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
        )
        .map_err(classify)?;
        let band = self
            .band
            .as_deref()
            .map(Band::parse)
            .transpose()
            .map_err(UsageError)?;
        let fences = match &self.fences {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| UsageError(format!("--fences {}: {e}", path.display())))?;
                geofence::parse(&text)
                    .map_err(|e| UsageError(format!("--fences {}: {e}", path.display())))?
            }
            None => Vec::new(),
        };
        for (name, value) in [
            ("--moving-kmh", self.moving_kmh),
            ("--min-trip-m", self.min_trip_m),
            ("--max-kmh", self.max_kmh),
            ("--limit-kmh", self.limit_kmh),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(UsageError(format!("{name} must be a number of at least 0")).into());
            }
        }
        let rules =
            telemetry::coldchain::ColdChainRules::of_archive(&self.data).map_err(UsageError)?;
        let mut opts = ReportOptions {
            filter,
            band,
            rules,
            limit_kmh: self.limit_kmh,
            min_overspeed_s: self.min_overspeed.as_secs_f64(),
            fences,
            window_ms: self.window.map(|w| w.as_millis() as i64),
            ..ReportOptions::default()
        };
        opts.trips.speed_kmh = self.moving_kmh;
        opts.trips.min_stop_s = self.min_stop.as_secs_f64();
        opts.trips.min_trip_m = self.min_trip_m;
        opts.trips.min_trip_s = self.min_trip.as_secs_f64();
        opts.distance.max_speed_kmh = self.max_kmh;
        opts.distance.window = self.smooth.max(1);
        Ok((kind, format, opts))
    }
}

fn extension(path: &std::path::Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// Runs the report.
pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let (kind, format, opts) = args.options()?;
    let catalog = Catalog::open(&args.data).map_err(classify)?;
    let report = report::run(&catalog, kind, &opts, args.chart.is_some()).map_err(classify)?;
    if let (Some(path), Some(svg)) = (&args.chart, &report.svg) {
        let bytes = if extension(path).as_deref() == Some("png") {
            // Twice the SVG's size: sharp on high-density screens and in printed reports.
            analytics::chart::png::render(svg, 2.0).map_err(classify)?
        } else {
            svg.clone().into_bytes()
        };
        std::fs::write(path, bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    let (schema, batch) = report.rows.to_batch().map_err(classify)?;
    write_out(args.output.as_ref(), |out| {
        output::write(format, &schema, &[batch], out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ReportArgs,
    }

    fn options(argv: &[&str]) -> anyhow::Result<(ReportKind, Format, ReportOptions)> {
        let cli = Cli::try_parse_from(std::iter::once("report").chain(argv.iter().copied()))?;
        cli.args.options()
    }

    fn usage(argv: &[&str]) -> String {
        let err = options(argv).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
        err.to_string()
    }

    #[test]
    fn flags_become_the_report_configuration() {
        let (kind, format, opts) = options(&[
            "trips",
            "--vehicle",
            "truck-7",
            "--from",
            "2025-01-06",
            "--format",
            "json",
            "--min-stop",
            "5m",
            "--min-trip-m",
            "500",
            "--band=-25,-15",
            "--window",
            "1h",
            "--chart",
            "map.svg",
        ])
        .unwrap();
        assert_eq!((kind, format), (ReportKind::Trips, Format::Json));
        assert_eq!(opts.filter.vehicle.as_deref(), Some("truck-7"));
        assert_eq!(opts.filter.from_ms, Some(1_736_121_600_000));
        assert_eq!(
            (opts.trips.min_stop_s, opts.trips.min_trip_m),
            (300.0, 500.0)
        );
        assert_eq!(opts.band.map(|b| (b.low_c, b.high_c)), Some((-25.0, -15.0)));
        assert_eq!(opts.window_ms, Some(3_600_000));
    }

    #[test]
    fn bad_flags_are_usage_errors_naming_the_flag() {
        assert!(usage(&["speeding"]).contains("unknown report `speeding`"));
        assert!(usage(&["excursions", "--band", "8,2"]).contains("--band"));
        assert!(usage(&["summary", "--chart", "x.svg"]).contains("has no chart"));
        assert!(usage(&["trips", "--chart", "x.jpg"]).contains(".svg or .png"));
        assert!(usage(&["trips", "--format", "parquet"]).contains("table, csv or json"));
        assert!(usage(&["trips", "--from", "soon"]).contains("--from soon"));
        assert!(usage(&["trips", "--vehicle", "a b"]).contains("--vehicle"));
        assert!(usage(&["geofence", "--fences", "/nonexistent.geojson"]).contains("--fences"));
    }
}
