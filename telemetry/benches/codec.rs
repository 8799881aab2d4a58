//! The ingest's hot path: decoding and validating payloads, and the simulator's encoding.

#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use telemetry::{decode_gps, decode_message, decode_reefer, Gps, Reefer};

fn gps() -> Gps {
    Gps {
        ts: 1_736_143_200_851,
        seq: 12_345,
        lat: 53.551_234,
        lon: 9.993_456,
        speed_kmh: 47.3,
        heading_deg: 271.5,
        odometer_km: Some(123_456.789),
        hdop: Some(0.9),
    }
}

fn reefer() -> Reefer {
    Reefer {
        ts: 1_736_143_200_851,
        seq: 12_346,
        temp_c: 4.7,
        setpoint_c: 5.0,
        door_open: false,
        compressor_on: true,
        ambient_c: Some(18.2),
        humidity_pct: Some(88.0),
    }
}

fn bench(c: &mut Criterion) {
    let gps_json = gps().to_json();
    let reefer_json = reefer().to_json();
    let mut group = c.benchmark_group("telemetry");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_gps", |b| {
        b.iter(|| decode_gps(black_box(&gps_json)))
    });
    group.bench_function("decode_reefer", |b| {
        b.iter(|| decode_reefer(black_box(&reefer_json)))
    });
    group.bench_function("decode_message_gps", |b| {
        b.iter(|| decode_message(black_box("fleet/truck-00042/gps"), black_box(&gps_json)))
    });
    let mut out = Vec::with_capacity(256);
    group.bench_function("encode_gps", |b| {
        b.iter(|| {
            out.clear();
            black_box(gps()).write_json(&mut out);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
