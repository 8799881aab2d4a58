//! The model's physics and bookkeeping, checked on model-only runs.

use super::*;
use crate::geo::haversine_m;
use crate::truth::Truth;
use crate::{Fleet, ForcedFault, ForcedGap};

fn fleet(adjust: impl FnOnce(&mut ModelConfig)) -> Fleet {
    let mut config = ModelConfig {
        vehicles: 6,
        ..ModelConfig::default()
    };
    adjust(&mut config);
    Fleet::new(config, None).unwrap()
}

fn readings(events: &[Timed]) -> impl Iterator<Item = &Reading> {
    events.iter().filter_map(|t| match &t.event {
        Event::Publish(r) => Some(r),
        _ => None,
    })
}

fn gps(events: &[Timed]) -> Vec<telemetry::Gps> {
    readings(events)
        .filter(|r| r.kind == TopicKind::Gps)
        .map(|r| telemetry::decode_gps(&r.payload).unwrap())
        .collect()
}

fn reefer(events: &[Timed]) -> Vec<telemetry::Reefer> {
    readings(events)
        .filter(|r| r.kind == TopicKind::Reefer)
        .map(|r| telemetry::decode_reefer(&r.payload).unwrap())
        .collect()
}

#[test]
fn same_seed_same_bytes_other_seed_other_fleet() {
    let run = |seed| fleet(|c| c.seed = seed).run_offline(2 * 3600);
    let (events_a, truth_a) = run(11);
    let (events_b, truth_b) = run(11);
    assert_eq!(events_a, events_b);
    assert_eq!(truth_a.to_json(), truth_b.to_json());
    let (events_c, _) = run(12);
    assert_ne!(events_a, events_c);
}

#[test]
fn a_vehicle_does_not_depend_on_the_fleet_size() {
    let small = fleet(|c| c.vehicles = 2).vehicle(1);
    let large = fleet(|c| c.vehicles = 2).vehicle(1);
    let drain = |mut v: Vehicle| {
        let mut out = Vec::new();
        while let Some(e) = v.next_event(1800) {
            out.push(e);
        }
        out
    };
    assert_eq!(drain(small), drain(large));
}

#[test]
fn seq_counts_every_message_and_time_never_goes_back() {
    let (events, truth) = fleet(|_| {}).run_offline(3600);
    for (events, truth) in events.iter().zip(&truth.vehicles) {
        let seqs: Vec<u64> = readings(events).map(|r| r.seq).collect();
        assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
        assert!(events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        let generated = truth.generated.gps.count + truth.generated.reefer.count;
        assert_eq!(generated, seqs.len() as u64);
        // One reefer reading every 30 s; one GPS reading a second, less the dropouts.
        assert_eq!(truth.generated.reefer.count, 120);
        let no_fix_s: i64 = truth
            .gps_dropouts
            .iter()
            .map(|d| (d.end - d.start) / 1000)
            .sum();
        assert_eq!(truth.generated.gps.count as i64, 3600 - no_fix_s);
    }
}

/// No teleports, speeds within the limits, and the distance of the readings is the distance
/// of the truth: with GPS noise off, consecutive fixes are never further apart than the speed
/// allows, and their sum is the route length driven.
#[test]
fn physics_no_teleports_limits_and_distances() {
    let f = fleet(|c| {
        c.gps_noise_m = 0.0;
        c.gps_dropouts_per_hour = 0.0;
    });
    let (events, truth) = f.run_offline(4 * 3600);
    let mut drove = 0.0;
    for (events, vt) in events.iter().zip(&truth.vehicles) {
        let fixes = gps(events);
        let mut sum = 0.0;
        for w in fixes.windows(2) {
            let d = haversine_m(w[0].lat, w[0].lon, w[1].lat, w[1].lon);
            let dt = (w[1].ts - w[0].ts) as f64 / 1000.0;
            // Between two samples the speed may rise by at most the acceleration (1 m/s²)
            // before falling again; 0.3 m covers the 6-decimal rounding of both fixes.
            let v_max = w[0].speed_kmh.max(w[1].speed_kmh) / 3.6 + 1.0;
            assert!(
                d <= v_max * dt + 0.3,
                "{}: jump of {d} m at {}",
                vt.vehicle_id,
                w[1].ts
            );
            assert!(w[1].speed_kmh <= 90.0, "over the top speed limit");
            sum += d;
        }
        if vt.distance_m > 1000.0 {
            let err = (sum - vt.distance_m).abs() / vt.distance_m;
            assert!(
                err < 0.005,
                "{}: gps {sum} vs truth {}",
                vt.vehicle_id,
                vt.distance_m
            );
        }
        let trips: f64 = vt.trips.iter().map(|t| t.distance_m).sum();
        assert!((trips - vt.distance_m).abs() < 1e-6);
        for trip in vt.trips.iter().filter(|t| t.complete) {
            let place = |name: &str| f.world.places.iter().position(|p| p.name == name).unwrap();
            let route = f.world.route(place(&trip.from), place(&trip.to));
            assert!(
                (trip.distance_m - route.length()).abs() < 1e-6,
                "trip distance is the sum of the route legs"
            );
        }
        // The odometer agrees with the truth.
        let last = fixes.last().unwrap().odometer_km.unwrap();
        assert!((last - vt.odometer_start_km - vt.distance_m / 1000.0).abs() < 0.2);
        drove += vt.distance_m;
    }
    assert!(drove > 50_000.0, "the fleet hardly moved: {drove} m");
    // Trips and stops alternate and tile the run.
    for vt in &truth.vehicles {
        assert!(!vt.trips.is_empty() && !vt.stops.is_empty());
        assert_eq!(
            vt.stops[0].start,
            truth.start + (vt.stops[0].start - truth.start)
        );
        for (stop, trip) in vt.stops.iter().zip(&vt.trips) {
            assert_eq!(stop.end, trip.start);
        }
    }
}

fn excursion_run(forced: Vec<ForcedFault>, faults_per_hour: f64) -> (Vec<Vec<Timed>>, Truth) {
    fleet(|c| {
        c.vehicles = 12;
        c.faults_per_hour = faults_per_hour;
        c.forced_faults = forced;
    })
    .run_offline(8 * 3600)
}

#[test]
fn no_faults_no_excursions_even_with_door_openings() {
    let (_, truth) = excursion_run(vec![], 0.0);
    for vt in &truth.vehicles {
        assert!(vt.faults.is_empty());
        assert!(
            vt.excursions.is_empty(),
            "{}: {:?}",
            vt.vehicle_id,
            vt.excursions
        );
    }
    assert!(
        truth
            .vehicles
            .iter()
            .map(|v| v.door_openings.len())
            .sum::<usize>()
            > 20
    );
}

#[test]
fn excursions_appear_exactly_when_faults_are_injected() {
    let forced: Vec<ForcedFault> = (0..12)
        .step_by(2)
        .map(|vehicle| ForcedFault {
            vehicle,
            start_s: 3600,
            duration_s: 3 * 3600,
        })
        .collect();
    let (events, truth) = excursion_run(forced, 0.0);
    for (i, (events, vt)) in events.iter().zip(&truth.vehicles).enumerate() {
        if i % 2 == 1 {
            assert!(
                vt.excursions.is_empty(),
                "{}: excursion without a fault",
                vt.vehicle_id
            );
            continue;
        }
        assert_eq!(vt.faults.len(), 1);
        let fault = &vt.faults[0];
        assert!(
            !vt.excursions.is_empty(),
            "{}: a 3 h fault caused nothing",
            vt.vehicle_id
        );
        for ex in &vt.excursions {
            // A fault's excursion starts while the compressor is down; a box that is still warm
            // when it comes back can leave its band again at the next door opening, so the
            // window closes two hours after the fault (the no-fault test shows that nothing
            // else causes excursions).
            assert!(
                ex.start > fault.start && ex.start < fault.end + 2 * 3_600_000,
                "{}: excursion {ex:?} outside the fault {fault:?}",
                vt.vehicle_id
            );
            assert!(ex.peak_c > vt.band_max_c);
            // The readings show it: a reading inside the excursion is out of band...
            let inside: Vec<_> = reefer(events)
                .into_iter()
                .filter(|r| r.ts >= ex.start && r.ts < ex.end)
                .collect();
            assert!(!inside.is_empty());
            assert!(inside
                .iter()
                .all(|r| r.temp_c > vt.band_max_c && !r.compressor_on || r.ts >= fault.end));
        }
        // ...and every reading outside every excursion is in band.
        for r in reefer(events) {
            let in_excursion = vt
                .excursions
                .iter()
                .any(|e| r.ts >= e.start && r.ts < e.end);
            let in_band = (vt.band_min_c..=vt.band_max_c).contains(&r.temp_c);
            assert_eq!(in_band, !in_excursion, "{} at {}", vt.vehicle_id, r.ts);
        }
    }
}

#[test]
fn door_readings_match_door_openings() {
    let (events, truth) = fleet(|_| {}).run_offline(4 * 3600);
    for (events, vt) in events.iter().zip(&truth.vehicles) {
        for r in reefer(events) {
            let open = vt
                .door_openings
                .iter()
                .any(|d| r.ts >= d.start && r.ts < d.end);
            assert_eq!(r.door_open, open);
        }
    }
}

#[test]
fn coverage_gaps_become_link_events() {
    let f = fleet(|c| {
        c.coverage_gaps_per_hour = 0.0;
        c.forced_gaps = vec![ForcedGap {
            vehicle: 1,
            start_s: 100,
            duration_s: 50,
        }];
    });
    let (events, truth) = f.run_offline(600);
    let links: Vec<(i64, &Event)> = events[1]
        .iter()
        .filter(|t| !matches!(t.event, Event::Publish(_)))
        .map(|t| (t.at_ms, &t.event))
        .collect();
    let gap = &truth.vehicles[1].coverage_gaps;
    assert_eq!(gap.len(), 1);
    assert_eq!(
        links,
        vec![
            (gap[0].start, &Event::LinkDown),
            (gap[0].end, &Event::LinkUp)
        ]
    );
    assert_eq!(gap[0].end - gap[0].start, 50_000);
    assert!(truth.vehicles[0].coverage_gaps.is_empty());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    /// Whatever the seed: fixes never jump further than the speed allows, speeds stay under the
    /// top limit, every payload is valid, and seq counts every message from 0.
    #[test]
    fn any_seed_keeps_the_invariants(seed in proptest::prelude::any::<u64>(), index in 0usize..50) {
        let f = fleet(|c| {
            c.seed = seed;
            c.vehicles = 50;
            c.gps_noise_m = 0.0;
        });
        let mut v = f.vehicle(index);
        let mut events = Vec::new();
        while let Some(e) = v.next_event(2 * 3600) {
            events.push(e);
        }
        let fixes = gps(&events);
        for w in fixes.windows(2) {
            let d = haversine_m(w[0].lat, w[0].lon, w[1].lat, w[1].lon);
            let dt = (w[1].ts - w[0].ts) as f64 / 1000.0;
            // Across a GPS dropout the vehicle may have sped up and slowed down again unseen
            // (seed 4455901761409652300, vehicle 25: 551 m in a 54 s gap between two fixes at
            // walking pace), so there only the top speed limit bounds the jump.
            let v_max = if dt > 1.5 {
                90.0 / 3.6 + 1.0
            } else {
                w[0].speed_kmh.max(w[1].speed_kmh) / 3.6 + 1.0
            };
            proptest::prop_assert!(d <= v_max * dt + 0.3, "jump of {} m in {} s", d, dt);
            proptest::prop_assert!(w[1].speed_kmh <= 90.0);
        }
        let seqs: Vec<u64> = readings(&events).map(|r| r.seq).collect();
        proptest::prop_assert_eq!(seqs, (0..readings(&events).count() as u64).collect::<Vec<_>>());
        proptest::prop_assert_eq!(reefer(&events).len(), 240);
        let truth = v.finish(2 * 3600);
        let trips: f64 = truth.trips.iter().map(|t| t.distance_m).sum();
        proptest::prop_assert!((trips - truth.distance_m).abs() < 1e-6);
    }
}
