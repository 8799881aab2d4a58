//! Random episodes in time (GPS dropouts, coverage gaps, compressor faults): a Poisson process
//! of starts with uniformly drawn durations, plus episodes forced at known times.

use crate::rng::Rng;

/// Episodes of one kind for one vehicle.
#[derive(Debug, Clone)]
pub struct Episodes {
    mean_gap_s: f64,
    min_s: f64,
    max_s: f64,
    next_start: f64,
    active_until: f64,
    forced: Vec<(u64, u64)>,
}

impl Episodes {
    /// `per_hour` random episodes per hour lasting `min_s..max_s`, and `forced` (start,
    /// duration) ones.
    pub fn new(
        rng: &mut Rng,
        per_hour: f64,
        min_s: f64,
        max_s: f64,
        forced: Vec<(u64, u64)>,
    ) -> Self {
        let mean_gap_s = if per_hour > 0.0 {
            3600.0 / per_hour
        } else {
            f64::INFINITY
        };
        let next_start = if mean_gap_s.is_finite() {
            rng.exp(mean_gap_s)
        } else {
            f64::INFINITY
        };
        Episodes {
            mean_gap_s,
            min_s,
            max_s,
            next_start,
            active_until: f64::NEG_INFINITY,
            forced,
        }
    }

    /// Whether an episode covers second `t`. Must be called with increasing `t`.
    pub fn active(&mut self, rng: &mut Rng, t: u64) -> bool {
        let now = t as f64;
        if now >= self.next_start {
            let duration = rng.range(self.min_s, self.max_s).round().max(1.0);
            self.active_until = now + duration;
            self.next_start = self.active_until + rng.exp(self.mean_gap_s);
        }
        now < self.active_until
            || self
                .forced
                .iter()
                .any(|&(start, duration)| start <= t && t < start + duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Concern;

    #[test]
    fn rate_and_durations_are_respected() {
        let mut rng = Rng::new(4, 4, Concern::Link);
        let mut eps = Episodes::new(&mut rng, 6.0, 20.0, 40.0, vec![]);
        let (mut starts, mut active, mut prev) = (0, 0u64, false);
        let hours = 200;
        for t in 0..hours * 3600 {
            let a = eps.active(&mut rng, t);
            if a && !prev {
                starts += 1;
            }
            active += u64::from(a);
            prev = a;
        }
        let per_hour = f64::from(starts) / hours as f64;
        assert!((per_hour - 6.0).abs() < 0.8, "{per_hour}");
        let mean_len = active as f64 / f64::from(starts);
        assert!((mean_len - 30.0).abs() < 3.0, "{mean_len}");
    }

    #[test]
    fn forced_episodes_and_no_rate() {
        let mut rng = Rng::new(4, 4, Concern::Link);
        let mut eps = Episodes::new(&mut rng, 0.0, 1.0, 2.0, vec![(10, 5)]);
        let active: Vec<u64> = (0..100).filter(|&t| eps.active(&mut rng, t)).collect();
        assert_eq!(active, vec![10, 11, 12, 13, 14]);
    }
}
