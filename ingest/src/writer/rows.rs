//! Buffered rows of one open file, and their conversion into one sorted Arrow batch.
//!
//! Rows are kept as plain structs rather than in Arrow builders: a file must be sorted by
//! `(vehicle_id, ts)` before it is written, and sorting structs in place then building each
//! column once is cheaper than building columns, computing a sort permutation and taking every
//! column through it. It also makes the dictionary of `vehicle_id` a run-length walk over the
//! sorted rows instead of a hash lookup per row.

use std::sync::Arc;

use arrow_array::{
    types::Int32Type, ArrayRef, BinaryArray, BooleanArray, Decimal128Array, DictionaryArray,
    Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::ArrowError;
use bytes::Bytes;
use telemetry::{Gps, Reefer};

use crate::partition::Table;

/// A GPS reading waiting for its file.
#[derive(Debug, Clone)]
pub struct GpsRow {
    /// Interned vehicle id.
    pub vehicle: Arc<str>,
    /// The decoded reading (`seq` is known to fit an `i64`).
    pub gps: Gps,
    /// Broker receive time, epoch ms.
    pub received_at: i64,
}

/// A reefer reading waiting for its file.
#[derive(Debug, Clone)]
pub struct ReeferRow {
    /// Interned vehicle id.
    pub vehicle: Arc<str>,
    /// The decoded reading (`seq` is known to fit an `i64`).
    pub reefer: Reefer,
    /// Broker receive time, epoch ms.
    pub received_at: i64,
}

/// A refused message, kept with its reason.
#[derive(Debug, Clone)]
pub struct RejectRow {
    /// The topic (lossily decoded if it was not UTF-8).
    pub topic: String,
    /// The payload exactly as received.
    pub payload: Bytes,
    /// Why it was refused.
    pub reason: String,
    /// Broker receive time, epoch ms.
    pub received_at: i64,
}

impl RejectRow {
    /// Approximate heap + inline size, for the memory bound.
    pub fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.topic.len() + self.payload.len() + self.reason.len()
    }
}

/// The rows of one open file.
#[derive(Debug)]
pub enum Rows {
    /// `gps/` rows.
    Gps(Vec<GpsRow>),
    /// `reefer/` rows.
    Reefer(Vec<ReeferRow>),
    /// `rejects/` rows.
    Rejects(Vec<RejectRow>),
}

/// Inline size of a GPS row (the vehicle id is shared, so it is not counted per row).
pub const GPS_ROW_SIZE: usize = std::mem::size_of::<GpsRow>();
/// Inline size of a reefer row.
pub const REEFER_ROW_SIZE: usize = std::mem::size_of::<ReeferRow>();

impl Rows {
    /// Empty rows of `table`.
    pub fn new(table: Table) -> Self {
        match table {
            Table::Gps => Rows::Gps(Vec::new()),
            Table::Reefer => Rows::Reefer(Vec::new()),
            Table::Rejects => Rows::Rejects(Vec::new()),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Rows::Gps(rows) => rows.len(),
            Rows::Reefer(rows) => rows.len(),
            Rows::Rejects(rows) => rows.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sorts in file order: `(vehicle_id, ts, seq)` for readings, `received_at` for rejects
    /// (stable, so rejects received in the same millisecond keep their log order).
    pub fn sort(&mut self) {
        match self {
            Rows::Gps(rows) => rows.sort_unstable_by(|a, b| {
                (&*a.vehicle, a.gps.ts, a.gps.seq).cmp(&(&*b.vehicle, b.gps.ts, b.gps.seq))
            }),
            Rows::Reefer(rows) => rows.sort_unstable_by(|a, b| {
                (&*a.vehicle, a.reefer.ts, a.reefer.seq).cmp(&(
                    &*b.vehicle,
                    b.reefer.ts,
                    b.reefer.seq,
                ))
            }),
            Rows::Rejects(rows) => rows.sort_by_key(|r| r.received_at),
        }
    }

    /// The rows as one batch of the table's schema (`telemetry::schema`), in their current
    /// order. Call [`Rows::sort`] first.
    ///
    /// # Errors
    /// Only if the arrays disagree with the schema, which would be a bug.
    pub fn to_batch(&self) -> Result<RecordBatch, ArrowError> {
        match self {
            Rows::Gps(rows) => gps_batch(rows),
            Rows::Reefer(rows) => reefer_batch(rows),
            Rows::Rejects(rows) => rejects_batch(rows),
        }
    }
}

/// Dictionary-encodes sorted vehicle ids: one dictionary entry per run.
fn vehicle_column<'a>(ids: impl Iterator<Item = &'a Arc<str>>) -> Result<ArrayRef, ArrowError> {
    let mut keys = Vec::new();
    let mut values: Vec<&str> = Vec::new();
    let mut last: Option<&Arc<str>> = None;
    for id in ids {
        // Interned ids compare by pointer first; equal strings from different interners
        // (after a dedup index rebuild) still compare equal by content.
        if !last.is_some_and(|l| Arc::ptr_eq(l, id) || **l == **id) {
            values.push(id);
            last = Some(id);
        }
        let key = i32::try_from(values.len() - 1)
            .map_err(|_| ArrowError::ComputeError("more than 2^31 vehicles in a file".into()))?;
        keys.push(key);
    }
    let dict = DictionaryArray::<Int32Type>::try_new(
        Int32Array::from(keys),
        Arc::new(StringArray::from(values)),
    )?;
    Ok(Arc::new(dict))
}

fn timestamps(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC"))
}

fn floats(values: Vec<f64>) -> ArrayRef {
    Arc::new(Float64Array::from(values))
}

fn optional_floats(values: Vec<Option<f64>>) -> ArrayRef {
    Arc::new(Float64Array::from(values))
}

/// Values as decimals of `precision` digits, `scale` of them after the point: each rounded to
/// the nearest unit of the last digit. The decoder's range checks keep every value within the
/// precision.
fn decimals(
    values: impl Iterator<Item = Option<f64>>,
    precision: u8,
    scale: i8,
) -> Result<ArrayRef, ArrowError> {
    let unit = 10f64.powi(i32::from(scale));
    let scaled: Decimal128Array = values
        .map(|v| v.map(|v| (v * unit).round() as i128))
        .collect();
    let array = scaled.with_precision_and_scale(precision, scale)?;
    array.validate_decimal_precision(precision)?;
    Ok(Arc::new(array))
}

/// `seq` as stored: the writer refuses seqs above `i64::MAX` before buffering them.
fn seqs(values: impl Iterator<Item = u64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(
        values.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
    ))
}

fn gps_batch(rows: &[GpsRow]) -> Result<RecordBatch, ArrowError> {
    let col = |f: fn(&Gps) -> f64| floats(rows.iter().map(|r| f(&r.gps)).collect());
    let opt =
        |f: fn(&Gps) -> Option<f64>| optional_floats(rows.iter().map(|r| f(&r.gps)).collect());
    let coordinate = |f: fn(&Gps) -> f64, precision| {
        decimals(
            rows.iter().map(|r| Some(f(&r.gps))),
            precision,
            telemetry::schema::COORDINATE_SCALE,
        )
    };
    RecordBatch::try_new(
        telemetry::schema::gps(),
        vec![
            vehicle_column(rows.iter().map(|r| &r.vehicle))?,
            timestamps(rows.iter().map(|r| r.gps.ts).collect()),
            seqs(rows.iter().map(|r| r.gps.seq)),
            coordinate(|g| g.lat, 9)?,
            coordinate(|g| g.lon, 10)?,
            col(|g| g.speed_kmh),
            col(|g| g.heading_deg),
            decimals(
                rows.iter().map(|r| r.gps.odometer_km),
                12,
                telemetry::schema::ODOMETER_SCALE,
            )?,
            opt(|g| g.hdop),
            timestamps(rows.iter().map(|r| r.received_at).collect()),
        ],
    )
}

fn reefer_batch(rows: &[ReeferRow]) -> Result<RecordBatch, ArrowError> {
    let col = |f: fn(&Reefer) -> f64| floats(rows.iter().map(|r| f(&r.reefer)).collect());
    let opt = |f: fn(&Reefer) -> Option<f64>| {
        optional_floats(rows.iter().map(|r| f(&r.reefer)).collect())
    };
    let flag = |f: fn(&Reefer) -> bool| -> ArrayRef {
        Arc::new(BooleanArray::from(
            rows.iter().map(|r| f(&r.reefer)).collect::<Vec<_>>(),
        ))
    };
    RecordBatch::try_new(
        telemetry::schema::reefer(),
        vec![
            vehicle_column(rows.iter().map(|r| &r.vehicle))?,
            timestamps(rows.iter().map(|r| r.reefer.ts).collect()),
            seqs(rows.iter().map(|r| r.reefer.seq)),
            col(|r| r.temp_c),
            col(|r| r.setpoint_c),
            flag(|r| r.door_open),
            flag(|r| r.compressor_on),
            opt(|r| r.ambient_c),
            opt(|r| r.humidity_pct),
            timestamps(rows.iter().map(|r| r.received_at).collect()),
        ],
    )
}

fn rejects_batch(rows: &[RejectRow]) -> Result<RecordBatch, ArrowError> {
    RecordBatch::try_new(
        telemetry::schema::rejects(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.topic))),
            Arc::new(BinaryArray::from_iter_values(
                rows.iter().map(|r| &r.payload[..]),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| &r.reason),
            )),
            timestamps(rows.iter().map(|r| r.received_at).collect()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use arrow_array::{cast::AsArray, types::Int64Type, Array};

    use super::*;

    fn gps(vehicle: &Arc<str>, ts: i64, seq: u64) -> GpsRow {
        GpsRow {
            vehicle: vehicle.clone(),
            gps: Gps {
                ts,
                seq,
                lat: 1.0,
                lon: 2.0,
                speed_kmh: 3.0,
                heading_deg: 4.0,
                odometer_km: None,
                hdop: Some(0.9),
            },
            received_at: ts + 5,
        }
    }

    #[test]
    fn batches_are_sorted_by_vehicle_then_time_with_one_dictionary_entry_per_vehicle() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut rows = Rows::Gps(vec![
            gps(&b, 20, 3),
            gps(&a, 30, 2),
            gps(&b, 10, 1),
            gps(&a, 5, 0),
        ]);
        rows.sort();
        let batch = rows.to_batch().unwrap();
        assert_eq!(batch.schema(), telemetry::schema::gps());
        let ids = batch.column(0).as_dictionary::<Int32Type>();
        assert_eq!(ids.values().len(), 2);
        let names: Vec<_> = ids
            .downcast_dict::<StringArray>()
            .unwrap()
            .into_iter()
            .map(|v| v.unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a", "a", "b", "b"]);
        let seq = batch.column(2).as_primitive::<Int64Type>();
        assert_eq!(seq.values(), &[0, 2, 1, 3]);
        assert_eq!(batch.column(7).null_count(), 4);
    }

    #[test]
    fn rejects_keep_topic_payload_and_reason() {
        let rows = Rows::Rejects(vec![RejectRow {
            topic: "fleet/x/gps".into(),
            payload: Bytes::from_static(b"{bad"),
            reason: "payload is not a JSON object".into(),
            received_at: 7,
        }]);
        let batch = rows.to_batch().unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.column(1).as_binary::<i32>().value(0), b"{bad");
    }
}
