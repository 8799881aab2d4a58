//! Writing results: an aligned table for people, CSV and JSON for scripts, Parquet for more
//! analysis.
//!
//! JSON is one array of row objects keyed by column name (`design.md`, "Command line"), so
//! `jq '.[] | .distance_m'` works; every object has every column (`null` where unknown);
//! timestamps are RFC 3339 strings in UTC.

use std::{io::Write, str::FromStr};

use datafusion::arrow::{
    datatypes::SchemaRef, record_batch::RecordBatch, util::display::FormatOptions,
};

use crate::AnalyticsError;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned columns with a header, for a terminal.
    #[default]
    Table,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// An array of row objects.
    Json,
    /// A zstd-compressed Parquet file (needs a file, not a terminal).
    Parquet,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "parquet" => Ok(Format::Parquet),
            other => Err(format!(
                "unknown format `{other}` (expected table, csv, json or parquet)"
            )),
        }
    }
}

fn output_err(e: impl std::fmt::Display) -> AnalyticsError {
    AnalyticsError::Output(e.to_string())
}

/// Writes `batches` (all of `schema`) to `out` in `format`.
///
/// # Errors
/// [`AnalyticsError::Output`] when encoding or writing fails.
pub fn write<W: Write + Send>(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    out: W,
) -> Result<(), AnalyticsError> {
    match format {
        Format::Table => write_table(schema, batches, out),
        Format::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            if batches.is_empty() {
                writer
                    .write(&RecordBatch::new_empty(schema.clone()))
                    .map_err(output_err)?;
            }
            for batch in batches {
                writer.write(batch).map_err(output_err)?;
            }
            Ok(())
        }
        Format::Json => {
            let mut buf = Vec::new();
            // Explicit nulls: every object has every column, so consumers need no defaults.
            let mut writer = datafusion::arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, datafusion::arrow::json::writer::JsonArray>(&mut buf);
            for batch in batches {
                writer.write(batch).map_err(output_err)?;
            }
            writer.finish().map_err(output_err)?;
            // An empty result is `[]`, not nothing, so that scripts can always parse it.
            if buf.is_empty() {
                buf.extend_from_slice(b"[]");
            }
            buf.push(b'\n');
            let mut out = out;
            out.write_all(&buf).map_err(output_err)
        }
        Format::Parquet => {
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .build();
            let mut writer = parquet::arrow::ArrowWriter::try_new(out, schema.clone(), Some(props))
                .map_err(output_err)?;
            for batch in batches {
                writer.write(batch).map_err(output_err)?;
            }
            writer.close().map_err(output_err)?;
            Ok(())
        }
    }
}

/// Aligned columns: numbers to the right, text to the left, a rule under the header.
fn write_table<W: Write>(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    mut out: W,
) -> Result<(), AnalyticsError> {
    let options = FormatOptions::default().with_null("");
    let headers: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let numeric: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().is_numeric())
        .collect();
    let mut cells: Vec<Vec<String>> = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| {
                datafusion::arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(output_err)?;
        for row in 0..batch.num_rows() {
            cells.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: &[String], out: &mut W| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if numeric[i] {
                text.extend(std::iter::repeat_n(' ', pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                if i + 1 < row.len() {
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(&headers, &mut out).map_err(output_err)?;
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&rule, &mut out).map_err(output_err)?;
    for row in &cells {
        line(row, &mut out).map_err(output_err)?;
    }
    writeln!(
        out,
        "({} row{})",
        cells.len(),
        if cells.len() == 1 { "" } else { "s" }
    )
    .map_err(output_err)
}
