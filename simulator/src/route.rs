//! A route: the polyline a vehicle drives from one place to another, with a speed limit per leg.

use crate::geo::Point;

/// A drivable polyline. Legs of zero length are dropped on construction, so every leg has a
/// direction and a positive length.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    points: Vec<Point>,
    /// Speed limit of leg `i` (from point `i` to `i + 1`), m/s.
    limits: Vec<f64>,
    /// Distance along the route of point `i`, metres.
    cum: Vec<f64>,
}

impl Route {
    /// A route through `points`; `limits[i]` (m/s) applies from `points[i]` to `points[i + 1]`.
    /// Missing limits repeat the last one (or 50 km/h).
    pub fn new(points: &[Point], limits: &[f64]) -> Route {
        let mut out = Route {
            points: Vec::with_capacity(points.len()),
            limits: Vec::with_capacity(points.len()),
            cum: Vec::with_capacity(points.len()),
        };
        let default = limits.last().copied().unwrap_or(50.0 / 3.6);
        for (i, &p) in points.iter().enumerate() {
            match out.points.last() {
                None => {
                    out.points.push(p);
                    out.cum.push(0.0);
                }
                Some(&last) => {
                    let d = last.dist(p);
                    if d > 1e-6 {
                        let limit = limits.get(i - 1).copied().unwrap_or(default);
                        out.limits.push(limit);
                        out.cum.push(out.cum.last().copied().unwrap_or(0.0) + d);
                        out.points.push(p);
                    }
                }
            }
        }
        out
    }

    /// Total length, metres (the sum of the legs).
    pub fn length(&self) -> f64 {
        self.cum.last().copied().unwrap_or(0.0)
    }

    /// Number of legs.
    pub fn legs(&self) -> usize {
        self.limits.len()
    }

    /// Speed limit of leg `i`, m/s.
    pub fn limit(&self, leg: usize) -> f64 {
        self.limits.get(leg).copied().unwrap_or(0.0)
    }

    /// Distance along the route where leg `i` starts.
    pub fn leg_start(&self, leg: usize) -> f64 {
        self.cum.get(leg).copied().unwrap_or_else(|| self.length())
    }

    /// The points.
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// The reversed route (same legs and limits, driven the other way).
    pub fn reversed(&self) -> Route {
        let points: Vec<Point> = self.points.iter().rev().copied().collect();
        let limits: Vec<f64> = self.limits.iter().rev().copied().collect();
        Route::new(&points, &limits)
    }

    /// The leg that distance `s` falls on, searching forward from `hint` (vehicles only move
    /// forward, so this is amortised O(1)).
    pub fn leg_at(&self, s: f64, hint: usize) -> usize {
        let mut leg = hint.min(self.legs().saturating_sub(1));
        while leg + 1 < self.legs() && self.leg_start(leg + 1) <= s {
            leg += 1;
        }
        leg
    }

    /// Position and heading (degrees) at distance `s` on leg `leg`.
    pub fn position(&self, s: f64, leg: usize) -> (Point, f64) {
        let (Some(&a), Some(&b)) = (self.points.get(leg), self.points.get(leg + 1)) else {
            let last = self
                .points
                .last()
                .copied()
                .unwrap_or(Point { x: 0.0, y: 0.0 });
            return (last, 0.0);
        };
        let len = self.leg_start(leg + 1) - self.leg_start(leg);
        let f = ((s - self.leg_start(leg)) / len).clamp(0.0, 1.0);
        (a.lerp(b, f), a.bearing_to(b))
    }

    /// Turn angle at point `i` (between leg `i - 1` and leg `i`), degrees in `[0, 180]`.
    pub fn turn_at(&self, i: usize) -> f64 {
        if i == 0 || i + 1 >= self.points.len() {
            return 0.0;
        }
        let h1 = self.points[i - 1].bearing_to(self.points[i]);
        let h2 = self.points[i].bearing_to(self.points[i + 1]);
        let d = (h2 - h1).abs() % 360.0;
        if d > 180.0 {
            360.0 - d
        } else {
            d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(x: f64, y: f64) -> Point {
        Point { x, y }
    }

    #[test]
    fn length_is_the_sum_of_the_legs_and_duplicates_vanish() {
        let r = Route::new(
            &[p(0., 0.), p(0., 0.), p(300., 0.), p(300., 400.)],
            &[1., 2., 3.],
        );
        assert_eq!(r.legs(), 2);
        assert_eq!(r.length(), 700.0);
        assert_eq!(r.limit(0), 2.0);
        assert_eq!(r.limit(1), 3.0);
        assert_eq!(r.turn_at(1), 90.0);
    }

    #[test]
    fn positions_along_the_route() {
        let r = Route::new(&[p(0., 0.), p(100., 0.), p(100., 100.)], &[10., 20.]);
        let leg = r.leg_at(150.0, 0);
        assert_eq!(leg, 1);
        let (pt, heading) = r.position(150.0, leg);
        assert_eq!(pt, p(100., 50.));
        assert_eq!(heading, 0.0);
        let back = r.reversed();
        assert_eq!(back.length(), 200.0);
        assert_eq!(back.limit(0), 20.0);
    }
}
