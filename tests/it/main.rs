//! The integration tests of `fleetmq`, in one binary: one link for all of them.

mod support;

mod archive;
mod cli_broker;
mod dashboard_browser;
mod demo;
mod ingest_standalone;
mod interop;
mod loadgen_cli;
mod persistence;
mod restart;
mod security_peers;
mod simulate_cli;
