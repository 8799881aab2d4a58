//! The integration tests of `ingest`, in one binary: one link for all of them.

mod common;

mod archive;
mod crash;
mod duckdb;
mod exactly_once;
mod maintenance;
