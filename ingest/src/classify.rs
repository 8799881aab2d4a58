//! What becomes of a record: a reading, a reject (kept with its reason), or nothing (status).
//!
//! Status messages are valid fleet traffic but not telemetry rows, so they are skipped and
//! counted; a status payload that is neither `online` nor `offline` is a bad payload like any
//! other and becomes a reject. Anything on a topic outside the fleet scheme was handed to the
//! archive by mistake or by a misbehaving client, and is kept as a reject rather than dropped.

use telemetry::{decode_message, Gps, Message, Reefer};

use crate::Record;

/// The fate of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Classified<'a> {
    /// A valid GPS reading of the vehicle.
    Gps(&'a str, Gps),
    /// A valid reefer reading of the vehicle.
    Reefer(&'a str, Reefer),
    /// Valid, but not archived.
    Skip,
    /// Refused, with the reason.
    Reject(String),
}

/// Decodes and validates `record`.
pub fn classify(record: &Record) -> Classified<'_> {
    let Ok(topic) = std::str::from_utf8(&record.topic) else {
        return Classified::Reject("topic is not UTF-8".into());
    };
    match decode_message(topic, &record.payload) {
        Ok((vehicle, Message::Gps(gps))) => match check_seq(gps.seq) {
            Ok(()) => Classified::Gps(vehicle, gps),
            Err(reason) => Classified::Reject(reason),
        },
        Ok((vehicle, Message::Reefer(reefer))) => match check_seq(reefer.seq) {
            Ok(()) => Classified::Reefer(vehicle, reefer),
            Err(reason) => Classified::Reject(reason),
        },
        Ok((_, Message::Status(_))) => Classified::Skip,
        Err(reject) => Classified::Reject(reject.to_string()),
    }
}

/// The archive stores `seq` as a signed 64-bit integer (what every SQL engine handles), so a
/// counter past `i64::MAX` cannot be stored faithfully.
fn check_seq(seq: u64) -> Result<(), String> {
    if i64::try_from(seq).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "field `seq` = {seq} is out of range (must fit a signed 64-bit integer)"
        ))
    }
}

/// The vehicle-id part of a topic (`fleet/{id}/...`), without validating it: used to spread
/// records over writer threads cheaply on the submitting thread.
pub fn vehicle_of(topic: &[u8]) -> &[u8] {
    let rest = topic.strip_prefix(b"fleet/").unwrap_or(topic);
    let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    &rest[..end]
}

/// The writer thread of a vehicle id: FNV-1a, stable across runs and platforms so that the
/// index rebuilt on open sends each vehicle to the writer that will receive its records.
pub fn writer_of(vehicle: &[u8], writers: usize) -> usize {
    if writers <= 1 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in vehicle {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // The remainder is below `writers`, so it fits a usize.
    (hash % writers as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &[u8], payload: &[u8]) -> Record {
        Record::new(topic.to_vec(), payload.to_vec(), 0)
    }

    const GPS: &[u8] = br#"{"ts":1,"seq":2,"lat":1,"lon":2,"speed_kmh":3,"heading_deg":4}"#;

    #[test]
    fn readings_statuses_and_rejects() {
        assert!(matches!(
            classify(&record(b"fleet/v1/gps", GPS)),
            Classified::Gps("v1", g) if g.seq == 2
        ));
        assert_eq!(
            classify(&record(b"fleet/v1/status", b"online")),
            Classified::Skip
        );
        let Classified::Reject(reason) = classify(&record(b"fleet/v1/status", b"maybe")) else {
            panic!("bad status accepted");
        };
        assert!(reason.contains("status"), "{reason}");
        let Classified::Reject(reason) = classify(&record(b"fleet/v1/gps", b"{")) else {
            panic!("bad json accepted");
        };
        assert!(reason.contains("JSON"), "{reason}");
        let Classified::Reject(reason) = classify(&record(b"other/topic", GPS)) else {
            panic!("foreign topic accepted");
        };
        assert!(reason.contains("other/topic"), "{reason}");
        assert!(matches!(
            classify(&record(b"fleet/\xff/gps", GPS)),
            Classified::Reject(r) if r.contains("UTF-8")
        ));
    }

    #[test]
    fn seqs_beyond_i64_are_rejected_not_wrapped() {
        let payload =
            br#"{"ts":1,"seq":18446744073709551615,"lat":1,"lon":2,"speed_kmh":3,"heading_deg":4}"#;
        assert!(matches!(
            classify(&record(b"fleet/v1/gps", payload)),
            Classified::Reject(r) if r.contains("seq")
        ));
    }

    #[test]
    fn routing_uses_only_the_vehicle() {
        assert_eq!(vehicle_of(b"fleet/truck-1/gps"), b"truck-1");
        assert_eq!(vehicle_of(b"fleet/truck-1"), b"truck-1");
        for writers in 1..5 {
            assert_eq!(
                writer_of(vehicle_of(b"fleet/a7/gps"), writers),
                writer_of(b"a7", writers)
            );
        }
        let spread: std::collections::HashSet<_> = (0..100)
            .map(|i| writer_of(format!("v{i}").as_bytes(), 4))
            .collect();
        assert_eq!(spread.len(), 4);
    }
}
