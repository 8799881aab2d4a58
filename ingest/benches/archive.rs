//! Criterion benches of the archive (filled in below).
fn main() {}
