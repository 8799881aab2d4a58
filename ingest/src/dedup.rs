//! The exactly-once index: per vehicle, the newest reading archived and a window of the
//! sequence numbers just below it, in the vehicle's current counting epoch.
//!
//! Bounded: a vehicle costs about a hundred bytes while its seqs arrive in order, and at worst
//! a Roaring bitmap of the [`WINDOW`] seqs below its newest (16 KiB), however old the archive. The index is saved with the write-ahead log's checkpoint
//! ([`crate::snapshot`]), so a start reads it rather than the archive's files.
//!
//! What it decides, for a reading `(seq, ts)` of a vehicle whose newest archived reading is
//! `(newest, newest_ts)`:
//! - `seq > newest`: new; it becomes the newest.
//! - `seq <= newest` and `ts > newest_ts`: the device's counter went back while its clock went
//!   forward: a reboot, a firmware update or a replaced unit. A new epoch starts with this
//!   reading; it is new. The epoch before is kept, so a late copy of one of its readings (one
//!   whose `ts` is older than the new epoch's first) is still recognised.
//! - within the window (`newest - seq < WINDOW`): new unless that seq was seen (a redelivery).
//! - older than the window: not archived, and not dropped either: the writer keeps it in
//!   `rejects/` with the reason, since the index can no longer tell whether it is a copy.

use std::{collections::HashMap, sync::Arc};

use bytes::{Buf, BufMut};
use roaring::RoaringTreemap;

/// How many seqs below a vehicle's newest are remembered: at one reading a second, 18 hours.
pub const WINDOW: u64 = 65_536;

/// The window is trimmed each time the newest seq crosses a multiple of this.
const TRIM_EVERY: u64 = 4_096;

/// What [`DedupIndex::admit`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen: archive it. Carries the interned vehicle id that rows share.
    New(Arc<str>),
    /// Seen before (a redelivery, a replay).
    Duplicate,
    /// Older than the window below `newest`: whether it was seen cannot be told.
    BeyondWindow {
        /// The vehicle's newest seq in its current epoch.
        newest: u64,
    },
}

/// One counting epoch of one vehicle.
///
/// The seqs seen in the window are one run of consecutive seqs (a vehicle whose messages all
/// arrive: a few bytes) plus a Roaring bitmap of those outside it (redelivered out of order,
/// or above a gap that has not filled yet).
#[derive(Debug, Clone, PartialEq)]
struct Epoch {
    newest: u64,
    /// The latest `ts` archived in this epoch.
    newest_ts: i64,
    /// The `ts` of the reading that started it.
    first_ts: i64,
    /// Every seq in `run.0..=run.1` was seen.
    run: (u64, u64),
    /// The other seqs seen in the window.
    others: RoaringTreemap,
}

impl Epoch {
    fn start(seq: u64, ts: i64) -> Epoch {
        Epoch {
            newest: seq,
            newest_ts: ts,
            first_ts: ts,
            run: (seq, seq),
            others: RoaringTreemap::new(),
        }
    }

    fn seen(&self, seq: u64) -> bool {
        (self.run.0..=self.run.1).contains(&seq) || self.others.contains(seq)
    }

    /// The lowest seq in the window.
    fn floor(&self) -> u64 {
        self.newest.saturating_sub(WINDOW - 1)
    }

    fn admit(&mut self, seq: u64, ts: i64) -> Admitted {
        let before = self.newest;
        if seq > self.newest {
            self.newest = seq;
        } else if self.newest - seq >= WINDOW {
            return Admitted::BeyondWindow;
        } else if self.seen(seq) {
            return Admitted::Duplicate;
        }
        self.mark(seq);
        if seq / TRIM_EVERY != before / TRIM_EVERY {
            self.trim();
        }
        self.newest_ts = self.newest_ts.max(ts);
        Admitted::New
    }

    fn mark(&mut self, seq: u64) {
        if seq.checked_sub(1) == Some(self.run.1) {
            self.run.1 = seq;
            self.mark_up();
        } else if seq.checked_add(1) == Some(self.run.0) {
            self.run.0 = seq;
            while self.run.0 > 0 && self.others.remove(self.run.0 - 1) {
                self.run.0 -= 1;
            }
        } else {
            self.others.insert(seq);
        }
    }

    /// Forgets what fell below the window. A run that fell out of it whole (a gap above it
    /// never filled) restarts at the lowest seq seen in the window.
    fn trim(&mut self) {
        let floor = self.floor();
        self.others.remove_range(..floor);
        if self.run.1 < floor {
            let lowest = self.others.min().unwrap_or(self.newest);
            self.others.remove(lowest);
            self.run = (lowest, lowest);
            self.mark_up();
        }
    }

    fn mark_up(&mut self) {
        while self.run.1 < u64::MAX && self.others.remove(self.run.1 + 1) {
            self.run.1 += 1;
        }
    }
}

enum Admitted {
    New,
    Duplicate,
    BeyondWindow,
}

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    /// The interned id (the same allocation as the map key), handed to rows.
    id: Arc<str>,
    current: Epoch,
    previous: Option<Epoch>,
}

impl Seen {
    fn admit(&mut self, seq: u64, ts: i64) -> (Admitted, bool) {
        let current = &mut self.current;
        if seq <= current.newest && ts > current.newest_ts {
            let before = std::mem::replace(current, Epoch::start(seq, ts));
            self.previous = Some(before);
            return (Admitted::New, true);
        }
        if ts < current.first_ts {
            if let Some(previous) = &mut self.previous {
                return (previous.admit(seq, ts), false);
            }
        }
        (current.admit(seq, ts), false)
    }
}

/// The exactly-once index of the vehicles of one writer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DedupIndex {
    vehicles: HashMap<Arc<str>, Seen>,
    /// Epochs started since this index was made (reboots seen).
    epochs_started: u64,
}

impl DedupIndex {
    /// An empty index.
    pub fn new() -> Self {
        DedupIndex::default()
    }

    /// Decides whether reading `seq` of `vehicle`, taken at `ts`, is archived, and records it
    /// if so.
    pub fn admit(&mut self, vehicle: &str, seq: u64, ts: i64) -> Verdict {
        let Some(seen) = self.vehicles.get_mut(vehicle) else {
            let id: Arc<str> = Arc::from(vehicle);
            let seen = Seen {
                id: id.clone(),
                current: Epoch::start(seq, ts),
                previous: None,
            };
            self.vehicles.insert(id.clone(), seen);
            return Verdict::New(id);
        };
        let (admitted, new_epoch) = seen.admit(seq, ts);
        if new_epoch {
            self.epochs_started += 1;
            tracing::info!(vehicle, seq, ts, "sequence counter restarted: a new epoch");
        }
        match admitted {
            Admitted::New => Verdict::New(seen.id.clone()),
            Admitted::Duplicate => Verdict::Duplicate,
            Admitted::BeyondWindow => Verdict::BeyondWindow {
                newest: seen.current.newest,
            },
        }
    }

    /// Number of vehicles indexed.
    pub fn vehicles(&self) -> usize {
        self.vehicles.len()
    }

    /// Epochs started since the index was made or loaded.
    pub fn epochs_started(&self) -> u64 {
        self.epochs_started
    }

    /// Bytes the index takes, roughly: per vehicle its id, map entry and epochs, plus the
    /// bitmaps of seqs outside each epoch's run (their serialised size, close to their size in
    /// memory).
    pub fn approximate_bytes(&self) -> u64 {
        let per_vehicle = std::mem::size_of::<Seen>() + 2 * std::mem::size_of::<usize>() + 16;
        let fixed: usize = self.vehicles.keys().map(|id| per_vehicle + id.len()).sum();
        let bitmaps: u64 = self
            .epochs()
            .map(|e| e.others.serialized_size() as u64)
            .sum();
        fixed as u64 + bitmaps
    }

    fn epochs(&self) -> impl Iterator<Item = &Epoch> {
        self.vehicles
            .values()
            .flat_map(|s| std::iter::once(&s.current).chain(s.previous.as_ref()))
    }

    /// Moves every vehicle of `other` into this index; a vehicle in both takes `other`'s
    /// state (the newer one, when snapshots are laid over each other oldest first).
    pub fn overlay(&mut self, other: DedupIndex) {
        self.vehicles.extend(other.vehicles);
    }

    /// Splits the index by `place(vehicle)` into `parts` indexes.
    pub fn split(self, parts: usize, place: impl Fn(&str) -> usize) -> Vec<DedupIndex> {
        let mut out: Vec<DedupIndex> = (0..parts.max(1)).map(|_| DedupIndex::new()).collect();
        for (id, seen) in self.vehicles {
            let part = place(&id).min(out.len() - 1);
            out[part].vehicles.insert(id, seen);
        }
        out
    }

    /// The index as bytes ([`DedupIndex::decode`] reads them back).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64_le(self.vehicles.len() as u64);
        for seen in self.vehicles.values() {
            out.put_u32_le(seen.id.len() as u32);
            out.put_slice(seen.id.as_bytes());
            encode_epoch(&seen.current, out);
            match &seen.previous {
                Some(previous) => {
                    out.put_u8(1);
                    encode_epoch(previous, out);
                }
                None => out.put_u8(0),
            }
        }
    }

    /// Reads an index [`DedupIndex::encode`] wrote.
    ///
    /// # Errors
    /// What is wrong with the bytes.
    pub fn decode(mut bytes: &[u8]) -> Result<DedupIndex, String> {
        let buf = &mut bytes;
        let count = take_u64(buf)?;
        let mut index = DedupIndex::new();
        for _ in 0..count {
            let len = take_u32(buf)? as usize;
            if buf.remaining() < len {
                return Err("truncated vehicle id".into());
            }
            let id = std::str::from_utf8(&buf[..len]).map_err(|e| e.to_string())?;
            let id: Arc<str> = Arc::from(id);
            buf.advance(len);
            let current = decode_epoch(buf)?;
            let previous = match take_u8(buf)? {
                0 => None,
                1 => Some(decode_epoch(buf)?),
                other => return Err(format!("bad epoch marker {other}")),
            };
            index.vehicles.insert(
                id.clone(),
                Seen {
                    id,
                    current,
                    previous,
                },
            );
        }
        if buf.has_remaining() {
            return Err(format!("{} bytes after the index", buf.remaining()));
        }
        Ok(index)
    }
}

fn encode_epoch(epoch: &Epoch, out: &mut Vec<u8>) {
    out.put_u64_le(epoch.newest);
    out.put_i64_le(epoch.newest_ts);
    out.put_i64_le(epoch.first_ts);
    out.put_u64_le(epoch.run.0);
    out.put_u64_le(epoch.run.1);
    out.put_u64_le(epoch.others.serialized_size() as u64);
    // Writing into a Vec cannot fail.
    let _ = epoch.others.serialize_into(&mut *out);
}

fn decode_epoch(buf: &mut &[u8]) -> Result<Epoch, String> {
    let newest = take_u64(buf)?;
    let newest_ts = take_u64(buf)? as i64;
    let first_ts = take_u64(buf)? as i64;
    let run = (take_u64(buf)?, take_u64(buf)?);
    let len = usize::try_from(take_u64(buf)?).map_err(|e| e.to_string())?;
    if buf.remaining() < len {
        return Err("truncated window".into());
    }
    let others = RoaringTreemap::deserialize_from(&buf[..len]).map_err(|e| e.to_string())?;
    buf.advance(len);
    Ok(Epoch {
        newest,
        newest_ts,
        first_ts,
        run,
        others,
    })
}

fn take_u64(buf: &mut &[u8]) -> Result<u64, String> {
    buf.try_get_u64_le().map_err(|e| e.to_string())
}

fn take_u32(buf: &mut &[u8]) -> Result<u32, String> {
    buf.try_get_u32_le().map_err(|e| e.to_string())
}

fn take_u8(buf: &mut &[u8]) -> Result<u8, String> {
    buf.try_get_u8().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(index: &mut DedupIndex, vehicle: &str, seq: u64, ts: i64) -> bool {
        matches!(index.admit(vehicle, seq, ts), Verdict::New(_))
    }

    #[test]
    fn a_second_copy_is_a_duplicate_and_vehicles_are_apart() {
        let mut index = DedupIndex::new();
        assert!(new(&mut index, "v1", 7, 7_000));
        assert_eq!(index.admit("v1", 7, 7_000), Verdict::Duplicate);
        assert!(new(&mut index, "v1", 8, 8_000));
        // Late but within the window: new once, then a duplicate.
        assert!(new(&mut index, "v1", 3, 3_000));
        assert_eq!(index.admit("v1", 3, 3_000), Verdict::Duplicate);
        // The same seq of another vehicle is not a duplicate.
        assert!(new(&mut index, "v2", 7, 7_000));
        assert_eq!(index.vehicles(), 2);
    }

    #[test]
    fn rows_share_the_interned_id() {
        let mut index = DedupIndex::new();
        let (Verdict::New(a), Verdict::New(b)) =
            (index.admit("truck", 0, 0), index.admit("truck", 1, 1))
        else {
            panic!("both new");
        };
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn a_counter_that_restarts_with_a_newer_clock_starts_an_epoch_and_loses_nothing() {
        let mut index = DedupIndex::new();
        for seq in 0..500 {
            assert!(new(&mut index, "v", seq, seq as i64 * 1000));
        }
        // Rebooted: seq 0 again, an hour later.
        let reboot = 3_600_000;
        for seq in 0..300 {
            assert!(
                new(&mut index, "v", seq, reboot + seq as i64 * 1000),
                "{seq}"
            );
        }
        // A redelivery of the new epoch's reading is a duplicate...
        assert_eq!(index.admit("v", 10, reboot + 10_000), Verdict::Duplicate);
        // ...and so is a late copy of the old epoch's (its clock is older than the reboot).
        assert_eq!(index.admit("v", 450, 450_000), Verdict::Duplicate);
        // A second reboot.
        let again = 2 * reboot;
        assert!(new(&mut index, "v", 0, again));
        assert!(new(&mut index, "v", 1, again + 1000));
        assert_eq!(index.admit("v", 1, again + 1000), Verdict::Duplicate);
        assert_eq!(index.epochs_started(), 2);
    }

    #[test]
    fn a_reading_older_than_the_window_is_told_apart() {
        let mut index = DedupIndex::new();
        let last = WINDOW + 10_000;
        for seq in 0..=last {
            index.admit("v", seq, seq as i64);
        }
        assert_eq!(
            index.admit("v", 9_999, 9_999),
            Verdict::BeyondWindow { newest: last }
        );
        assert_eq!(index.admit("v", last - WINDOW + 1, 1), Verdict::Duplicate);
        // A vehicle whose seqs all arrived costs one run, not a bitmap.
        assert!(
            index.approximate_bytes() < 1_000,
            "{}",
            index.approximate_bytes()
        );
    }

    #[test]
    fn gaps_and_out_of_order_seqs_are_remembered_until_they_leave_the_window() {
        let mut index = DedupIndex::new();
        // Seq 5 never comes; 10 arrives before 9.
        for seq in [0, 1, 2, 3, 4, 6, 7, 8, 10, 9, 11] {
            assert!(new(&mut index, "v", seq, seq as i64), "{seq}");
        }
        for seq in [0, 4, 6, 9, 10, 11] {
            assert_eq!(
                index.admit("v", seq, seq as i64),
                Verdict::Duplicate,
                "{seq}"
            );
        }
        // Seqs below the first one seen are new until seen.
        let mut late_start = DedupIndex::new();
        assert!(new(&mut late_start, "w", 100, 100));
        assert!(new(&mut late_start, "w", 50, 50));
        assert_eq!(late_start.admit("w", 50, 50), Verdict::Duplicate);
        // While the gap at 5 is in the window, what is above it is kept in the bitmap...
        let newest = WINDOW + 2 * TRIM_EVERY;
        for seq in 12..=newest {
            assert!(new(&mut index, "v", seq, seq as i64));
        }
        // ...and once it fell out, the run takes over again and the bitmap is gone.
        assert_eq!(index.admit("v", 5, 5), Verdict::BeyondWindow { newest });
        assert_eq!(index.admit("v", WINDOW, 1), Verdict::Duplicate);
        assert!(
            index.approximate_bytes() < 1_000,
            "{}",
            index.approximate_bytes()
        );
    }

    #[test]
    fn the_index_round_trips_through_bytes() {
        let mut index = DedupIndex::new();
        for seq in (0..20_000).step_by(3) {
            index.admit("a", seq, seq as i64);
        }
        index.admit("a", 5, 1_000_000_000); // a reboot: two epochs
        index.admit("b", u64::MAX, 1);
        let mut bytes = Vec::new();
        index.encode(&mut bytes);
        let mut back = DedupIndex::decode(&bytes).unwrap();
        back.epochs_started = index.epochs_started;
        assert_eq!(back, index);
        assert!(DedupIndex::decode(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(back.admit("a", 5, 1_000_000_000), Verdict::Duplicate);
    }

    #[test]
    fn split_and_overlay_keep_every_vehicle() {
        let mut index = DedupIndex::new();
        for v in 0..10 {
            index.admit(&format!("v{v}"), 1, 1);
        }
        let parts = index.clone().split(3, |id| id.len() % 3);
        let mut whole = DedupIndex::new();
        for part in parts {
            whole.overlay(part);
        }
        assert_eq!(whole, index);
    }
}
