//! Per-shard counters. Plain `Cell`s: each shard counts its own traffic without atomics, and
//! readers (logs now; `/metrics` and `$SYS` later) add the shards up.

use std::{
    cell::{Cell, RefCell},
    collections::BTreeMap,
};

use protocol::QoS;

/// Counters of one shard.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections currently open.
    pub connections: Cell<u64>,
    /// Connections accepted since start.
    pub connections_total: Cell<u64>,
    /// PUBLISH received, by QoS.
    pub messages_in: [Cell<u64>; 3],
    /// PUBLISH sent, by QoS.
    pub messages_out: [Cell<u64>; 3],
    /// Bytes read from clients.
    pub bytes_in: Cell<u64>,
    /// Bytes written to clients.
    pub bytes_out: Cell<u64>,
    /// Connections closed for a protocol violation.
    pub protocol_errors: Cell<u64>,
    /// Messages not delivered, by reason.
    pub dropped: RefCell<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counts a PUBLISH received.
    pub fn count_in(&self, qos: QoS, bytes: usize) {
        bump(&self.messages_in[qos as usize], 1);
        bump(&self.bytes_in, bytes as u64);
    }

    /// Counts a PUBLISH queued for a client.
    pub fn count_out(&self, qos: QoS) {
        bump(&self.messages_out[qos as usize], 1);
    }

    /// Counts a message not delivered and why. Never silent: every drop is counted here.
    pub fn drop_message(&self, reason: &'static str) {
        *self.dropped.borrow_mut().entry(reason).or_insert(0) += 1;
        tracing::debug!(reason, "message dropped");
    }

    /// Total drops for a reason.
    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped.borrow().get(reason).copied().unwrap_or(0)
    }
}

/// Adds `n` to a counter.
pub fn bump(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
}
