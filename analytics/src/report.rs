//! The built-in reports: from the archive, through the algorithms, to rows (and charts).
//!
//! Every report reads only what its filter selects (see [`crate::filter`]), pruned by
//! partition and statistics, and holds the selected samples in memory (about 40 bytes per GPS
//! fix: a day of 1 Hz fixes for a thousand vehicles is ~3.5 GB), so on large archives narrow
//! the report with `--vehicle`, `--from` and `--to`.

use std::str::FromStr;

use crate::{
    catalog::Catalog,
    chart,
    distance::DistanceParams,
    doors,
    excursions::{self, Band},
    geofence::{self, Fence},
    load::{self, Fix, PerVehicle, Sample},
    mkt, overspeed,
    rows::{Kind as K, Rows, Value as V},
    summary,
    trips::{segment, Kind, Segment, TripParams},
    AnalyticsError, Filter,
};

/// A report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Per vehicle: distance, driving/idle/stopped time, trips, stops, max speed, excursions.
    Summary,
    /// Trips with boundaries, distance and speeds.
    Trips,
    /// Stops with boundaries and place.
    Stops,
    /// Distance per vehicle.
    Distance,
    /// Speeding events.
    Overspeed,
    /// Geofence entries, exits and dwell.
    Geofence,
    /// Temperature excursions.
    Excursions,
    /// Mean kinetic temperature per vehicle (and window).
    Mkt,
    /// Door openings and their temperature impact.
    Doors,
}

impl FromStr for ReportKind {
    type Err = String;

    fn from_str(s: &str) -> Result<ReportKind, String> {
        Ok(match s {
            "summary" => ReportKind::Summary,
            "trips" => ReportKind::Trips,
            "stops" => ReportKind::Stops,
            "distance" => ReportKind::Distance,
            "overspeed" => ReportKind::Overspeed,
            "geofence" => ReportKind::Geofence,
            "excursions" => ReportKind::Excursions,
            "mkt" => ReportKind::Mkt,
            "doors" => ReportKind::Doors,
            other => {
                return Err(format!(
                    "unknown report `{other}` (expected summary, trips, stops, distance, \
                     overspeed, geofence, excursions, mkt or doors)"
                ))
            }
        })
    }
}

impl ReportKind {
    /// True when the report has a chart (`--chart`).
    pub fn has_chart(self) -> bool {
        matches!(
            self,
            ReportKind::Trips
                | ReportKind::Stops
                | ReportKind::Distance
                | ReportKind::Excursions
                | ReportKind::Mkt
        )
    }
}

/// Everything a report can be tuned with.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Vehicle and time range.
    pub filter: Filter,
    /// Trip and stop thresholds.
    pub trips: TripParams,
    /// Distance filtering.
    pub distance: DistanceParams,
    /// Band overriding the one the rules give the setpoint.
    pub band: Option<Band>,
    /// The cold-chain rules (the archive's `coldchain.json`, see
    /// [`telemetry::coldchain::ColdChainRules::of_archive`]).
    pub rules: telemetry::coldchain::ColdChainRules,
    /// Speed limit for `overspeed`, km/h.
    pub limit_kmh: f64,
    /// Shortest speeding event, seconds.
    pub min_overspeed_s: f64,
    /// Fences for `geofence`.
    pub fences: Vec<Fence>,
    /// MKT per window of this length (aligned to the epoch, so to UTC days and hours), ms;
    /// `None`: one value over the whole range.
    pub window_ms: Option<i64>,
}

impl Default for ReportOptions {
    fn default() -> ReportOptions {
        ReportOptions {
            filter: Filter::default(),
            trips: TripParams::default(),
            distance: DistanceParams::default(),
            band: None,
            rules: telemetry::coldchain::ColdChainRules::default(),
            limit_kmh: 90.0,
            min_overspeed_s: 10.0,
            fences: Vec::new(),
            window_ms: None,
        }
    }
}

impl ReportOptions {
    /// The band a vehicle's readings are judged by: `--band` if given, else the rules' band for
    /// its first reading's setpoint; `None` without readings.
    fn band_of(&self, samples: &[Sample]) -> Option<Band> {
        self.band.or_else(|| {
            let first = samples.first()?;
            Some(self.rules.band_for(first.setpoint_c).into())
        })
    }
}

/// A report's result.
#[derive(Debug, Clone)]
pub struct Report {
    /// The rows.
    pub rows: Rows,
    /// The chart as SVG, when asked for and the report has one.
    pub svg: Option<String>,
}

/// Runs report `kind`; draws its chart when `chart` is true.
///
/// # Errors
/// The archive cannot be queried, or an option is unusable for this report.
pub fn run(
    catalog: &Catalog,
    kind: ReportKind,
    opts: &ReportOptions,
    chart: bool,
) -> Result<Report, AnalyticsError> {
    let f = &opts.filter;
    let (rows, svg) = match kind {
        ReportKind::Summary => (
            summary_rows(&tracks(catalog, opts)?, &load::series(catalog, f)?, opts),
            None,
        ),
        ReportKind::Trips | ReportKind::Stops | ReportKind::Distance => {
            let tracks = tracks(catalog, opts)?;
            let segmented: Vec<(&PerVehicle<Fix>, Vec<Segment>)> = tracks
                .iter()
                .map(|t| (t, segment(&t.samples, &opts.trips, &opts.distance)))
                .collect();
            let rows = match kind {
                ReportKind::Trips => trip_rows(&segmented),
                ReportKind::Stops => stop_rows(&segmented),
                _ => distance_rows(&segmented),
            };
            let svg = chart.then(|| chart::route_map(&segmented));
            (rows, svg)
        }
        ReportKind::Overspeed => (overspeed_rows(&tracks(catalog, opts)?, opts), None),
        ReportKind::Geofence => {
            if opts.fences.is_empty() {
                return Err(AnalyticsError::Invalid(
                    "report geofence needs --fences FILE.geojson".into(),
                ));
            }
            (geofence_rows(&tracks(catalog, opts)?, &opts.fences), None)
        }
        ReportKind::Excursions | ReportKind::Mkt => {
            let series = load::series(catalog, f)?;
            let found: Vec<(&PerVehicle<Sample>, Band, Vec<excursions::Excursion>)> = series
                .iter()
                .filter_map(|s| {
                    let band = opts.band_of(&s.samples)?;
                    Some((s, band, excursions::find(&s.samples, band)))
                })
                .collect();
            let rows = if kind == ReportKind::Excursions {
                let tracks = tracks(catalog, opts)?;
                excursion_rows(&found, &tracks, opts)
            } else {
                mkt_rows(&series, opts.window_ms)
            };
            (rows, chart.then(|| chart::timeline(&found)))
        }
        ReportKind::Doors => (door_rows(&load::series(catalog, f)?), None),
    };
    Ok(Report { rows, svg })
}

/// The selected GPS tracks with teleports dropped ([`crate::distance::drop_teleports`]), so that
/// a multipath jump neither splits a stop or a geofence visit nor spikes the route map.
fn tracks(catalog: &Catalog, opts: &ReportOptions) -> Result<Vec<PerVehicle<Fix>>, AnalyticsError> {
    let mut tracks = load::tracks(catalog, &opts.filter)?;
    for t in &mut tracks {
        t.samples = crate::distance::drop_teleports(&t.samples, &opts.distance);
    }
    Ok(tracks)
}

fn summary_rows(
    tracks: &[PerVehicle<Fix>],
    series: &[PerVehicle<Sample>],
    opts: &ReportOptions,
) -> Rows {
    let mut rows = Rows::new(&[
        ("vehicle_id", K::Str),
        ("distance_m", K::Float),
        ("driving_s", K::Int),
        ("idle_s", K::Int),
        ("stopped_s", K::Int),
        ("trips", K::Int),
        ("stops", K::Int),
        ("max_speed_kmh", K::Float),
        ("excursions", K::Int),
        ("excursion_s", K::Int),
    ]);
    let mut ids: Vec<&str> = tracks
        .iter()
        .map(|t| t.vehicle_id.as_str())
        .chain(series.iter().map(|s| s.vehicle_id.as_str()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let fixes = tracks
            .iter()
            .find(|t| t.vehicle_id == id)
            .map_or(&[][..], |t| &t.samples);
        let samples = series
            .iter()
            .find(|s| s.vehicle_id == id)
            .map_or(&[][..], |s| &s.samples);
        let s = summary::summarise(
            fixes,
            samples,
            opts.band_of(samples),
            &opts.trips,
            &opts.distance,
        );
        rows.push(vec![
            V::Str(id.to_owned()),
            V::round(s.distance_m, 1),
            V::secs(s.driving_ms),
            V::secs(s.idle_ms),
            V::secs(s.stopped_ms),
            V::Int(s.trips as i64),
            V::Int(s.stops as i64),
            V::round(s.max_speed_kmh, 1),
            V::Int(s.excursions as i64),
            V::secs(s.excursion_ms),
        ]);
    }
    rows
}

fn trip_rows(segmented: &[(&PerVehicle<Fix>, Vec<Segment>)]) -> Rows {
    let mut rows = Rows::new(&[
        ("vehicle_id", K::Str),
        ("trip", K::Int),
        ("start", K::Time),
        ("end", K::Time),
        ("duration_s", K::Int),
        ("distance_m", K::Float),
        ("max_speed_kmh", K::Float),
        ("avg_speed_kmh", K::Float),
        ("start_lat", K::Float),
        ("start_lon", K::Float),
        ("end_lat", K::Float),
        ("end_lon", K::Float),
    ]);
    for (track, segments) in segmented {
        let trips = segments.iter().filter(|s| s.kind == Kind::Trip);
        for (i, s) in trips.enumerate() {
            let hours = s.duration_ms() as f64 / 3_600_000.0;
            rows.push(vec![
                V::Str(track.vehicle_id.clone()),
                V::Int(i as i64 + 1),
                V::Time(s.start),
                V::Time(s.end),
                V::secs(s.duration_ms()),
                V::round(s.distance_m, 1),
                V::round(s.max_speed_kmh, 1),
                if hours > 0.0 {
                    V::round(s.distance_m / 1000.0 / hours, 1)
                } else {
                    V::Null
                },
                V::round(s.from.0, 6),
                V::round(s.from.1, 6),
                V::round(s.to.0, 6),
                V::round(s.to.1, 6),
            ]);
        }
    }
    rows
}

fn stop_rows(segmented: &[(&PerVehicle<Fix>, Vec<Segment>)]) -> Rows {
    let mut rows = Rows::new(&[
        ("vehicle_id", K::Str),
        ("stop", K::Int),
        ("start", K::Time),
        ("end", K::Time),
        ("duration_s", K::Int),
        ("lat", K::Float),
        ("lon", K::Float),
    ]);
    for (track, segments) in segmented {
        let stops = segments.iter().filter(|s| s.kind == Kind::Stop);
        for (i, s) in stops.enumerate() {
            rows.push(vec![
                V::Str(track.vehicle_id.clone()),
                V::Int(i as i64 + 1),
                V::Time(s.start),
                V::Time(s.end),
                V::secs(s.duration_ms()),
                V::round(s.from.0, 6),
                V::round(s.from.1, 6),
            ]);
        }
    }
    rows
}

/// Distance per vehicle: the sum of its trips' (the same figure as the summary's; stops add
/// nothing, and each fix is measured once).
fn distance_rows(segmented: &[(&PerVehicle<Fix>, Vec<Segment>)]) -> Rows {
    let mut rows = Rows::new(&[
        ("vehicle_id", K::Str),
        ("start", K::Time),
        ("end", K::Time),
        ("fixes", K::Int),
        ("distance_m", K::Float),
        ("max_speed_kmh", K::Float),
    ]);
    for (t, segments) in segmented {
        let (Some(first), Some(last)) = (t.samples.first(), t.samples.last()) else {
            continue;
        };
        rows.push(vec![
            V::Str(t.vehicle_id.clone()),
            V::Time(first.ts),
            V::Time(last.ts),
            V::Int(t.samples.len() as i64),
            V::round(segments.iter().map(|s| s.distance_m).sum(), 1),
            V::round(t.samples.iter().map(|f| f.speed_kmh).fold(0.0, f64::max), 1),
        ]);
    }
    rows
}

fn overspeed_rows(tracks: &[PerVehicle<Fix>], opts: &ReportOptions) -> Rows {
    let mut rows = Rows::new(&[
        ("vehicle_id", K::Str),
        ("start", K::Time),
        ("end", K::Time),
        ("duration_s", K::Int),
        ("max_speed_kmh", K::Float),
        ("limit_kmh", K::Float),
        ("lat", K::Float),
        ("lon", K::Float),
    ]);
    for t in tracks {
        for e in overspeed::find(&t.samples, opts.limit_kmh, opts.min_overspeed_s) {
            rows.push(vec![
                V::Str(t.vehicle_id.clone()),
                V::Time(e.start),
                V::Time(e.end),
                V::secs(e.end - e.start),
                V::round(e.max_speed_kmh, 1),
                V::round(opts.limit_kmh, 1),
                V::round(e.at.0, 6),
                V::round(e.at.1, 6),
            ]);
        }
    }
    rows
}

fn geofence_rows(tracks: &[PerVehicle<Fix>], fences: &[Fence]) -> Rows {
    let mut rows = Rows::new(&[
        ("vehicle_id", K::Str),
        ("fence", K::Str),
        ("enter", K::Time),
        ("exit", K::Time),
        ("dwell_s", K::Int),
    ]);
    for t in tracks {
        for v in geofence::visits(&t.samples, fences) {
            rows.push(vec![
                V::Str(t.vehicle_id.clone()),
                V::Str(v.fence),
                v.enter.map_or(V::Null, V::Time),
                v.exit.map_or(V::Null, V::Time),
                V::secs(v.dwell_ms),
            ]);
        }
    }
    rows
}

fn excursion_rows(
    found: &[(&PerVehicle<Sample>, Band, Vec<excursions::Excursion>)],
    tracks: &[PerVehicle<Fix>],
    opts: &ReportOptions,
) -> Rows {
    let mut rows = Rows::new(&[
        ("vehicle_id", K::Str),
        ("start", K::Time),
        ("end", K::Time),
        ("duration_s", K::Int),
        ("peak_c", K::Float),
        ("low_c", K::Float),
        ("high_c", K::Float),
        ("closed", K::Bool),
        ("during", K::Str),
    ]);
    for (series, band, list) in found {
        let segments = tracks
            .iter()
            .find(|t| t.vehicle_id == series.vehicle_id)
            .map(|t| segment(&t.samples, &opts.trips, &opts.distance))
            .unwrap_or_default();
        for e in list {
            rows.push(vec![
                V::Str(series.vehicle_id.clone()),
                V::Time(e.start),
                V::Time(e.end),
                V::secs(e.end - e.start),
                V::round(e.peak_c, 2),
                V::round(band.low_c, 2),
                V::round(band.high_c, 2),
                V::Bool(e.closed),
                during(&segments, e.start),
            ]);
        }
    }
    rows
}

/// `trip N` or `stop N` holding instant `ts`, so an excursion can be tied to a delivery.
fn during(segments: &[Segment], ts: i64) -> V {
    let (mut trips, mut stops) = (0, 0);
    for s in segments {
        match s.kind {
            Kind::Trip => trips += 1,
            Kind::Stop => stops += 1,
        }
        if s.start <= ts && ts <= s.end {
            return V::Str(match s.kind {
                Kind::Trip => format!("trip {trips}"),
                Kind::Stop => format!("stop {stops}"),
            });
        }
    }
    V::Null
}

fn mkt_rows(series: &[PerVehicle<Sample>], window_ms: Option<i64>) -> Rows {
    let mut rows = Rows::new(&[
        ("vehicle_id", K::Str),
        ("start", K::Time),
        ("end", K::Time),
        ("samples", K::Int),
        ("mkt_c", K::Float),
        ("mean_c", K::Float),
        ("min_c", K::Float),
        ("max_c", K::Float),
    ]);
    for s in series {
        let windows: Vec<&[Sample]> = match window_ms {
            Some(w) if w > 0 => s
                .samples
                .chunk_by(|a, b| a.ts.div_euclid(w) == b.ts.div_euclid(w))
                .collect(),
            _ => vec![&s.samples[..]],
        };
        for chunk in windows {
            let (Some(m), Some(first), Some(last)) = (mkt::mkt(chunk), chunk.first(), chunk.last())
            else {
                continue;
            };
            rows.push(vec![
                V::Str(s.vehicle_id.clone()),
                V::Time(first.ts),
                V::Time(last.ts),
                V::Int(m.samples as i64),
                V::round(m.mkt_c, 2),
                V::round(m.mean_c, 2),
                V::round(m.min_c, 2),
                V::round(m.max_c, 2),
            ]);
        }
    }
    rows
}

fn door_rows(series: &[PerVehicle<Sample>]) -> Rows {
    let mut rows = Rows::new(&[
        ("vehicle_id", K::Str),
        ("start", K::Time),
        ("end", K::Time),
        ("duration_s", K::Int),
        ("before_c", K::Float),
        ("peak_c", K::Float),
        ("rise_c", K::Float),
        ("recovery_s", K::Int),
    ]);
    for s in series {
        for o in doors::find(&s.samples) {
            rows.push(vec![
                V::Str(s.vehicle_id.clone()),
                V::Time(o.start),
                V::Time(o.end),
                V::secs(o.end - o.start),
                V::round(o.before_c, 2),
                V::round(o.peak_c, 2),
                V::round(o.peak_c - o.before_c, 2),
                o.recovery_ms.map_or(V::Null, V::secs),
            ]);
        }
    }
    rows
}
