//! The Arrow schemas of the archive tables.
//!
//! Columns use the payload's field names, plus `vehicle_id` (from the topic, dictionary-encoded
//! because a file holds few distinct vehicles and many rows each) and `received_at` (when the
//! broker took the message, which differs from `ts` for store-and-forward readings). Both times
//! are `Timestamp(Millisecond, "UTC")` so that DuckDB, DataFusion and Spark read them as instants.
//! `seq` is a signed 64-bit integer, the type every SQL engine handles natively.
//!
//! Coordinates and the odometer are stored as decimals (scaled integers): `lat` and `lon` to
//! 1e-7 degree (about 1 cm), `odometer_km` to the metre. A decimal is still plain degrees and
//! kilometres to every engine, and unlike a double it lets consecutive fixes be stored as small
//! differences (`DELTA_BINARY_PACKED`): most of what makes a GPS row take about 3 bytes rather
//! than 15. A value published with more digits than that is rounded to them. fleetmq's own SQL
//! reads them as doubles ([`as_doubles`]); converting a decimal to the nearest double gives the
//! same double as parsing the published digits did.

use std::{collections::HashMap, sync::Arc};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Key of the schema metadata entry that holds [`crate::SCHEMA_VERSION`].
pub const VERSION_KEY: &str = "fleetmq.schema_version";

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn vehicle_id() -> Field {
    Field::new(
        "vehicle_id",
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        false,
    )
}

/// Scale (decimal digits) of the stored coordinates: 1e-7 degree, about 1.1 cm.
pub const COORDINATE_SCALE: i8 = 7;
/// Scale of the stored odometer: 0.001 km, one metre.
pub const ODOMETER_SCALE: i8 = 3;
/// The largest odometer reading the archive stores, km (its decimal has 12 digits).
pub const ODOMETER_MAX_KM: f64 = 999_999_999.999;

fn decimal(precision: u8, scale: i8) -> DataType {
    DataType::Decimal128(precision, scale)
}

fn with_version(fields: Vec<Field>) -> SchemaRef {
    let metadata = HashMap::from([(VERSION_KEY.to_owned(), crate::SCHEMA_VERSION.to_string())]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// The `gps` table.
pub fn gps() -> SchemaRef {
    with_version(vec![
        vehicle_id(),
        Field::new("ts", timestamp(), false),
        Field::new("seq", DataType::Int64, false),
        // 9 digits fit a 32-bit integer, 10 a 64-bit one (Parquet's storage of decimals).
        Field::new("lat", decimal(9, COORDINATE_SCALE), false),
        Field::new("lon", decimal(10, COORDINATE_SCALE), false),
        Field::new("speed_kmh", DataType::Float64, false),
        Field::new("heading_deg", DataType::Float64, false),
        Field::new("odometer_km", decimal(12, ODOMETER_SCALE), true),
        Field::new("hdop", DataType::Float64, true),
        Field::new("received_at", timestamp(), false),
    ])
}

/// The `reefer` table.
pub fn reefer() -> SchemaRef {
    with_version(vec![
        vehicle_id(),
        Field::new("ts", timestamp(), false),
        Field::new("seq", DataType::Int64, false),
        Field::new("temp_c", DataType::Float64, false),
        Field::new("setpoint_c", DataType::Float64, false),
        Field::new("door_open", DataType::Boolean, false),
        Field::new("compressor_on", DataType::Boolean, false),
        Field::new("ambient_c", DataType::Float64, true),
        Field::new("humidity_pct", DataType::Float64, true),
        Field::new("received_at", timestamp(), false),
    ])
}

/// `schema` with every decimal column as a double: how fleetmq's own SQL presents the tables
/// (an engine converts each file's decimals on reading; files an earlier version wrote hold
/// doubles already).
pub fn as_doubles(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Decimal128(..) => f.as_ref().clone().with_data_type(DataType::Float64),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The `rejects` table: the message as received, and why it was refused.
pub fn rejects() -> SchemaRef {
    with_version(vec![
        Field::new("topic", DataType::Utf8, false),
        Field::new("payload", DataType::Binary, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("received_at", timestamp(), false),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every payload field has a column of the same name, so the contract and the archive
    /// cannot drift apart silently.
    #[test]
    fn columns_cover_the_payload_fields() {
        let gps_row = crate::Gps {
            ts: 0,
            seq: 0,
            lat: 0.0,
            lon: 0.0,
            speed_kmh: 0.0,
            heading_deg: 0.0,
            odometer_km: Some(0.0),
            hdop: Some(0.0),
        };
        let reefer_row = crate::Reefer {
            ts: 0,
            seq: 0,
            temp_c: 0.0,
            setpoint_c: 0.0,
            door_open: false,
            compressor_on: false,
            ambient_c: Some(0.0),
            humidity_pct: Some(0.0),
        };
        for (schema, json) in [(gps(), json(&gps_row)), (reefer(), json(&reefer_row))] {
            let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
            for key in value.as_object().unwrap().keys() {
                assert!(schema.field_with_name(key).is_ok(), "no column for {key}");
            }
            assert_eq!(schema.fields().len(), value.as_object().unwrap().len() + 2);
            assert_eq!(
                schema.metadata()[VERSION_KEY],
                crate::SCHEMA_VERSION.to_string()
            );
        }
    }

    fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
        serde_json::to_vec(value).unwrap()
    }

    #[test]
    fn times_are_utc_milliseconds() {
        for schema in [gps(), reefer(), rejects()] {
            let field = schema.field_with_name("received_at").unwrap();
            assert_eq!(field.data_type(), &timestamp());
        }
    }
}
