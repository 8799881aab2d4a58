//! The archive inside the broker: archived topics go through each shard's write-ahead log, a
//! QoS 1 PUBLISH is acknowledged once durable, and on shutdown everything is in Parquet, once.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::{Client, TestBroker};
use rumqttc::QoS;

fn gps(seq: u64) -> String {
    format!(
        r#"{{"ts":{},"seq":{seq},"lat":52.37,"lon":4.89,"speed_kmh":42.5,"heading_deg":180.0}}"#,
        1_764_000_000_000u64 + seq * 1000
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_topics_reach_parquet_once_with_rejects_kept() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let broker = TestBroker::with(move |c| {
        c.archive.enabled = true;
        c.archive.data = dir;
    });
    let (mut live, _) = Client::connect(broker.port(), "dispatch", |_| {}).await;
    live.client
        .subscribe("fleet/+/gps", QoS::AtMostOnce)
        .await
        .unwrap();
    live.subscribed().await;

    let mut vehicles = Vec::new();
    for v in 0..4 {
        let (c, _) = Client::connect(broker.port(), &format!("truck-{v}"), |_| {}).await;
        vehicles.push(c);
    }
    for (v, c) in vehicles.iter().enumerate() {
        for seq in 0..25 {
            c.client
                .publish(
                    format!("fleet/truck-{v}/gps"),
                    QoS::AtLeastOnce,
                    false,
                    gps(seq),
                )
                .await
                .unwrap();
        }
        // A vehicle replaying after a reconnect sends some readings again.
        for seq in 20..25 {
            c.client
                .publish(
                    format!("fleet/truck-{v}/gps"),
                    QoS::AtLeastOnce,
                    false,
                    gps(seq),
                )
                .await
                .unwrap();
        }
    }
    vehicles[0]
        .client
        .publish(
            "fleet/truck-0/gps",
            QoS::AtLeastOnce,
            false,
            "{\"ts\": \"yesterday\"}",
        )
        .await
        .unwrap();
    // Not archived: not an archived topic.
    vehicles[0]
        .client
        .publish("fleet/truck-0/status", QoS::AtLeastOnce, true, "online")
        .await
        .unwrap();
    // Live subscribers get everything, duplicates and rejects included: the archive filters,
    // routing does not.
    for _ in 0..(4 * 30 + 1) {
        live.next_publish().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let archive = broker.handle.archive().unwrap().clone();
    tokio::task::block_in_place(|| {
        broker.handle.shutdown();
        broker.handle.join().unwrap();
    });
    let stats = archive.stats();
    assert_eq!(stats.gps_rows, 100, "{stats:?}");
    assert_eq!(stats.duplicates, 20, "{stats:?}");
    assert_eq!(stats.reject_rows, 1, "{stats:?}");
    assert_eq!(stats.lag, 0, "{stats:?}");
    let files: Vec<_> = walk(&data.path().join("gps"));
    assert!(!files.is_empty());
    assert!(files
        .iter()
        .all(|f| f.extension().is_some_and(|e| e == "parquet")));
    assert!(data.path().join("gps/date=2025-11-24/hour=16").is_dir());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
