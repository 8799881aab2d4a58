//! Codec benchmarks: the PUBLISH hot path in both directions, CONNECT decoding, and topic
//! matching, which the router runs once per subscription per message.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_main, Criterion, Throughput};
use protocol::{
    decode, encode, matches, ByteStr, Connect, Packet, Properties, Protocol, Publish, QoS, Will,
};

fn publish(qos: QoS) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteStr::from_static("fleet/region-eu/truck-0042/telemetry/gps"),
        pkid: if qos == QoS::AtMostOnce { 0 } else { 42 },
        payload: Bytes::from(vec![0x5A; 100]),
        properties: Properties::default(),
    })
}

fn connect() -> Packet {
    Packet::Connect(Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive: 30,
        client_id: ByteStr::from_static("truck-0042"),
        will: Some(Will {
            topic: ByteStr::from_static("fleet/region-eu/truck-0042/status"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: Some(ByteStr::from_static("truck-0042")),
        password: Some(Bytes::from_static(b"secret-token")),
        properties: Properties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(64),
            ..Properties::default()
        },
    })
}

fn frame(packet: &Packet, version: Protocol) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).expect("benchmark packets encode");
    buf
}

/// Decodes `packet` from a pre-encoded frame; only the copy into a fresh buffer is extra.
fn bench_decode(c: &mut Criterion, name: &str, packet: &Packet, version: Protocol) {
    let frame = frame(packet, version);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut buf = frame.clone();
            black_box(decode(&mut buf, version, u32::MAX).expect("valid frame"))
        })
    });
    group.finish();
}

fn decoding(c: &mut Criterion) {
    for (version, label) in [(Protocol::V3_1_1, "v4"), (Protocol::V5, "v5")] {
        for (qos, q) in [(QoS::AtMostOnce, "qos0"), (QoS::AtLeastOnce, "qos1")] {
            let name = format!("publish_{q}_100b_{label}");
            bench_decode(c, &name, &publish(qos), version);
        }
    }
    bench_decode(c, "connect_v5", &connect(), Protocol::V5);
}

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (version, label) in [(Protocol::V3_1_1, "v4"), (Protocol::V5, "v5")] {
        for (qos, q) in [(QoS::AtMostOnce, "qos0"), (QoS::AtLeastOnce, "qos1")] {
            let packet = publish(qos);
            let mut buf = BytesMut::with_capacity(1024);
            group.bench_function(format!("publish_{q}_100b_{label}"), |b| {
                b.iter(|| {
                    buf.clear();
                    encode(black_box(&packet), version, &mut buf).expect("encodes");
                    black_box(buf.len())
                })
            });
        }
    }
    group.finish();
}

fn matching(c: &mut Criterion) {
    let topic = "fleet/region-eu/truck-0042/telemetry/gps";
    let mut group = c.benchmark_group("matches");
    for (name, filter) in [
        ("exact", "fleet/region-eu/truck-0042/telemetry/gps"),
        ("plus", "fleet/+/+/telemetry/gps"),
        ("hash", "fleet/region-eu/#"),
        ("miss_early", "depot/region-eu/truck-0042/telemetry/gps"),
        ("miss_late", "fleet/region-eu/truck-0042/telemetry/can"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| matches(black_box(filter), black_box(topic)))
        });
    }
    group.finish();
}

// The macro generates an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::decoding, super::encoding, super::matching);
}
criterion_main!(group::benches);
