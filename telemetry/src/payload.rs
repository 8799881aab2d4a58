//! The payloads a vehicle publishes, and their JSON encoding.
//!
//! Field names are the contract: the archive's columns carry the same names. Optional fields are
//! left out of the JSON when absent rather than written as `null`, which keeps the hot-path
//! messages short (a GPS reading is about 110 bytes).

use serde::Serialize;

/// A position fix, published on `fleet/{id}/gps`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Gps {
    /// Time of the fix, Unix epoch milliseconds, UTC.
    pub ts: i64,
    /// The vehicle's message counter (shared by all its topics), from 0.
    pub seq: u64,
    /// Latitude, degrees WGS84.
    pub lat: f64,
    /// Longitude, degrees WGS84.
    pub lon: f64,
    /// Ground speed, km/h.
    pub speed_kmh: f64,
    /// Course over ground, degrees clockwise from north, `[0, 360]`.
    pub heading_deg: f64,
    /// Odometer, km.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub odometer_km: Option<f64>,
    /// Horizontal dilution of precision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hdop: Option<f64>,
}

/// A refrigeration unit reading, published on `fleet/{id}/reefer`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reefer {
    /// Time of the reading, Unix epoch milliseconds, UTC.
    pub ts: i64,
    /// The vehicle's message counter (shared by all its topics), from 0.
    pub seq: u64,
    /// Cargo box temperature, °C.
    pub temp_c: f64,
    /// Thermostat setpoint, °C.
    pub setpoint_c: f64,
    /// Whether a cargo door is open.
    pub door_open: bool,
    /// Whether the compressor runs.
    pub compressor_on: bool,
    /// Outside air temperature, °C.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambient_c: Option<f64>,
    /// Relative humidity in the box, %.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub humidity_pct: Option<f64>,
}

/// The retained payload of `fleet/{id}/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Published (retained) by the vehicle after it connects.
    Online,
    /// The vehicle's Last Will, published by the broker when the connection is lost.
    Offline,
}

impl Status {
    /// The payload bytes.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Status::Online => b"online",
            Status::Offline => b"offline",
        }
    }

    /// Parses a status payload; anything but exactly `online` or `offline` is `None`.
    pub fn parse(payload: &[u8]) -> Option<Status> {
        match payload {
            b"online" => Some(Status::Online),
            b"offline" => Some(Status::Offline),
            _ => None,
        }
    }
}

/// Appends the JSON of `value` to `out`.
fn write_json<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    // Serializing plain numbers and bools into a Vec cannot fail: serde_json only errors on
    // non-string map keys and on I/O errors, and neither exists here. Non-finite floats are
    // written as `null` (and then rejected by the decoder), never an error.
    let _ = serde_json::to_writer(out, value);
}

impl Gps {
    /// Appends the JSON encoding to `out` (reusing its allocation on the hot path).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        write_json(self, out);
    }

    /// The JSON encoding.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.write_json(&mut out);
        out
    }
}

impl Reefer {
    /// Appends the JSON encoding to `out` (reusing its allocation on the hot path).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        write_json(self, out);
    }

    /// The JSON encoding.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.write_json(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gps_json_leaves_out_absent_fields() {
        let gps = Gps {
            ts: 1,
            seq: 2,
            lat: 52.5,
            lon: 13.25,
            speed_kmh: 0.0,
            heading_deg: 359.5,
            odometer_km: None,
            hdop: Some(0.9),
        };
        assert_eq!(
            String::from_utf8(gps.to_json()).unwrap(),
            r#"{"ts":1,"seq":2,"lat":52.5,"lon":13.25,"speed_kmh":0.0,"heading_deg":359.5,"hdop":0.9}"#
        );
    }

    #[test]
    fn reefer_json() {
        let reefer = Reefer {
            ts: 10,
            seq: 3,
            temp_c: 4.5,
            setpoint_c: 5.0,
            door_open: true,
            compressor_on: false,
            ambient_c: Some(21.0),
            humidity_pct: None,
        };
        assert_eq!(
            String::from_utf8(reefer.to_json()).unwrap(),
            r#"{"ts":10,"seq":3,"temp_c":4.5,"setpoint_c":5.0,"door_open":true,"compressor_on":false,"ambient_c":21.0}"#
        );
    }

    #[test]
    fn status_round_trip() {
        for s in [Status::Online, Status::Offline] {
            assert_eq!(Status::parse(s.as_bytes()), Some(s));
        }
        assert_eq!(Status::parse(b"Online"), None);
    }
}
