//! Writes a simulated fleet's archive (with GPS noise, dropouts, store-and-forward and forced
//! compressor faults) and its ground truth, to try the reports on without a broker:
//!
//! ```text
//! cargo run -p fleetmq-analytics --example archive_fleet -- /tmp/fleet 6 4
//! fleetmq report excursions --data /tmp/fleet --chart excursions.svg
//! ```
//! Arguments: directory, vehicles (default 6), hours (default 4).

#![allow(clippy::unwrap_used)]

#[path = "../tests/it/common/mod.rs"]
mod common;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: archive_fleet DIR [VEHICLES] [HOURS]");
        std::process::exit(2);
    };
    let vehicles = args.next().and_then(|v| v.parse().ok()).unwrap_or(6);
    let hours: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(4);
    let dir = std::path::Path::new(&dir);
    let truth = common::archive_fleet(common::hard_fleet(vehicles, 11), hours * 3600, dir);
    truth.write_json(&dir.join("truth.json")).unwrap();
    println!(
        "{} vehicles, {hours} h archived in {}",
        truth.vehicles.len(),
        dir.display()
    );
}
