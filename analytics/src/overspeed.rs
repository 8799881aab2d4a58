//! Speeding: intervals with the reported speed above a limit for long enough to matter.
//!
//! One reading over the limit is often a Doppler glitch or an overtaking moment; an event needs
//! the speed above the limit for at least `min_s`. A gap in the fixes longer than
//! [`MAX_GAP_MS`] ends an event, since nothing is known about the speed within it.

use crate::load::Fix;

/// Fixes further apart than this do not continue an event.
pub const MAX_GAP_MS: i64 = 30_000;

/// One speeding event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// First fix over the limit, Unix epoch ms.
    pub start: i64,
    /// Last fix over the limit, Unix epoch ms.
    pub end: i64,
    /// Highest speed, km/h.
    pub max_speed_kmh: f64,
    /// Where the highest speed was (lat, lon).
    pub at: (f64, f64),
}

/// Events over `limit_kmh` lasting at least `min_s` seconds.
pub fn find(fixes: &[Fix], limit_kmh: f64, min_s: f64) -> Vec<Event> {
    let mut out = Vec::new();
    let mut open: Option<Event> = None;
    let mut last_ts: Option<i64> = None;
    let min_ms = (min_s * 1000.0) as i64;
    let close = |e: Event, out: &mut Vec<Event>| {
        if e.end - e.start >= min_ms {
            out.push(e);
        }
    };
    for f in fixes {
        let over = f.speed_kmh > limit_kmh;
        let joined = last_ts.is_some_and(|t| f.ts - t <= MAX_GAP_MS);
        last_ts = Some(f.ts);
        match open.as_mut() {
            Some(e) if over && joined => {
                e.end = f.ts;
                if f.speed_kmh > e.max_speed_kmh {
                    e.max_speed_kmh = f.speed_kmh;
                    e.at = (f.lat, f.lon);
                }
                continue;
            }
            Some(e) => {
                close(*e, &mut out);
                open = None;
            }
            None => {}
        }
        if over {
            open = Some(Event {
                start: f.ts,
                end: f.ts,
                max_speed_kmh: f.speed_kmh,
                at: (f.lat, f.lon),
            });
        }
    }
    if let Some(e) = open {
        close(e, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::tests::east;

    #[test]
    fn sustained_speeding_only() {
        let speeds = [80.0, 95.0, 80.0, 95.0, 97.0, 99.0, 96.0, 95.0, 95.0, 80.0];
        let fixes: Vec<Fix> = speeds
            .iter()
            .enumerate()
            .map(|(i, &v)| east(i as i64 * 2, 0.0, v))
            .collect();
        let e = find(&fixes, 90.0, 5.0);
        assert_eq!(e.len(), 1, "the single 2 s blip is not an event");
        assert_eq!((e[0].start, e[0].end), (6_000, 16_000));
        assert_eq!(e[0].max_speed_kmh, 99.0);
    }
}
