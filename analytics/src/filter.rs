//! Which vehicle and which time range a report looks at, and the SQL predicate that selects
//! it with partition pruning.
//!
//! Times are half-open, `[from, to)`, in Unix epoch milliseconds (UTC). The predicate repeats
//! the range on the `date` partition column so DataFusion skips whole days of directories,
//! then on `ts` so the Parquet statistics skip row groups and pages.

use crate::AnalyticsError;

const MS_PER_DAY: i64 = 86_400_000;

/// A vehicle and time-range selection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// One vehicle, or all.
    pub vehicle: Option<String>,
    /// Inclusive start, Unix epoch ms.
    pub from_ms: Option<i64>,
    /// Exclusive end, Unix epoch ms.
    pub to_ms: Option<i64>,
}

impl Filter {
    /// A filter from the command line's `--vehicle`, `--from` and `--to`.
    ///
    /// # Errors
    /// [`AnalyticsError::Invalid`] naming the flag: a vehicle id outside the topic rules (which
    /// also keeps it safe to put into SQL), a time that does not parse, `from` not before `to`.
    pub fn new(
        vehicle: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Filter, AnalyticsError> {
        if let Some(v) = vehicle {
            telemetry::topic::validate_vehicle_id(v)
                .map_err(|e| AnalyticsError::Invalid(format!("--vehicle {v}: {e}")))?;
        }
        let from_ms = from.map(|s| parse_time("--from", s)).transpose()?;
        let to_ms = to.map(|s| parse_time("--to", s)).transpose()?;
        if let (Some(f), Some(t)) = (from_ms, to_ms) {
            if f >= t {
                return Err(AnalyticsError::Invalid(
                    "--from must be before --to".to_owned(),
                ));
            }
        }
        Ok(Filter {
            vehicle: vehicle.map(str::to_owned),
            from_ms,
            to_ms,
        })
    }

    /// The SQL `WHERE` condition (without the keyword) for a table with `ts` and `date`
    /// columns; `TRUE` when the filter selects everything.
    pub fn predicate(&self) -> String {
        let mut terms = Vec::new();
        if let Some(v) = &self.vehicle {
            terms.push(format!("vehicle_id = '{v}'"));
        }
        if let Some(f) = self.from_ms {
            terms.push(format!("date >= '{}'", date_of(f)));
            terms.push(format!("ts >= '{}'", rfc3339(f)));
        }
        if let Some(t) = self.to_ms {
            terms.push(format!("date <= '{}'", date_of(t)));
            terms.push(format!("ts < '{}'", rfc3339(t)));
        }
        if terms.is_empty() {
            "TRUE".to_owned()
        } else {
            terms.join(" AND ")
        }
    }
}

/// Parses a time: RFC 3339 (`2025-01-06T06:00:00Z`, offsets allowed), `2025-01-06 06:00:00`
/// (UTC), a date (`2025-01-06`, midnight UTC) or Unix epoch milliseconds.
///
/// # Errors
/// [`AnalyticsError::Invalid`] naming `flag`.
pub fn parse_time(flag: &str, s: &str) -> Result<i64, AnalyticsError> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(s)
        .map(|ns| ns.div_euclid(1_000_000))
        .map_err(|_| {
            AnalyticsError::Invalid(format!(
                "{flag} {s}: not a time (expected e.g. 2025-01-06T06:00:00Z, 2025-01-06 or epoch ms)"
            ))
        })
}

/// `YYYY-MM-DD` of the UTC day holding `ms`.
pub fn date_of(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of `ms`.
pub fn rfc3339(ms: i64) -> String {
    let day_ms = ms.rem_euclid(MS_PER_DAY);
    let (h, rest) = (day_ms / 3_600_000, day_ms % 3_600_000);
    let (min, rest) = (rest / 60_000, rest % 60_000);
    format!(
        "{}T{h:02}:{min:02}:{:02}.{:03}Z",
        date_of(ms),
        rest / 1000,
        rest % 1000
    )
}

/// Proleptic Gregorian (year, month, day) of a count of days since 1970-01-01, by the
/// era-based method (400-year cycles of 146 097 days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_in_utc() {
        assert_eq!(rfc3339(1_736_143_200_123), "2025-01-06T06:00:00.123Z");
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(951_782_400_000), "2000-02-29");
        assert_eq!(date_of(-1), "1969-12-31");
    }

    #[test]
    fn parses_the_documented_time_forms() {
        let t = 1_736_143_200_000;
        assert_eq!(parse_time("--from", "2025-01-06T06:00:00Z").unwrap(), t);
        assert_eq!(
            parse_time("--from", "2025-01-06T07:00:00+01:00").unwrap(),
            t
        );
        assert_eq!(parse_time("--from", "2025-01-06 06:00:00").unwrap(), t);
        assert_eq!(
            parse_time("--from", "2025-01-06").unwrap(),
            t - 6 * 3_600_000
        );
        assert_eq!(parse_time("--from", "1736143200000").unwrap(), t);
        let err = parse_time("--from", "yesterday").unwrap_err().to_string();
        assert!(err.contains("--from yesterday"), "{err}");
    }

    #[test]
    fn predicate_prunes_on_date_and_ts() {
        let f = Filter::new(
            Some("truck-00001"),
            Some("2025-01-06T06:00:00Z"),
            Some("2025-01-07"),
        )
        .unwrap();
        assert_eq!(
            f.predicate(),
            "vehicle_id = 'truck-00001' AND date >= '2025-01-06' AND ts >= '2025-01-06T06:00:00.000Z' \
             AND date <= '2025-01-07' AND ts < '2025-01-07T00:00:00.000Z'"
        );
        assert_eq!(Filter::default().predicate(), "TRUE");
    }

    #[test]
    fn refuses_ids_that_could_inject_sql() {
        let err = Filter::new(Some("x' OR '1'='1"), None, None).unwrap_err();
        assert!(err.is_usage());
        assert!(Filter::new(None, Some("2025-01-07"), Some("2025-01-06")).is_err());
    }
}
