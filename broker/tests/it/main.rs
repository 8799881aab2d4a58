//! The integration tests of `broker`, in one binary: one link for all of them.

mod common;

mod backpressure;
mod behaviour;
mod claims;
mod cross_shard;
mod http;
mod persistence;
mod persistent_wills;
mod security;
mod security_peers;
mod sink;
mod takeover;
