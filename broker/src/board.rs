//! Where shards post their figures for other threads (`/metrics`, `$SYS`, the handle), and how
//! a reader asks for figures taken after a moment of its choosing instead of sleeping until
//! the next periodic post.
//!
//! Each shard posts its [`Snapshot`] once a second from its sweeper, and at its next sweep
//! (within 250 ms) after someone [requested](SnapshotBoard::request) fresh ones. A post carries
//! the request generation it answers: it was taken after that request was made.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Condvar, Mutex,
    },
    time::{Duration, Instant},
};

use crate::metrics::Snapshot;

/// The shards' latest figures.
#[derive(Debug)]
pub struct SnapshotBoard {
    slots: Mutex<Vec<Posted>>,
    /// Requests made so far.
    requested: AtomicU64,
    /// Signalled at every post.
    posted: Condvar,
}

#[derive(Debug, Default, Clone)]
struct Posted {
    snapshot: Snapshot,
    /// The last request generation this post answers.
    answers: u64,
}

impl SnapshotBoard {
    /// A board for `shards` shards, with empty figures.
    pub fn new(shards: usize) -> SnapshotBoard {
        SnapshotBoard {
            slots: Mutex::new(vec![Posted::default(); shards]),
            requested: AtomicU64::new(0),
            posted: Condvar::new(),
        }
    }

    /// The request generation a snapshot taken from now on answers: read it before taking
    /// the snapshot.
    pub fn generation(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// True when a request came after `shard`'s last post.
    pub fn is_requested(&self, shard: usize) -> bool {
        let answered = self
            .lock()
            .get(shard)
            .map_or(u64::MAX, |posted| posted.answers);
        self.generation() > answered
    }

    /// Posts `shard`'s figures, taken after request `generation` was made.
    pub fn post(&self, shard: usize, snapshot: Snapshot, generation: u64) {
        if let Some(slot) = self.lock().get_mut(shard) {
            *slot = Posted {
                snapshot,
                answers: generation,
            };
        }
        self.posted.notify_all();
    }

    /// Every shard's latest figures, in shard order.
    pub fn latest(&self) -> Vec<Snapshot> {
        self.lock().iter().map(|p| p.snapshot.clone()).collect()
    }

    /// Asks every shard for figures taken from now on; returns the generation to wait for.
    pub fn request(&self) -> u64 {
        self.requested.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Blocks until every shard posted figures answering `generation`, or `limit` passed (a
    /// shard that stopped never answers); returns the latest figures either way.
    pub fn wait_for(&self, generation: u64, limit: Duration) -> Vec<Snapshot> {
        let deadline = Instant::now() + limit;
        let mut slots = self.lock();
        while slots.iter().any(|p| p.answers < generation) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            slots = match self.posted.wait_timeout(slots, left) {
                Ok((slots, _)) => slots,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        slots.iter().map(|p| p.snapshot.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Posted>> {
        // A panic while holding it cannot leave a half-written snapshot behind (posts replace
        // whole values), so a poisoned lock is still good to read.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_reader_waits_for_posts_taken_after_its_request() {
        let board = Arc::new(SnapshotBoard::new(2));
        let stale = Snapshot {
            connections: 1,
            ..Snapshot::default()
        };
        board.post(0, stale.clone(), board.generation());
        board.post(1, stale, board.generation());
        assert!(!board.is_requested(0));
        let generation = board.request();
        assert!(board.is_requested(0) && board.is_requested(1));
        let poster = {
            let board = board.clone();
            std::thread::spawn(move || {
                for shard in 0..2 {
                    let taken_after = board.generation();
                    let fresh = Snapshot {
                        connections: 7,
                        ..Snapshot::default()
                    };
                    board.post(shard, fresh, taken_after);
                }
            })
        };
        let fresh = board.wait_for(generation, Duration::from_secs(10));
        assert_eq!(
            fresh.iter().map(|s| s.connections).collect::<Vec<_>>(),
            vec![7, 7]
        );
        assert!(!board.is_requested(1));
        poster.join().expect("poster");
    }

    #[test]
    fn a_shard_that_never_answers_costs_the_limit_not_a_hang() {
        let board = SnapshotBoard::new(1);
        let generation = board.request();
        let started = Instant::now();
        let latest = board.wait_for(generation, Duration::from_millis(50));
        assert_eq!(latest.len(), 1);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
