//! The integration tests of `analytics`, in one binary: one link for all of them.

mod common;

mod accuracy;
mod engines;
mod query;
mod reports;
