//! Mean kinetic temperature (MKT): the single temperature that would degrade a product as
//! much as the varying temperatures it actually saw (Arrhenius, USP <1079.2>):
//!
//! `Tk = (ΔH/R) / -ln( Σ wᵢ·exp(-ΔH/(R·Tᵢ)) / Σ wᵢ )`, with `Tᵢ` in kelvin and
//! `ΔH/R = 83.144 kJ/mol / 8.3144 J/(mol·K) = 10 000 K`.
//!
//! For equally spaced readings the weights are equal; readings are weighted by the time each
//! stands for (half the interval to each neighbour, capped at [`crate::excursions::MAX_GAP_MS`]
//! so a dropout does not give one reading hours of weight).

use crate::{excursions::MAX_GAP_MS, load::Sample};

/// ΔH/R, kelvin.
pub const DH_OVER_R_K: f64 = 10_000.0;
const KELVIN: f64 = 273.15;

/// Statistics of the temperature over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mkt {
    /// Mean kinetic temperature, °C.
    pub mkt_c: f64,
    /// Time-weighted arithmetic mean, °C.
    pub mean_c: f64,
    /// Lowest reading, °C.
    pub min_c: f64,
    /// Highest reading, °C.
    pub max_c: f64,
    /// Readings used.
    pub samples: usize,
}

/// The MKT of `samples` (time-ordered), or `None` when there are none.
pub fn mkt(samples: &[Sample]) -> Option<Mkt> {
    if samples.is_empty() {
        return None;
    }
    let weights = weights(samples);
    let total: f64 = weights.iter().sum();
    let (mut arrhenius, mut mean) = (0.0, 0.0);
    for (s, w) in samples.iter().zip(&weights) {
        arrhenius += w * (-DH_OVER_R_K / (s.temp_c + KELVIN)).exp();
        mean += w * s.temp_c;
    }
    let mkt_k = DH_OVER_R_K / -(arrhenius / total).ln();
    Some(Mkt {
        mkt_c: mkt_k - KELVIN,
        mean_c: mean / total,
        min_c: samples
            .iter()
            .map(|s| s.temp_c)
            .fold(f64::INFINITY, f64::min),
        max_c: samples
            .iter()
            .map(|s| s.temp_c)
            .fold(f64::NEG_INFINITY, f64::max),
        samples: samples.len(),
    })
}

fn weights(samples: &[Sample]) -> Vec<f64> {
    if samples.len() == 1 {
        return vec![1.0];
    }
    let half = |a: &Sample, b: &Sample| ((b.ts - a.ts).min(MAX_GAP_MS) as f64 / 2.0).max(0.0);
    (0..samples.len())
        .map(|i| {
            let before = i
                .checked_sub(1)
                .map_or(0.0, |j| half(&samples[j], &samples[i]));
            let after = samples.get(i + 1).map_or(0.0, |n| half(&samples[i], n));
            // Ends stand for half an interval more, as if sampling continued at the same rate.
            let w = before + after;
            if i == 0 || i + 1 == samples.len() {
                2.0 * w
            } else {
                w
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts: i64, temp_c: f64) -> Sample {
        Sample {
            ts,
            temp_c,
            setpoint_c: 5.0,
            door_open: false,
        }
    }

    #[test]
    fn constant_temperature_is_its_own_mkt() {
        let s: Vec<Sample> = (0..10).map(|i| at(i * 30_000, 5.0)).collect();
        let m = mkt(&s).unwrap();
        assert!((m.mkt_c - 5.0).abs() < 1e-9);
        assert_eq!(m.samples, 10);
    }

    #[test]
    fn matches_a_worked_example() {
        // Half the time at 20 °C, half at 30 °C: MKT (26.26 °C) is above the 25 °C mean, since
        // warm hours weigh more. By hand: 10000 / -ln((e^(-10000/293.15) + e^(-10000/303.15)) / 2) - 273.15.
        let s = [at(0, 20.0), at(1000, 30.0)];
        let expected = 10_000.0
            / -(((-10_000.0f64 / 293.15).exp() + (-10_000.0f64 / 303.15).exp()) / 2.0).ln()
            - 273.15;
        let m = mkt(&s).unwrap();
        assert!((m.mkt_c - expected).abs() < 1e-9);
        assert!((m.mkt_c - 26.26).abs() < 0.01, "{}", m.mkt_c);
        assert!((m.mean_c - 25.0).abs() < 1e-9);
    }

    #[test]
    fn irregular_sampling_is_time_weighted() {
        // An hour at 5 °C every 30 s, plus a burst of ten 25 °C readings within 10 ms (an alarm
        // sampled fast): by count they would be 8 % of the data and lift the MKT to ~9.5 °C;
        // by time they stand for about 15 s of the hour.
        let mut s: Vec<Sample> = (0..=120).map(|i| at(i * 30_000, 5.0)).collect();
        s.extend((1..=10).map(|i| at(1_800_000 + i, 25.0)));
        s.sort_by_key(|x| x.ts);
        let m = mkt(&s).unwrap();
        assert!(m.mkt_c < 5.5, "{}", m.mkt_c);
        assert!(mkt(&[]).is_none());
    }
}
