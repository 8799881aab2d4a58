//! PNG output: the same SVG, rasterised with resvg (pure Rust), text set in an installed sans
//! font.
//!
//! Text needs a font file; servers often have none. Rather than write a PNG with no labels (a
//! chart without axes is no chart), rendering fails with a message saying what to install.

use resvg::{tiny_skia, usvg};

use crate::AnalyticsError;

/// Families tried for `sans-serif`, in order; otherwise the first installed face.
const SANS: [&str; 4] = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial"];

/// `svg` rasterised at its own size (×`scale`), as PNG bytes.
///
/// # Errors
/// [`AnalyticsError::Output`] when no font is installed or the SVG cannot be rendered.
pub fn render(svg: &str, scale: f32) -> Result<Vec<u8>, AnalyticsError> {
    let mut options = usvg::Options::default();
    let db = options.fontdb_mut();
    db.load_system_fonts();
    let families: Vec<String> = db
        .faces()
        .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
        .collect();
    let Some(sans) = SANS
        .iter()
        .find(|s| families.iter().any(|f| f == *s))
        .map(|s| (*s).to_owned())
        .or_else(|| families.first().cloned())
    else {
        return Err(AnalyticsError::Output(
            "PNG charts need a font and none is installed (e.g. apt-get install fonts-dejavu-core); \
             or write the chart as .svg"
                .into(),
        ));
    };
    db.set_sans_serif_family(sans);
    let tree = usvg::Tree::from_str(svg, &options)
        .map_err(|e| AnalyticsError::Output(format!("chart: {e}")))?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(scale)
        .ok_or_else(|| AnalyticsError::Output("chart: empty image".into()))?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| AnalyticsError::Output("chart: image too large".into()))?;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| AnalyticsError::Output(format!("chart: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_png_or_explains_why_not() {
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20" font-family="sans-serif"><rect width="40" height="20" fill="white"/><text x="2" y="15">km</text></svg>"#;
        match render(svg, 2.0) {
            Ok(png) => {
                assert_eq!(&png[1..4], b"PNG");
                // 80 x 40 pixels: the IHDR chunk holds width and height big-endian.
                assert_eq!(&png[16..24], &[0, 0, 0, 80, 0, 0, 0, 40]);
            }
            Err(e) => assert!(e.to_string().contains("font"), "{e}"),
        }
    }
}
