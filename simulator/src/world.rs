//! The world a fleet drives in: places (depots, customers) and the roads between them, either
//! generated around a centre or read from the user's GeoJSON routes.

use serde::Serialize;

use crate::geo::{Frame, Point};
use crate::network::Grid;
use crate::rng::{Concern, Rng};
use crate::route::Route;

/// Streets per side of the generated grid, and the block length: a 15 km square city.
const GRID_SIDE: usize = 31;
const GRID_SPACING_M: f64 = 500.0;

/// What a place is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaceKind {
    /// Where vehicles start, load and return.
    Depot,
    /// Where deliveries go.
    Customer,
}

/// A named place (written to the ground truth, so reports can be checked against it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Place {
    /// Unique name: `depot-0`, `customer-17`, or from the GeoJSON.
    pub name: String,
    /// Depot or customer.
    pub kind: PlaceKind,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Position in the local frame.
    #[serde(skip)]
    pub point: Point,
}

/// A GeoJSON line as read: name, speed limit (km/h), (lat, lon) points.
type UserLine = (String, f64, Vec<(f64, f64)>);

#[derive(Debug, Clone)]
enum Roads {
    /// A generated grid; `node_of[place]` is the place's intersection.
    Grid { grid: Grid, node_of: Vec<usize> },
    /// User routes: line `i` runs from place `2i` (its home) to place `2i + 1`.
    Lines(Vec<Route>),
}

/// Why a GeoJSON routes file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// Not JSON.
    #[error("routes file is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not the expected GeoJSON.
    #[error("routes file: {0}")]
    Shape(String),
}

/// Places and roads.
#[derive(Debug, Clone)]
pub struct World {
    /// The local frame's origin.
    pub frame: Frame,
    /// Every place.
    pub places: Vec<Place>,
    depots: Vec<usize>,
    customers: Vec<usize>,
    roads: Roads,
}

impl World {
    /// A generated city around `frame`'s origin, sized for `vehicles`: one depot per 250
    /// vehicles (1 to 8) and two customers per vehicle (40 to 600).
    pub fn generate(seed: u64, vehicles: usize, frame: Frame) -> World {
        let mut rng = Rng::new(seed, 0, Concern::World);
        let grid = Grid::generate(&mut rng, GRID_SIDE, GRID_SPACING_M);
        let n_depots = (vehicles / 250).clamp(1, 8);
        let n_customers = (vehicles * 2).clamp(40, 600);
        // Distinct intersections: a partial Fisher-Yates shuffle.
        let mut nodes: Vec<usize> = (0..grid.len()).collect();
        let wanted = (n_depots + n_customers).min(nodes.len());
        for i in 0..wanted {
            let j = i + rng.below((nodes.len() - i) as u64) as usize;
            nodes.swap(i, j);
        }
        let mut places = Vec::with_capacity(wanted);
        let mut node_of = Vec::with_capacity(wanted);
        for (i, &node) in nodes.iter().take(wanted).enumerate() {
            let (kind, name) = if i < n_depots {
                (PlaceKind::Depot, format!("depot-{i}"))
            } else {
                (PlaceKind::Customer, format!("customer-{}", i - n_depots))
            };
            let point = grid.node(node);
            let (lat, lon) = frame.to_lat_lon(point);
            places.push(Place {
                name,
                kind,
                lat,
                lon,
                point,
            });
            node_of.push(node);
        }
        World {
            frame,
            depots: (0..n_depots.min(wanted)).collect(),
            customers: (n_depots.min(wanted)..wanted).collect(),
            places,
            roads: Roads::Grid { grid, node_of },
        }
    }

    /// A world of user routes: a GeoJSON `FeatureCollection` of `LineString` features
    /// (coordinates `[lon, lat]`). A feature's `name` property names its two ends
    /// (`{name}-start`, a depot, and `{name}-end`, a customer); `speed_limit_kmh` sets its
    /// limit (default 50). Vehicle `i` shuttles along line `i % lines`.
    ///
    /// # Errors
    /// Not JSON, or no usable `LineString`.
    pub fn from_geojson(text: &str) -> Result<World, WorldError> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        let shape = |why: &str| WorldError::Shape(why.to_owned());
        let features = value
            .get("features")
            .and_then(|f| f.as_array())
            .ok_or_else(|| shape("expected a FeatureCollection with a `features` array"))?;
        let mut lines: Vec<UserLine> = Vec::new();
        for (i, feature) in features.iter().enumerate() {
            let geometry = feature.get("geometry");
            if geometry
                .and_then(|g| g.get("type"))
                .and_then(|t| t.as_str())
                != Some("LineString")
            {
                continue;
            }
            let coords = geometry
                .and_then(|g| g.get("coordinates"))
                .and_then(|c| c.as_array())
                .ok_or_else(|| shape(&format!("feature {i}: LineString without coordinates")))?;
            let mut points = Vec::with_capacity(coords.len());
            for c in coords {
                let lon = c.get(0).and_then(|v| v.as_f64());
                let lat = c.get(1).and_then(|v| v.as_f64());
                match (lat, lon) {
                    (Some(lat), Some(lon))
                        if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
                    {
                        points.push((lat, lon))
                    }
                    _ => return Err(shape(&format!("feature {i}: bad coordinate {c}"))),
                }
            }
            if points.len() < 2 {
                return Err(shape(&format!("feature {i}: a LineString needs 2 points")));
            }
            let props = feature.get("properties");
            let name = props
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
                .map_or_else(|| format!("route-{}", lines.len()), str::to_owned);
            let limit = props
                .and_then(|p| p.get("speed_limit_kmh"))
                .and_then(|v| v.as_f64())
                .filter(|v| *v > 0.0 && *v <= 200.0)
                .unwrap_or(50.0);
            lines.push((name, limit, points));
        }
        let Some(&(lat0, lon0)) = lines.first().and_then(|l| l.2.first()) else {
            return Err(shape("no LineString features"));
        };
        let frame = Frame { lat0, lon0 };
        let mut places = Vec::new();
        let mut routes = Vec::new();
        for (name, limit, coords) in lines {
            let points: Vec<Point> = coords
                .iter()
                .map(|&(la, lo)| frame.to_point(la, lo))
                .collect();
            let route = Route::new(&points, &[limit / 3.6]);
            if route.length() < 10.0 {
                return Err(shape(&format!("route {name} is shorter than 10 m")));
            }
            for (suffix, kind, &(lat, lon), point) in [
                ("start", PlaceKind::Depot, &coords[0], points[0]),
                (
                    "end",
                    PlaceKind::Customer,
                    &coords[coords.len() - 1],
                    points[points.len() - 1],
                ),
            ] {
                places.push(Place {
                    name: format!("{name}-{suffix}"),
                    kind,
                    lat,
                    lon,
                    point,
                });
            }
            routes.push(route);
        }
        Ok(World {
            frame,
            depots: (0..routes.len()).map(|i| 2 * i).collect(),
            customers: (0..routes.len()).map(|i| 2 * i + 1).collect(),
            places,
            roads: Roads::Lines(routes),
        })
    }

    /// The depot vehicle `vehicle` starts from and returns to.
    pub fn home(&self, vehicle: usize) -> usize {
        self.depots
            .get(vehicle % self.depots.len().max(1))
            .copied()
            .unwrap_or(0)
    }

    /// The customers of the next tour from `home`: 3 to 7 random ones on a generated grid, the
    /// far end of the line on user routes.
    pub fn tour(&self, rng: &mut Rng, home: usize) -> Vec<usize> {
        match &self.roads {
            Roads::Grid { .. } => {
                let stops = 3 + rng.below(5) as usize;
                (0..stops)
                    .filter_map(|_| {
                        let i = rng.below(self.customers.len() as u64) as usize;
                        self.customers.get(i).copied()
                    })
                    .collect()
            }
            Roads::Lines(_) => vec![home + 1],
        }
    }

    /// The route from place `from` to place `to`.
    pub fn route(&self, from: usize, to: usize) -> Route {
        match &self.roads {
            Roads::Grid { grid, node_of } => {
                let node = |p: usize| node_of.get(p).copied().unwrap_or(0);
                grid.route(node(from), node(to))
            }
            Roads::Lines(routes) => {
                let line = routes.get(from.min(to) / 2);
                match line {
                    Some(route) if from.is_multiple_of(2) => route.clone(),
                    Some(route) => route.reversed(),
                    None => Route::new(&[], &[]),
                }
            }
        }
    }

    /// A place's name.
    pub fn name(&self, place: usize) -> &str {
        self.places.get(place).map_or("?", |p| p.name.as_str())
    }
}

/// The retained topic a simulated fleet publishes its world on, for dispatch maps.
pub const WORLD_TOPIC: &str = "fleet/_world";

impl World {
    /// The world as GeoJSON: a `Point` per depot (`name`, `kind: depot`), one `MultiPoint` of
    /// the customers (`kind: customer`), and a `LineString` per street or route, coordinates
    /// `[lon, lat]` rounded to 1e-5 degree (about a metre). What a dispatch map draws under the
    /// vehicles, in a few tens of kilobytes.
    pub fn to_geojson(&self) -> String {
        let round = |x: f64| (x * 1e5).round() / 1e5;
        let lon_lat = |p: Point| {
            let (lat, lon) = self.frame.to_lat_lon(p);
            serde_json::json!([round(lon), round(lat)])
        };
        let at = |p: &Place| serde_json::json!([round(p.lon), round(p.lat)]);
        let mut features: Vec<serde_json::Value> = self
            .places
            .iter()
            .filter(|p| p.kind == PlaceKind::Depot)
            .map(|p| {
                serde_json::json!({
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": at(p)},
                    "properties": {"name": p.name, "kind": "depot"},
                })
            })
            .collect();
        let customers: Vec<serde_json::Value> = self
            .places
            .iter()
            .filter(|p| p.kind == PlaceKind::Customer)
            .map(at)
            .collect();
        features.push(serde_json::json!({
            "type": "Feature",
            "geometry": {"type": "MultiPoint", "coordinates": customers},
            "properties": {"kind": "customer"},
        }));
        let lines: Vec<Vec<Point>> = match &self.roads {
            Roads::Grid { grid, .. } => grid.streets(),
            Roads::Lines(routes) => routes.iter().map(|r| r.points().to_vec()).collect(),
        };
        for points in lines {
            let coordinates: Vec<serde_json::Value> = points.into_iter().map(lon_lat).collect();
            features.push(serde_json::json!({
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": coordinates},
                "properties": {},
            }));
        }
        serde_json::json!({"type": "FeatureCollection", "features": features}).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_world_is_reproducible() {
        let frame = Frame {
            lat0: 53.55,
            lon0: 9.99,
        };
        let a = World::generate(9, 100, frame);
        let b = World::generate(9, 100, frame);
        assert_eq!(a.places, b.places);
        assert_eq!(a.depots.len(), 1);
        assert_eq!(a.customers.len(), 200);
        let names: std::collections::HashSet<_> = a.places.iter().map(|p| &p.name).collect();
        assert_eq!(names.len(), a.places.len());
    }

    #[test]
    fn geojson_routes() {
        let text = r#"{"type":"FeatureCollection","features":[
            {"type":"Feature","properties":{"name":"a","speed_limit_kmh":80},
             "geometry":{"type":"LineString","coordinates":[[10.0,53.5],[10.01,53.5],[10.01,53.51]]}},
            {"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[1,2]}}]}"#;
        let world = World::from_geojson(text).unwrap();
        assert_eq!(world.places.len(), 2);
        assert_eq!(world.places[0].name, "a-start");
        let there = world.route(0, 1);
        let back = world.route(1, 0);
        assert!((there.length() - back.length()).abs() < 1e-6);
        assert!((there.limit(0) * 3.6 - 80.0).abs() < 1e-9);
        assert!(there.length() > 1_500.0 && there.length() < 2_000.0);
        assert_eq!(world.tour(&mut Rng::new(1, 1, Concern::Plan), 0), vec![1]);
        assert!(World::from_geojson("{}").is_err());
        assert!(World::from_geojson(r#"{"features":[]}"#).is_err());
    }
    #[test]
    fn the_world_as_geojson_has_its_places_and_streets() {
        let frame = Frame {
            lat0: 53.55,
            lon0: 9.99,
        };
        let world = World::generate(7, 300, frame);
        let geo: serde_json::Value = serde_json::from_str(&world.to_geojson()).unwrap();
        let features = geo["features"].as_array().unwrap();
        let depots = features
            .iter()
            .filter(|f| f["properties"]["kind"] == "depot")
            .count();
        assert_eq!(depots, world.depots.len());
        let lines: Vec<_> = features
            .iter()
            .filter(|f| f["geometry"]["type"] == "LineString")
            .collect();
        assert!(lines.len() >= 20, "{} streets", lines.len());
        // A map of the city in a few tens of kilobytes.
        assert!(
            world.to_geojson().len() < 100_000,
            "{} bytes",
            world.to_geojson().len()
        );
        let first = &lines[0]["geometry"]["coordinates"][0];
        let (lon, lat) = (first[0].as_f64().unwrap(), first[1].as_f64().unwrap());
        let (lat0, lon0) = world.frame.to_lat_lon(crate::geo::Point { x: 0.0, y: 0.0 });
        assert!(
            (lat - lat0).abs() < 0.5 && (lon - lon0).abs() < 0.5,
            "near the frame's origin"
        );
    }
}
