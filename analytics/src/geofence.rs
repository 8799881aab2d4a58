//! Geofences: entries into, exits from and dwell inside polygons from a GeoJSON file.
//!
//! The file may be a `FeatureCollection`, a `Feature` or a bare geometry; `Polygon` and
//! `MultiPolygon` geometries are used (holes respected), others ignored. A fence is named by
//! its feature's `name` property, else `id`, else its position in the file. Only the parts of
//! GeoJSON needed are parsed, with `serde_json`, so no GeoJSON crate is needed.
//!
//! A vehicle is inside when its fix is; an entry or exit is placed halfway between the last
//! fix on one side and the first on the other.

use geo::{Contains, Coord, LineString, MultiPolygon, Point, Polygon};
use serde_json::Value;

use crate::load::Fix;

/// A named polygon.
#[derive(Debug, Clone, PartialEq)]
pub struct Fence {
    /// Its name.
    pub name: String,
    /// Its area.
    pub area: MultiPolygon<f64>,
}

/// A visit to a fence.
#[derive(Debug, Clone, PartialEq)]
pub struct Visit {
    /// The fence.
    pub fence: String,
    /// Entry, Unix epoch ms (`None`: already inside at the first fix).
    pub enter: Option<i64>,
    /// Exit, Unix epoch ms (`None`: still inside at the last fix).
    pub exit: Option<i64>,
    /// Time inside within the data, ms.
    pub dwell_ms: i64,
}

/// The fences of a GeoJSON document.
///
/// # Errors
/// A message saying what is wrong with the document.
pub fn parse(text: &str) -> Result<Vec<Fence>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let mut fences = Vec::new();
    let features: Vec<&Value> = match doc.get("type").and_then(Value::as_str) {
        Some("FeatureCollection") => doc
            .get("features")
            .and_then(Value::as_array)
            .ok_or("a FeatureCollection without `features`")?
            .iter()
            .collect(),
        Some(_) => vec![&doc],
        None => return Err("no GeoJSON `type`".into()),
    };
    for (i, feature) in features.into_iter().enumerate() {
        let geometry = feature.get("geometry").unwrap_or(feature);
        let Some(area) = multi_polygon(geometry)? else {
            continue;
        };
        let props = feature.get("properties");
        let name = props
            .and_then(|p| p.get("name"))
            .or_else(|| feature.get("id"))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .unwrap_or_else(|| format!("fence-{}", i + 1));
        fences.push(Fence { name, area });
    }
    if fences.is_empty() {
        return Err("no Polygon or MultiPolygon in the file".into());
    }
    Ok(fences)
}

fn multi_polygon(geometry: &Value) -> Result<Option<MultiPolygon<f64>>, String> {
    let coords = geometry.get("coordinates");
    match geometry.get("type").and_then(Value::as_str) {
        Some("Polygon") => Ok(Some(MultiPolygon(vec![polygon(coords)?]))),
        Some("MultiPolygon") => {
            let parts = coords
                .and_then(Value::as_array)
                .ok_or("MultiPolygon without coordinates")?;
            let polygons = parts
                .iter()
                .map(|p| polygon(Some(p)))
                .collect::<Result<_, _>>()?;
            Ok(Some(MultiPolygon(polygons)))
        }
        _ => Ok(None),
    }
}

fn polygon(coords: Option<&Value>) -> Result<Polygon<f64>, String> {
    let rings = coords
        .and_then(Value::as_array)
        .ok_or("Polygon without coordinates")?;
    let mut rings = rings.iter().map(ring);
    let exterior = rings.next().ok_or("Polygon without rings")??;
    let holes = rings.collect::<Result<Vec<_>, _>>()?;
    Ok(Polygon::new(exterior, holes))
}

fn ring(value: &Value) -> Result<LineString<f64>, String> {
    let points = value.as_array().ok_or("a ring is not an array")?;
    let coords = points
        .iter()
        .map(|p| {
            let xy = p
                .as_array()
                .filter(|a| a.len() >= 2)
                .ok_or("a position is not [lon, lat]")?;
            match (xy[0].as_f64(), xy[1].as_f64()) {
                (Some(x), Some(y)) => Ok(Coord { x, y }),
                _ => Err("a position is not [lon, lat]".to_owned()),
            }
        })
        .collect::<Result<Vec<_>, String>>()?;
    if coords.len() < 4 {
        return Err("a ring needs at least 4 positions".into());
    }
    Ok(LineString(coords))
}

/// The visits of a track (time-ordered) to each fence, in time order per fence.
pub fn visits(fixes: &[Fix], fences: &[Fence]) -> Vec<Visit> {
    let mut out = Vec::new();
    for fence in fences {
        let mut inside_since: Option<Option<i64>> = None;
        let mut prev: Option<&Fix> = None;
        for f in fixes {
            let inside = fence.area.contains(&Point::new(f.lon, f.lat));
            let edge = prev.map(|p| p.ts + (f.ts - p.ts) / 2);
            match (inside, inside_since) {
                (true, None) => inside_since = Some(edge),
                (false, Some(enter)) => {
                    let exit = edge.unwrap_or(f.ts);
                    out.push(Visit {
                        fence: fence.name.clone(),
                        enter,
                        exit: Some(exit),
                        dwell_ms: exit - enter.unwrap_or(fixes[0].ts),
                    });
                    inside_since = None;
                }
                _ => {}
            }
            prev = Some(f);
        }
        if let (Some(enter), Some(last)) = (inside_since, fixes.last()) {
            out.push(Visit {
                fence: fence.name.clone(),
                enter,
                exit: None,
                dwell_ms: last.ts - enter.unwrap_or(fixes[0].ts),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::tests::east;

    const DEPOT: &str = r#"{"type":"FeatureCollection","features":[{"type":"Feature",
        "properties":{"name":"depot"},"geometry":{"type":"Polygon","coordinates":
        [[[9.9905,53.549],[9.9925,53.549],[9.9925,53.551],[9.9905,53.551],[9.9905,53.549]]]}}]}"#;

    #[test]
    fn entry_exit_and_dwell() {
        let fences = parse(DEPOT).unwrap();
        assert_eq!(fences[0].name, "depot");
        // East at 10 m/s from 9.99 E: the fence spans about 33 m to 166 m east.
        let fixes: Vec<Fix> = (0..30).map(|t| east(t, t as f64 * 10.0, 36.0)).collect();
        let v = visits(&fixes, &fences);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].enter, Some(3_500));
        assert_eq!(v[0].exit, Some(16_500));
        assert_eq!(v[0].dwell_ms, 13_000);
    }

    #[test]
    fn bad_documents_are_explained() {
        assert!(parse("{").unwrap_err().contains("not JSON"));
        assert!(parse(r#"{"type":"Point","coordinates":[1,2]}"#).is_err());
    }
}
