//! Reading the samples the reports work on: GPS fixes and reefer readings per vehicle, in time
//! order, through SQL so that the filter's partition and statistics pruning applies.

use datafusion::arrow::{
    array::{Array, ArrayRef, AsArray},
    compute::cast,
    datatypes::{DataType, Float64Type, Int64Type},
    record_batch::RecordBatch,
};

use crate::{catalog::Catalog, AnalyticsError, Filter};

/// One GPS fix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    /// Unix epoch ms.
    pub ts: i64,
    /// Degrees, WGS84.
    pub lat: f64,
    /// Degrees, WGS84.
    pub lon: f64,
    /// As reported by the receiver (Doppler), km/h.
    pub speed_kmh: f64,
}

/// One reefer reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Unix epoch ms.
    pub ts: i64,
    /// Box temperature, °C.
    pub temp_c: f64,
    /// Thermostat setpoint, °C.
    pub setpoint_c: f64,
    /// Cargo door open.
    pub door_open: bool,
}

/// A vehicle's samples in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct PerVehicle<T> {
    /// The vehicle.
    pub vehicle_id: String,
    /// Its samples, sorted by time.
    pub samples: Vec<T>,
}

/// GPS fixes per vehicle, vehicles in id order.
///
/// # Errors
/// The query fails.
pub fn tracks(catalog: &Catalog, filter: &Filter) -> Result<Vec<PerVehicle<Fix>>, AnalyticsError> {
    let sql = format!(
        "SELECT vehicle_id, ts, lat, lon, speed_kmh FROM gps WHERE {} ORDER BY vehicle_id, ts",
        filter.predicate()
    );
    let result = catalog.sql(&sql)?;
    let mut out: Vec<PerVehicle<Fix>> = Vec::new();
    for batch in &result.batches {
        let ids = strings(batch, 0)?;
        let ts = int64(batch, 1)?;
        let lat = float64(batch, 2)?;
        let lon = float64(batch, 3)?;
        let speed = float64(batch, 4)?;
        let (ids, ts) = (ids.as_string::<i32>(), ts.as_primitive::<Int64Type>());
        let (lat, lon) = (
            lat.as_primitive::<Float64Type>(),
            lon.as_primitive::<Float64Type>(),
        );
        let speed = speed.as_primitive::<Float64Type>();
        for row in 0..batch.num_rows() {
            let fix = Fix {
                ts: ts.value(row),
                lat: lat.value(row),
                lon: lon.value(row),
                speed_kmh: speed.value(row),
            };
            push(&mut out, ids.value(row), fix);
        }
    }
    Ok(out)
}

/// Reefer readings per vehicle, vehicles in id order.
///
/// # Errors
/// The query fails.
pub fn series(
    catalog: &Catalog,
    filter: &Filter,
) -> Result<Vec<PerVehicle<Sample>>, AnalyticsError> {
    let sql = format!(
        "SELECT vehicle_id, ts, temp_c, setpoint_c, door_open FROM reefer WHERE {} \
         ORDER BY vehicle_id, ts",
        filter.predicate()
    );
    let result = catalog.sql(&sql)?;
    let mut out: Vec<PerVehicle<Sample>> = Vec::new();
    for batch in &result.batches {
        let ids = strings(batch, 0)?;
        let ts = int64(batch, 1)?;
        let temp = float64(batch, 2)?;
        let setpoint = float64(batch, 3)?;
        let door = batch.column(4).as_boolean_opt().ok_or_else(|| {
            AnalyticsError::Invalid("reefer.door_open is not a boolean column".into())
        })?;
        let (ids, ts) = (ids.as_string::<i32>(), ts.as_primitive::<Int64Type>());
        let temp = temp.as_primitive::<Float64Type>();
        let setpoint = setpoint.as_primitive::<Float64Type>();
        for row in 0..batch.num_rows() {
            let sample = Sample {
                ts: ts.value(row),
                temp_c: temp.value(row),
                setpoint_c: setpoint.value(row),
                door_open: door.value(row),
            };
            push(&mut out, ids.value(row), sample);
        }
    }
    Ok(out)
}

fn push<T>(out: &mut Vec<PerVehicle<T>>, id: &str, sample: T) {
    match out.last_mut() {
        Some(last) if last.vehicle_id == id => last.samples.push(sample),
        _ => out.push(PerVehicle {
            vehicle_id: id.to_owned(),
            samples: vec![sample],
        }),
    }
}

/// Column `i` cast to `to`: the dictionary-encoded ids become plain strings, timestamps their
/// millisecond counts, whatever the engine chose to return.
fn column_as(batch: &RecordBatch, i: usize, to: &DataType) -> Result<ArrayRef, AnalyticsError> {
    let column = batch.column(i);
    let out = cast(column.as_ref(), to)
        .map_err(|e| AnalyticsError::Invalid(format!("column {i} cannot be read as {to}: {e}")))?;
    if out.null_count() > 0 {
        return Err(AnalyticsError::Invalid(format!(
            "column {} holds nulls where the schema has none",
            batch.schema().field(i).name()
        )));
    }
    Ok(out)
}

fn strings(batch: &RecordBatch, i: usize) -> Result<ArrayRef, AnalyticsError> {
    column_as(batch, i, &DataType::Utf8)
}

fn int64(batch: &RecordBatch, i: usize) -> Result<ArrayRef, AnalyticsError> {
    column_as(batch, i, &DataType::Int64)
}

fn float64(batch: &RecordBatch, i: usize) -> Result<ArrayRef, AnalyticsError> {
    column_as(batch, i, &DataType::Float64)
}
