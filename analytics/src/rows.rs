//! Report rows: a small typed table the reports fill, turned into an Arrow batch so that every
//! output format of [`crate::output`] applies to reports as it does to queries.
//!
//! Column names carry their unit (`distance_m`, `duration_s`, `max_speed_kmh`, `temp_c`), as
//! `design.md` asks of machine-readable output; times are UTC timestamps.

use std::sync::Arc;

use datafusion::arrow::{
    array::{
        ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
    },
    datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit},
    record_batch::RecordBatch,
};

use crate::AnalyticsError;

/// The type of a report column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text.
    Str,
    /// A measurement.
    Float,
    /// A count or whole seconds.
    Int,
    /// An instant, Unix epoch ms, shown in UTC.
    Time,
    /// Yes or no.
    Bool,
}

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text.
    Str(String),
    /// A measurement.
    Float(f64),
    /// A count.
    Int(i64),
    /// Unix epoch ms.
    Time(i64),
    /// Yes or no.
    Bool(bool),
    /// Unknown or not applicable.
    Null,
}

impl Value {
    /// `x` rounded to `decimals` places: reports state what the data supports, not 15 digits.
    pub fn round(x: f64, decimals: i32) -> Value {
        let scale = 10f64.powi(decimals);
        Value::Float((x * scale).round() / scale)
    }

    /// Milliseconds as whole seconds.
    pub fn secs(ms: i64) -> Value {
        Value::Int((ms as f64 / 1000.0).round() as i64)
    }
}

/// A report's columns and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    columns: Vec<(String, Kind)>,
    rows: Vec<Vec<Value>>,
}

impl Rows {
    /// An empty table with these columns.
    pub fn new(columns: &[(&str, Kind)]) -> Rows {
        Rows {
            columns: columns.iter().map(|(n, k)| ((*n).to_owned(), *k)).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one value per column, of the column's kind or `Null`.
    pub fn push(&mut self, row: Vec<Value>) {
        self.rows.push(row);
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows.
    pub fn rows(&self) -> &[Vec<Value>] {
        &self.rows
    }

    /// Index of column `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|(n, _)| n == name)
    }

    /// The rows as one Arrow batch.
    ///
    /// # Errors
    /// A row whose length or value kinds do not match the columns (a bug in a report).
    pub fn to_batch(&self) -> Result<(SchemaRef, RecordBatch), AnalyticsError> {
        let mut fields = Vec::with_capacity(self.columns.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (i, (name, kind)) in self.columns.iter().enumerate() {
            let cells = self.rows.iter().map(|r| r.get(i));
            let mismatch = || AnalyticsError::Output(format!("report column {name}: wrong value"));
            let (ty, array): (DataType, ArrayRef) = match kind {
                Kind::Str => {
                    let v: Result<Vec<Option<&str>>, _> = cells
                        .map(|c| match c {
                            Some(Value::Str(s)) => Ok(Some(s.as_str())),
                            Some(Value::Null) => Ok(None),
                            _ => Err(mismatch()),
                        })
                        .collect();
                    (DataType::Utf8, Arc::new(StringArray::from(v?)))
                }
                Kind::Float => {
                    let v: Result<Vec<Option<f64>>, _> = cells
                        .map(|c| match c {
                            Some(Value::Float(x)) => Ok(Some(*x)),
                            Some(Value::Int(x)) => Ok(Some(*x as f64)),
                            Some(Value::Null) => Ok(None),
                            _ => Err(mismatch()),
                        })
                        .collect();
                    (DataType::Float64, Arc::new(Float64Array::from(v?)))
                }
                Kind::Int => {
                    let v: Result<Vec<Option<i64>>, _> = cells
                        .map(|c| match c {
                            Some(Value::Int(x)) => Ok(Some(*x)),
                            Some(Value::Null) => Ok(None),
                            _ => Err(mismatch()),
                        })
                        .collect();
                    (DataType::Int64, Arc::new(Int64Array::from(v?)))
                }
                Kind::Time => {
                    let v: Result<Vec<Option<i64>>, _> = cells
                        .map(|c| match c {
                            Some(Value::Time(x)) => Ok(Some(*x)),
                            Some(Value::Null) => Ok(None),
                            _ => Err(mismatch()),
                        })
                        .collect();
                    let array = TimestampMillisecondArray::from(v?).with_timezone("UTC");
                    (
                        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                        Arc::new(array),
                    )
                }
                Kind::Bool => {
                    let v: Result<Vec<Option<bool>>, _> = cells
                        .map(|c| match c {
                            Some(Value::Bool(x)) => Ok(Some(*x)),
                            Some(Value::Null) => Ok(None),
                            _ => Err(mismatch()),
                        })
                        .collect();
                    (DataType::Boolean, Arc::new(BooleanArray::from(v?)))
                }
            };
            fields.push(Field::new(name, ty, true));
            arrays.push(array);
        }
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), arrays)
            .map_err(|e| AnalyticsError::Output(e.to_string()))?;
        Ok((schema, batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_typed_batch() {
        let mut rows = Rows::new(&[
            ("vehicle_id", Kind::Str),
            ("distance_m", Kind::Float),
            ("start", Kind::Time),
        ]);
        rows.push(vec![
            Value::Str("t-1".into()),
            Value::round(1234.567, 1),
            Value::Time(0),
        ]);
        rows.push(vec![Value::Str("t-2".into()), Value::Null, Value::Null]);
        let (schema, batch) = rows.to_batch().unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(schema.field(1).data_type(), &DataType::Float64);
        assert_eq!(rows.column("start"), Some(2));
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_an_error_not_a_panic() {
        let mut rows = Rows::new(&[("n", Kind::Int)]);
        rows.push(vec![Value::Str("x".into())]);
        assert!(rows.to_batch().is_err());
    }
}
