//! What a fleet model is made of: the seed, the size, the rates of everything random.

use crate::geo::Frame;

/// A compressor fault to inject at a known time (tests, demos).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForcedFault {
    /// Vehicle index.
    pub vehicle: usize,
    /// Seconds after the start.
    pub start_s: u64,
    /// How long it lasts, seconds.
    pub duration_s: u64,
}

/// A coverage gap to inject at a known time (store-and-forward tests).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForcedGap {
    /// Vehicle index.
    pub vehicle: usize,
    /// Seconds after the start.
    pub start_s: u64,
    /// How long it lasts, seconds.
    pub duration_s: u64,
}

/// The fleet model's configuration. Equal configurations give byte-identical fleets.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of vehicles.
    pub vehicles: usize,
    /// Vehicle ids are `{id_prefix}-{index:05}`.
    pub id_prefix: String,
    /// Fleet time of the first reading, Unix epoch ms.
    pub start_ms: i64,
    /// Seconds between GPS readings.
    pub gps_interval_s: u32,
    /// Seconds between reefer readings.
    pub reefer_interval_s: u32,
    /// Standard deviation of the GPS position error, metres.
    pub gps_noise_m: f64,
    /// GPS dropouts (no fix for 5–60 s) per vehicle and hour.
    pub gps_dropouts_per_hour: f64,
    /// Coverage gaps (offline for 20 s–5 min) per vehicle and hour.
    pub coverage_gaps_per_hour: f64,
    /// Compressor faults (60–150 min) per vehicle and hour.
    pub faults_per_hour: f64,
    /// Share of vehicles carrying frozen loads.
    pub frozen_share: f64,
    /// Faults injected at fixed times, on top of the random ones.
    pub forced_faults: Vec<ForcedFault>,
    /// Coverage gaps injected at fixed times, on top of the random ones.
    pub forced_gaps: Vec<ForcedGap>,
    /// Centre of the generated city.
    pub center: Frame,
}

impl Default for ModelConfig {
    fn default() -> ModelConfig {
        ModelConfig {
            seed: 1,
            vehicles: 100,
            id_prefix: "truck".into(),
            // Monday 2025-01-06 06:00 UTC: a fixed default keeps runs reproducible.
            start_ms: 1_736_143_200_000,
            gps_interval_s: 1,
            reefer_interval_s: 30,
            gps_noise_m: 3.0,
            gps_dropouts_per_hour: 1.0,
            coverage_gaps_per_hour: 0.5,
            faults_per_hour: 0.02,
            frozen_share: 0.3,
            forced_faults: Vec::new(),
            forced_gaps: Vec::new(),
            // Hamburg.
            center: Frame {
                lat0: 53.55,
                lon0: 9.99,
            },
        }
    }
}

impl ModelConfig {
    /// Checks values the types allow but the model does not.
    ///
    /// # Errors
    /// A message naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.gps_interval_s == 0 || self.reefer_interval_s == 0 {
            return Err("GPS and reefer intervals must be at least 1 s".into());
        }
        if !(0.0..=1000.0).contains(&self.gps_noise_m) {
            return Err("GPS noise must be between 0 and 1000 m".into());
        }
        for (name, rate) in [
            ("GPS dropout rate", self.gps_dropouts_per_hour),
            ("coverage gap rate", self.coverage_gaps_per_hour),
            ("fault rate", self.faults_per_hour),
        ] {
            if !(0.0..=3600.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 3600 per hour"));
            }
        }
        if !(0.0..=1.0).contains(&self.frozen_share) {
            return Err("frozen share must be between 0 and 1".into());
        }
        telemetry::topic::validate_vehicle_id(&format!("{}-00000", self.id_prefix))
            .map_err(|e| format!("vehicle id prefix: {e}"))?;
        Ok(())
    }

    /// The id of vehicle `index`.
    pub fn vehicle_id(&self, index: usize) -> String {
        format!("{}-{index:05}", self.id_prefix)
    }
}
