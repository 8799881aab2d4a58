//! Distance driven, from noisy GPS.
//!
//! Summing the geodesic length between raw fixes overestimates: every fix carries a few metres
//! of error, and at 1 Hz and city speeds the zig-zag it adds is several per cent, while the
//! jitter of a parked vehicle adds distance that was never driven. The method here:
//!
//! 1. **Teleports** out: a fix whose implied speed from the last accepted fix exceeds
//!    [`DistanceParams::max_speed_kmh`] is dropped (a multipath jump, a cold-start fix). Should
//!    several fixes in a row disagree with the last accepted one, the vehicle really is there
//!    (the outlier was the accepted one) and the track resumes from them.
//! 2. **Standing still** adds nothing: a step between two fixes both at or below
//!    [`DistanceParams::moving_kmh`] (the receiver's Doppler speed, which has no position
//!    noise) is jitter, not driving.
//! 3. **Smoothing**: while moving, positions are averaged over a centred window of
//!    [`DistanceParams::window`] fixes (in a local metric frame). Receiver error is strongly
//!    correlated from one second to the next but not over the window, so the average removes
//!    most of the zig-zag while cutting corners by far less than decimating the track would.
//! 4. **Geodesic** length (Karney's algorithm on WGS84, `geo::Geodesic`) between consecutive
//!    kept positions. A dropout is bridged by the straight geodesic line, the best a track
//!    without fixes can support.

use geo::{Distance, Geodesic, Point};

use crate::load::Fix;

/// Tuning of [`distance_m`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistanceParams {
    /// Above this implied speed a fix is a teleport, km/h.
    pub max_speed_kmh: f64,
    /// At or below this reported speed the vehicle stands still, km/h.
    pub moving_kmh: f64,
    /// Fixes in the centred smoothing window (1: none).
    pub window: usize,
    /// Consecutive disagreeing fixes after which the track resumes from them.
    pub resync_after: usize,
}

impl Default for DistanceParams {
    fn default() -> DistanceParams {
        DistanceParams {
            max_speed_kmh: 250.0,
            moving_kmh: 1.0,
            window: 5,
            resync_after: 3,
        }
    }
}

/// Geodesic distance between two fixes, metres.
pub fn geodesic_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    Geodesic.distance(Point::new(a.1, a.0), Point::new(b.1, b.0))
}

/// Approximate distance between two nearby fixes, metres: equirectangular on the mean
/// Earth radius, within 0.5 % of the geodesic over city distances and some twenty times
/// cheaper. For thresholds (teleports, minimum trip length), never for reported distances.
pub fn approx_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    const R: f64 = 6_371_008.8;
    let mean_lat = ((a.0 + b.0) / 2.0).to_radians();
    let dx = (b.1 - a.1).to_radians() * mean_lat.cos() * R;
    let dy = (b.0 - a.0).to_radians() * R;
    dx.hypot(dy)
}

/// Approximate length of a track without its stationary steps, metres (see [`approx_m`]).
pub fn approx_length_m(fixes: &[Fix], params: &DistanceParams) -> f64 {
    fixes
        .windows(2)
        .filter(|w| w[0].speed_kmh > params.moving_kmh || w[1].speed_kmh > params.moving_kmh)
        .map(|w| approx_m((w[0].lat, w[0].lon), (w[1].lat, w[1].lon)))
        .sum()
}

/// The fixes without teleports (step 1 above).
pub fn drop_teleports(fixes: &[Fix], params: &DistanceParams) -> Vec<Fix> {
    let mut kept: Vec<Fix> = Vec::with_capacity(fixes.len());
    let mut rejected: Vec<Fix> = Vec::new();
    let max_mps = params.max_speed_kmh / 3.6;
    for fix in fixes {
        let Some(last) = kept.last() else {
            kept.push(*fix);
            continue;
        };
        let dt = ((fix.ts - last.ts) as f64 / 1000.0).max(0.001);
        // A few metres of slack: two honest fixes a second apart may disagree by the noise.
        let d = approx_m((last.lat, last.lon), (fix.lat, fix.lon)) - 25.0;
        if d / dt <= max_mps {
            kept.push(*fix);
            rejected.clear();
            continue;
        }
        rejected.push(*fix);
        if rejected.len() >= params.resync_after && consistent(&rejected, max_mps) {
            // The accepted fix was the outlier: drop what followed it alone and go on from here.
            kept.pop();
            kept.append(&mut rejected);
        }
    }
    kept
}

fn consistent(fixes: &[Fix], max_mps: f64) -> bool {
    fixes.windows(2).all(|w| {
        let dt = ((w[1].ts - w[0].ts) as f64 / 1000.0).max(0.001);
        (approx_m((w[0].lat, w[0].lon), (w[1].lat, w[1].lon)) - 25.0) / dt <= max_mps
    })
}

/// Metres driven along `fixes` (time-ordered), by the method of the module docs.
pub fn distance_m(fixes: &[Fix], params: &DistanceParams) -> f64 {
    let fixes = drop_teleports(fixes, params);
    let smooth = smoothed(&fixes, params);
    let mut total = 0.0;
    for (i, w) in fixes.windows(2).enumerate() {
        if w[0].speed_kmh <= params.moving_kmh && w[1].speed_kmh <= params.moving_kmh {
            continue;
        }
        total += geodesic_m(smooth[i], smooth[i + 1]);
    }
    total
}

/// Positions averaged over a centred window of moving fixes; a stationary fix or a gap of
/// more than a few seconds bounds the window, so a stop or a dropout is not smeared.
fn smoothed(fixes: &[Fix], params: &DistanceParams) -> Vec<(f64, f64)> {
    let half = params.window / 2;
    let mut out = Vec::with_capacity(fixes.len());
    for (i, fix) in fixes.iter().enumerate() {
        if half == 0 || fix.speed_kmh <= params.moving_kmh {
            out.push((fix.lat, fix.lon));
            continue;
        }
        let joined = |neighbour: &Fix, inner: &Fix| {
            (inner.ts - neighbour.ts).abs() <= 3_000 && neighbour.speed_kmh > params.moving_kmh
        };
        let mut lo = i;
        while lo > 0 && i - lo < half && joined(&fixes[lo - 1], &fixes[lo]) {
            lo -= 1;
        }
        let mut hi = i;
        while hi + 1 < fixes.len() && hi - i < half && joined(&fixes[hi + 1], &fixes[hi]) {
            hi += 1;
        }
        // Symmetric window, so that a straight constant-speed track is left where it is.
        let k = (i - lo).min(hi - i);
        let window = &fixes[i - k..=i + k];
        let n = window.len() as f64;
        let lat = window.iter().map(|f| f.lat).sum::<f64>() / n;
        let lon = window.iter().map(|f| f.lon).sum::<f64>() / n;
        out.push((lat, lon));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fix `x_m` metres east of 53.55 N 9.99 E, on the WGS84 ellipsoid (a degree of
    /// longitude there is `N(φ)·cos φ·π/180` with `N` the prime vertical radius, ~66.29 km).
    pub(crate) fn east(ts_s: i64, x_m: f64, speed_kmh: f64) -> Fix {
        let (a, e2, phi) = (6_378_137.0, 0.006_694_379_990_14, 53.55f64.to_radians());
        let n = a / (1.0 - e2 * phi.sin().powi(2)).sqrt();
        let m_per_deg_lon = n * phi.cos() * std::f64::consts::PI / 180.0;
        Fix {
            ts: ts_s * 1000,
            lat: 53.55,
            lon: 9.99 + x_m / m_per_deg_lon,
            speed_kmh,
        }
    }

    #[test]
    fn straight_track_measures_its_length() {
        let fixes: Vec<Fix> = (0..=100).map(|t| east(t, t as f64 * 10.0, 36.0)).collect();
        let d = distance_m(&fixes, &DistanceParams::default());
        assert!((d - 1000.0).abs() < 2.0, "{d}");
    }

    #[test]
    fn a_teleport_is_dropped() {
        let mut fixes: Vec<Fix> = (0..=100).map(|t| east(t, t as f64 * 10.0, 36.0)).collect();
        fixes[50].lat += 0.05; // 5.5 km north for one second
        let d = distance_m(&fixes, &DistanceParams::default());
        assert!((d - 1000.0).abs() < 5.0, "{d}");
    }

    #[test]
    fn a_bad_first_fix_does_not_lose_the_track() {
        let mut fixes: Vec<Fix> = (0..=100).map(|t| east(t, t as f64 * 10.0, 36.0)).collect();
        fixes[0].lat += 0.05;
        let d = distance_m(&fixes, &DistanceParams::default());
        assert!((d - 990.0).abs() < 5.0, "{d}");
    }

    #[test]
    fn jitter_while_parked_is_not_distance() {
        let fixes: Vec<Fix> = (0..600)
            .map(|t| east(t, if t % 2 == 0 { 0.0 } else { 4.0 }, 0.0))
            .collect();
        assert_eq!(distance_m(&fixes, &DistanceParams::default()), 0.0);
    }

    #[test]
    fn zig_zag_noise_is_smoothed_out() {
        // ±3 m of alternating cross-track error at 10 m/s, the worst case for a smoother: raw
        // steps are sqrt(10² + 6²) = 11.7 m (+17 %); averaged over five they zig-zag ±0.6 m.
        let fixes: Vec<Fix> = (0..=300)
            .map(|t| {
                let mut f = east(t, t as f64 * 10.0, 36.0);
                f.lat += if t % 2 == 0 { 3.0 } else { -3.0 } / 111_320.0;
                f
            })
            .collect();
        let raw = distance_m(
            &fixes,
            &DistanceParams {
                window: 1,
                ..DistanceParams::default()
            },
        );
        let d = distance_m(&fixes, &DistanceParams::default());
        assert!(raw > 3400.0, "{raw}");
        assert!((d - 3000.0).abs() < 30.0, "{d}");
    }

    #[test]
    fn the_approximation_is_close_at_city_scale() {
        let (a, b) = (east(0, 0.0, 0.0), east(0, 5000.0, 0.0));
        let (a, b) = ((a.lat, a.lon), (b.lat + 0.02, b.lon));
        let exact = geodesic_m(a, b);
        assert!((approx_m(a, b) - exact).abs() / exact < 0.005);
    }

    #[test]
    fn a_dropout_is_bridged() {
        let fixes: Vec<Fix> = (0..=100)
            .filter(|t| !(40..60).contains(t))
            .map(|t| east(t, t as f64 * 10.0, 36.0))
            .collect();
        let d = distance_m(&fixes, &DistanceParams::default());
        assert!((d - 1000.0).abs() < 2.0, "{d}");
    }
}
