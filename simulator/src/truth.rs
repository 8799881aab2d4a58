//! The ground truth: what really happened, so that the archive and the analytics can be checked.
//!
//! Times are Unix epoch milliseconds (the unit of the payloads' `ts`); distances are metres
//! along the roads actually driven (not from noisy GPS). `generated` is what the model produced;
//! `published` is what the transport got onto the broker (sent at QoS 0, acknowledged at QoS
//! 1 and 2), counted once per `seq` even when a message had to be sent twice.

use std::{io, path::Path};

use serde::Serialize;
use telemetry::TopicKind;

use crate::reefer::Load;
use crate::world::Place;

/// One drive from a place to the next.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trip {
    /// Place left.
    pub from: String,
    /// Place reached (or headed for, when `complete` is false).
    pub to: String,
    /// Departure.
    pub start: i64,
    /// Arrival (the end of the run for an unfinished trip).
    pub end: i64,
    /// Metres driven.
    pub distance_m: f64,
    /// False when the run ended on the way.
    pub complete: bool,
}

/// Time spent at a place (depot or customer); red lights are not stops.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stop {
    /// The place.
    pub place: String,
    /// Arrival.
    pub start: i64,
    /// Departure (the end of the run if still there).
    pub end: i64,
}

/// A cargo door opening.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DoorOpening {
    /// Where.
    pub place: String,
    /// Opened.
    pub start: i64,
    /// Closed.
    pub end: i64,
}

/// An interval with the reported box temperature outside the load's band.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Excursion {
    /// First second out of band.
    pub start: i64,
    /// First second back in band (the end of the run if never).
    pub end: i64,
    /// The temperature furthest outside the band, °C.
    pub peak_c: f64,
}

/// A time interval (faults, coverage gaps).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interval {
    /// Start.
    pub start: i64,
    /// End.
    pub end: i64,
}

/// Messages on one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TopicCount {
    /// How many.
    pub count: u64,
    /// Smallest `seq` (absent when none).
    pub first_seq: Option<u64>,
    /// Largest `seq` (absent when none).
    pub last_seq: Option<u64>,
}

impl TopicCount {
    /// Counts one message.
    pub fn record(&mut self, seq: u64) {
        self.count += 1;
        self.first_seq = Some(self.first_seq.map_or(seq, |s| s.min(seq)));
        self.last_seq = Some(self.last_seq.map_or(seq, |s| s.max(seq)));
    }
}

/// Messages per topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// `fleet/{id}/gps`.
    pub gps: TopicCount,
    /// `fleet/{id}/reefer`.
    pub reefer: TopicCount,
    /// Retained `online` messages on `fleet/{id}/status` (one per connection).
    pub status_online: u64,
}

impl Counts {
    /// Counts one telemetry message of `kind`.
    pub fn record(&mut self, kind: TopicKind, seq: u64) {
        match kind {
            TopicKind::Gps => self.gps.record(seq),
            TopicKind::Reefer => self.reefer.record(seq),
            TopicKind::Status => self.status_online += 1,
        }
    }
}

/// Everything that happened to one vehicle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VehicleTruth {
    /// The id in its topics.
    pub vehicle_id: String,
    /// Chilled or frozen.
    pub load: Load,
    /// Thermostat setpoint, °C.
    pub setpoint_c: f64,
    /// Band the load must stay in, °C.
    pub band_min_c: f64,
    /// Band the load must stay in, °C.
    pub band_max_c: f64,
    /// Home depot.
    pub home: String,
    /// Metres driven in total.
    pub distance_m: f64,
    /// Odometer at the start, km.
    pub odometer_start_km: f64,
    /// Drives between places.
    pub trips: Vec<Trip>,
    /// Times at places.
    pub stops: Vec<Stop>,
    /// Cargo door openings.
    pub door_openings: Vec<DoorOpening>,
    /// Temperature excursions.
    pub excursions: Vec<Excursion>,
    /// Injected compressor faults.
    pub faults: Vec<Interval>,
    /// Simulated loss of mobile coverage (readings buffered, published late).
    pub coverage_gaps: Vec<Interval>,
    /// GPS readings missing because the receiver had no fix.
    pub gps_dropouts: Vec<Interval>,
    /// What the model produced.
    pub generated: Counts,
    /// What reached the broker.
    pub published: Counts,
}

/// The ground truth of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Truth {
    /// The seed.
    pub seed: u64,
    /// Fleet time of the first reading.
    pub start: i64,
    /// Fleet time the run ended.
    pub end: i64,
    /// Depots and customers.
    pub places: Vec<Place>,
    /// Per vehicle.
    pub vehicles: Vec<VehicleTruth>,
}

impl Truth {
    /// Writes the truth as JSON.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_json(&self, path: &Path) -> io::Result<()> {
        let file = std::fs::File::create(path)?;
        let mut out = io::BufWriter::new(file);
        serde_json::to_writer(&mut out, self).map_err(io::Error::other)?;
        io::Write::flush(&mut out)
    }

    /// The truth as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
