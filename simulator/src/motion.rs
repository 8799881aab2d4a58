//! Driving a route: acceleration, braking ahead of slower legs, corners and traffic lights,
//! and the speed limit of every leg.
//!
//! Integration is one step per simulated second. The vehicle plans with a comfortable
//! deceleration, so the speed it may have at distance `d` before a point where it must be at
//! `v_max` is `sqrt(v_max² + 2·b·d)`; it never exceeds the limit of the leg it is on (the
//! limit is re-applied after every step, so crossing into a slower leg cannot carry speed in).

use crate::rng::Rng;
use crate::route::Route;

/// Acceleration of a loaded truck, m/s².
const ACCEL: f64 = 1.0;
/// Deceleration used for planning, m/s².
const PLAN_DECEL: f64 = 1.5;
/// Strongest deceleration allowed, m/s².
const MAX_DECEL: f64 = 4.0;
/// Closer than this to a stop point, the vehicle is there (floating-point slack only: the
/// planning above always brings it to the point within a step or two of standstill).
const SNAP_M: f64 = 1e-6;

/// A point where the speed is capped: a slower leg, a corner, a red light, the destination.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cap {
    /// Distance along the route.
    s: f64,
    /// Highest speed there, m/s (0: a stop).
    v_max: f64,
    /// Seconds to wait there (red light), for stops.
    wait_s: f64,
}

/// A vehicle driving one route.
#[derive(Debug, Clone)]
pub struct Drive {
    route: Route,
    caps: Vec<Cap>,
    next_cap: usize,
    factor: f64,
    s: f64,
    v: f64,
    leg: usize,
    wait_s: f64,
    heading: f64,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Metres moved along the route.
    pub moved: f64,
    /// True when the destination was reached in this step.
    pub arrived: bool,
}

impl Drive {
    /// Starts `route` at rest. `factor` (≤ 1) is how close to the limit this driver drives;
    /// red lights are drawn from `rng` (one intersection in five, 10 to 45 s).
    pub fn new(route: Route, factor: f64, rng: &mut Rng, heading: f64) -> Drive {
        let mut caps = Vec::with_capacity(route.legs() + 1);
        for i in 1..route.legs() {
            let turn = route.turn_at(i);
            let corner = if turn > 60.0 {
                20.0 / 3.6
            } else if turn > 30.0 {
                35.0 / 3.6
            } else {
                f64::INFINITY
            };
            let red = rng.chance(0.2);
            let wait_s = if red {
                rng.range(10.0, 45.0).round()
            } else {
                0.0
            };
            caps.push(Cap {
                s: route.leg_start(i),
                v_max: if red {
                    0.0
                } else {
                    (route.limit(i) * factor).min(corner)
                },
                wait_s,
            });
        }
        caps.push(Cap {
            s: route.length(),
            v_max: 0.0,
            wait_s: 0.0,
        });
        let heading = if route.legs() == 0 {
            heading
        } else {
            route.position(0.0, 0).1
        };
        Drive {
            route,
            caps,
            next_cap: 0,
            factor,
            s: 0.0,
            v: 0.0,
            leg: 0,
            wait_s: 0.0,
            heading,
        }
    }

    /// Advances one second.
    pub fn step(&mut self) -> Step {
        if self.s >= self.route.length() {
            self.v = 0.0;
            return Step {
                moved: 0.0,
                arrived: true,
            };
        }
        if self.wait_s > 0.0 {
            self.wait_s -= 1.0;
            self.v = 0.0;
            return Step {
                moved: 0.0,
                arrived: false,
            };
        }
        let limit = self.route.limit(self.leg) * self.factor;
        let mut target = limit;
        let horizon = self.v * self.v / (2.0 * PLAN_DECEL) + 2.0 * limit + 10.0;
        for cap in &self.caps[self.next_cap..] {
            let d = cap.s - self.s;
            if d > horizon {
                break;
            }
            // Plan from where this step will end (about `v` metres on), so that a discrete
            // step never brings the vehicle to a cap faster than it can shed.
            let d_after = (d - self.v).max(0.0);
            target = target.min((cap.v_max * cap.v_max + 2.0 * PLAN_DECEL * d_after).sqrt());
        }
        let v_new = if target >= self.v {
            (self.v + ACCEL).min(target)
        } else {
            (self.v - MAX_DECEL).max(target)
        };
        let mut moved = (self.v + v_new) / 2.0;
        let mut v_end = v_new;
        let mut arrived = false;
        // Stop points within reach: a red light or the destination.
        if let Some((k, cap)) = self.caps[self.next_cap..]
            .iter()
            .enumerate()
            .find(|(_, c)| c.v_max == 0.0)
        {
            let remaining = cap.s - self.s;
            if moved >= remaining - SNAP_M {
                moved = remaining.max(0.0);
                v_end = 0.0;
                self.wait_s = cap.wait_s;
                self.next_cap += k + 1;
                arrived = self.next_cap >= self.caps.len();
            }
        }
        self.s += moved;
        while self.next_cap < self.caps.len() && self.caps[self.next_cap].s <= self.s {
            self.next_cap += 1;
        }
        if arrived {
            self.s = self.route.length();
        }
        self.leg = self.route.leg_at(self.s, self.leg);
        self.v = v_end.min(self.route.limit(self.leg) * self.factor);
        if moved > 0.0 {
            self.heading = self.route.position(self.s, self.leg).1;
        }
        Step { moved, arrived }
    }

    /// Current speed, m/s.
    pub fn speed(&self) -> f64 {
        self.v
    }

    /// The speed limit where the vehicle is, m/s.
    pub fn limit_here(&self) -> f64 {
        self.route.limit(self.leg)
    }

    /// Current position in the local frame.
    pub fn position(&self) -> crate::geo::Point {
        self.route.position(self.s, self.leg).0
    }

    /// Current heading, degrees.
    pub fn heading(&self) -> f64 {
        self.heading
    }

    /// The route being driven.
    pub fn route(&self) -> &Route {
        &self.route
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::Point;
    use crate::rng::Concern;

    fn drive_to_end(route: Route, factor: f64) -> (Vec<(f64, f64)>, f64, u32) {
        let mut rng = Rng::new(5, 1, Concern::Plan);
        let mut drive = Drive::new(route, factor, &mut rng, 0.0);
        let mut samples = Vec::new();
        let mut total = 0.0;
        for t in 0..100_000 {
            let step = drive.step();
            total += step.moved;
            samples.push((drive.speed(), drive.limit_here() * factor));
            if step.arrived {
                return (samples, total, t);
            }
        }
        panic!("never arrived");
    }

    #[test]
    fn reaches_the_end_having_driven_exactly_the_route() {
        let route = Route::new(
            &[
                Point { x: 0.0, y: 0.0 },
                Point { x: 800.0, y: 0.0 },
                Point { x: 800.0, y: 50.0 },
                Point { x: 2000.0, y: 50.0 },
            ],
            &[90.0 / 3.6, 30.0 / 3.6, 50.0 / 3.6],
        );
        let length = route.length();
        let (samples, total, _) = drive_to_end(route, 0.95);
        assert!((total - length).abs() < 1e-6, "{total} vs {length}");
        for (v, limit) in &samples {
            assert!(*v <= limit + 1e-9, "{v} over {limit}");
        }
        // It does get up to speed on the long first leg.
        assert!(samples.iter().any(|(v, _)| *v > 80.0 / 3.6));
    }

    #[test]
    fn never_moves_faster_than_physics_allows() {
        let route = Route::new(
            &[Point { x: 0.0, y: 0.0 }, Point { x: 5000.0, y: 0.0 }],
            &[25.0],
        );
        let (samples, _, _) = drive_to_end(route, 1.0);
        for w in samples.windows(2) {
            let dv = w[1].0 - w[0].0;
            assert!((-MAX_DECEL - 1e-9..=ACCEL + 1e-9).contains(&dv), "dv {dv}");
        }
        assert_eq!(samples.last().unwrap().0, 0.0);
    }

    #[test]
    fn an_empty_route_arrives_at_once() {
        let (_, total, t) = drive_to_end(Route::new(&[Point { x: 1.0, y: 1.0 }], &[]), 1.0);
        assert_eq!((total, t), (0.0, 0));
    }
}
