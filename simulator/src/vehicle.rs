//! One vehicle's model: its day (tours from the depot to customers and back), its driving, its
//! reefer, its sensors and its connectivity, advanced one simulated second at a time.
//!
//! The model knows nothing of MQTT or wall-clock time. It yields a sequence of [`Timed`] events
//! (readings to publish, and the moments its mobile link goes down and comes back), all stamped
//! with fleet time; the transport decides when they go out. The same configuration always
//! yields the same events, byte for byte.

use std::{collections::VecDeque, sync::Arc};

use bytes::Bytes;
use telemetry::{Gps, Reefer, TopicKind};

use crate::config::ModelConfig;
use crate::geo::{round_to, Point};
use crate::motion::Drive;
use crate::reefer::{self, Load, Unit};
use crate::rng::{Concern, Rng};
use crate::schedule::Episodes;
use crate::truth::{Counts, DoorOpening, Excursion, Interval, Stop, Trip, VehicleTruth};
use crate::world::World;

/// A reading ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// GPS or reefer.
    pub kind: TopicKind,
    /// The vehicle's message counter.
    pub seq: u64,
    /// The reading's `ts`.
    pub ts: i64,
    /// The JSON payload.
    pub payload: Bytes,
}

/// What happens to a vehicle.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A reading to publish (now, or when the link is back).
    Publish(Reading),
    /// The mobile link is lost: readings from now on are buffered.
    LinkDown,
    /// The link is back: publish the buffered readings, in order.
    LinkUp,
}

/// An event at a fleet time.
#[derive(Debug, Clone, PartialEq)]
pub struct Timed {
    /// Fleet time, Unix epoch ms.
    pub at_ms: i64,
    /// The event.
    pub event: Event,
}

#[derive(Debug, Clone)]
enum Phase {
    /// Parked at a place until `depart`; the cargo door is open during `door`.
    AtPlace {
        place: usize,
        arrived: u64,
        depart: u64,
        door: Option<(u64, u64)>,
    },
    /// On the road.
    Driving {
        drive: Box<Drive>,
        from: usize,
        to: usize,
        start: u64,
        distance: f64,
    },
}

/// One simulated vehicle.
#[derive(Debug)]
pub struct Vehicle {
    id: String,
    world: Arc<World>,
    start_ms: i64,
    phase_ms: i64,
    gps_interval: u64,
    reefer_interval: u64,
    reefer_phase: u64,
    gps_noise_m: f64,
    plan: Rng,
    gps_rng: Rng,
    reefer_rng: Rng,
    link_rng: Rng,
    t: u64,
    phase: Phase,
    home: usize,
    tour: VecDeque<usize>,
    factor: f64,
    heading: f64,
    distance: f64,
    unit: Unit,
    ambient_mean_c: f64,
    noise: Point,
    dropouts: Episodes,
    gaps: Episodes,
    faults: Episodes,
    no_fix_since: Option<u64>,
    offline_since: Option<u64>,
    fault_since: Option<u64>,
    excursion: Option<(u64, f64)>,
    seq: u64,
    truth: VehicleTruth,
    pending: VecDeque<Timed>,
}

impl Vehicle {
    /// Vehicle `index` of the fleet described by `config`, living in `world`.
    pub fn new(config: &ModelConfig, world: Arc<World>, index: usize) -> Vehicle {
        let seed = config.seed;
        let idx = index as u64;
        let mut plan = Rng::new(seed, idx, Concern::Plan);
        let mut gps_rng = Rng::new(seed, idx, Concern::Gps);
        let mut reefer_rng = Rng::new(seed, idx, Concern::Reefer);
        let mut link_rng = Rng::new(seed, idx, Concern::Link);
        let load = if reefer_rng.chance(config.frozen_share) {
            Load::Frozen
        } else {
            Load::Chilled
        };
        let params = load.params();
        let unit = Unit::new(params, params.setpoint_c + reefer_rng.range(-1.0, 1.0));
        let ambient_mean_c = reefer_rng.range(12.0, 26.0);
        let forced = |list: Vec<(usize, u64, u64)>| -> Vec<(u64, u64)> {
            list.into_iter()
                .filter(|(v, _, _)| *v == index)
                .map(|(_, s, d)| (s, d))
                .collect()
        };
        let faults = Episodes::new(
            &mut reefer_rng,
            config.faults_per_hour,
            3600.0,
            9000.0,
            forced(
                config
                    .forced_faults
                    .iter()
                    .map(|f| (f.vehicle, f.start_s, f.duration_s))
                    .collect(),
            ),
        );
        let gaps = Episodes::new(
            &mut link_rng,
            config.coverage_gaps_per_hour,
            20.0,
            300.0,
            forced(
                config
                    .forced_gaps
                    .iter()
                    .map(|g| (g.vehicle, g.start_s, g.duration_s))
                    .collect(),
            ),
        );
        let dropouts = Episodes::new(
            &mut gps_rng,
            config.gps_dropouts_per_hour,
            5.0,
            60.0,
            vec![],
        );
        let home = world.home(index);
        let phase_ms = plan.below(1000) as i64;
        let reefer_interval = u64::from(config.reefer_interval_s);
        let reefer_phase = plan.below(reefer_interval);
        let factor = plan.range(0.85, 1.0);
        let depart = plan.range(60.0, 900.0).round() as u64;
        let odometer_start_km = round_to(plan.range(20_000.0, 400_000.0), 3);
        let id = config.vehicle_id(index);
        let truth = VehicleTruth {
            vehicle_id: id.clone(),
            load,
            setpoint_c: params.setpoint_c,
            band_min_c: params.band_min_c,
            band_max_c: params.band_max_c,
            home: world.name(home).to_owned(),
            distance_m: 0.0,
            odometer_start_km,
            trips: Vec::new(),
            stops: Vec::new(),
            door_openings: Vec::new(),
            excursions: Vec::new(),
            faults: Vec::new(),
            coverage_gaps: Vec::new(),
            gps_dropouts: Vec::new(),
            generated: Counts::default(),
            published: Counts::default(),
        };
        Vehicle {
            id,
            start_ms: config.start_ms,
            phase_ms,
            gps_interval: u64::from(config.gps_interval_s),
            reefer_interval,
            reefer_phase,
            gps_noise_m: config.gps_noise_m,
            plan,
            gps_rng,
            reefer_rng,
            link_rng,
            t: 0,
            phase: Phase::AtPlace {
                place: home,
                arrived: 0,
                depart,
                door: None,
            },
            home,
            tour: VecDeque::new(),
            factor,
            heading: 0.0,
            distance: 0.0,
            unit,
            ambient_mean_c,
            noise: Point { x: 0.0, y: 0.0 },
            dropouts,
            gaps,
            faults,
            no_fix_since: None,
            offline_since: None,
            fault_since: None,
            excursion: None,
            seq: 0,
            truth,
            pending: VecDeque::new(),
            world,
        }
    }

    /// The vehicle id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Fleet time of simulated second `t`, Unix epoch ms (each vehicle has its own
    /// sub-second phase, so a fleet's readings spread over the second).
    pub fn time_ms(&self, t: u64) -> i64 {
        self.start_ms + t as i64 * 1000 + self.phase_ms
    }

    /// The next event before simulated second `end_s`, or `None` when the model has reached it.
    pub fn next_event(&mut self, end_s: u64) -> Option<Timed> {
        while self.pending.is_empty() {
            if self.t >= end_s {
                return None;
            }
            self.tick();
        }
        self.pending.pop_front()
    }

    /// Ends the run at simulated second `end_s`: closes what is still open and returns the
    /// truth (its `published` counts are the transport's to fill in).
    pub fn finish(mut self, end_s: u64) -> VehicleTruth {
        let end = self.time_ms(end_s);
        match &self.phase {
            Phase::AtPlace { place, arrived, .. } => self.truth.stops.push(Stop {
                place: self.world.name(*place).to_owned(),
                start: self.time_ms(*arrived),
                end,
            }),
            Phase::Driving {
                from,
                to,
                start,
                distance,
                ..
            } => self.truth.trips.push(Trip {
                from: self.world.name(*from).to_owned(),
                to: self.world.name(*to).to_owned(),
                start: self.time_ms(*start),
                end,
                distance_m: *distance,
                complete: false,
            }),
        }
        self.truth.door_openings.retain(|d| d.start < end);
        for d in &mut self.truth.door_openings {
            d.end = d.end.min(end);
        }
        if let Some((start, peak)) = self.excursion.take() {
            let start = self.time_ms(start);
            self.truth.excursions.push(Excursion {
                start,
                end,
                peak_c: peak,
            });
        }
        for (since, list) in [
            (self.fault_since, &mut self.truth.faults),
            (self.offline_since, &mut self.truth.coverage_gaps),
            (self.no_fix_since, &mut self.truth.gps_dropouts),
        ] {
            if let Some(since) = since {
                let start = self.start_ms + since as i64 * 1000 + self.phase_ms;
                list.push(Interval { start, end });
            }
        }
        self.truth.distance_m = self.distance;
        self.truth
    }

    /// Simulates second `t`: episode changes, readings of the state at `t`, then physics to
    /// `t + 1`.
    fn tick(&mut self) {
        let t = self.t;
        let now = self.time_ms(t);
        self.update_episodes(t, now);
        let door_open = self.door_open(t);
        if t.is_multiple_of(self.gps_interval) && self.no_fix_since.is_none() {
            self.emit_gps(now);
        }
        if t % self.reefer_interval == self.reefer_phase {
            self.emit_reefer(now, door_open);
        }
        self.track_excursion(t);
        let ambient = reefer::ambient_c(self.ambient_mean_c, now);
        self.unit.step(1.0, ambient, door_open);
        self.advance(t);
        self.t = t + 1;
    }

    fn update_episodes(&mut self, t: u64, now: i64) {
        let offline = self.gaps.active(&mut self.link_rng, t);
        if offline != self.offline_since.is_some() {
            let event = if offline {
                self.offline_since = Some(t);
                Event::LinkDown
            } else {
                let start = self.offline_since.take().map_or(now, |s| self.time_ms(s));
                self.truth.coverage_gaps.push(Interval { start, end: now });
                Event::LinkUp
            };
            self.pending.push_back(Timed { at_ms: now, event });
        }
        let faulted = self.faults.active(&mut self.reefer_rng, t);
        if faulted != self.fault_since.is_some() {
            if faulted {
                self.fault_since = Some(t);
            } else {
                let start = self.fault_since.take().map_or(now, |s| self.time_ms(s));
                self.truth.faults.push(Interval { start, end: now });
            }
        }
        self.unit.faulted = faulted;
        let no_fix = self.dropouts.active(&mut self.gps_rng, t);
        if no_fix != self.no_fix_since.is_some() {
            if no_fix {
                self.no_fix_since = Some(t);
            } else {
                let start = self.no_fix_since.take().map_or(now, |s| self.time_ms(s));
                self.truth.gps_dropouts.push(Interval { start, end: now });
            }
        }
    }

    fn door_open(&self, t: u64) -> bool {
        matches!(self.phase, Phase::AtPlace { door: Some((open, close)), .. } if open <= t && t < close)
    }

    fn track_excursion(&mut self, t: u64) {
        let temp = self.unit.reported_c();
        let p = self.unit.params;
        if self.unit.out_of_band() {
            let beyond = |x: f64| (x - p.band_max_c).max(p.band_min_c - x);
            match &mut self.excursion {
                Some((_, peak)) if beyond(temp) > beyond(*peak) => *peak = temp,
                Some(_) => {}
                None => self.excursion = Some((t, temp)),
            }
        } else if let Some((start, peak)) = self.excursion.take() {
            self.truth.excursions.push(Excursion {
                start: self.time_ms(start),
                end: self.time_ms(t),
                peak_c: peak,
            });
        }
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.seq;
        self.seq += 1;
        seq
    }

    fn emit_gps(&mut self, ts: i64) {
        let (point, speed, heading) = match &self.phase {
            Phase::Driving { drive, .. } => (drive.position(), drive.speed(), drive.heading()),
            Phase::AtPlace { place, .. } => {
                let point = self
                    .world
                    .places
                    .get(*place)
                    .map_or(Point { x: 0.0, y: 0.0 }, |p| p.point);
                (point, 0.0, self.heading)
            }
        };
        // First-order Gauss-Markov error: real receivers wander slowly, they do not jump.
        const RHO: f64 = 0.95;
        let innovation = (1.0 - RHO * RHO).sqrt() * self.gps_noise_m;
        self.noise.x = RHO * self.noise.x + innovation * self.gps_rng.normal();
        self.noise.y = RHO * self.noise.y + innovation * self.gps_rng.normal();
        let hdop = round_to(0.7 + 0.4 * self.gps_rng.normal().abs(), 1);
        let (lat, lon) = self.world.frame.to_lat_lon(Point {
            x: point.x + self.noise.x,
            y: point.y + self.noise.y,
        });
        let heading = round_to(heading, 1);
        let gps = Gps {
            ts,
            seq: self.next_seq(),
            lat: round_to(lat, 6),
            lon: round_to(lon, 6),
            speed_kmh: round_to(speed * 3.6, 1),
            heading_deg: if heading >= 360.0 { 0.0 } else { heading },
            odometer_km: Some(round_to(
                self.truth.odometer_start_km + self.distance / 1000.0,
                3,
            )),
            hdop: Some(hdop),
        };
        self.push_reading(TopicKind::Gps, gps.seq, ts, gps.to_json());
    }

    fn emit_reefer(&mut self, ts: i64, door_open: bool) {
        let ambient = reefer::ambient_c(self.ambient_mean_c, ts);
        let humidity = match (self.unit.params.setpoint_c < 0.0, door_open) {
            (true, _) => 70.0,
            (false, true) => 75.0,
            (false, false) => 88.0,
        } + self.reefer_rng.normal();
        let reading = Reefer {
            ts,
            seq: self.next_seq(),
            temp_c: self.unit.reported_c(),
            setpoint_c: self.unit.params.setpoint_c,
            door_open,
            compressor_on: self.unit.compressor_on,
            ambient_c: Some(round_to(ambient, 1)),
            humidity_pct: Some(round_to(humidity.clamp(0.0, 100.0), 0)),
        };
        self.push_reading(TopicKind::Reefer, reading.seq, ts, reading.to_json());
    }

    fn push_reading(&mut self, kind: TopicKind, seq: u64, ts: i64, payload: Vec<u8>) {
        self.truth.generated.record(kind, seq);
        self.pending.push_back(Timed {
            at_ms: ts,
            event: Event::Publish(Reading {
                kind,
                seq,
                ts,
                payload: Bytes::from(payload),
            }),
        });
    }

    /// Physics and plan from `t` to `t + 1`.
    fn advance(&mut self, t: u64) {
        let next = t + 1;
        match &mut self.phase {
            Phase::AtPlace {
                place,
                arrived,
                depart,
                ..
            } => {
                if next >= *depart {
                    let (place, arrived) = (*place, *arrived);
                    self.truth.stops.push(Stop {
                        place: self.world.name(place).to_owned(),
                        start: self.time_ms(arrived),
                        end: self.time_ms(next),
                    });
                    self.depart(place, next);
                }
            }
            Phase::Driving {
                drive,
                distance,
                to,
                from,
                start,
            } => {
                let step = drive.step();
                *distance += step.moved;
                self.distance += step.moved;
                self.heading = drive.heading();
                if step.arrived {
                    let (to, from, start, distance) = (*to, *from, *start, *distance);
                    self.truth.trips.push(Trip {
                        from: self.world.name(from).to_owned(),
                        to: self.world.name(to).to_owned(),
                        start: self.time_ms(start),
                        end: self.time_ms(next),
                        distance_m: distance,
                        complete: true,
                    });
                    self.arrive(to, next);
                }
            }
        }
    }

    fn depart(&mut self, from: usize, now: u64) {
        if self.tour.is_empty() && from == self.home {
            let tour = self.world.tour(&mut self.plan, self.home);
            self.tour.extend(tour);
            self.tour.push_back(self.home);
        }
        let mut to = self.tour.pop_front().unwrap_or(self.home);
        while to == from && !self.tour.is_empty() {
            to = self.tour.pop_front().unwrap_or(self.home);
        }
        let route = self.world.route(from, to);
        let drive = Drive::new(route, self.factor, &mut self.plan, self.heading);
        self.phase = Phase::Driving {
            drive: Box::new(drive),
            from,
            to,
            start: now,
            distance: 0.0,
        };
    }

    fn arrive(&mut self, place: usize, now: u64) {
        let (depart, door) = if place == self.home {
            (now + self.plan.range(900.0, 2400.0).round() as u64, None)
        } else {
            let dwell = self.plan.range(300.0, 1200.0).round() as u64;
            let open = now + self.plan.range(30.0, 90.0).round() as u64;
            let close = open + self.plan.range(60.0, 180.0).round() as u64;
            self.truth.door_openings.push(DoorOpening {
                place: self.world.name(place).to_owned(),
                start: self.time_ms(open),
                end: self.time_ms(close),
            });
            (now + dwell, Some((open, close)))
        };
        self.phase = Phase::AtPlace {
            place,
            arrived: now,
            depart,
            door,
        };
    }
}

#[cfg(test)]
mod tests;
