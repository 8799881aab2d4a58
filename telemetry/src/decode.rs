//! Decoding and validating payloads: the ingest's hot path.
//!
//! The decoder is a hand-written serde visitor rather than a derived one for two reasons. It
//! allocates nothing for a valid message (keys are matched in place, unknown fields are skipped
//! with `IgnoredAny`), and it knows which field it was reading when something went wrong, so a
//! reject names the field ("field `lat`: invalid type: string ...") instead of only a column
//! number. The reason is recorded on the side while serde unwinds with its own error.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserializer;

use crate::payload::{Gps, Reefer, Status};
use crate::topic::{self, TopicError, TopicKind};

/// Why a message is a reject. Kept with the message in the archive's `rejects/` area.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reject {
    /// The topic is not a fleet topic.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The payload is not a JSON object (syntax error, wrong top-level type, trailing bytes).
    #[error("payload is not a JSON object: {0}")]
    Json(String),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field holds a value of the wrong type.
    #[error("field `{field}`: {detail}")]
    Type {
        /// The field.
        field: &'static str,
        /// serde_json's description, with the position.
        detail: String,
    },
    /// A field appears twice.
    #[error("duplicate field `{0}`")]
    Duplicate(&'static str),
    /// A number outside its allowed range.
    #[error("field `{field}` = {value} is out of range ({rule})")]
    Range {
        /// The field.
        field: &'static str,
        /// The value found.
        value: f64,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A status payload other than `online` / `offline`.
    #[error("status payload must be `online` or `offline`")]
    Status,
}

/// A decoded, valid fleet message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A GPS reading.
    Gps(Gps),
    /// A reefer reading.
    Reefer(Reefer),
    /// A status change.
    Status(Status),
}

/// Decodes the message published on `topic`; returns the vehicle id (borrowed from the topic)
/// and the valid message.
///
/// # Errors
/// The [`Reject`] reason.
pub fn decode_message<'t>(topic: &'t str, payload: &[u8]) -> Result<(&'t str, Message), Reject> {
    let (vehicle, kind) = topic::parse(topic)?;
    let message = match kind {
        TopicKind::Gps => Message::Gps(decode_gps(payload)?),
        TopicKind::Reefer => Message::Reefer(decode_reefer(payload)?),
        TopicKind::Status => Message::Status(Status::parse(payload).ok_or(Reject::Status)?),
    };
    Ok((vehicle, message))
}

/// Decodes and validates a GPS payload.
///
/// # Errors
/// The [`Reject`] reason.
pub fn decode_gps(payload: &[u8]) -> Result<Gps, Reject> {
    let gps = run(payload, GpsVisitor)?;
    check_common(gps.ts)?;
    check_range("lat", gps.lat, -90.0, 90.0, "must be within [-90, 90]")?;
    check_range("lon", gps.lon, -180.0, 180.0, "must be within [-180, 180]")?;
    check_range(
        "speed_kmh",
        gps.speed_kmh,
        0.0,
        500.0,
        "must be within [0, 500]",
    )?;
    check_range(
        "heading_deg",
        gps.heading_deg,
        0.0,
        360.0,
        "must be within [0, 360]",
    )?;
    if let Some(odo) = gps.odometer_km {
        check_range(
            "odometer_km",
            odo,
            0.0,
            crate::schema::ODOMETER_MAX_KM,
            "must be within [0, 999999999.999]",
        )?;
    }
    if let Some(hdop) = gps.hdop {
        check_range("hdop", hdop, 0.0, f64::MAX, "must not be negative")?;
    }
    Ok(gps)
}

/// Decodes and validates a reefer payload.
///
/// # Errors
/// The [`Reject`] reason.
pub fn decode_reefer(payload: &[u8]) -> Result<Reefer, Reject> {
    let reefer = run(payload, ReeferVisitor)?;
    check_common(reefer.ts)?;
    const TEMP: &str = "must be within [-100, 100]";
    check_range("temp_c", reefer.temp_c, -100.0, 100.0, TEMP)?;
    check_range("setpoint_c", reefer.setpoint_c, -100.0, 100.0, TEMP)?;
    if let Some(ambient) = reefer.ambient_c {
        check_range("ambient_c", ambient, -100.0, 100.0, TEMP)?;
    }
    if let Some(rh) = reefer.humidity_pct {
        check_range("humidity_pct", rh, 0.0, 100.0, "must be within [0, 100]")?;
    }
    Ok(reefer)
}

fn check_common(ts: i64) -> Result<(), Reject> {
    if ts < 0 {
        return Err(Reject::Range {
            field: "ts",
            value: ts as f64,
            rule: "must not be before 1970",
        });
    }
    Ok(())
}

fn check_range(
    field: &'static str,
    value: f64,
    min: f64,
    max: f64,
    rule: &'static str,
) -> Result<(), Reject> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Reject::Range { field, value, rule })
    }
}

/// A visitor that records a precise reject on the side.
trait RecordingVisitor {
    type Value;
    fn visit<'de, A: MapAccess<'de>>(
        self,
        map: A,
        reject: &mut Option<Reject>,
    ) -> Result<Self::Value, A::Error>;
}

/// Runs `visitor` over `payload`, preferring the recorded reason to serde_json's.
fn run<V: RecordingVisitor>(payload: &[u8], visitor: V) -> Result<V::Value, Reject> {
    let mut reject = None;
    let mut de = serde_json::Deserializer::from_slice(payload);
    let result = de
        .deserialize_map(Recording {
            visitor,
            reject: &mut reject,
        })
        .and_then(|value| de.end().map(|()| value));
    match (result, reject) {
        (_, Some(reject)) => Err(reject),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(Reject::Json(e.to_string())),
    }
}

struct Recording<'r, V> {
    visitor: V,
    reject: &'r mut Option<Reject>,
}

impl<'de, V: RecordingVisitor> Visitor<'de> for Recording<'_, V> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit(map, self.reject)
    }
}

/// Finds a key in a fixed field list without allocating (`None`: an unknown field).
struct KeyIndex(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeyIndex {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIndex {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|name| *name == key))
    }
}

/// Reads the value of field `name` into `slot`, recording a duplicate or a type error.
fn field<'de, A: MapAccess<'de>, T: serde::Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    name: &'static str,
    reject: &mut Option<Reject>,
) -> Result<(), A::Error> {
    if slot.is_some() {
        *reject = Some(Reject::Duplicate(name));
        return Err(de::Error::custom("duplicate field"));
    }
    match map.next_value::<T>() {
        Ok(value) => {
            *slot = Some(value);
            Ok(())
        }
        Err(e) => {
            *reject = Some(Reject::Type {
                field: name,
                detail: e.to_string(),
            });
            Err(e)
        }
    }
}

/// Takes a required field's value, recording it as missing when absent.
fn required<T, E: de::Error>(
    slot: Option<T>,
    name: &'static str,
    reject: &mut Option<Reject>,
) -> Result<T, E> {
    slot.ok_or_else(|| {
        *reject = Some(Reject::Missing(name));
        de::Error::custom("missing field")
    })
}

const GPS_FIELDS: &[&str] = &[
    "ts",
    "seq",
    "lat",
    "lon",
    "speed_kmh",
    "heading_deg",
    "odometer_km",
    "hdop",
];

struct GpsVisitor;

impl RecordingVisitor for GpsVisitor {
    type Value = Gps;
    fn visit<'de, A: MapAccess<'de>>(
        self,
        mut map: A,
        reject: &mut Option<Reject>,
    ) -> Result<Gps, A::Error> {
        let (mut ts, mut seq, mut lat, mut lon, mut speed, mut heading) =
            (None, None, None, None, None, None);
        let (mut odometer, mut hdop): (Option<Option<f64>>, Option<Option<f64>>) = (None, None);
        while let Some(key) = map.next_key_seed(KeyIndex(GPS_FIELDS))? {
            let m = &mut map;
            match key {
                Some(0) => field(m, &mut ts, "ts", reject)?,
                Some(1) => field(m, &mut seq, "seq", reject)?,
                Some(2) => field(m, &mut lat, "lat", reject)?,
                Some(3) => field(m, &mut lon, "lon", reject)?,
                Some(4) => field(m, &mut speed, "speed_kmh", reject)?,
                Some(5) => field(m, &mut heading, "heading_deg", reject)?,
                Some(6) => field(m, &mut odometer, "odometer_km", reject)?,
                Some(7) => field(m, &mut hdop, "hdop", reject)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Gps {
            ts: required(ts, "ts", reject)?,
            seq: required(seq, "seq", reject)?,
            lat: required(lat, "lat", reject)?,
            lon: required(lon, "lon", reject)?,
            speed_kmh: required(speed, "speed_kmh", reject)?,
            heading_deg: required(heading, "heading_deg", reject)?,
            odometer_km: odometer.flatten(),
            hdop: hdop.flatten(),
        })
    }
}

const REEFER_FIELDS: &[&str] = &[
    "ts",
    "seq",
    "temp_c",
    "setpoint_c",
    "door_open",
    "compressor_on",
    "ambient_c",
    "humidity_pct",
];

struct ReeferVisitor;

impl RecordingVisitor for ReeferVisitor {
    type Value = Reefer;
    fn visit<'de, A: MapAccess<'de>>(
        self,
        mut map: A,
        reject: &mut Option<Reject>,
    ) -> Result<Reefer, A::Error> {
        let (mut ts, mut seq, mut temp, mut setpoint, mut door, mut compressor) =
            (None, None, None, None, None, None);
        let (mut ambient, mut humidity): (Option<Option<f64>>, Option<Option<f64>>) = (None, None);
        while let Some(key) = map.next_key_seed(KeyIndex(REEFER_FIELDS))? {
            let m = &mut map;
            match key {
                Some(0) => field(m, &mut ts, "ts", reject)?,
                Some(1) => field(m, &mut seq, "seq", reject)?,
                Some(2) => field(m, &mut temp, "temp_c", reject)?,
                Some(3) => field(m, &mut setpoint, "setpoint_c", reject)?,
                Some(4) => field(m, &mut door, "door_open", reject)?,
                Some(5) => field(m, &mut compressor, "compressor_on", reject)?,
                Some(6) => field(m, &mut ambient, "ambient_c", reject)?,
                Some(7) => field(m, &mut humidity, "humidity_pct", reject)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Reefer {
            ts: required(ts, "ts", reject)?,
            seq: required(seq, "seq", reject)?,
            temp_c: required(temp, "temp_c", reject)?,
            setpoint_c: required(setpoint, "setpoint_c", reject)?,
            door_open: required(door, "door_open", reject)?,
            compressor_on: required(compressor, "compressor_on", reject)?,
            ambient_c: ambient.flatten(),
            humidity_pct: humidity.flatten(),
        })
    }
}

#[cfg(test)]
mod tests;
