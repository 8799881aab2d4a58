//! The per-vehicle summary: what a dispatcher reads first.
//!
//! Time is split three ways: **driving** (in a trip and moving), **idle** (in a trip but
//! standing: lights, queues, loading bays too short to be a stop) and **stopped** (in stops).
//! Distance is the sum of the trips', by [`crate::distance`].

use crate::{
    distance::DistanceParams,
    excursions::{self, Band},
    load::{Fix, Sample},
    trips::{segment, Kind, TripParams},
};

/// One vehicle's summary.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// Metres driven.
    pub distance_m: f64,
    /// Moving time in trips, ms.
    pub driving_ms: i64,
    /// Standing time in trips, ms.
    pub idle_ms: i64,
    /// Time in stops, ms.
    pub stopped_ms: i64,
    /// Trips.
    pub trips: usize,
    /// Stops.
    pub stops: usize,
    /// Highest reported speed, km/h.
    pub max_speed_kmh: f64,
    /// Temperature excursions.
    pub excursions: usize,
    /// Time outside the band, ms.
    pub excursion_ms: i64,
}

/// Summarises a vehicle's track and reefer readings; `band` overrides the setpoint's band.
pub fn summarise(
    fixes: &[Fix],
    samples: &[Sample],
    band: Option<Band>,
    tp: &TripParams,
    dp: &DistanceParams,
) -> Summary {
    let mut s = Summary::default();
    // The trips' distances add up to the track's (stops add none), without measuring twice.
    for seg in segment(fixes, tp, dp) {
        s.distance_m += seg.distance_m;
        s.max_speed_kmh = s.max_speed_kmh.max(seg.max_speed_kmh);
        match seg.kind {
            Kind::Trip => {
                s.trips += 1;
                s.driving_ms += seg.moving_ms;
                s.idle_ms += seg.duration_ms() - seg.moving_ms;
            }
            Kind::Stop => {
                s.stops += 1;
                s.stopped_ms += seg.duration_ms();
            }
        }
    }
    if let Some(first) = samples.first() {
        let band = band.unwrap_or_else(|| Band::for_setpoint(first.setpoint_c));
        for e in excursions::find(samples, band) {
            s.excursions += 1;
            s.excursion_ms += e.end - e.start;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::tests::east;

    #[test]
    fn splits_time_into_driving_idle_and_stopped() {
        let mut fixes: Vec<Fix> = (0..300).map(|t| east(t, 0.0, 0.0)).collect();
        fixes.extend((300..400).map(|t| east(t, (t - 299) as f64 * 10.0, 36.0)));
        fixes.extend((400..430).map(|t| east(t, 1000.0, 0.0)));
        fixes.extend((430..530).map(|t| east(t, 1000.0 + (t - 429) as f64 * 10.0, 36.0)));
        fixes.extend((530..830).map(|t| east(t, 2000.0, 0.0)));
        let s = summarise(
            &fixes,
            &[],
            None,
            &TripParams::default(),
            &DistanceParams::default(),
        );
        assert_eq!((s.trips, s.stops), (1, 2));
        assert_eq!(s.driving_ms + s.idle_ms, 231_000);
        assert_eq!(s.idle_ms, 29_000);
        assert_eq!(s.stopped_ms, 299_000 + 299_000);
        assert!((s.distance_m - 2000.0).abs() < 20.0, "{}", s.distance_m);
    }
}
