//! Analytics over the fleet archive: SQL (DataFusion) over the hive-partitioned Parquet files,
//! built-in route and cold-chain reports, and charts.
//!
//! The archive is read as it lies on disk (`{data}/gps/date=.../hour=.../part-*.parquet`, see
//! `design.md`, "Archive layout"); nothing here writes to it.
//!
//! # Layout
//! - [`catalog`]: the [`Catalog`], a DataFusion session with the tables `gps`, `reefer` and
//!   `rejects` registered over the archive, and [`Catalog::sql`].
//! - `hour_table`: keeps `hour = N` from missing the zero-padded `hour=HH` directories.
//! - [`output`]: query and report results as an aligned table, CSV, JSON or Parquet.
//! - [`filter`]: the vehicle and time-range [`Filter`] shared by the reports.
//! - [`load`]: reading GPS tracks and reefer series for the reports.
//! - [`rows`]: report rows, turned into Arrow batches for [`output`].
//! - Algorithms, each pure over in-memory samples: [`distance`], [`trips`], [`overspeed`],
//!   [`geofence`], [`excursions`], [`mkt`], [`doors`], [`summary`].
//! - [`report`]: the report kinds and their options, from archive to rows.
//! - [`chart`]: SVG route maps and temperature timelines.

pub mod catalog;
pub mod chart;
pub mod distance;
pub mod doors;
mod error;
pub mod excursions;
pub mod filter;
pub mod geofence;
mod hour_table;
pub mod load;
pub mod mkt;
pub mod output;
pub mod overspeed;
pub mod report;
pub mod rows;
pub mod summary;
pub mod trips;

pub use catalog::Catalog;
pub use error::AnalyticsError;
pub use filter::Filter;
pub use output::Format;
pub use report::{ReportKind, ReportOptions};
