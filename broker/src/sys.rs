//! `$SYS/broker/...`: the broker's figures as retained MQTT messages, the same ones `/metrics`
//! shows, published by shard 0 every `sys_interval` seconds.

use std::{rc::Rc, time::Duration, time::Instant};

use bytes::Bytes;
use protocol::{ByteStr, QoS};

use crate::{mesh::ShardMsg, message::Message, metrics::Snapshot, shard::Shard};

/// The `$SYS` topics and their values for a total.
pub fn topics(total: &Snapshot, uptime: Duration) -> Vec<(String, String)> {
    let received: u64 = total.messages_in.iter().sum();
    let sent: u64 = total.messages_out.iter().sum();
    let mut out = vec![
        (
            "$SYS/broker/version".into(),
            format!("fleetmq {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "$SYS/broker/uptime".into(),
            format!("{} seconds", uptime.as_secs()),
        ),
        (
            "$SYS/broker/clients/connected".into(),
            total.connections.to_string(),
        ),
        (
            "$SYS/broker/clients/total".into(),
            total.sessions.to_string(),
        ),
        (
            "$SYS/broker/clients/accepted".into(),
            total.connections_total.to_string(),
        ),
        ("$SYS/broker/messages/received".into(), received.to_string()),
        ("$SYS/broker/messages/sent".into(), sent.to_string()),
        (
            "$SYS/broker/bytes/received".into(),
            total.bytes_in.to_string(),
        ),
        ("$SYS/broker/bytes/sent".into(), total.bytes_out.to_string()),
        (
            "$SYS/broker/retained messages/count".into(),
            total.retained.to_string(),
        ),
        (
            "$SYS/broker/subscriptions/count".into(),
            total.subscriptions.to_string(),
        ),
        (
            "$SYS/broker/protocol errors".into(),
            total.protocol_errors.to_string(),
        ),
        (
            "$SYS/broker/queue/queued".into(),
            total.queued_messages.to_string(),
        ),
        (
            "$SYS/broker/queue/inflight".into(),
            total.inflight_messages.to_string(),
        ),
        (
            "$SYS/broker/queue/outbox".into(),
            total.outbox_packets.to_string(),
        ),
        (
            "$SYS/broker/queue/mesh".into(),
            total.mesh_queue.to_string(),
        ),
    ];
    for q in 0..3 {
        out.push((
            format!("$SYS/broker/publish/messages/received/qos{q}"),
            total.messages_in[q].to_string(),
        ));
        out.push((
            format!("$SYS/broker/publish/messages/sent/qos{q}"),
            total.messages_out[q].to_string(),
        ));
    }
    let dropped: u64 = total.dropped.values().sum();
    out.push(("$SYS/broker/messages/dropped".into(), dropped.to_string()));
    for (reason, n) in &total.dropped {
        out.push((
            format!("$SYS/broker/messages/dropped/{reason}"),
            n.to_string(),
        ));
    }
    // One topic for the clients with the most drops, not one per client: the topics are
    // retained, and a topic per client ever in the top list would accumulate forever.
    let clients: Vec<String> = total
        .dropped_by_client
        .iter()
        .map(|(client, n)| format!("{client} {n}"))
        .collect();
    out.push((
        "$SYS/broker/messages/dropped/clients".into(),
        clients.join("\n"),
    ));
    out.push((
        "$SYS/broker/retained messages/bytes".into(),
        total.retained_bytes.to_string(),
    ));
    out.push((
        "$SYS/broker/queue/bytes".into(),
        total.queued_bytes.to_string(),
    ));
    out.push((
        "$SYS/broker/persistence/log/bytes".into(),
        total.persist_log_bytes.to_string(),
    ));
    out.push((
        "$SYS/broker/persistence/records".into(),
        total.persist_records.to_string(),
    ));
    out.push((
        "$SYS/broker/persistence/recovery/ms".into(),
        total.recovery_ms.to_string(),
    ));
    out.push((
        "$SYS/broker/persistence/torn_tails".into(),
        total.persist_torn_tails.to_string(),
    ));
    out
}

/// Publishes the `$SYS` topics now, retained, to every shard.
pub fn publish(shard: &Rc<Shard>) {
    let total = Snapshot::total(&shard.all_snapshots());
    for (topic, value) in topics(&total, shard.started.elapsed()) {
        let message =
            Message::own_retained(ByteStr::from(topic), Bytes::from(value), QoS::AtMostOnce);
        let (topic, stored) = (message.topic.clone(), message.clone());
        shard.broadcast(|| ShardMsg::Retain {
            topic: topic.clone(),
            message: Some(stored.clone()),
        });
        shard.route(&message);
    }
}

/// Runs on shard 0 for the broker's lifetime.
pub async fn publish_periodically(shard: Rc<Shard>) {
    let every = shard.config.sys_interval;
    if every == 0 {
        return;
    }
    let mut next = Instant::now() + Duration::from_secs(1);
    loop {
        glommio::timer::sleep(next.saturating_duration_since(Instant::now())).await;
        if shard.stopping.get() {
            return;
        }
        publish(&shard);
        next = Instant::now() + Duration::from_secs(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_carry_the_same_figures_as_metrics() {
        let mut total = Snapshot {
            connections: 3,
            messages_in: [5, 6, 7],
            ..Snapshot::default()
        };
        total.dropped.insert("slow_consumer".into(), 2);
        let t = topics(&total, Duration::from_secs(42));
        let get = |name: &str| t.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("$SYS/broker/clients/connected"), Some("3"));
        assert_eq!(get("$SYS/broker/messages/received"), Some("18"));
        assert_eq!(get("$SYS/broker/publish/messages/received/qos2"), Some("7"));
        assert_eq!(get("$SYS/broker/messages/dropped/slow_consumer"), Some("2"));
        assert_eq!(get("$SYS/broker/uptime"), Some("42 seconds"));
    }
}
