//! The temperature timeline: each vehicle's box temperature over time, its band shaded, the
//! band limits dashed and the excursions shaded red.

use super::{
    clock, legend_name,
    svg::{label, ticks, Frame, Svg, Swatch, PALETTE},
};
use crate::{
    excursions::{Band, Excursion},
    load::{PerVehicle, Sample},
};

/// Nice time steps for the x axis, ms.
const TIME_STEPS: [i64; 10] = [
    60_000, 300_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000,
    86_400_000,
];

/// The timeline of `series`, each with its band and excursions, as SVG.
pub fn timeline(series: &[(&PerVehicle<Sample>, Band, Vec<Excursion>)]) -> String {
    let (width, height) = (1000.0, 520.0);
    let f = Frame {
        x0: 80.0,
        y0: 50.0,
        w: 890.0,
        h: 400.0,
    };
    let mut svg = Svg::new(width, height);
    let samples = series.iter().flat_map(|(s, _, _)| s.samples.iter());
    let (mut t0, mut t1, mut lo, mut hi) = (i64::MAX, i64::MIN, f64::INFINITY, f64::NEG_INFINITY);
    for s in samples {
        t0 = t0.min(s.ts);
        t1 = t1.max(s.ts);
        lo = lo.min(s.temp_c);
        hi = hi.max(s.temp_c);
    }
    let title = "Box temperature, band and excursions";
    svg.text((f.x0 + f.w / 2.0, 28.0), title, "middle", 16.0, 0.0);
    if t0 > t1 {
        svg.text(
            (f.x0 + f.w / 2.0, f.y0 + f.h / 2.0),
            "no reefer data in range",
            "middle",
            14.0,
            0.0,
        );
        return svg.finish();
    }
    for (_, band, _) in series {
        lo = lo.min(band.low_c);
        hi = hi.max(band.high_c);
    }
    let pad = ((hi - lo) * 0.05).max(0.5);
    let (lo, hi) = (lo - pad, hi + pad);
    let t1 = t1.max(t0 + 60_000);
    let x = |ts: i64| f.x0 + (ts - t0) as f64 / (t1 - t0) as f64 * f.w;
    let y = |c: f64| f.y0 + (hi - c) / (hi - lo) * f.h;
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|s| (t1 - t0) / s <= 10)
        .unwrap_or(86_400_000);
    let mut xt = Vec::new();
    let mut t = (t0 + step - 1).div_euclid(step) * step;
    while t <= t1 {
        xt.push((x(t), clock(t, xt.is_empty())));
        t += step;
    }
    let yv = ticks(lo, hi, 8);
    let ystep = if yv.len() > 1 { yv[1] - yv[0] } else { 1.0 };
    let yt: Vec<(f64, String)> = yv.iter().map(|v| (y(*v), label(*v, ystep))).collect();
    // Shading first, so the lines stay on top.
    let mut bands: Vec<Band> = Vec::new();
    for (_, band, _) in series {
        if !bands.contains(band) {
            bands.push(*band);
            svg.rect(
                f.x0,
                y(band.high_c),
                f.w,
                y(band.low_c) - y(band.high_c),
                "#59a14f",
                0.12,
            );
        }
    }
    let mut any_excursion = false;
    for (_, _, list) in series {
        for e in list {
            any_excursion = true;
            svg.rect(
                x(e.start),
                f.y0,
                x(e.end) - x(e.start),
                f.h,
                "#e15759",
                0.25,
            );
        }
    }
    svg.axes(f, &xt, &yt, "time (UTC)", "temperature (°C)");
    for band in &bands {
        for limit in [band.low_c, band.high_c] {
            if limit > lo && limit < hi {
                svg.line(
                    (f.x0, y(limit)),
                    (f.x0 + f.w, y(limit)),
                    "#2f6b2a",
                    1.2,
                    true,
                );
            }
        }
    }
    let mut legend = Vec::new();
    for (i, (s, _, list)) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let mut points = Vec::with_capacity(s.samples.len());
        let mut prev: Option<i64> = None;
        for sample in &s.samples {
            if prev.is_some_and(|p| sample.ts - p > crate::excursions::MAX_GAP_MS) {
                points.push(None);
            }
            points.push(Some((x(sample.ts), y(sample.temp_c))));
            prev = Some(sample.ts);
        }
        // Each excursion also underlines its own vehicle's line, so that with several
        // vehicles the shading says whose it is.
        for e in list {
            let during: Vec<Option<(f64, f64)>> = s
                .samples
                .iter()
                .filter(|p| p.ts >= e.start - 30_000 && p.ts <= e.end + 30_000)
                .map(|p| Some((x(p.ts), y(p.temp_c))))
                .collect();
            svg.polyline(&during, "#f4a3a4", 7.0);
        }
        svg.polyline(&points, colour, 1.6);
        if let Some(name) = legend_name(i, series.len(), &s.vehicle_id) {
            let colour = if i < super::LEGEND_MAX {
                colour
            } else {
                "#999"
            };
            legend.push((Swatch::Line, colour.to_owned(), name));
        }
    }
    let band_text = match bands.as_slice() {
        [b] => format!("band {} to {} °C", b.low_c, b.high_c),
        _ => "bands (per load)".to_owned(),
    };
    legend.push((Swatch::Area, "#59a14f".to_owned(), band_text));
    legend.push((
        Swatch::Dashed,
        "#2f6b2a".to_owned(),
        "band limits".to_owned(),
    ));
    if any_excursion {
        legend.push((Swatch::Area, "#e15759".to_owned(), "excursion".to_owned()));
    }
    svg.legend(f, &legend);
    svg.finish()
}
