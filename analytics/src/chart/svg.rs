//! A minimal SVG writer and the axis arithmetic charts share. Hand-written: a chart is a few
//! lines, rectangles and labels, and a plotting library would cost more build time than it
//! saves.

use std::fmt::Write;

/// Colours for series, distinguishable and legible on white (Tableau 10).
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// The plot area inside the margins, in pixels.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    /// Left edge.
    pub x0: f64,
    /// Top edge.
    pub y0: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

/// An SVG document being written.
#[derive(Debug)]
pub struct Svg {
    buf: String,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Svg {
    /// A white `width` x `height` canvas.
    pub fn new(width: f64, height: f64) -> Svg {
        let mut buf = String::new();
        let _ = write!(
            buf,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(buf, r#"<rect width="100%" height="100%" fill="white"/>"#);
        Svg { buf }
    }

    /// A straight line.
    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), stroke: &str, width: f64, dash: bool) {
        let dash = if dash {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            self.buf,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{stroke}" stroke-width="{width}"{dash}/>"#,
            a.0, a.1, b.0, b.1
        );
    }

    /// A polyline; `None` points break it (gaps in the data stay visible).
    pub fn polyline(&mut self, points: &[Option<(f64, f64)>], stroke: &str, width: f64) {
        for run in points.split(Option::is_none) {
            if run.len() < 2 {
                continue;
            }
            let mut d = String::new();
            for (x, y) in run.iter().flatten() {
                let _ = write!(d, "{x:.1},{y:.1} ");
            }
            let _ = write!(
                self.buf,
                r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="{width}" stroke-linejoin="round"/>"#,
                d.trim_end()
            );
        }
    }

    /// A rectangle.
    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, opacity: f64) {
        let _ = write!(
            self.buf,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}" fill-opacity="{opacity}"/>"#,
            w.max(0.5),
            h.max(0.5)
        );
    }

    /// A circle.
    pub fn circle(&mut self, c: (f64, f64), r: f64, fill: &str, stroke: &str) {
        let _ = write!(
            self.buf,
            r#"<circle cx="{:.1}" cy="{:.1}" r="{r}" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>"#,
            c.0, c.1
        );
    }

    /// Text anchored `start`, `middle` or `end`; `rotate` turns it (degrees) about its anchor.
    pub fn text(&mut self, at: (f64, f64), s: &str, anchor: &str, size: f64, rotate: f64) {
        let transform = if rotate != 0.0 {
            format!(r#" transform="rotate({rotate} {:.1} {:.1})""#, at.0, at.1)
        } else {
            String::new()
        };
        let _ = write!(
            self.buf,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}" font-size="{size}"{transform}>{}</text>"#,
            at.0,
            at.1,
            esc(s)
        );
    }

    /// Axes with ticks: `xt`/`yt` are (pixel, label) pairs, `xl`/`yl` the axis titles.
    pub fn axes(
        &mut self,
        f: Frame,
        xt: &[(f64, String)],
        yt: &[(f64, String)],
        xl: &str,
        yl: &str,
    ) {
        let (x1, y1) = (f.x0 + f.w, f.y0 + f.h);
        for (y, label) in yt {
            self.line((f.x0, *y), (x1, *y), "#e6e6e6", 1.0, false);
            self.line((f.x0 - 4.0, *y), (f.x0, *y), "#333", 1.0, false);
            self.text((f.x0 - 7.0, y + 4.0), label, "end", 11.0, 0.0);
        }
        for (x, label) in xt {
            self.line((*x, f.y0), (*x, y1), "#e6e6e6", 1.0, false);
            self.line((*x, y1), (*x, y1 + 4.0), "#333", 1.0, false);
            self.text((*x, y1 + 17.0), label, "middle", 11.0, 0.0);
        }
        self.line((f.x0, y1), (x1, y1), "#333", 1.0, false);
        self.line((f.x0, f.y0), (f.x0, y1), "#333", 1.0, false);
        self.text((f.x0 + f.w / 2.0, y1 + 38.0), xl, "middle", 13.0, 0.0);
        let yc = (f.x0 - 52.0, f.y0 + f.h / 2.0);
        self.text(yc, yl, "middle", 13.0, -90.0);
    }

    /// A legend box at the top right of `f`: (swatch kind, colour, label).
    pub fn legend(&mut self, f: Frame, entries: &[(Swatch, String, String)]) {
        let h = 18.0 * entries.len() as f64 + 8.0;
        let w = 14.0
            + 7.0
                * entries
                    .iter()
                    .map(|e| e.2.chars().count())
                    .max()
                    .unwrap_or(0) as f64
            + 30.0;
        let (x, y) = (f.x0 + f.w - w - 8.0, f.y0 + 8.0);
        self.rect(x, y, w, h, "white", 0.85);
        let _ = write!(
            self.buf,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="none" stroke="#999"/>"##
        );
        for (i, (swatch, colour, label)) in entries.iter().enumerate() {
            let cy = y + 14.0 + 18.0 * i as f64;
            match swatch {
                Swatch::Line => self.line(
                    (x + 6.0, cy - 4.0),
                    (x + 26.0, cy - 4.0),
                    colour,
                    2.5,
                    false,
                ),
                Swatch::Dashed => {
                    self.line((x + 6.0, cy - 4.0), (x + 26.0, cy - 4.0), colour, 1.5, true)
                }
                Swatch::Area => self.rect(x + 6.0, cy - 10.0, 20.0, 12.0, colour, 0.35),
                Swatch::Dot => self.circle((x + 16.0, cy - 4.0), 5.0, "white", colour),
            }
            self.text((x + 32.0, cy), label, "start", 11.0, 0.0);
        }
    }

    /// The finished document.
    pub fn finish(mut self) -> String {
        self.buf.push_str("</svg>\n");
        self.buf
    }
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swatch {
    /// A solid line (a series).
    Line,
    /// A dashed line (a limit).
    Dashed,
    /// A shaded box (an area or interval).
    Area,
    /// A ring (a marker).
    Dot,
}

/// About `n` round tick values covering `[lo, hi]` (steps of 1, 2 or 5 times a power of ten).
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).abs().max(1e-9);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut out = Vec::new();
    let mut v = (lo / step).ceil() * step;
    while v <= hi + step * 1e-9 {
        out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    out
}

/// A label for `v` with as many decimals as `step` needs.
pub fn label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_ticks() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(-31.0, 9.0, 4), vec![-30.0, -20.0, -10.0, 0.0]);
        assert_eq!(label(53.55, 0.01), "53.55");
    }

    #[test]
    fn text_is_escaped() {
        let mut svg = Svg::new(10.0, 10.0);
        svg.text((0.0, 0.0), "a<b & c", "start", 10.0, 0.0);
        assert!(svg.finish().contains("a&lt;b &amp; c"));
    }
}
