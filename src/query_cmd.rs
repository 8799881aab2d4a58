//! `fleetmq query`: SQL over the archive (DataFusion), printed as a table, CSV or JSON, or
//! written as Parquet.

use std::{io::Write, path::PathBuf};

use analytics::{output, AnalyticsError, Catalog, Format};

use crate::exit::UsageError;

/// Flags of `fleetmq query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The archive directory.
    #[arg(long, default_value = "fleet-data")]
    pub data: PathBuf,
    /// The SQL statement. Tables: gps, reefer (partition columns date, hour) and rejects (date).
    pub sql: String,
    /// Output format: table, csv, json or parquet.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Runs the query.
pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let format: Format = args.format.parse().map_err(UsageError)?;
    if format == Format::Parquet
        && args.output.is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
    {
        return Err(UsageError("--format parquet needs --output FILE (or a pipe)".into()).into());
    }
    let catalog = Catalog::open(&args.data).map_err(classify)?;
    let result = catalog.sql(&args.sql).map_err(classify)?;
    write_out(args.output.as_ref(), |out| {
        output::write(format, &result.schema, &result.batches, out)
    })
}

/// Bad SQL and bad flags are the user's to fix (exit 2); the rest is exit 1.
pub fn classify(e: AnalyticsError) -> anyhow::Error {
    if e.is_usage() {
        UsageError(e.to_string()).into()
    } else {
        e.into()
    }
}

/// Runs `write` on the output file or on standard output (buffered); a reader that went away
/// (`| head`) is not an error.
pub fn write_out(
    path: Option<&PathBuf>,
    write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), AnalyticsError>,
) -> anyhow::Result<()> {
    let result = match path {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            write(&mut out).and_then(|()| {
                out.flush()
                    .map_err(|e| AnalyticsError::Output(e.to_string()))
            })
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout());
            write(&mut out).and_then(|()| {
                out.flush()
                    .map_err(|e| AnalyticsError::Output(e.to_string()))
            })
        }
    };
    match result {
        Err(AnalyticsError::Output(m)) if m.contains("Broken pipe") => Ok(()),
        other => other.map_err(classify),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(data: &std::path::Path, sql: &str, format: &str) -> anyhow::Result<()> {
        run(QueryArgs {
            data: data.to_owned(),
            sql: sql.to_owned(),
            format: format.to_owned(),
            output: Some(data.join("out")),
        })
    }

    #[test]
    fn bad_sql_and_bad_flags_exit_2_other_failures_1() {
        let dir = tempfile::tempdir().unwrap();
        let err = query(dir.path(), "SELECT nope FROM gps", "table").unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some());
        assert!(err.to_string().contains("nope"), "{err}");
        let err = query(dir.path(), "SELECT 1", "xml").unwrap_err();
        assert!(err.to_string().contains("unknown format `xml`"), "{err}");
        let err = query(&dir.path().join("missing"), "SELECT 1", "csv").unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
        query(dir.path(), "SELECT count(*) AS n FROM reefer", "csv").unwrap();
        let out = std::fs::read_to_string(dir.path().join("out")).unwrap();
        assert_eq!(out, "n\n0\n");
    }
}
