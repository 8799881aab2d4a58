//! The topic scheme: `fleet/{vehicle_id}/gps`, `fleet/{vehicle_id}/reefer`,
//! `fleet/{vehicle_id}/status`.
//!
//! The vehicle id lives in the topic, not in the payload, so that a broker ACL (`fleet/%c/#`)
//! can stop one vehicle from speaking for another.

use std::fmt;

/// The first topic level of every fleet topic.
pub const PREFIX: &str = "fleet";
/// Subscription filter for every GPS reading.
pub const GPS_FILTER: &str = "fleet/+/gps";
/// Subscription filter for every reefer reading.
pub const REEFER_FILTER: &str = "fleet/+/reefer";
/// Subscription filter for every status message.
pub const STATUS_FILTER: &str = "fleet/+/status";
/// Subscription filter for everything a fleet publishes.
pub const ALL_FILTER: &str = "fleet/#";
/// The longest vehicle id allowed.
pub const MAX_VEHICLE_ID_LEN: usize = 64;

/// What a fleet topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicKind {
    /// `fleet/{id}/gps`: [`crate::Gps`] readings.
    Gps,
    /// `fleet/{id}/reefer`: [`crate::Reefer`] readings.
    Reefer,
    /// `fleet/{id}/status`: retained `online` / `offline`.
    Status,
}

impl TopicKind {
    /// Every kind, in a fixed order (used for per-topic counters).
    pub const ALL: [TopicKind; 3] = [TopicKind::Gps, TopicKind::Reefer, TopicKind::Status];

    /// The last topic level.
    pub fn as_str(self) -> &'static str {
        match self {
            TopicKind::Gps => "gps",
            TopicKind::Reefer => "reefer",
            TopicKind::Status => "status",
        }
    }

    fn from_level(level: &str) -> Option<TopicKind> {
        match level {
            "gps" => Some(TopicKind::Gps),
            "reefer" => Some(TopicKind::Reefer),
            "status" => Some(TopicKind::Status),
            _ => None,
        }
    }
}

impl fmt::Display for TopicKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a topic is not a fleet topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Not three levels starting with `fleet/`.
    #[error("topic `{0}` is not fleet/{{vehicle_id}}/{{gps|reefer|status}}")]
    NotFleet(String),
    /// The last level is not a known kind.
    #[error("topic `{0}`: unknown kind (expected gps, reefer or status)")]
    UnknownKind(String),
    /// The vehicle id breaks the id rules.
    #[error("vehicle id `{id}`: {why}")]
    BadVehicleId {
        /// The offending id.
        id: String,
        /// Which rule it breaks.
        why: &'static str,
    },
}

/// Checks a vehicle id: 1 to 64 characters of `[A-Za-z0-9_-]`.
///
/// # Errors
/// [`TopicError::BadVehicleId`] naming the broken rule.
pub fn validate_vehicle_id(id: &str) -> Result<(), TopicError> {
    let why = if id.is_empty() {
        "is empty"
    } else if id.len() > MAX_VEHICLE_ID_LEN {
        "is longer than 64 characters"
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        "may only hold A-Z, a-z, 0-9, '_' and '-'"
    } else {
        return Ok(());
    };
    Err(TopicError::BadVehicleId {
        id: id.to_owned(),
        why,
    })
}

/// Splits a fleet topic into its vehicle id and kind.
///
/// # Errors
/// A [`TopicError`] when the topic is not `fleet/{valid id}/{gps|reefer|status}`.
pub fn parse(topic: &str) -> Result<(&str, TopicKind), TopicError> {
    let not_fleet = || TopicError::NotFleet(topic.to_owned());
    let rest = topic
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(not_fleet)?;
    let (id, kind) = rest.split_once('/').ok_or_else(not_fleet)?;
    if kind.contains('/') {
        return Err(not_fleet());
    }
    let kind = TopicKind::from_level(kind).ok_or_else(|| TopicError::UnknownKind(topic.into()))?;
    validate_vehicle_id(id)?;
    Ok((id, kind))
}

/// Builds the topic of `kind` for `vehicle_id` (which the caller has validated).
pub fn build(vehicle_id: &str, kind: TopicKind) -> String {
    let mut topic = String::with_capacity(PREFIX.len() + vehicle_id.len() + 8);
    topic.push_str(PREFIX);
    topic.push('/');
    topic.push_str(vehicle_id);
    topic.push('/');
    topic.push_str(kind.as_str());
    topic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!(parse("fleet/v-1/gps"), Ok(("v-1", TopicKind::Gps)));
        assert_eq!(parse("fleet/V_9/reefer"), Ok(("V_9", TopicKind::Reefer)));
        assert_eq!(parse("fleet/x/status"), Ok(("x", TopicKind::Status)));
    }

    #[test]
    fn build_and_parse_agree() {
        for kind in TopicKind::ALL {
            let topic = build("truck-0042", kind);
            assert_eq!(parse(&topic), Ok(("truck-0042", kind)));
        }
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in [
            "fleet/gps",
            "fleet//gps",
            "fleet/a/b/gps",
            "fleets/a/gps",
            "fleet/a/gps/",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
        assert!(matches!(
            parse("fleet/a/speed"),
            Err(TopicError::UnknownKind(_))
        ));
    }

    #[test]
    fn vehicle_id_rules() {
        assert!(validate_vehicle_id(&"a".repeat(64)).is_ok());
        assert!(validate_vehicle_id(&"a".repeat(65)).is_err());
        assert!(validate_vehicle_id("").is_err());
        assert!(validate_vehicle_id("a+b").is_err());
        assert!(validate_vehicle_id("lkw-ü").is_err());
        assert!(matches!(
            parse("fleet/a b/gps"),
            Err(TopicError::BadVehicleId { .. })
        ));
    }
}
