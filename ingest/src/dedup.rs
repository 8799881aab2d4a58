//! The exactly-once index: which `seq`s of each vehicle are already in the archive (or
//! buffered on their way there).
//!
//! A vehicle's `seq` counts all its messages from 0, so the seen set is mostly one long run:
//! a Roaring treemap stores it in a few bytes per run rather than eight per message. Vehicle
//! ids are interned here, and the buffered rows share the interned `Arc<str>`.

use std::{collections::HashMap, sync::Arc};

use roaring::RoaringTreemap;

/// Seen `(vehicle_id, seq)` pairs.
#[derive(Debug, Default)]
pub struct DedupIndex {
    vehicles: HashMap<Arc<str>, Seen>,
}

#[derive(Debug)]
struct Seen {
    /// The interned id (the same allocation as the map key), handed to rows.
    id: Arc<str>,
    seqs: RoaringTreemap,
}

impl DedupIndex {
    /// An empty index.
    pub fn new() -> Self {
        DedupIndex::default()
    }

    /// Records `(vehicle, seq)`. Returns the interned vehicle id when the pair is new, `None`
    /// when it was seen before (a duplicate).
    pub fn insert(&mut self, vehicle: &str, seq: u64) -> Option<Arc<str>> {
        if let Some(seen) = self.vehicles.get_mut(vehicle) {
            return seen.seqs.insert(seq).then(|| seen.id.clone());
        }
        let id: Arc<str> = Arc::from(vehicle);
        let mut seqs = RoaringTreemap::new();
        seqs.insert(seq);
        self.vehicles.insert(
            id.clone(),
            Seen {
                id: id.clone(),
                seqs,
            },
        );
        Some(id)
    }

    /// Whether `(vehicle, seq)` was seen.
    #[cfg(test)]
    pub fn contains(&self, vehicle: &str, seq: u64) -> bool {
        self.vehicles
            .get(vehicle)
            .is_some_and(|seen| seen.seqs.contains(seq))
    }

    /// Number of vehicles indexed.
    pub fn vehicles(&self) -> usize {
        self.vehicles.len()
    }

    /// Number of pairs indexed.
    pub fn len(&self) -> u64 {
        self.vehicles.values().map(|seen| seen.seqs.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_insert_is_a_duplicate() {
        let mut index = DedupIndex::new();
        let id = index.insert("v1", 7).unwrap();
        assert_eq!(&*id, "v1");
        assert!(index.insert("v1", 7).is_none());
        assert!(index.insert("v1", 8).is_some());
        // The same seq of another vehicle is not a duplicate.
        assert!(index.insert("v2", 7).is_some());
        assert!(index.contains("v1", 8) && !index.contains("v2", 8));
        assert_eq!((index.vehicles(), index.len()), (2, 3));
    }

    #[test]
    fn rows_share_the_interned_id() {
        let mut index = DedupIndex::new();
        let a = index.insert("truck", 0).unwrap();
        let b = index.insert("truck", 1).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn huge_seqs_are_kept_apart() {
        let mut index = DedupIndex::new();
        assert!(index.insert("v", u64::MAX).is_some());
        assert!(index.insert("v", u64::MAX - (1 << 32)).is_some());
        assert!(index.insert("v", u64::MAX).is_none());
    }
}
