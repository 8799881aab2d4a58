//! The refrigeration unit: a lumped thermal model of the cargo box and a thermostat.
//!
//! The box is one thermal mass `C` (air, walls and cargo, J/K) that exchanges heat with the
//! outside through the insulation (`UA`, W/K) and, while a door is open, through the doorway
//! (a much larger `UA`). The compressor removes a fixed cooling power while it runs; a
//! thermostat switches it on above `setpoint + 1 K` and off below `setpoint - 1 K`, which gives
//! the familiar saw-tooth duty cycle. A compressor fault stops the cooling, and the box drifts
//! towards the ambient temperature at a rate set by the insulation: that drift is what makes an
//! excursion, not a scripted temperature curve.
//!
//! The parameters are sized so that a normal delivery stop (door open up to 3 minutes) warms a
//! chilled box by about a degree and never out of its band, while a fault of an hour or more in
//! mild weather does leave it.

use serde::Serialize;

/// What the box carries, and so its band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Load {
    /// 2–8 °C goods (pharma, dairy); setpoint 5 °C.
    Chilled,
    /// Frozen goods: at or below -15 °C; setpoint -20 °C.
    Frozen,
}

/// The physical constants of a unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Thermostat setpoint, °C.
    pub setpoint_c: f64,
    /// Lowest allowed temperature, °C.
    pub band_min_c: f64,
    /// Highest allowed temperature, °C.
    pub band_max_c: f64,
    /// Thermostat half-hysteresis, K.
    pub hysteresis_k: f64,
    /// Heat conductance of the insulated box, W/K.
    pub ua_box: f64,
    /// Extra conductance while a door is open, W/K.
    pub ua_door: f64,
    /// Cooling power of the running compressor, W.
    pub cooling_w: f64,
    /// Heat capacity of box and cargo, J/K.
    pub heat_capacity: f64,
}

impl Load {
    /// The unit parameters for this load.
    pub fn params(self) -> Params {
        match self {
            Load::Chilled => Params {
                setpoint_c: 5.0,
                band_min_c: 2.0,
                band_max_c: 8.0,
                hysteresis_k: 1.0,
                ua_box: 35.0,
                ua_door: 150.0,
                cooling_w: 2_500.0,
                heat_capacity: 400_000.0,
            },
            Load::Frozen => Params {
                setpoint_c: -20.0,
                band_min_c: -30.0,
                band_max_c: -15.0,
                hysteresis_k: 1.0,
                ua_box: 25.0,
                ua_door: 120.0,
                cooling_w: 4_000.0,
                heat_capacity: 400_000.0,
            },
        }
    }
}

/// A unit's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// The constants.
    pub params: Params,
    /// Box temperature, °C.
    pub temp_c: f64,
    /// Whether the compressor runs.
    pub compressor_on: bool,
    /// Whether the compressor is broken (it then never runs).
    pub faulted: bool,
}

impl Unit {
    /// A unit at `temp_c`, thermostat state consistent with it.
    pub fn new(params: Params, temp_c: f64) -> Unit {
        Unit {
            compressor_on: temp_c > params.setpoint_c,
            params,
            temp_c,
            faulted: false,
        }
    }

    /// Advances `dt` seconds with the door `door_open` and the outside at `ambient_c`.
    pub fn step(&mut self, dt: f64, ambient_c: f64, door_open: bool) {
        let p = &self.params;
        if self.faulted {
            self.compressor_on = false;
        } else if self.temp_c > p.setpoint_c + p.hysteresis_k {
            self.compressor_on = true;
        } else if self.temp_c < p.setpoint_c - p.hysteresis_k {
            self.compressor_on = false;
        }
        let ua = p.ua_box + if door_open { p.ua_door } else { 0.0 };
        let cooling = if self.compressor_on { p.cooling_w } else { 0.0 };
        let watts = ua * (ambient_c - self.temp_c) - cooling;
        self.temp_c += watts * dt / p.heat_capacity;
    }

    /// The temperature as the unit reports it (0.1 °C resolution); excursions are judged on
    /// this value so that the ground truth and the published readings agree.
    pub fn reported_c(&self) -> f64 {
        crate::geo::round_to(self.temp_c, 1)
    }

    /// True when the reported temperature is outside the load's band.
    pub fn out_of_band(&self) -> bool {
        let t = self.reported_c();
        t < self.params.band_min_c || t > self.params.band_max_c
    }
}

/// Outside temperature at `ts_ms` for a place whose daily mean is `mean_c`: a sinusoid with
/// its minimum at 03:00 and maximum at 15:00 UTC, ±5 K.
pub fn ambient_c(mean_c: f64, ts_ms: i64) -> f64 {
    let hour = (ts_ms.rem_euclid(86_400_000)) as f64 / 3_600_000.0;
    mean_c + 5.0 * (std::f64::consts::TAU * (hour - 9.0) / 24.0).sin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(unit: &mut Unit, seconds: u32, ambient: f64, door: bool) -> (f64, f64, u32) {
        let (mut lo, mut hi, mut on) = (f64::MAX, f64::MIN, 0);
        for _ in 0..seconds {
            unit.step(1.0, ambient, door);
            lo = lo.min(unit.temp_c);
            hi = hi.max(unit.temp_c);
            on += u32::from(unit.compressor_on);
        }
        (lo, hi, on)
    }

    #[test]
    fn thermostat_cycles_within_the_band() {
        for load in [Load::Chilled, Load::Frozen] {
            let p = load.params();
            let mut unit = Unit::new(p, p.setpoint_c);
            let (lo, hi, on) = run(&mut unit, 6 * 3600, 30.0, false);
            assert!(
                lo >= p.band_min_c && hi <= p.band_max_c,
                "{load:?}: {lo}..{hi}"
            );
            // A real duty cycle: the compressor neither idles nor runs flat out.
            let duty = f64::from(on) / f64::from(6 * 3600);
            assert!(duty > 0.1 && duty < 0.6, "{load:?}: duty {duty}");
        }
    }

    #[test]
    fn a_three_minute_door_opening_on_a_hot_day_stays_in_band() {
        for load in [Load::Chilled, Load::Frozen] {
            let p = load.params();
            // Worst case: door opens at the top of the thermostat cycle.
            let mut unit = Unit::new(p, p.setpoint_c + p.hysteresis_k);
            run(&mut unit, 180, 31.0, true);
            assert!(!unit.out_of_band(), "{load:?} reached {}", unit.temp_c);
            assert!(
                unit.temp_c > p.setpoint_c + p.hysteresis_k,
                "door must warm the box"
            );
        }
    }

    #[test]
    fn a_fault_causes_an_excursion_and_recovery_follows() {
        for load in [Load::Chilled, Load::Frozen] {
            let p = load.params();
            let mut unit = Unit::new(p, p.setpoint_c);
            unit.faulted = true;
            let mut minutes = 0;
            while !unit.out_of_band() && minutes < 600 {
                run(&mut unit, 60, 20.0, false);
                minutes += 1;
            }
            assert!(minutes < 90, "{load:?}: no excursion after {minutes} min");
            unit.faulted = false;
            run(&mut unit, 3600, 20.0, false);
            assert!(!unit.out_of_band(), "{load:?} did not recover");
        }
    }

    #[test]
    fn ambient_follows_the_day() {
        let day = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000;
        assert!((ambient_c(20.0, day + 15 * 3_600_000) - 25.0).abs() < 1e-9);
        assert!((ambient_c(20.0, day + 3 * 3_600_000) - 15.0).abs() < 1e-9);
    }
}
