//! The pipeline assembled (`fleetmq::start`): the broker with the Parquet archive as its
//! durable sink and the dashboard as its static files. Archived topics go through each shard's
//! write-ahead log, a QoS 1 PUBLISH is acknowledged once durable, and on shutdown everything is
//! in Parquet, once; `/metrics` carries the archive's counters and `/` serves the page.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::{
    io::{Read, Write},
    net::SocketAddr,
    time::Duration,
};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// How long any single expected event may take.
const WAIT: Duration = Duration::from_secs(10);

fn gps(seq: u64) -> String {
    format!(
        r#"{{"ts":{},"seq":{seq},"lat":52.37,"lon":4.89,"speed_kmh":42.5,"heading_deg":180.0}}"#,
        1_764_000_000_000u64 + seq * 1000
    )
}

/// A connected rumqttc client and its incoming packets.
struct Client {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Packet>,
}

async fn connect(port: u16, id: &str) -> Client {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 200);
    let (tx, mut incoming) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(packet) = event {
                if tx.send(packet).is_err() {
                    break;
                }
            }
        }
    });
    loop {
        match tokio::time::timeout(WAIT, incoming.recv()).await {
            Ok(Some(Packet::ConnAck(_))) => break,
            Ok(Some(_)) => continue,
            other => panic!("no CONNACK for {id}: {other:?}"),
        }
    }
    Client { client, incoming }
}

impl Client {
    async fn next(&mut self, what: &str, pick: impl Fn(&Packet) -> bool) -> Packet {
        loop {
            match tokio::time::timeout(WAIT, self.incoming.recv()).await {
                Ok(Some(p)) if pick(&p) => return p,
                Ok(Some(_)) => continue,
                other => panic!("expected {what}, got {other:?}"),
            }
        }
    }
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_topics_reach_parquet_once_with_rejects_kept() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = fleetmq::Settings::default();
    settings.broker.mqtt = "127.0.0.1:0".parse().unwrap();
    settings.broker.http = Some("127.0.0.1:0".parse().unwrap());
    settings.broker.shards = 2;
    settings.broker.persistence.enabled = false;
    settings.archive.data = data.path().to_path_buf();
    let fleetmq::Pipeline { broker, archive } = fleetmq::start(&settings).expect("starts");
    let archive = archive.expect("archive on by default");
    let port = broker.mqtt_addr().port();
    let http = broker.http_addr().expect("http listener");

    let mut live = connect(port, "dispatch").await;
    live.client
        .subscribe("fleet/+/gps", QoS::AtMostOnce)
        .await
        .unwrap();
    live.next("SUBACK", |p| matches!(p, Packet::SubAck(_)))
        .await;

    let mut vehicles = Vec::new();
    for v in 0..4 {
        vehicles.push(connect(port, &format!("truck-{v}")).await);
    }
    for (v, c) in vehicles.iter().enumerate() {
        // A vehicle replaying after a reconnect sends some readings again (20..25 twice).
        for seq in (0..25).chain(20..25) {
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
    let truck0 = &vehicles[0].client;
    truck0
        .publish(
            "fleet/truck-0/gps",
            QoS::AtLeastOnce,
            false,
            "{\"ts\": \"yesterday\"}",
        )
        .await
        .unwrap();
    // Not archived: not an archived topic.
    truck0
        .publish("fleet/truck-0/status", QoS::AtLeastOnce, true, "online")
        .await
        .unwrap();
    // Every QoS 1 PUBLISH of an archived topic is acknowledged only once in the log.
    for (v, c) in vehicles.iter_mut().enumerate() {
        let acks = if v == 0 { 32 } else { 30 };
        for _ in 0..acks {
            c.next("PUBACK", |p| matches!(p, Packet::PubAck(_))).await;
        }
    }
    // Live subscribers get everything, duplicates and rejects included: the archive filters,
    // routing does not.
    for _ in 0..(4 * 30 + 1) {
        live.next("PUBLISH", |p| matches!(p, Packet::Publish(_)))
            .await;
    }

    let metrics = tokio::task::spawn_blocking(move || http_get(http, "/metrics"))
        .await
        .unwrap();
    assert!(metrics.contains("fleetmq_archive_rows_total"), "{metrics}");
    let page = tokio::task::spawn_blocking(move || http_get(http, "/"))
        .await
        .unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/html"), "{page}");

    tokio::task::block_in_place(|| {
        broker.shutdown();
        broker.join().unwrap();
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
