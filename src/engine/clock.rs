//! The time every round is evaluated at.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall time in microseconds since the epoch, the time base of captured packets.
pub trait Clock: Send + Sync {
    fn now_micros(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }
}
