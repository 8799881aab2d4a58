//! Coordinates: a local metric frame for the physics, WGS84 for the payloads.
//!
//! Vehicles move in metres on a flat east/north frame centred on the fleet's area; positions
//! are converted to latitude/longitude only when a GPS reading is made. Over the tens of
//! kilometres of a delivery area the equirectangular projection used here differs from the
//! geodesic distance by far less than the 1 % the analytics are held to (checked by a test
//! against the haversine distance).

/// Mean Earth radius (IUGG), metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A point in the local frame, metres east and north of the origin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Metres east.
    pub x: f64,
    /// Metres north.
    pub y: f64,
}

impl Point {
    /// Euclidean distance, metres.
    pub fn dist(self, other: Point) -> f64 {
        (other.x - self.x).hypot(other.y - self.y)
    }

    /// The point a fraction `f` of the way to `other`.
    pub fn lerp(self, other: Point, f: f64) -> Point {
        Point {
            x: self.x + (other.x - self.x) * f,
            y: self.y + (other.y - self.y) * f,
        }
    }

    /// Compass bearing towards `other`, degrees clockwise from north in `[0, 360)`.
    pub fn bearing_to(self, other: Point) -> f64 {
        let deg = (other.x - self.x).atan2(other.y - self.y).to_degrees();
        if deg < 0.0 {
            deg + 360.0
        } else {
            deg
        }
    }
}

/// The local frame: an origin in WGS84 degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    /// Latitude of the origin, degrees.
    pub lat0: f64,
    /// Longitude of the origin, degrees.
    pub lon0: f64,
}

impl Frame {
    /// Latitude and longitude of a local point, degrees.
    pub fn to_lat_lon(&self, p: Point) -> (f64, f64) {
        let lat = self.lat0 + (p.y / EARTH_RADIUS_M).to_degrees();
        let lon = self.lon0 + (p.x / (EARTH_RADIUS_M * self.lat0.to_radians().cos())).to_degrees();
        (lat, lon)
    }

    /// The local point of a latitude and longitude, degrees.
    pub fn to_point(&self, lat: f64, lon: f64) -> Point {
        Point {
            x: (lon - self.lon0).to_radians() * EARTH_RADIUS_M * self.lat0.to_radians().cos(),
            y: (lat - self.lat0).to_radians() * EARTH_RADIUS_M,
        }
    }
}

/// Great-circle distance between two WGS84 positions (degrees), metres.
pub fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

/// Rounds to `decimals` decimal places (payloads carry no false precision, and shorter numbers
/// make shorter messages).
pub fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips() {
        let frame = Frame {
            lat0: 52.5,
            lon0: 13.4,
        };
        let p = Point {
            x: 12_345.0,
            y: -6_789.0,
        };
        let (lat, lon) = frame.to_lat_lon(p);
        let q = frame.to_point(lat, lon);
        assert!(p.dist(q) < 1e-6);
    }

    #[test]
    fn local_distance_matches_geodesic_within_a_delivery_area() {
        let frame = Frame {
            lat0: 48.1,
            lon0: 11.6,
        };
        for (a, b) in [
            (
                Point { x: 0.0, y: 0.0 },
                Point {
                    x: 10_000.0,
                    y: 0.0,
                },
            ),
            (
                Point {
                    x: -8_000.0,
                    y: -8_000.0,
                },
                Point {
                    x: 8_000.0,
                    y: 8_000.0,
                },
            ),
            (
                Point {
                    x: 0.0,
                    y: -12_000.0,
                },
                Point {
                    x: 300.0,
                    y: 12_000.0,
                },
            ),
        ] {
            let (la, oa) = frame.to_lat_lon(a);
            let (lb, ob) = frame.to_lat_lon(b);
            let geodesic = haversine_m(la, oa, lb, ob);
            let local = a.dist(b);
            assert!(
                (geodesic - local).abs() / local < 0.002,
                "{geodesic} vs {local}"
            );
        }
    }

    #[test]
    fn bearings() {
        let o = Point { x: 0.0, y: 0.0 };
        assert_eq!(o.bearing_to(Point { x: 0.0, y: 1.0 }), 0.0);
        assert_eq!(o.bearing_to(Point { x: 1.0, y: 0.0 }), 90.0);
        assert_eq!(o.bearing_to(Point { x: -1.0, y: 0.0 }), 270.0);
    }
}
