//! What the daemon measures with: a meter that something else fills, and Plex's own
//! per-second counters that the daemon's bandwidth poller fills (`[measure] source`).

use std::sync::{Arc, Mutex};

use crate::attribute::{Attributed, Owners};
use crate::capture::pump::PacketSink;
use crate::capture::{CaptureStats, DecodeStats, Packet};
use crate::config::MeasureSource;
use crate::lock;
use crate::meter::Metering;
use crate::micros::Micros;
use crate::plex::Session;
use crate::plex::bandwidth::Counters;

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
    /// Plex's counters as read so far (empty unless the source reads them).
    pub counters: Arc<Mutex<Counters>>,
    /// Which session each connection was tied to, from round to round.
    owners: Arc<Mutex<Owners>>,
    source: MeasureSource,
}

impl Feed {
    pub fn new(metering: Metering) -> Self {
        Self {
            metering: Arc::new(Mutex::new(metering)),
            capture: Arc::new(Mutex::new(None)),
            counters: Arc::new(Mutex::new(Counters::default())),
            owners: Arc::new(Mutex::new(Owners::default())),
            source: MeasureSource::Packets,
        }
    }

    /// The same feed measuring from `source` (packets by default).
    pub fn with_source(mut self, source: MeasureSource) -> Self {
        self.source = source;
        self
    }

    /// Where the streams' figures come from.
    pub fn source(&self) -> MeasureSource {
        self.source
    }

    /// Each session's measured figures as of `now_micros` (see [`crate::engine::measure`]).
    /// A connection tied to a session stays that session's from one call to the next.
    pub fn measure(
        &self,
        sessions: &[Session],
        ports: &[u16],
        now: Micros,
    ) -> Vec<Option<Attributed>> {
        let m = lock(&self.metering);
        let counters = self.source.plex().then(|| lock(&self.counters));
        let mut owners = lock(&self.owners);
        let attributed = crate::engine::measure(
            &m.meter,
            sessions,
            ports,
            now,
            self.source,
            counters.as_deref(),
            Some(&owners),
        );
        owners.note(&m.meter, sessions, &attributed);
        attributed
    }

    /// For each session left without a figure because it shares its address, the address's
    /// total (see [`crate::attribute::address_totals`]).
    pub fn address_totals(
        &self,
        sessions: &[Session],
        ports: &[u16],
        now: Micros,
        attributed: &[Option<Attributed>],
    ) -> Vec<Option<crate::attribute::AddressTotal>> {
        let m = lock(&self.metering);
        crate::attribute::address_totals(&m.meter, sessions, ports, now.0, attributed)
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

impl PacketSink for Feed {
    fn packet(&mut self, p: &Packet<'_>) {
        self.ingest(p);
    }

    fn capture_stats(&mut self, stats: Option<CaptureStats>) {
        *lock(&self.capture) = stats;
    }
}
