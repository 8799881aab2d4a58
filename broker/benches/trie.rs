//! Subscription-table benchmarks: the lookup every PUBLISH makes, in a table shaped like a
//! fleet deployment (per-vehicle command subscriptions, dispatch dashboards on wildcards, an
//! archive share group), and the inserts a reconnect storm makes.

use std::hint::black_box;

use broker::trie::{Matched, SubEntry, SubscriptionTable};
use criterion::{criterion_main, Criterion, Throughput};
use protocol::{ByteStr, QoS, SubscriptionOptions};

fn entry(client: String, shard: usize) -> SubEntry {
    SubEntry {
        client_id: ByteStr::from(client),
        shard,
        options: SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..SubscriptionOptions::default()
        },
        id: None,
    }
}

/// `vehicles` vehicles each on their own command topic, 10 dashboards on `fleet/+/gps` and
/// `fleet/#`, and a 4-member archive share group on `fleet/+/gps` and `fleet/+/reefer`.
fn fleet_table(vehicles: usize) -> SubscriptionTable {
    let mut table = SubscriptionTable::new();
    for v in 0..vehicles {
        let id = format!("truck-{v:05}");
        table.insert(&ByteStr::from(format!("fleet/{id}/cmd")), entry(id, v % 2));
    }
    for d in 0..10 {
        table.insert(
            &ByteStr::from("fleet/+/gps"),
            entry(format!("dash-{d}"), d % 2),
        );
        table.insert(&ByteStr::from("fleet/#"), entry(format!("dash-{d}"), d % 2));
    }
    for w in 0..4 {
        for kind in ["gps", "reefer"] {
            let filter = ByteStr::from(format!("$share/archive/fleet/+/{kind}"));
            table.insert(&filter, entry(format!("ingest-{w}"), w % 2));
        }
    }
    table
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("trie_match");
    group.throughput(Throughput::Elements(1));
    for vehicles in [100, 10_000] {
        let table = fleet_table(vehicles);
        // A GPS reading: 10 dashboards twice (two filters) and one share group.
        group.bench_function(format!("gps_reading_{vehicles}_vehicles"), |b| {
            b.iter(|| {
                let mut found = 0usize;
                table.for_each_match(black_box("fleet/truck-00042/gps"), |m| {
                    found += match m {
                        Matched::Single(_) => 1,
                        Matched::Group { members, .. } => members.len(),
                    }
                });
                found
            })
        });
        // A command to one vehicle: its own subscription and the `fleet/#` dashboards.
        group.bench_function(format!("command_{vehicles}_vehicles"), |b| {
            b.iter(|| {
                let mut found = 0usize;
                table.for_each_match(black_box("fleet/truck-00042/cmd"), |_| found += 1);
                found
            })
        });
    }
    group.finish();
}

fn insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("trie_insert");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000_vehicle_subscriptions", |b| {
        let filters: Vec<(ByteStr, String)> = (0..1000)
            .map(|v| {
                let id = format!("truck-{v:05}");
                (ByteStr::from(format!("fleet/{id}/cmd")), id)
            })
            .collect();
        b.iter(|| {
            let mut table = SubscriptionTable::new();
            for (filter, id) in &filters {
                table.insert(filter, entry(id.clone(), 0));
            }
            table.len()
        })
    });
    group.finish();
}

// The macro generates an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::lookup, super::insert);
}
criterion_main!(group::benches);
