//! The time every round is evaluated at.

use crate::micros::Micros;

/// Wall time, the time base of captured packets.
pub trait Clock: Send + Sync {
    fn now(&self) -> Micros;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Micros {
        Micros::now()
    }
}
