//! The fleet data model shared by the simulator, the ingest and the analytics.
//!
//! Everything that crosses a process boundary is defined here once: which topics a vehicle
//! publishes on, what its JSON payloads hold, what makes a payload a reject (and why), and the
//! Arrow schemas of the Parquet archive. The contract is the one of `design.md`, "Topics and
//! payloads".
//!
//! # Layout
//! - [`topic`]: `fleet/{vehicle_id}/{gps|reefer|status}`, vehicle id rules, parsing and building.
//! - [`payload`]: [`Gps`], [`Reefer`] and [`Status`] with their JSON encoding.
//! - [`decode`]: the fast, allocation-free decoder and the [`Reject`] reasons it reports.
//! - [`schema`]: the Arrow schemas of the archive tables (`gps`, `reefer`, `rejects`).
//!
//! # Example
//! ```
//! use telemetry::{decode_message, topic, Gps, Message, TopicKind};
//!
//! let gps = Gps { ts: 1_700_000_000_000, seq: 0, lat: 52.52, lon: 13.405, speed_kmh: 42.0,
//!                 heading_deg: 90.0, odometer_km: None, hdop: None };
//! let topic = topic::build("truck-7", TopicKind::Gps);
//! let payload = gps.to_json();
//! let (vehicle, message) = decode_message(&topic, &payload).unwrap();
//! assert_eq!(vehicle, "truck-7");
//! assert_eq!(message, Message::Gps(gps));
//! ```

pub mod coldchain;
pub mod decode;
pub mod payload;
pub mod schema;
pub mod topic;

pub use decode::{decode_gps, decode_message, decode_reefer, Message, Reject};
pub use payload::{Gps, Reefer, Status};
pub use topic::{TopicError, TopicKind};

/// Version of the payload contract and archive schemas; written into the archive's file metadata
/// so that a reader can tell which rules a file was written under. Version 2 stores `lat`,
/// `lon` and `odometer_km` as decimals (version 1: doubles).
pub const SCHEMA_VERSION: u32 = 2;
