//! The route map: each vehicle's track in its colour, its stops as numbered rings.
//!
//! Positions are projected equirectangularly about the map's centre (x scaled by the cosine of
//! the latitude), which keeps a city-sized map true to shape; axes are labelled in degrees and
//! a scale bar gives metres.

use super::{
    legend_name,
    svg::{label, ticks, Frame, Svg, Swatch, PALETTE},
};
use crate::{
    load::{Fix, PerVehicle},
    trips::{Kind, Segment},
};

/// Most points drawn per track; longer tracks are thinned evenly (the shape survives, the file
/// stays small).
const MAX_POINTS: usize = 4000;

/// The route map of `tracks` with their segments, as SVG.
pub fn route_map(tracks: &[(&PerVehicle<Fix>, Vec<Segment>)]) -> String {
    let (width, height) = (900.0, 720.0);
    let f = Frame {
        x0: 80.0,
        y0: 50.0,
        w: 790.0,
        h: 600.0,
    };
    let mut svg = Svg::new(width, height);
    let all = tracks.iter().flat_map(|(t, _)| t.samples.iter());
    let (mut lat0, mut lat1, mut lon0, mut lon1) = (90.0f64, -90.0f64, 180.0f64, -180.0f64);
    for fix in all {
        lat0 = lat0.min(fix.lat);
        lat1 = lat1.max(fix.lat);
        lon0 = lon0.min(fix.lon);
        lon1 = lon1.max(fix.lon);
    }
    let title = format!("Routes of {} vehicle(s), stops marked", tracks.len());
    svg.text((f.x0 + f.w / 2.0, 28.0), &title, "middle", 16.0, 0.0);
    if lat0 > lat1 {
        svg.text(
            (f.x0 + f.w / 2.0, f.y0 + f.h / 2.0),
            "no GPS data in range",
            "middle",
            14.0,
            0.0,
        );
        return svg.finish();
    }
    // Equal metres per pixel in both directions, the data centred.
    let coslat = ((lat0 + lat1) / 2.0).to_radians().cos().max(0.01);
    let (mid_lat, mid_lon) = ((lat0 + lat1) / 2.0, (lon0 + lon1) / 2.0);
    let span_x = ((lon1 - lon0) * coslat).max(1e-6) * 1.08;
    let span_y = (lat1 - lat0).max(1e-6) * 1.08;
    let scale = (f.w / span_x).min(f.h / span_y);
    let px = |lat: f64, lon: f64| {
        (
            f.x0 + f.w / 2.0 + (lon - mid_lon) * coslat * scale,
            f.y0 + f.h / 2.0 - (lat - mid_lat) * scale,
        )
    };
    let (vlat0, vlat1) = (mid_lat - f.h / 2.0 / scale, mid_lat + f.h / 2.0 / scale);
    let (vlon0, vlon1) = (
        mid_lon - f.w / 2.0 / scale / coslat,
        mid_lon + f.w / 2.0 / scale / coslat,
    );
    let tick_axis = |lo: f64, hi: f64, n: usize, to_px: &dyn Fn(f64) -> f64| {
        let t = ticks(lo, hi, n);
        let step = if t.len() > 1 { t[1] - t[0] } else { 1.0 };
        t.into_iter()
            .map(|v| (to_px(v), label(v, step)))
            .collect::<Vec<_>>()
    };
    let xt = tick_axis(vlon0, vlon1, 8, &|v| px(mid_lat, v).0);
    let yt = tick_axis(vlat0, vlat1, 8, &|v| px(v, mid_lon).1);
    svg.axes(f, &xt, &yt, "longitude (° E)", "latitude (° N)");
    let mut legend = Vec::new();
    for (i, (track, segments)) in tracks.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let step = track.samples.len().div_ceil(MAX_POINTS).max(1);
        let mut points = Vec::new();
        let mut prev_ts = None;
        for fix in track.samples.iter().step_by(step) {
            // A break of more than five minutes is a gap in the data, not a straight road.
            if prev_ts.is_some_and(|p: i64| fix.ts - p > 300_000) {
                points.push(None);
            }
            points.push(Some(px(fix.lat, fix.lon)));
            prev_ts = Some(fix.ts);
        }
        svg.polyline(&points, colour, 1.8);
        let stops = segments.iter().filter(|s| s.kind == Kind::Stop);
        for (k, stop) in stops.enumerate() {
            let c = px(stop.from.0, stop.from.1);
            svg.circle(c, 6.0, "white", colour);
            svg.text((c.0, c.1 + 3.5), &(k + 1).to_string(), "middle", 8.0, 0.0);
        }
        if let Some(name) = legend_name(i, tracks.len(), &track.vehicle_id) {
            let colour = if i < super::LEGEND_MAX {
                colour
            } else {
                "#999"
            };
            legend.push((Swatch::Line, colour.to_owned(), name));
        }
    }
    legend.push((
        Swatch::Dot,
        "#333".to_owned(),
        "stop (numbered in order)".to_owned(),
    ));
    svg.legend(f, &legend);
    scale_bar(&mut svg, f, scale * coslat);
    svg.finish()
}

/// A scale bar of a round number of metres at the bottom left; `px_per_deg_lon_equator` is
/// pixels per degree of longitude times the cosine of the latitude, i.e. per 111.32 km.
fn scale_bar(svg: &mut Svg, f: Frame, px_per_deg: f64) {
    let px_per_m = px_per_deg / 111_320.0;
    let target_m = 150.0 / px_per_m;
    let nice = [1.0, 2.0, 5.0]
        .iter()
        .flat_map(|m| (0..7).map(move |e| m * 10f64.powi(e)))
        .filter(|v| *v <= target_m)
        .fold(1.0, f64::max);
    let len = nice * px_per_m;
    let (x, y) = (f.x0 + 15.0, f.y0 + f.h - 15.0);
    svg.line((x, y), (x + len, y), "#333", 3.0, false);
    let text = if nice >= 1000.0 {
        format!("{} km", nice / 1000.0)
    } else {
        format!("{nice} m")
    };
    svg.text((x + len / 2.0, y - 6.0), &text, "middle", 11.0, 0.0);
}
