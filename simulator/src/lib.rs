//! The fleet simulator: a seeded, reproducible fleet of refrigerated delivery vehicles that
//! publishes over MQTT, and a load generator.
//!
//! # Execution model
//! The *model* is deterministic and knows no clock: given a seed and a fleet time, each
//! [`Vehicle`] yields the exact sequence of readings (topic kind, `seq`, `ts`, JSON payload),
//! the moments its mobile link drops and returns, and its ground truth. The *transport* runs
//! one glommio executor per core with thousands of vehicles on each, one task and one MQTT
//! connection per vehicle: it only decides when readings go out (fleet time divided by the
//! speed-up) and keeps readings while the vehicle is offline, publishing them late and in
//! order when it is back (store-and-forward).
//!
//! # Layout
//! Model: [`config`], [`rng`], [`geo`], [`route`], [`network`], [`world`], [`motion`],
//! [`reefer`], [`schedule`], [`vehicle`], [`fleet`], [`truth`].
//! Transport: [`mqtt`] (a small MQTT client on glommio), [`run`] (executors, pacing,
//! store-and-forward, statistics), [`verify`] (an independent subscriber that checks a run
//! against the contract and the truth), [`loadgen`] (fixed-rate or flat-out load with latency
//! percentiles).

pub mod config;
pub mod fleet;
pub mod geo;
pub mod loadgen;
pub mod motion;
pub mod mqtt;
pub mod network;
pub mod reefer;
pub mod rng;
pub mod route;
pub mod run;
pub mod schedule;
pub mod truth;
pub mod vehicle;
pub mod verify;
pub mod world;

pub use config::{ForcedFault, ForcedGap, ModelConfig};
pub use fleet::Fleet;
pub use truth::Truth;
pub use vehicle::{Event, Reading, Timed, Vehicle};
pub use world::World;
