//! The reports against the simulator's ground truth, on fleets with GPS noise, dropouts and
//! store-and-forward: distance within 1 % per vehicle, every trip and stop found with its
//! boundaries within tolerance and nothing else found, every excursion found and no false one.

#![allow(clippy::unwrap_used)]

use crate::common;

use analytics::{
    distance::{distance_m, DistanceParams},
    excursions::{self, Band},
    load,
    trips::{segment, Kind, TripParams},
    Catalog, Filter,
};
use simulator::truth::{Interval, VehicleTruth};

/// Boundary tolerance where the data is complete, ms: the speed threshold is crossed a second
/// or two after standstill.
const TOLERANCE_MS: i64 = 5_000;
/// Excursion boundary tolerance, ms: readings come every 30 s and the edge is interpolated.
const EXCURSION_TOLERANCE_MS: i64 = 15_000;

/// The tolerance at instant `t`: the base, plus any GPS dropout around it (the data cannot
/// place a boundary inside a dropout better than the dropout's length).
fn tolerance(t: i64, dropouts: &[Interval]) -> i64 {
    let covering: i64 = dropouts
        .iter()
        .filter(|d| d.start - TOLERANCE_MS <= t && t <= d.end + TOLERANCE_MS)
        .map(|d| d.end - d.start)
        .sum();
    TOLERANCE_MS + covering
}

struct Score {
    worst_distance_error: f64,
    /// Largest trip or stop boundary error where no dropout hides the boundary, ms.
    worst_boundary_ms: i64,
    trips: usize,
    stops: usize,
    excursions: usize,
}

fn check_fleet(seed: u64, vehicles: usize, hours: u64) -> Score {
    let dir = tempfile::tempdir().unwrap();
    let truth = common::archive_fleet(common::hard_fleet(vehicles, seed), hours * 3600, dir.path());
    let catalog = Catalog::open(dir.path()).unwrap();
    let tracks = load::tracks(&catalog, &Filter::default()).unwrap();
    let series = load::series(&catalog, &Filter::default()).unwrap();
    assert_eq!(tracks.len(), vehicles);
    let (tp, dp) = (TripParams::default(), DistanceParams::default());
    let mut score = Score {
        worst_distance_error: 0.0,
        worst_boundary_ms: 0,
        trips: 0,
        stops: 0,
        excursions: 0,
    };
    for (track, samples) in tracks.iter().zip(&series) {
        let t: &VehicleTruth = truth
            .vehicles
            .iter()
            .find(|v| v.vehicle_id == track.vehicle_id)
            .unwrap();
        assert!(
            !t.gps_dropouts.is_empty() || hours < 2,
            "{}: the fleet must have dropouts",
            t.vehicle_id
        );

        let d = distance_m(&track.samples, &dp);
        let error = (d - t.distance_m) / t.distance_m;
        println!(
            "{} distance {d:.0} m, truth {:.0} m, error {:+.3} %",
            t.vehicle_id,
            t.distance_m,
            error * 100.0
        );
        assert!(
            error.abs() < 0.01,
            "{}: distance {d} vs truth {}",
            t.vehicle_id,
            t.distance_m
        );
        score.worst_distance_error = score.worst_distance_error.max(error.abs());

        let segments = segment(&track.samples, &tp, &dp);
        let found_trips: Vec<_> = segments.iter().filter(|s| s.kind == Kind::Trip).collect();
        // The distance report and the summary add up the trips: the same accuracy holds.
        let by_trips: f64 = found_trips.iter().map(|s| s.distance_m).sum();
        let error = (by_trips - t.distance_m) / t.distance_m;
        assert!(
            error.abs() < 0.01,
            "{}: trips add up to {by_trips}",
            t.vehicle_id
        );
        let found_stops: Vec<_> = segments.iter().filter(|s| s.kind == Kind::Stop).collect();
        assert_eq!(
            found_trips.len(),
            t.trips.len(),
            "{}: trips {found_trips:#?} vs {:#?}",
            t.vehicle_id,
            t.trips
        );
        assert_eq!(
            found_stops.len(),
            t.stops.len(),
            "{}: stops {found_stops:#?} vs {:#?}",
            t.vehicle_id,
            t.stops
        );
        let mut boundary = |found: i64, real: i64| {
            if tolerance(real, &t.gps_dropouts) == TOLERANCE_MS {
                score.worst_boundary_ms = score.worst_boundary_ms.max((found - real).abs());
            }
        };
        for (found, real) in found_trips.iter().zip(&t.trips) {
            boundary(found.start, real.start);
            boundary(found.end, real.end);
            let (ts, te) = (
                tolerance(real.start, &t.gps_dropouts),
                tolerance(real.end, &t.gps_dropouts),
            );
            assert!(
                (found.start - real.start).abs() <= ts,
                "{}: trip start {found:?} vs {real:?}",
                t.vehicle_id
            );
            assert!(
                (found.end - real.end).abs() <= te,
                "{}: trip end {found:?} vs {real:?}",
                t.vehicle_id
            );
        }
        for (found, real) in found_stops.iter().zip(&t.stops) {
            boundary(found.start, real.start);
            boundary(found.end, real.end);
            let (ts, te) = (
                tolerance(real.start, &t.gps_dropouts),
                tolerance(real.end, &t.gps_dropouts),
            );
            assert!(
                (found.start - real.start).abs() <= ts,
                "{}: stop start {found:?} vs {real:?}",
                t.vehicle_id
            );
            assert!(
                (found.end - real.end).abs() <= te,
                "{}: stop end {found:?} vs {real:?}",
                t.vehicle_id
            );
        }
        score.trips += found_trips.len();
        score.stops += found_stops.len();

        assert_eq!(samples.vehicle_id, t.vehicle_id);
        let band = Band::for_setpoint(t.setpoint_c);
        assert_eq!((band.low_c, band.high_c), (t.band_min_c, t.band_max_c));
        let found = excursions::find(&samples.samples, band);
        assert_eq!(
            found.len(),
            t.excursions.len(),
            "{}: {found:?} vs {:?}",
            t.vehicle_id,
            t.excursions
        );
        for (f, real) in found.iter().zip(&t.excursions) {
            println!(
                "{} excursion {}..{} vs truth {}..{}",
                t.vehicle_id, f.start, f.end, real.start, real.end
            );
            assert!(
                (f.start - real.start).abs() <= EXCURSION_TOLERANCE_MS,
                "{f:?} vs {real:?}"
            );
            let end_tol = if f.closed {
                EXCURSION_TOLERANCE_MS
            } else {
                30_000
            };
            assert!((f.end - real.end).abs() <= end_tol, "{f:?} vs {real:?}");
        }
        score.excursions += found.len();
    }
    score
}

#[test]
fn reports_match_the_ground_truth_on_a_hard_fleet() {
    let score = check_fleet(11, 6, 4);
    println!(
        "worst distance error {:.3} %, worst clear boundary {} ms, {} trips, {} stops, {} excursions matched",
        score.worst_distance_error * 100.0,
        score.worst_boundary_ms,
        score.trips,
        score.stops,
        score.excursions
    );
    assert!(score.trips >= 12 && score.stops >= 12 && score.excursions >= 2);
}

#[test]
fn reports_match_the_ground_truth_on_another_seed() {
    let score = check_fleet(2024, 4, 3);
    assert!(score.trips >= 6 && score.excursions >= 2);
}

#[test]
fn reports_match_the_ground_truth_on_seed_5() {
    check_fleet(5, 4, 3);
}
