//! Trips and stops, in the manner of the established fleet tracking servers (Traccar's
//! motion-based segmentation):
//!
//! - A fix is **in motion** when its reported speed exceeds [`TripParams::speed_kmh`]. Speed
//!   comes from the receiver's Doppler measurement and is not disturbed by position noise, so
//!   it is a better motion signal than distance between fixes.
//! - A run of fixes not in motion is a **stop** if it lasts at least
//!   [`TripParams::min_stop_s`]; shorter pauses (red lights, queues) belong to the trip.
//! - Between stops lie **trips**. A trip shorter than [`TripParams::min_trip_m`] or
//!   [`TripParams::min_trip_s`] (manoeuvring in a yard, GPS drift read as motion) is not a
//!   trip: it is folded into the stops around it.
//! - Boundaries are the instants the vehicle is seen stationary: a stop starts at its first
//!   fix at or below [`TripParams::still_kmh`] and ends at its last one, which is when the
//!   trip after it starts (the vehicle pulls away from standstill right after).
//! - A gap in the fixes (GPS dropout) longer than [`TripParams::min_stop_s`] with the vehicle
//!   no further than [`TripParams::min_trip_m`] from where it was is a stop too: a parked
//!   truck in an underground yard has no fix but has not driven.

use crate::{
    distance::{approx_length_m, approx_m, distance_m, DistanceParams},
    load::Fix,
};

/// Thresholds of the segmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TripParams {
    /// Above this speed a fix is in motion, km/h.
    pub speed_kmh: f64,
    /// At or below this speed the vehicle stands still (refines boundaries), km/h.
    pub still_kmh: f64,
    /// Shortest stop, seconds.
    pub min_stop_s: f64,
    /// Shortest trip, metres.
    pub min_trip_m: f64,
    /// Shortest trip, seconds.
    pub min_trip_s: f64,
}

impl Default for TripParams {
    fn default() -> TripParams {
        TripParams {
            speed_kmh: 5.0,
            still_kmh: 0.5,
            min_stop_s: 180.0,
            // A delivery hop between neighbouring customers can be a few hundred metres in
            // under a minute (the simulator's shortest are ~450 m in 49 s); yard manoeuvres
            // stay well under 200 m.
            min_trip_m: 200.0,
            min_trip_s: 30.0,
        }
    }
}

/// A trip or a stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Driving from one stop to the next.
    Trip,
    /// Parked.
    Stop,
}

/// One segment of a track.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Trip or stop.
    pub kind: Kind,
    /// Start, Unix epoch ms.
    pub start: i64,
    /// End, Unix epoch ms.
    pub end: i64,
    /// Where it started (lat, lon); for a stop, the mean of its fixes.
    pub from: (f64, f64),
    /// Where it ended (lat, lon); for a stop, the same as `from`.
    pub to: (f64, f64),
    /// Metres driven (0 for a stop).
    pub distance_m: f64,
    /// Highest reported speed, km/h.
    pub max_speed_kmh: f64,
    /// Time in motion, ms (for a trip: the rest is idling at lights and in queues).
    pub moving_ms: i64,
}

impl Segment {
    /// Duration, ms.
    pub fn duration_ms(&self) -> i64 {
        self.end - self.start
    }
}

/// Stationary intervals as index ranges `[first, last]` of fixes.
fn stationary_runs(fixes: &[Fix], p: &TripParams) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut start: Option<usize> = None;
    for (i, fix) in fixes.iter().enumerate() {
        let still = fix.speed_kmh <= p.speed_kmh;
        match (still, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i - 1));
                start = None;
            }
            _ => {}
        }
        // A long gap between two fixes in motion without much progress: parked without a fix.
        if let Some(next) = fixes.get(i + 1) {
            let gap_s = (next.ts - fix.ts) as f64 / 1000.0;
            if !still
                && next.speed_kmh > p.speed_kmh
                && gap_s >= p.min_stop_s
                && approx_m((fix.lat, fix.lon), (next.lat, next.lon)) < p.min_trip_m
            {
                runs.push((i, i + 1));
            }
        }
    }
    if let Some(s) = start {
        runs.push((s, fixes.len() - 1));
    }
    runs
}

/// Refines a stationary run to the fixes at standstill: first and last at or below `still_kmh`.
fn standstill(fixes: &[Fix], (a, b): (usize, usize), p: &TripParams) -> (usize, usize) {
    let still = |i: &usize| fixes[*i].speed_kmh <= p.still_kmh;
    let first = (a..=b).find(still).unwrap_or(a);
    let last = (a..=b).rev().find(still).unwrap_or(b);
    (first, last.max(first))
}

/// Splits a time-ordered track into alternating trips and stops.
pub fn segment(fixes: &[Fix], p: &TripParams, dp: &DistanceParams) -> Vec<Segment> {
    if fixes.is_empty() {
        return Vec::new();
    }
    let min_stop_ms = (p.min_stop_s * 1000.0) as i64;
    // Stops as fix index ranges, long enough to count.
    let mut stops: Vec<(usize, usize)> = stationary_runs(fixes, p)
        .into_iter()
        .map(|run| standstill(fixes, run, p))
        .filter(|&(a, b)| {
            let at_edge = a == 0 || b == fixes.len() - 1;
            // A run cut by the start or end of the data may be a longer stop: keep it.
            fixes[b].ts - fixes[a].ts >= min_stop_ms || (at_edge && fixes[b].ts > fixes[a].ts)
        })
        .collect();
    // Fold trips that are too short to be trips into the stops around them.
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for stop in stops.drain(..) {
        if let Some(last) = merged.last_mut() {
            let trip = &fixes[last.1..=stop.0];
            let duration_s = (fixes[stop.0].ts - fixes[last.1].ts) as f64 / 1000.0;
            if duration_s < p.min_trip_s || approx_length_m(trip, dp) < p.min_trip_m {
                last.1 = stop.1;
                continue;
            }
        }
        merged.push(stop);
    }
    let mut out = Vec::new();
    let mut cursor = 0;
    for (a, b) in merged {
        if a > cursor {
            out.push(build(fixes, cursor, a, Kind::Trip, dp, p));
        }
        out.push(build(fixes, a, b, Kind::Stop, dp, p));
        cursor = b;
    }
    if cursor < fixes.len() - 1 {
        out.push(build(fixes, cursor, fixes.len() - 1, Kind::Trip, dp, p));
    }
    out
}

fn build(
    fixes: &[Fix],
    a: usize,
    b: usize,
    kind: Kind,
    dp: &DistanceParams,
    p: &TripParams,
) -> Segment {
    let slice = &fixes[a..=b];
    let moving_ms = slice
        .windows(2)
        .filter(|w| w[0].speed_kmh > p.speed_kmh || w[1].speed_kmh > p.speed_kmh)
        .map(|w| w[1].ts - w[0].ts)
        .sum();
    // A stop's place is the mean of its fixes: the receiver's error averages out over minutes.
    let (from, to) = match kind {
        Kind::Trip => ((fixes[a].lat, fixes[a].lon), (fixes[b].lat, fixes[b].lon)),
        Kind::Stop => {
            let n = slice.len() as f64;
            let lat = slice.iter().map(|f| f.lat).sum::<f64>() / n;
            let lon = slice.iter().map(|f| f.lon).sum::<f64>() / n;
            ((lat, lon), (lat, lon))
        }
    };
    Segment {
        kind,
        start: fixes[a].ts,
        end: fixes[b].ts,
        from,
        to,
        distance_m: match kind {
            Kind::Trip => distance_m(slice, dp),
            Kind::Stop => 0.0,
        },
        max_speed_kmh: slice.iter().map(|f| f.speed_kmh).fold(0.0, f64::max),
        moving_ms: match kind {
            Kind::Trip => moving_ms,
            Kind::Stop => 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::tests::east;

    /// Parked `park_s`, drives 1 km at 36 km/h with a 30 s red light halfway, parks again.
    fn day(park_s: i64) -> Vec<Fix> {
        let mut fixes = Vec::new();
        let mut t = 0;
        for _ in 0..park_s {
            fixes.push(east(t, 0.0, 0.0));
            t += 1;
        }
        let mut x = 0.0;
        for leg in 0..2 {
            for _ in 0..50 {
                x += 10.0;
                fixes.push(east(t, x, 36.0));
                t += 1;
            }
            if leg == 0 {
                for _ in 0..30 {
                    fixes.push(east(t, x, 0.0));
                    t += 1;
                }
            }
        }
        for _ in 0..park_s {
            fixes.push(east(t, x, 0.0));
            t += 1;
        }
        fixes
    }

    #[test]
    fn a_red_light_is_not_a_stop() {
        let segments = segment(
            &day(600),
            &TripParams::default(),
            &DistanceParams::default(),
        );
        let kinds: Vec<Kind> = segments.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [Kind::Stop, Kind::Trip, Kind::Stop]);
        let trip = &segments[1];
        assert_eq!((trip.start, trip.end), (599_000, 730_000));
        assert!(
            (trip.distance_m - 1000.0).abs() < 15.0,
            "{}",
            trip.distance_m
        );
        assert_eq!(trip.max_speed_kmh, 36.0);
        assert_eq!(trip.moving_ms, 102_000);
    }

    #[test]
    fn a_short_hop_is_folded_into_the_stop() {
        let mut fixes: Vec<Fix> = (0..600).map(|t| east(t, 0.0, 0.0)).collect();
        fixes.extend((600..620).map(|t| east(t, (t - 600) as f64 * 5.0, 18.0)));
        fixes.extend((620..1200).map(|t| east(t, 100.0, 0.0)));
        let segments = segment(&fixes, &TripParams::default(), &DistanceParams::default());
        assert_eq!(segments.len(), 1);
        assert_eq!(segments[0].kind, Kind::Stop);
    }

    #[test]
    fn a_dropout_while_parked_is_still_a_stop() {
        // Driving, then no fix for 10 minutes without having moved, then driving on; the
        // speeds either side of the gap are in motion (the receiver kept its last speed).
        let mut fixes: Vec<Fix> = (0..100).map(|t| east(t, t as f64 * 10.0, 36.0)).collect();
        fixes.extend((700..800).map(|t| east(t, 990.0 + (t - 699) as f64 * 10.0, 36.0)));
        let segments = segment(&fixes, &TripParams::default(), &DistanceParams::default());
        let kinds: Vec<Kind> = segments.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [Kind::Trip, Kind::Stop, Kind::Trip]);
        assert_eq!((segments[1].start, segments[1].end), (99_000, 700_000));
    }
}
