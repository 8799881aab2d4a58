//! Charts for people: a route map of the vehicles' tracks with their stops, and a temperature
//! timeline with the band and the excursions shaded. Both have labelled axes with units, a
//! title and a legend. Drawn as SVG; [`png::render`] rasterises it where a PNG is asked for.

mod map;
pub mod png;
mod svg;
mod timeline;

pub use map::route_map;
pub use timeline::timeline;

/// Up to this many series get their own legend entry; the rest are summed up in one line.
const LEGEND_MAX: usize = 8;

/// The legend label for series `i` of `n`, or `None` past [`LEGEND_MAX`] (with the "and N
/// more" line at the last shown entry).
fn legend_name(i: usize, n: usize, name: &str) -> Option<String> {
    match i.cmp(&LEGEND_MAX) {
        std::cmp::Ordering::Less => Some(name.to_owned()),
        std::cmp::Ordering::Equal => Some(format!("… and {} more", n - LEGEND_MAX)),
        std::cmp::Ordering::Greater => None,
    }
}

/// `HH:MM` (and the date when `with_date`) of `ms`, UTC.
fn clock(ms: i64, with_date: bool) -> String {
    let s = crate::filter::rfc3339(ms);
    if with_date {
        format!("{} {}", &s[..10], &s[11..16])
    } else {
        s[11..16].to_owned()
    }
}
