//! Wall-clock time as the broker stores it: milliseconds since the Unix epoch, which mean the
//! same after a restart (a delayed Will's due time, a session's stamp).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, as wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
