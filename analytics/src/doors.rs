//! Cargo door openings and what they did to the box temperature.
//!
//! An opening is a run of readings with `door_open`; its edges are placed halfway between the
//! last reading closed and the first open (and back), the unbiased guess between two readings.
//! Its impact: the temperature just before, the peak from the opening until
//! [`RECOVERY_WINDOW_MS`] after closing (or the next opening), the rise, and how long after
//! closing the box took to come back within 0.5 °C of where it was (or to its setpoint: a
//! door opened at the bottom of a compressor cycle need not wait for the next bottom).

use crate::load::Sample;

/// How long after a door closes its effect on the temperature is followed.
pub const RECOVERY_WINDOW_MS: i64 = 30 * 60_000;
/// Back within this of the temperature before the opening counts as recovered, °C.
pub const RECOVERED_WITHIN_C: f64 = 0.5;

/// One door opening.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Opening {
    /// Opened, Unix epoch ms.
    pub start: i64,
    /// Closed, Unix epoch ms.
    pub end: i64,
    /// The last reading before, °C.
    pub before_c: f64,
    /// Warmest reading during and after, °C.
    pub peak_c: f64,
    /// Time from closing until back within [`RECOVERED_WITHIN_C`], ms (`None`: not within
    /// the window).
    pub recovery_ms: Option<i64>,
}

/// The door openings in `samples` (time-ordered).
pub fn find(samples: &[Sample]) -> Vec<Opening> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, s) in samples.iter().enumerate() {
        match (s.door_open, start) {
            (true, None) => start = Some(i),
            (false, Some(a)) => {
                runs.push((a, i - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(a) = start {
        runs.push((a, samples.len() - 1));
    }
    let mid = |a: &Sample, b: &Sample| a.ts + (b.ts - a.ts) / 2;
    let mut out = Vec::with_capacity(runs.len());
    for (k, &(a, b)) in runs.iter().enumerate() {
        let start = a
            .checked_sub(1)
            .map_or(samples[a].ts, |p| mid(&samples[p], &samples[a]));
        let end = samples
            .get(b + 1)
            .map_or(samples[b].ts, |n| mid(&samples[b], n));
        let before_c = a
            .checked_sub(1)
            .map_or(samples[a].temp_c, |p| samples[p].temp_c);
        let next_open = runs.get(k + 1).map_or(samples.len(), |r| r.0);
        let horizon = end + RECOVERY_WINDOW_MS;
        let after: Vec<&Sample> = samples[a..next_open]
            .iter()
            .take_while(|s| s.ts <= horizon)
            .collect();
        let peak_c = after
            .iter()
            .map(|s| s.temp_c)
            .fold(f64::NEG_INFINITY, f64::max);
        let recovery_ms = after
            .iter()
            .filter(|s| s.ts >= end && !s.door_open)
            .find(|s| s.temp_c <= (before_c + RECOVERED_WITHIN_C).max(s.setpoint_c))
            .map(|s| s.ts - end);
        out.push(Opening {
            start,
            end,
            before_c,
            peak_c,
            recovery_ms,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opening_and_its_recovery() {
        let temps = [5.0, 5.0, 5.8, 6.4, 6.0, 5.6, 5.3, 5.0];
        let doors = [false, false, true, true, false, false, false, false];
        let s: Vec<Sample> = temps
            .iter()
            .zip(doors)
            .enumerate()
            .map(|(i, (&temp_c, door_open))| Sample {
                ts: i as i64 * 30_000,
                temp_c,
                setpoint_c: 5.0,
                door_open,
            })
            .collect();
        let o = find(&s);
        assert_eq!(o.len(), 1);
        assert_eq!((o[0].start, o[0].end), (45_000, 105_000));
        assert_eq!((o[0].before_c, o[0].peak_c), (5.0, 6.4));
        // Back within 0.5 °C (5.3 at 180 s) 75 s after closing.
        assert_eq!(o[0].recovery_ms, Some(75_000));
    }
}
