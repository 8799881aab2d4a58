//! Which file a row goes to: table, UTC day and hour of its own time (`ts` for readings,
//! `received_at` for rejects), so late store-and-forward data lands where a reader looks for it.

use std::path::{Path, PathBuf};

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// The archive tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `gps/`.
    Gps,
    /// `reefer/`.
    Reefer,
    /// `rejects/` (partitioned by day only: rejects are few).
    Rejects,
}

impl Table {
    /// The directory name under the data directory.
    pub fn dir_name(self) -> &'static str {
        match self {
            Table::Gps => "gps",
            Table::Reefer => "reefer",
            Table::Rejects => "rejects",
        }
    }
}

/// One hive partition: `{table}/date=YYYY-MM-DD[/hour=H]`, the hour without padding (`hour=7`),
/// the form Spark writes: engines that infer an integer `hour` build the directory name of
/// `hour = 7` as `hour=7` and so find it without help. Archives of earlier versions have
/// `hour=07`; both forms are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    /// The table.
    pub table: Table,
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// Hour of the day (UTC); 0 for rejects.
    pub hour: u8,
}

impl PartitionKey {
    /// The partition of a row of `table` whose time is `ms` (Unix epoch milliseconds).
    pub fn of(table: Table, ms: i64) -> Self {
        let day = ms.div_euclid(MS_PER_DAY);
        let hour = match table {
            Table::Rejects => 0,
            // rem_euclid keeps the hour in 0..24, so the cast cannot truncate.
            _ => (ms.rem_euclid(MS_PER_DAY) / MS_PER_HOUR) as u8,
        };
        PartitionKey { table, day, hour }
    }

    /// The partition directory under `data_dir`.
    pub fn dir(&self, data_dir: &Path) -> PathBuf {
        let (y, m, d) = civil_from_days(self.day);
        let mut dir = data_dir
            .join(self.table.dir_name())
            .join(format!("date={y:04}-{m:02}-{d:02}"));
        if self.table != Table::Rejects {
            dir.push(format!("hour={}", self.hour));
        }
        dir
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), so no calendar crate is needed for one conversion.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The day count since 1970-01-01 of a proleptic Gregorian date (the inverse of
/// [`civil_from_days`], Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let (m, d) = (i64::from(m), i64::from(d));
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2000-02-29 (a leap day in a century divisible by 400) is day 11_016.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        // 2023-11-14 22:13:20 UTC = 1_700_000_000_000 ms.
        assert_eq!(
            civil_from_days(1_700_000_000_000 / MS_PER_DAY),
            (2023, 11, 14)
        );
    }

    #[test]
    fn days_and_dates_convert_both_ways() {
        for day in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn dates_advance_one_day_at_a_time() {
        let mut prev = civil_from_days(-800_000);
        for day in -799_999..800_000 {
            let next = civil_from_days(day);
            let (y, m, d) = prev;
            let ok = (next == (y, m, d + 1))
                || (next.2 == 1
                    && ((next.0 == y && next.1 == m + 1)
                        || (next.0 == y + 1 && next.1 == 1 && m == 12)));
            assert!(ok, "day {day}: {prev:?} -> {next:?}");
            prev = next;
        }
    }

    #[test]
    fn partition_paths_use_the_row_time() {
        let key = PartitionKey::of(Table::Gps, 1_700_000_000_000);
        assert_eq!(key.hour, 22);
        let dir = key.dir(Path::new("/d"));
        assert_eq!(dir, Path::new("/d/gps/date=2023-11-14/hour=22"));
        // No padding: `hour=7`, as Spark writes it.
        let early = PartitionKey::of(Table::Gps, 1_700_000_000_000 - 15 * MS_PER_HOUR);
        assert_eq!(
            early.dir(Path::new("/d")),
            Path::new("/d/gps/date=2023-11-14/hour=7")
        );
        let reject = PartitionKey::of(Table::Rejects, 1_700_000_000_000);
        assert_eq!(
            reject.dir(Path::new("/d")),
            Path::new("/d/rejects/date=2023-11-14")
        );
        // Before 1970 (a broken clock in received_at) still gives a valid hour.
        assert_eq!(PartitionKey::of(Table::Reefer, -1).hour, 23);
    }
}
