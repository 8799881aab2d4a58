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
    /// WebSocket upgrades refused for their `Origin`.
    pub websocket_origin_refused: Cell<u64>,
    /// PUBLISH packets whose reading was delayed by `max_publish_rate`.
    pub publish_throttled: Cell<u64>,
    /// Messages not delivered, by reason.
    pub dropped: RefCell<BTreeMap<&'static str, u64>>,
    /// Messages not delivered, by client (at most [`MAX_CLIENTS_TRACKED`] clients; the rest
    /// are counted under [`OTHER_CLIENTS`]).
    pub dropped_by_client: RefCell<std::collections::HashMap<String, u64>>,
}

/// Clients whose drops are counted by name, per shard: bounds the metric's memory and the
/// size of `/metrics` whatever the number of clients.
pub const MAX_CLIENTS_TRACKED: usize = 1024;
/// The name drops of untracked clients are counted under.
pub const OTHER_CLIENTS: &str = "(other clients)";
/// Clients listed by name in `$SYS` and `/metrics`: those with the most drops.
pub const TOP_CLIENTS: usize = 10;

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

    /// Counts a drop against the client it was for.
    pub fn drop_for_client(&self, client_id: &str) {
        let mut map = self.dropped_by_client.borrow_mut();
        if let Some(n) = map.get_mut(client_id) {
            *n += 1;
            return;
        }
        let key = if map.len() < MAX_CLIENTS_TRACKED {
            client_id
        } else {
            OTHER_CLIENTS
        };
        *map.entry(key.to_string()).or_insert(0) += 1;
    }

    /// The clients with the most drops, most first.
    pub fn top_dropping_clients(&self) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .dropped_by_client
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(TOP_CLIENTS);
        all
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
    /// WebSocket upgrades refused for their `Origin`.
    pub websocket_origin_refused: u64,
    /// PUBLISH packets whose reading was delayed by `max_publish_rate`.
    pub publish_throttled: u64,
    /// Messages not delivered, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Retained messages (each shard holds a full replica: take one shard's figure).
    pub retained: u64,
    /// Bytes of retained messages (one replica's figure).
    pub retained_bytes: u64,
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
    /// Bytes held in session queues.
    pub queued_bytes: u64,
    /// Clients with the most drops on this shard, and their counts.
    pub dropped_by_client: Vec<(String, u64)>,
    /// Bytes of the state log and snapshot.
    pub persist_log_bytes: u64,
    /// Records appended to the state log since start.
    pub persist_records: u64,
    /// Snapshots written since start.
    pub persist_snapshots: u64,
    /// Milliseconds this shard's recovery took at start.
    pub recovery_ms: u64,
    /// Torn or corrupt log tails cut off at start.
    pub persist_torn_tails: u64,
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
        self.websocket_origin_refused += other.websocket_origin_refused;
        self.publish_throttled += other.publish_throttled;
        for (reason, n) in &other.dropped {
            *self.dropped.entry(reason.clone()).or_insert(0) += n;
        }
        self.retained = self.retained.max(other.retained);
        self.retained_bytes = self.retained_bytes.max(other.retained_bytes);
        self.subscriptions = self.subscriptions.max(other.subscriptions);
        self.queued_messages += other.queued_messages;
        self.inflight_messages += other.inflight_messages;
        self.outbox_packets += other.outbox_packets;
        self.mesh_queue += other.mesh_queue;
        self.queued_bytes += other.queued_bytes;
        for (client, n) in &other.dropped_by_client {
            match self.dropped_by_client.iter_mut().find(|(c, _)| c == client) {
                Some((_, total)) => *total += n,
                None => self.dropped_by_client.push((client.clone(), *n)),
            }
        }
        self.dropped_by_client
            .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        self.dropped_by_client.truncate(TOP_CLIENTS);
        self.persist_log_bytes += other.persist_log_bytes;
        self.persist_records += other.persist_records;
        self.persist_snapshots += other.persist_snapshots;
        self.recovery_ms = self.recovery_ms.max(other.recovery_ms);
        self.persist_torn_tails += other.persist_torn_tails;
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
        metric(
            "websocket_origin_refused_total",
            "counter",
            "WebSocket upgrades refused because the page's Origin is not allowed ([web] allowed_origins).",
            &[(String::new(), t.websocket_origin_refused)],
        );
        metric(
            "publish_throttled_total",
            "counter",
            "PUBLISH packets held back by the per-connection rate limit.",
            &[(String::new(), t.publish_throttled)],
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
            "retained_bytes",
            "gauge",
            "Bytes of retained messages stored (one replica).",
            &[(String::new(), t.retained_bytes)],
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
            "Deliveries waiting to be handed to other shards.",
            &per_shard(|s| s.mesh_queue),
        );
        metric(
            "queued_bytes",
            "gauge",
            "Bytes of QoS 1/2 messages waiting in session queues.",
            &per_shard(|s| s.queued_bytes),
        );
        let by_client: Vec<(String, u64)> = t
            .dropped_by_client
            .iter()
            .map(|(c, n)| (format!("client_id=\"{}\"", escape_label(c)), *n))
            .collect();
        metric(
            "client_messages_dropped_total",
            "counter",
            "Messages not delivered, for the clients with the most drops.",
            &by_client,
        );
        metric(
            "persistence_log_bytes",
            "gauge",
            "Bytes of the state log and snapshot.",
            &per_shard(|s| s.persist_log_bytes),
        );
        metric(
            "persistence_records_total",
            "counter",
            "Records appended to the state log since start.",
            &per_shard(|s| s.persist_records),
        );
        metric(
            "persistence_snapshots_total",
            "counter",
            "State snapshots written since start.",
            &per_shard(|s| s.persist_snapshots),
        );
        metric(
            "persistence_recovery_milliseconds",
            "gauge",
            "Time the shard took to recover its state at start.",
            &per_shard(|s| s.recovery_ms),
        );
        metric(
            "persistence_torn_tails_total",
            "counter",
            "Torn or corrupt state log tails cut off at start.",
            &per_shard(|s| s.persist_torn_tails),
        );
        out
    }
}

/// A Prometheus label value with `\\`, `"` and newlines escaped (client ids are arbitrary).
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
            websocket_origin_refused: self.websocket_origin_refused.get(),
            publish_throttled: self.publish_throttled.get(),
            dropped: self
                .dropped
                .borrow()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            dropped_by_client: self.top_dropping_clients(),
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
