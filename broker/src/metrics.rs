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
    /// Topic and payload bytes of PUBLISH received, by QoS.
    pub publish_bytes_in: [Cell<u64>; 3],
    /// Topic and payload bytes of PUBLISH sent, by QoS.
    pub publish_bytes_out: [Cell<u64>; 3],
    /// Bytes read from clients.
    pub bytes_in: Cell<u64>,
    /// Bytes written to clients.
    pub bytes_out: Cell<u64>,
    /// Connections closed for a protocol violation.
    pub protocol_errors: Cell<u64>,
    /// CONNECT refused for wrong or missing credentials.
    pub auth_failures: Cell<u64>,
    /// TLS handshakes that failed or timed out (bad certificates among them).
    pub tls_failures: Cell<u64>,
    /// Messages not delivered, by reason.
    pub dropped: RefCell<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counts a PUBLISH received.
    pub fn count_in(&self, qos: QoS, bytes: usize) {
        bump(&self.messages_in[qos as usize], 1);
        bump(&self.publish_bytes_in[qos as usize], bytes as u64);
    }

    /// Counts a PUBLISH queued for a client (`bytes`: its topic and payload).
    pub fn count_out(&self, qos: QoS, bytes: usize) {
        bump(&self.messages_out[qos as usize], 1);
        bump(&self.publish_bytes_out[qos as usize], bytes as u64);
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

/// A shard's figures at one moment, `Send` so other threads (the HTTP handler on another shard,
/// `$SYS`) can read and add them up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Connections currently open.
    pub connections: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Sessions held (online and offline).
    pub sessions: u64,
    /// PUBLISH received, by QoS.
    pub messages_in: [u64; 3],
    /// PUBLISH sent, by QoS.
    pub messages_out: [u64; 3],
    /// Topic and payload bytes received, by QoS.
    pub publish_bytes_in: [u64; 3],
    /// Topic and payload bytes sent, by QoS.
    pub publish_bytes_out: [u64; 3],
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Connections closed for a protocol violation.
    pub protocol_errors: u64,
    /// CONNECT refused for wrong or missing credentials.
    pub auth_failures: u64,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: u64,
    /// Messages not delivered, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Retained messages (each shard holds a full replica: take one shard's figure).
    pub retained: u64,
    /// Subscriptions (each shard holds a full replica: take one shard's figure).
    pub subscriptions: u64,
    /// QoS 1/2 messages waiting in session queues.
    pub queued_messages: u64,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight_messages: u64,
    /// Packets waiting in connection outboxes.
    pub outbox_packets: u64,
    /// Messages waiting in the queues towards other shards.
    pub mesh_queue: u64,
}

impl Snapshot {
    /// Adds another shard's figures (replicated tables are not summed).
    pub fn add(&mut self, other: &Snapshot) {
        self.connections += other.connections;
        self.connections_total += other.connections_total;
        self.sessions += other.sessions;
        for q in 0..3 {
            self.messages_in[q] += other.messages_in[q];
            self.messages_out[q] += other.messages_out[q];
            self.publish_bytes_in[q] += other.publish_bytes_in[q];
            self.publish_bytes_out[q] += other.publish_bytes_out[q];
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.protocol_errors += other.protocol_errors;
        self.auth_failures += other.auth_failures;
        self.tls_failures += other.tls_failures;
        for (reason, n) in &other.dropped {
            *self.dropped.entry(reason.clone()).or_insert(0) += n;
        }
        self.retained = self.retained.max(other.retained);
        self.subscriptions = self.subscriptions.max(other.subscriptions);
        self.queued_messages += other.queued_messages;
        self.inflight_messages += other.inflight_messages;
        self.outbox_packets += other.outbox_packets;
        self.mesh_queue += other.mesh_queue;
    }

    /// The sum over shards.
    pub fn total(shards: &[Snapshot]) -> Snapshot {
        let mut total = Snapshot::default();
        for s in shards {
            total.add(s);
        }
        total
    }

    /// Prometheus text exposition (format 0.0.4) of the total and per-shard connections.
    pub fn to_prometheus(shards: &[Snapshot]) -> String {
        use std::fmt::Write;
        let t = Snapshot::total(shards);
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP fleetmq_{name} {help}");
            let _ = writeln!(out, "# TYPE fleetmq_{name} {kind}");
            for (labels, value) in samples {
                if labels.is_empty() {
                    let _ = writeln!(out, "fleetmq_{name} {value}");
                } else {
                    let _ = writeln!(out, "fleetmq_{name}{{{labels}}} {value}");
                }
            }
        };
        let per_shard = |f: fn(&Snapshot) -> u64| -> Vec<(String, u64)> {
            shards
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("shard=\"{i}\""), f(s)))
                .collect()
        };
        let by_qos = |v: [u64; 3]| -> Vec<(String, u64)> {
            (0..3).map(|q| (format!("qos=\"{q}\""), v[q])).collect()
        };
        metric(
            "connections",
            "gauge",
            "Client connections open.",
            &per_shard(|s| s.connections),
        );
        metric(
            "connections_accepted_total",
            "counter",
            "Client connections accepted since start.",
            &per_shard(|s| s.connections_total),
        );
        metric(
            "sessions",
            "gauge",
            "Sessions held, online and offline.",
            &per_shard(|s| s.sessions),
        );
        metric(
            "messages_received_total",
            "counter",
            "PUBLISH packets received from clients.",
            &by_qos(t.messages_in),
        );
        metric(
            "messages_sent_total",
            "counter",
            "PUBLISH packets sent to clients.",
            &by_qos(t.messages_out),
        );
        metric(
            "bytes_received_total",
            "counter",
            "Bytes read from clients.",
            &[(String::new(), t.bytes_in)],
        );
        metric(
            "bytes_sent_total",
            "counter",
            "Bytes written to clients.",
            &[(String::new(), t.bytes_out)],
        );
        metric(
            "protocol_errors_total",
            "counter",
            "Connections closed for a protocol violation.",
            &[(String::new(), t.protocol_errors)],
        );
        metric(
            "auth_failures_total",
            "counter",
            "CONNECT refused for wrong or missing credentials.",
            &[(String::new(), t.auth_failures)],
        );
        metric(
            "tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out.",
            &[(String::new(), t.tls_failures)],
        );
        let drops: Vec<(String, u64)> = t
            .dropped
            .iter()
            .map(|(r, n)| (format!("reason=\"{r}\""), *n))
            .collect();
        metric(
            "messages_dropped_total",
            "counter",
            "Messages not delivered, by reason.",
            &drops,
        );
        metric(
            "retained_messages",
            "gauge",
            "Retained messages stored.",
            &[(String::new(), t.retained)],
        );
        metric(
            "subscriptions",
            "gauge",
            "Client subscriptions.",
            &[(String::new(), t.subscriptions)],
        );
        metric(
            "queued_messages",
            "gauge",
            "QoS 1/2 messages waiting in session queues.",
            &per_shard(|s| s.queued_messages),
        );
        metric(
            "inflight_messages",
            "gauge",
            "QoS 1/2 messages sent and not yet acknowledged.",
            &per_shard(|s| s.inflight_messages),
        );
        metric(
            "outbox_packets",
            "gauge",
            "Packets waiting to be written to client sockets.",
            &per_shard(|s| s.outbox_packets),
        );
        metric(
            "mesh_queue_messages",
            "gauge",
            "Messages waiting to be sent to other shards.",
            &per_shard(|s| s.mesh_queue),
        );
        out
    }
}

/// Prometheus text for the archive's counters.
pub fn archive_prometheus(stats: &ingest::ArchiveStats) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    /// Name, type, help, and (kind label, value) samples.
    type Family<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, u64)]);
    let lines: [Family; 6] = [
        (
            "archive_rows_total",
            "counter",
            "Rows written to published Parquet files, by kind.",
            &[
                ("gps", stats.gps_rows),
                ("reefer", stats.reefer_rows),
                ("rejects", stats.reject_rows),
            ],
        ),
        (
            "archive_files_total",
            "counter",
            "Parquet files published.",
            &[("", stats.files)],
        ),
        (
            "archive_duplicates_total",
            "counter",
            "Records already archived (QoS 1 redelivery, replay), not written again.",
            &[("", stats.duplicates)],
        ),
        (
            "archive_lag_records",
            "gauge",
            "Records durable in the log and not yet in a published file.",
            &[("", stats.lag)],
        ),
        (
            "archive_buffered_bytes",
            "gauge",
            "Bytes of rows buffered in open files.",
            &[("", stats.buffered_bytes + stats.queued_bytes)],
        ),
        (
            "archive_write_errors_total",
            "counter",
            "Files that failed to publish (retried).",
            &[("", stats.write_errors)],
        ),
    ];
    for (name, kind, help, samples) in lines {
        let _ = writeln!(out, "# HELP fleetmq_{name} {help}");
        let _ = writeln!(out, "# TYPE fleetmq_{name} {kind}");
        for (label, value) in samples {
            if label.is_empty() {
                let _ = writeln!(out, "fleetmq_{name} {value}");
            } else {
                let _ = writeln!(out, "fleetmq_{name}{{kind=\"{label}\"}} {value}");
            }
        }
    }
    out
}

impl Metrics {
    /// The counters as a snapshot (queue figures are filled in by the shard).
    pub fn counters(&self) -> Snapshot {
        Snapshot {
            connections: self.connections.get(),
            connections_total: self.connections_total.get(),
            messages_in: [0, 1, 2].map(|q| self.messages_in[q].get()),
            messages_out: [0, 1, 2].map(|q| self.messages_out[q].get()),
            publish_bytes_in: [0, 1, 2].map(|q| self.publish_bytes_in[q].get()),
            publish_bytes_out: [0, 1, 2].map(|q| self.publish_bytes_out[q].get()),
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            protocol_errors: self.protocol_errors.get(),
            auth_failures: self.auth_failures.get(),
            tls_failures: self.tls_failures.get(),
            dropped: self
                .dropped
                .borrow()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            ..Snapshot::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_counters_but_not_replicated_tables() {
        let a = Snapshot {
            connections: 2,
            retained: 5,
            subscriptions: 7,
            messages_in: [1, 2, 3],
            ..Snapshot::default()
        };
        let mut b = a.clone();
        b.dropped.insert("slow_consumer".into(), 4);
        let t = Snapshot::total(&[a, b]);
        assert_eq!(t.connections, 4);
        assert_eq!(t.retained, 5);
        assert_eq!(t.subscriptions, 7);
        assert_eq!(t.messages_in, [2, 4, 6]);
        assert_eq!(t.dropped.get("slow_consumer"), Some(&4));
    }

    #[test]
    fn prometheus_text_has_help_type_and_labels() {
        let mut s = Snapshot {
            connections: 3,
            ..Snapshot::default()
        };
        s.dropped.insert("queue_full".into(), 9);
        let text = Snapshot::to_prometheus(&[s.clone(), Snapshot::default()]);
        assert!(text.contains("# TYPE fleetmq_connections gauge"));
        assert!(text.contains("fleetmq_connections{shard=\"0\"} 3"));
        assert!(text.contains("fleetmq_connections{shard=\"1\"} 0"));
        assert!(text.contains("fleetmq_messages_dropped_total{reason=\"queue_full\"} 9"));
        assert!(text.contains("fleetmq_messages_received_total{qos=\"1\"} 0"));
    }
}
