//! Temperature excursions: time the load spent outside its band.
//!
//! The band comes from the setpoint and the archive's cold-chain rules
//! (`telemetry::coldchain`, the broker's `[coldchain]`: by default a chilled load within
//! 2–8 °C, a frozen one within -30 to -15 °C) unless given (`--band LOW,HIGH`).
//!
//! Readings come every few tens of seconds, so an excursion's edges fall between two readings.
//! Temperatures are reported to 0.1 °C and change smoothly, so the edge is placed by linear
//! interpolation between the last reading inside and the first outside, at the level halfway
//! between the band limit and the first reported value past it (the rounding threshold). Two
//! readings further apart than [`MAX_GAP_MS`] are not interpolated: the edge is the reading.

use crate::load::Sample;

/// Readings further apart than this are not interpolated across.
pub const MAX_GAP_MS: i64 = 10 * 60_000;

/// The temperature band a load must stay in, °C.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// Lowest allowed, °C.
    pub low_c: f64,
    /// Highest allowed, °C.
    pub high_c: f64,
}

impl From<telemetry::coldchain::Band> for Band {
    fn from(b: telemetry::coldchain::Band) -> Band {
        Band {
            low_c: b.low_c,
            high_c: b.high_c,
        }
    }
}

impl Band {
    /// The band the default cold-chain rules give a unit set to `setpoint_c`.
    pub fn for_setpoint(setpoint_c: f64) -> Band {
        telemetry::coldchain::ColdChainRules::default()
            .band_for(setpoint_c)
            .into()
    }

    /// Parses `LOW,HIGH`.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(s: &str) -> Result<Band, String> {
        let (low, high) = s
            .split_once(',')
            .ok_or_else(|| format!("--band {s}: expected LOW,HIGH in °C, e.g. 2,8"))?;
        let num = |x: &str| {
            x.trim()
                .parse::<f64>()
                .map_err(|_| format!("--band {s}: `{x}` is not a number"))
        };
        let band = Band {
            low_c: num(low)?,
            high_c: num(high)?,
        };
        if band.low_c.is_finite() && band.high_c.is_finite() && band.low_c < band.high_c {
            Ok(band)
        } else {
            Err(format!("--band {s}: LOW must be below HIGH"))
        }
    }

    /// How far `t` is outside the band (0 inside).
    pub fn beyond(&self, t: f64) -> f64 {
        (t - self.high_c).max(self.low_c - t).max(0.0)
    }

    fn contains(&self, t: f64) -> bool {
        t >= self.low_c && t <= self.high_c
    }
}

/// One excursion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Excursion {
    /// Start, Unix epoch ms.
    pub start: i64,
    /// End (back in band, or the last reading if never), Unix epoch ms.
    pub end: i64,
    /// The reading furthest outside the band, °C.
    pub peak_c: f64,
    /// False when the data ended before the temperature came back.
    pub closed: bool,
}

/// The excursions in `samples` (time-ordered) outside `band`.
pub fn find(samples: &[Sample], band: Band) -> Vec<Excursion> {
    let mut out = Vec::new();
    let mut open: Option<Excursion> = None;
    for (i, s) in samples.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| &samples[j]);
        match (&mut open, band.contains(s.temp_c)) {
            (None, false) => {
                let start = prev.map_or(s.ts, |p| edge(p, s, band));
                open = Some(Excursion {
                    start,
                    end: s.ts,
                    peak_c: s.temp_c,
                    closed: false,
                });
            }
            (Some(e), false) => {
                if band.beyond(s.temp_c) > band.beyond(e.peak_c) {
                    e.peak_c = s.temp_c;
                }
                e.end = s.ts;
            }
            (Some(e), true) => {
                if let Some(p) = prev {
                    e.end = edge(p, s, band);
                }
                e.closed = true;
                out.push(*e);
                open = None;
            }
            (None, true) => {}
        }
    }
    out.extend(open);
    out
}

/// When the temperature crossed the band edge between readings `a` and `b` (one inside, one
/// outside).
fn edge(a: &Sample, b: &Sample, band: Band) -> i64 {
    if b.ts - a.ts > MAX_GAP_MS || a.temp_c == b.temp_c {
        return if band.contains(b.temp_c) { a.ts } else { b.ts };
    }
    let outside = if band.contains(a.temp_c) {
        b.temp_c
    } else {
        a.temp_c
    };
    // Halfway between the limit and the first reported value past it (0.1 °C resolution).
    let level = if outside > band.high_c {
        band.high_c + 0.05
    } else {
        band.low_c - 0.05
    };
    let f = ((level - a.temp_c) / (b.temp_c - a.temp_c)).clamp(0.0, 1.0);
    a.ts + (f * (b.ts - a.ts) as f64).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(temps: &[f64]) -> Vec<Sample> {
        temps
            .iter()
            .enumerate()
            .map(|(i, &t)| Sample {
                ts: i as i64 * 30_000,
                temp_c: t,
                setpoint_c: 5.0,
                door_open: false,
            })
            .collect()
    }

    #[test]
    fn finds_an_excursion_with_interpolated_edges() {
        let s = samples(&[7.0, 7.9, 8.3, 9.5, 8.7, 7.9, 6.0]);
        let e = find(&s, Band::for_setpoint(5.0));
        assert_eq!(e.len(), 1);
        // Up: 7.9 at 30 s to 8.3 at 60 s crosses 8.05 at 30 + 30 * 0.15 / 0.4 = 41.25 s.
        assert_eq!(e[0].start, 41_250);
        // Down: 8.7 at 120 s to 7.9 at 150 s crosses 8.05 at 120 + 30 * 0.65 / 0.8 = 144.375 s.
        assert_eq!(e[0].end, 144_375);
        assert_eq!(e[0].peak_c, 9.5);
        assert!(e[0].closed);
    }

    #[test]
    fn in_band_data_has_no_excursion_and_cold_ones_count() {
        assert!(find(&samples(&[5.0, 2.0, 8.0, 4.0]), Band::for_setpoint(5.0)).is_empty());
        let e = find(&samples(&[3.0, 1.5, 1.0, 3.0]), Band::for_setpoint(5.0));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].peak_c, 1.0);
    }

    #[test]
    fn an_excursion_still_open_at_the_end_is_reported_open() {
        let e = find(&samples(&[5.0, 9.0, 10.0]), Band::for_setpoint(5.0));
        assert_eq!(e.len(), 1);
        assert!(!e[0].closed);
        assert_eq!(e[0].end, 60_000);
    }

    #[test]
    fn bands() {
        assert_eq!(Band::for_setpoint(-20.0).high_c, -15.0);
        assert_eq!(
            Band::parse("2,8"),
            Ok(Band {
                low_c: 2.0,
                high_c: 8.0
            })
        );
        assert!(Band::parse("8,2").is_err());
        assert!(Band::parse("x").is_err());
    }
}
