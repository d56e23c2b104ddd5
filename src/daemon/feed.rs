//! The packet side as the daemon sees it: a meter that something else fills.

use std::sync::{Arc, Mutex};

use crate::capture::feed::Sink;
use crate::capture::{CaptureStats, DecodeStats, Packet};
use crate::lock;
use crate::meter::Metering;

/// What a packet feed reports about itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct FeedStats {
    pub capture: Option<CaptureStats>,
    pub decode: DecodeStats,
}

/// The shared meter and the feed's statistics. A capture thread, a traffic generator or a
/// test pushes packets in; the daemon reads the meter once a round.
#[derive(Debug, Clone)]
pub struct Feed {
    pub metering: Arc<Mutex<Metering>>,
    capture: Arc<Mutex<Option<CaptureStats>>>,
}

impl Feed {
    pub fn new(metering: Metering) -> Self {
        Self {
            metering: Arc::new(Mutex::new(metering)),
            capture: Arc::new(Mutex::new(None)),
        }
    }

    /// Meters one packet.
    pub fn ingest(&self, p: &Packet<'_>) {
        lock(&self.metering).ingest(p);
    }

    /// The statistics as of now.
    pub fn stats(&self) -> FeedStats {
        FeedStats {
            capture: *lock(&self.capture),
            decode: lock(&self.metering).stats,
        }
    }
}

impl Sink for Feed {
    fn packet(&mut self, p: &Packet<'_>) {
        self.ingest(p);
    }

    fn capture_stats(&mut self, stats: Option<CaptureStats>) {
        *lock(&self.capture) = stats;
    }
}
