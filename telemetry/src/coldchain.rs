//! The cold-chain rules: which temperature band a load must stay in, and how long it may be out
//! before that is an alarm. One set, read by everything that judges excursions: the broker's
//! configuration holds it (`[coldchain]`), the broker hands it to dashboards as the retained
//! message [`TOPIC`] and to the reports as `{data}/coldchain.json` beside the archive.
//!
//! The defaults are the usual ones: a chilled load (setpoint at or above `frozen_below_c`, 0 °C)
//! within 2–8 °C, the chilled-food and pharmaceutical band; a frozen load within -30 to -15 °C,
//! the quick-frozen food rule (at or below -18 °C, brief rises to -15 °C tolerated in
//! transport).

use serde::{Deserialize, Serialize};

/// The retained topic dashboards read the rules from.
pub const TOPIC: &str = "fleet/_config/coldchain";

/// The file name the rules are written to in an archive's data directory.
pub const FILE_NAME: &str = "coldchain.json";

/// A temperature band, °C.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// Lowest allowed, °C.
    pub low_c: f64,
    /// Highest allowed, °C.
    pub high_c: f64,
}

impl Band {
    /// Whether `t` is inside (limits included).
    pub fn contains(&self, t: f64) -> bool {
        t >= self.low_c && t <= self.high_c
    }
}

/// The rules: a band per product class, chosen by the unit's setpoint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColdChainRules {
    /// A load whose setpoint is below this is frozen, °C.
    pub frozen_below_c: f64,
    /// The band of a chilled load.
    pub chilled: Band,
    /// The band of a frozen load.
    pub frozen: Band,
    /// An excursion becomes an alarm once it lasted this long, seconds of reading time.
    pub alarm_after_s: u64,
}

impl Default for ColdChainRules {
    fn default() -> Self {
        ColdChainRules {
            frozen_below_c: 0.0,
            chilled: Band {
                low_c: 2.0,
                high_c: 8.0,
            },
            frozen: Band {
                low_c: -30.0,
                high_c: -15.0,
            },
            alarm_after_s: 60,
        }
    }
}

impl ColdChainRules {
    /// The band of a unit set to `setpoint_c`.
    pub fn band_for(&self, setpoint_c: f64) -> Band {
        if setpoint_c < self.frozen_below_c {
            self.frozen
        } else {
            self.chilled
        }
    }

    /// Checks the bands.
    ///
    /// # Errors
    /// A message naming the band that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        for (name, band) in [("chilled", self.chilled), ("frozen", self.frozen)] {
            let finite = band.low_c.is_finite() && band.high_c.is_finite();
            if !finite || band.low_c >= band.high_c {
                return Err(format!(
                    "coldchain.{name}: low_c ({}) must be below high_c ({})",
                    band.low_c, band.high_c
                ));
            }
        }
        if !self.frozen_below_c.is_finite() {
            return Err("coldchain.frozen_below_c must be a number".into());
        }
        Ok(())
    }

    /// The rules as JSON, for [`TOPIC`] and [`FILE_NAME`].
    pub fn to_json(&self) -> String {
        // Plain numbers and structs: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads rules [`ColdChainRules::to_json`] wrote.
    ///
    /// # Errors
    /// What is wrong with the text.
    pub fn from_json(text: &str) -> Result<ColdChainRules, String> {
        let rules: ColdChainRules = serde_json::from_str(text).map_err(|e| e.to_string())?;
        rules.validate()?;
        Ok(rules)
    }

    /// Writes the rules beside the archive at `data_dir` ([`FILE_NAME`]), replacing the file
    /// in one rename, for the reports over that archive ([`ColdChainRules::of_archive`]).
    ///
    /// # Errors
    /// The file cannot be written, naming it.
    pub fn write_to_archive(&self, data_dir: &std::path::Path) -> Result<(), String> {
        let path = data_dir.join(FILE_NAME);
        let temp = data_dir.join(format!(".{FILE_NAME}.tmp"));
        std::fs::write(&temp, self.to_json())
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The rules of the archive at `data_dir` (its `coldchain.json`, which the broker writes),
    /// or the defaults when it has none.
    ///
    /// # Errors
    /// The file exists but cannot be read or is not valid.
    pub fn of_archive(data_dir: &std::path::Path) -> Result<ColdChainRules, String> {
        let path = data_dir.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                ColdChainRules::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ColdChainRules::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_band_follows_the_setpoint_and_the_rules_round_trip() {
        let rules = ColdChainRules::default();
        assert_eq!(rules.band_for(4.0), rules.chilled);
        assert_eq!(rules.band_for(-18.0), rules.frozen);
        assert!(rules.band_for(4.0).contains(8.0) && !rules.band_for(4.0).contains(8.1));
        assert_eq!(ColdChainRules::from_json(&rules.to_json()).unwrap(), rules);
        let dir = std::env::temp_dir().join(format!("coldchain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(
            ColdChainRules::of_archive(&dir).unwrap(),
            rules,
            "none written: defaults"
        );
        let cold = ColdChainRules {
            alarm_after_s: 300,
            ..rules
        };
        cold.write_to_archive(&dir).unwrap();
        assert_eq!(ColdChainRules::of_archive(&dir).unwrap(), cold);
        std::fs::remove_dir_all(&dir).unwrap();
        let bad = r#"{"chilled":{"low_c":8,"high_c":2}}"#;
        assert!(ColdChainRules::from_json(bad)
            .unwrap_err()
            .contains("coldchain.chilled"));
    }
}
