//! The reports end to end (archive, filters, rows, charts) on a simulated fleet, checked against
//! its ground truth where the truth says what the answer must be.

#![allow(clippy::unwrap_used)]

use crate::common;

use analytics::{
    filter::rfc3339,
    geofence, output,
    report::{self, ReportKind, ReportOptions},
    rows::Value,
    Catalog, Filter, Format,
};

fn setup() -> (tempfile::TempDir, simulator::Truth, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let truth = common::archive_fleet(common::hard_fleet(4, 5), 3 * 3600, dir.path());
    let catalog = Catalog::open(dir.path()).unwrap();
    (dir, truth, catalog)
}

fn json(report: &report::Report) -> Vec<serde_json::Value> {
    let (schema, batch) = report.rows.to_batch().unwrap();
    let mut out = Vec::new();
    output::write(Format::Json, &schema, &[batch], &mut out).unwrap();
    serde_json::from_slice::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn summary_of_one_vehicle_matches_its_truth() {
    let (_dir, truth, catalog) = setup();
    let v = &truth.vehicles[1];
    let opts = ReportOptions {
        filter: Filter::new(Some(&v.vehicle_id), None, None).unwrap(),
        ..ReportOptions::default()
    };
    let rows = json(&report::run(&catalog, ReportKind::Summary, &opts, false).unwrap());
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["vehicle_id"], v.vehicle_id.as_str());
    let d = row["distance_m"].as_f64().unwrap();
    assert!(
        (d - v.distance_m).abs() / v.distance_m < 0.01,
        "{d} vs {}",
        v.distance_m
    );
    assert_eq!(row["trips"].as_u64().unwrap() as usize, v.trips.len());
    assert_eq!(row["stops"].as_u64().unwrap() as usize, v.stops.len());
    assert_eq!(
        row["excursions"].as_u64().unwrap() as usize,
        v.excursions.len()
    );
    let truth_excursion_s: i64 = v.excursions.iter().map(|e| (e.end - e.start) / 1000).sum();
    let excursion_s = row["excursion_s"].as_i64().unwrap();
    assert!(
        (excursion_s - truth_excursion_s).abs() <= 30,
        "{excursion_s} vs {truth_excursion_s}"
    );
    let total = ["driving_s", "idle_s", "stopped_s"]
        .iter()
        .map(|k| row[*k].as_i64().unwrap())
        .sum::<i64>();
    assert!(
        (total - 3 * 3600).abs() <= 2,
        "time adds up to the run: {total}"
    );
}

#[test]
fn time_filter_keeps_only_the_window() {
    let (_dir, truth, catalog) = setup();
    let from = truth.start + 3_600_000;
    let to = truth.start + 2 * 3_600_000;
    let opts = ReportOptions {
        filter: Filter::new(None, Some(&rfc3339(from)), Some(&rfc3339(to))).unwrap(),
        ..ReportOptions::default()
    };
    let report = report::run(&catalog, ReportKind::Distance, &opts, false).unwrap();
    let start = report.rows.column("start").unwrap();
    let end = report.rows.column("end").unwrap();
    assert_eq!(report.rows.len(), 4);
    for row in report.rows.rows() {
        let (Value::Time(s), Value::Time(e)) = (&row[start], &row[end]) else {
            panic!()
        };
        assert!(*s >= from && *e < to, "{s}..{e} outside {from}..{to}");
    }
}

/// 5 s, plus the length of a GPS dropout around `t` (no fix, no entry to see).
fn tolerance(t: i64, v: &simulator::truth::VehicleTruth) -> i64 {
    let dropouts: i64 = v
        .gps_dropouts
        .iter()
        .filter(|d| d.start - 5_000 <= t && t <= d.end + 5_000)
        .map(|d| d.end - d.start)
        .sum();
    5_000 + dropouts
}

#[test]
fn geofences_around_places_cover_every_stop_there() {
    let (dir, truth, catalog) = setup();
    // A 100 m square around every place, as GeoJSON.
    let features: Vec<serde_json::Value> = truth
        .places
        .iter()
        .map(|p| {
            let (dlat, dlon) = (
                50.0 / 111_200.0,
                50.0 / (111_200.0 * p.lat.to_radians().cos()),
            );
            let ring = [
                (-1.0, -1.0),
                (1.0, -1.0),
                (1.0, 1.0),
                (-1.0, 1.0),
                (-1.0, -1.0),
            ]
            .map(|(a, b)| [p.lon + a * dlon, p.lat + b * dlat]);
            serde_json::json!({"type": "Feature", "properties": {"name": p.name},
                "geometry": {"type": "Polygon", "coordinates": [ring]}})
        })
        .collect();
    let doc = serde_json::json!({"type": "FeatureCollection", "features": features}).to_string();
    std::fs::write(dir.path().join("places.geojson"), &doc).unwrap();
    let opts = ReportOptions {
        fences: geofence::parse(&doc).unwrap(),
        ..ReportOptions::default()
    };
    let rows = json(&report::run(&catalog, ReportKind::Geofence, &opts, false).unwrap());
    let ms = |v: &serde_json::Value| -> Option<i64> {
        v.as_str()
            .map(|s| analytics::filter::parse_time("t", s).unwrap())
    };
    let mut checked = 0;
    for v in &truth.vehicles {
        for stop in &v.stops {
            let covered = rows.iter().any(|r| {
                r["vehicle_id"] == v.vehicle_id.as_str()
                    && r["fence"] == stop.place.as_str()
                    && ms(&r["enter"]).is_none_or(|t| t <= stop.start + tolerance(stop.start, v))
                    && ms(&r["exit"]).is_none_or(|t| t >= stop.end - tolerance(stop.end, v))
            });
            let near: Vec<_> = rows
                .iter()
                .filter(|r| {
                    r["vehicle_id"] == v.vehicle_id.as_str() && r["fence"] == stop.place.as_str()
                })
                .collect();
            let place = truth.places.iter().find(|p| p.name == stop.place);
            assert!(
                covered,
                "{}: stop {stop:?} has no visit: {near:?} {place:?}",
                v.vehicle_id
            );
            checked += 1;
        }
    }
    assert!(checked >= 10);
    assert!(report::run(
        &catalog,
        ReportKind::Geofence,
        &ReportOptions::default(),
        false
    )
    .unwrap_err()
    .is_usage());
}

#[test]
fn cold_chain_reports_and_charts() {
    let (_dir, truth, catalog) = setup();
    let opts = ReportOptions::default();
    let excursions = report::run(&catalog, ReportKind::Excursions, &opts, true).unwrap();
    let total: usize = truth.vehicles.iter().map(|v| v.excursions.len()).sum();
    assert_eq!(excursions.rows.len(), total);
    assert!(total >= 2);
    let rows = json(&excursions);
    assert!(rows[0]["duration_s"].as_i64().unwrap() > 600);
    assert!(
        rows[0]["during"].as_str().unwrap().starts_with("trip")
            || rows[0]["during"].as_str().unwrap().starts_with("stop")
    );
    let svg = excursions.svg.unwrap();
    for label in ["time (UTC)", "temperature (°C)", "excursion", "band limits"] {
        assert!(svg.contains(label), "chart lacks {label}");
    }
    // MKT per hour: one row per vehicle and hour; a vehicle with an excursion has an hour
    // whose MKT is above its band.
    let hourly = ReportOptions {
        window_ms: Some(3_600_000),
        ..ReportOptions::default()
    };
    let mkt = json(&report::run(&catalog, ReportKind::Mkt, &hourly, false).unwrap());
    assert_eq!(mkt.len(), 4 * 3);
    let v0 = &truth.vehicles[0];
    assert!(mkt.iter().any(|r| r["vehicle_id"] == v0.vehicle_id.as_str()
        && r["mkt_c"].as_f64().unwrap() > v0.band_max_c));
    // Door openings: the truth's, one-to-one, within a reading interval.
    let doors = json(&report::run(&catalog, ReportKind::Doors, &opts, false).unwrap());
    let truth_doors: usize = truth.vehicles.iter().map(|v| v.door_openings.len()).sum();
    assert_eq!(doors.len(), truth_doors);
    for v in &truth.vehicles {
        let found: Vec<_> = doors
            .iter()
            .filter(|r| r["vehicle_id"] == v.vehicle_id.as_str())
            .collect();
        for (r, d) in found.iter().zip(&v.door_openings) {
            let start = analytics::filter::parse_time("t", r["start"].as_str().unwrap()).unwrap();
            assert!((start - d.start).abs() <= 30_000, "{r} vs {d:?}");
        }
    }
}

#[test]
fn route_map_and_overspeed() {
    let (_dir, _truth, catalog) = setup();
    let trips = report::run(&catalog, ReportKind::Trips, &ReportOptions::default(), true).unwrap();
    let svg = trips.svg.unwrap();
    for label in [
        "longitude (° E)",
        "latitude (° N)",
        "truck-00000",
        "stop (numbered in order)",
        " km<",
        "<polyline",
    ] {
        assert!(svg.contains(label), "route map lacks {label}");
    }
    // Overspeed at a limit below the city's fastest roads finds events; above all speeds, none.
    let low = ReportOptions {
        limit_kmh: 60.0,
        ..ReportOptions::default()
    };
    let high = ReportOptions {
        limit_kmh: 200.0,
        ..ReportOptions::default()
    };
    assert!(!report::run(&catalog, ReportKind::Overspeed, &low, false)
        .unwrap()
        .rows
        .is_empty());
    assert!(report::run(&catalog, ReportKind::Overspeed, &high, false)
        .unwrap()
        .rows
        .is_empty());
}
