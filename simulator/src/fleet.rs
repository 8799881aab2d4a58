//! A fleet: the configuration, the world, and its vehicles; plus a model-only run that needs no
//! broker (used by tests and by `--dry-run`).

use std::sync::Arc;

use crate::config::ModelConfig;
use crate::truth::{Truth, VehicleTruth};
use crate::vehicle::{Event, Timed, Vehicle};
use crate::world::World;

/// The shared, immutable part of a fleet.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The model configuration.
    pub config: ModelConfig,
    /// Places and roads.
    pub world: Arc<World>,
}

impl Fleet {
    /// A fleet in `world`, or in a city generated from the seed when `None`.
    ///
    /// # Errors
    /// An invalid configuration.
    pub fn new(config: ModelConfig, world: Option<World>) -> Result<Fleet, String> {
        config.validate()?;
        let world =
            world.unwrap_or_else(|| World::generate(config.seed, config.vehicles, config.center));
        Ok(Fleet {
            config,
            world: Arc::new(world),
        })
    }

    /// Vehicle `index`.
    pub fn vehicle(&self, index: usize) -> Vehicle {
        Vehicle::new(&self.config, self.world.clone(), index)
    }

    /// The truth of a run that ended at simulated second `end_s`.
    pub fn truth(&self, end_s: u64, vehicles: Vec<VehicleTruth>) -> Truth {
        Truth {
            seed: self.config.seed,
            start: self.config.start_ms,
            end: self.config.start_ms + end_s as i64 * 1000,
            places: self.world.places.clone(),
            vehicles,
        }
    }

    /// Runs the model alone for `end_s` simulated seconds: every vehicle's events, and the
    /// truth as if every reading had been published.
    pub fn run_offline(&self, end_s: u64) -> (Vec<Vec<Timed>>, Truth) {
        let mut all = Vec::with_capacity(self.config.vehicles);
        let mut truths = Vec::with_capacity(self.config.vehicles);
        for index in 0..self.config.vehicles {
            let mut vehicle = self.vehicle(index);
            let mut events = Vec::new();
            while let Some(timed) = vehicle.next_event(end_s) {
                events.push(timed);
            }
            let mut truth = vehicle.finish(end_s);
            for timed in &events {
                if let Event::Publish(r) = &timed.event {
                    truth.published.record(r.kind, r.seq);
                }
            }
            all.push(events);
            truths.push(truth);
        }
        (all, self.truth(end_s, truths))
    }
}
