//! The archive as DataFusion tables.
//!
//! Each table is a `ListingTable` over its directory with the hive partition columns of the
//! layout (`date` as a `YYYY-MM-DD` string, `hour` as an integer; `rejects` has `date` only),
//! so a predicate on them skips whole directories before any file is opened. Within files the
//! Parquet statistics and page indexes the archive writes let `ts` and `vehicle_id` predicates
//! skip row groups and pages. A table whose directory does not exist yet is an empty table of
//! the same schema, so queries over a young archive work rather than fail.

use std::{path::Path, sync::Arc};

use datafusion::{
    arrow::{
        datatypes::{DataType, Field, Schema, SchemaRef},
        record_batch::RecordBatch,
    },
    datasource::{
        file_format::parquet::ParquetFormat,
        listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl},
        MemTable,
    },
    execution::{
        cache::cache_manager::CacheManagerConfig, context::SessionContext,
        runtime_env::RuntimeEnvBuilder,
    },
    prelude::SessionConfig,
};
use tokio::runtime::Runtime;

use crate::AnalyticsError;

/// A table of the archive and how it is partitioned.
#[derive(Debug, Clone, Copy)]
struct TableDef {
    name: &'static str,
    schema: fn() -> SchemaRef,
    hourly: bool,
}

const TABLES: [TableDef; 3] = [
    TableDef {
        name: "gps",
        schema: telemetry::schema::gps,
        hourly: true,
    },
    TableDef {
        name: "reefer",
        schema: telemetry::schema::reefer,
        hourly: true,
    },
    TableDef {
        name: "rejects",
        schema: telemetry::schema::rejects,
        hourly: false,
    },
];

/// A query result: the schema (known even when no row matched) and the batches.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// Columns.
    pub schema: SchemaRef,
    /// Rows.
    pub batches: Vec<RecordBatch>,
}

/// A DataFusion session over one archive directory, with its own small runtime so that callers
/// stay synchronous.
pub struct Catalog {
    ctx: SessionContext,
    runtime: Runtime,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").finish_non_exhaustive()
    }
}

impl Catalog {
    /// Registers `gps`, `reefer` and `rejects` over the archive at `data_dir`.
    ///
    /// # Errors
    /// The directory is missing or not a directory ([`AnalyticsError::Invalid`]), or
    /// DataFusion refuses a table.
    pub fn open(data_dir: &Path) -> Result<Catalog, AnalyticsError> {
        if !data_dir.is_dir() {
            return Err(AnalyticsError::Invalid(format!(
                "--data {}: not a directory",
                data_dir.display()
            )));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|source| AnalyticsError::Io {
                path: "tokio runtime".into(),
                source,
            })?;
        let mut config = SessionConfig::new().with_information_schema(true);
        // Filters evaluated while decoding let page indexes skip pages, not just row groups.
        config.options_mut().execution.parquet.pushdown_filters = true;
        config.options_mut().execution.parquet.reorder_filters = true;
        // No cached file listings (DataFusion keeps them for ever by default): a catalog that
        // lives on must see the files published, and compacted, after it was opened.
        let runtime_env = RuntimeEnvBuilder::new()
            .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
            .build_arc()
            .map_err(AnalyticsError::Execution)?;
        let ctx = SessionContext::new_with_config_rt(config, runtime_env);
        for def in TABLES {
            let table = runtime.block_on(table(data_dir, def))?;
            ctx.register_table(def.name, table)
                .map_err(AnalyticsError::Execution)?;
        }
        Ok(Catalog { ctx, runtime })
    }

    /// Plans and runs `sql`.
    ///
    /// # Errors
    /// [`AnalyticsError::Sql`] when the statement does not parse or plan (DataFusion's message
    /// names the problem); [`AnalyticsError::Execution`] when it fails while running.
    ///
    /// A query that listed an hour's files just before compaction swapped them for merged ones
    /// fails to open one (not found); it is planned and run again, up to three times, and then
    /// sees the merged files.
    pub fn sql(&self, sql: &str) -> Result<QueryResult, AnalyticsError> {
        self.runtime.block_on(async {
            let mut attempt = 1;
            loop {
                let frame = self.ctx.sql(sql).await.map_err(AnalyticsError::Sql)?;
                let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
                match frame.collect().await {
                    Ok(batches) => return Ok(QueryResult { schema, batches }),
                    Err(e) if attempt < 3 && is_file_gone(&e) => attempt += 1,
                    Err(e) => return Err(AnalyticsError::Execution(e)),
                }
            }
        })
    }
}

/// Whether `e` says a listed file was not there any more.
fn is_file_gone(e: &datafusion::error::DataFusionError) -> bool {
    let text = e.to_string();
    text.contains("not found") || text.contains("No such file")
}

fn partition_cols(hourly: bool) -> Vec<(String, DataType)> {
    let mut cols = vec![("date".to_owned(), DataType::Utf8)];
    if hourly {
        cols.push(("hour".to_owned(), DataType::Int32));
    }
    cols
}

async fn table(
    data_dir: &Path,
    def: TableDef,
) -> Result<Arc<dyn datafusion::catalog::TableProvider>, AnalyticsError> {
    let dir = data_dir.join(def.name);
    // Decimal columns (coordinates, odometer) are read as doubles, which files of an earlier
    // version hold already: one table over both.
    let file_schema = telemetry::schema::as_doubles(&(def.schema)());
    if !dir.is_dir() {
        let mut fields: Vec<Field> = file_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for (name, ty) in partition_cols(def.hourly) {
            fields.push(Field::new(name, ty, false));
        }
        let schema = Arc::new(Schema::new(fields));
        let empty = MemTable::try_new(schema, vec![vec![]]).map_err(AnalyticsError::Execution)?;
        return Ok(Arc::new(empty));
    }
    let dir = std::path::absolute(&dir).map_err(|source| AnalyticsError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let url =
        ListingTableUrl::parse(format!("{}/", dir.display())).map_err(AnalyticsError::Execution)?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(partition_cols(def.hourly));
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(file_schema);
    let table = ListingTable::try_new(config).map_err(AnalyticsError::Execution)?;
    Ok(Arc::new(crate::hour_table::HourTable::new(Arc::new(table))))
}
