//! The daemon's Prometheus metrics.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::FeedStats;
use crate::engine::Tick;

/// Labels of a stream's measured rate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub session: String,
    pub user: String,
    pub player: String,
    pub decision: String,
    pub window: String,
}

/// Labels of a counted action.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

/// Labels of a connection the HTTP endpoint closed on one of its limits.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// header-timeout, idle, evicted (to make room) or refused (no room).
    pub reason: String,
}

/// Every metric the daemon exports; names start with `streamwarden_`.
pub struct Metrics {
    registry: Registry,
    pub measured_kbps: Family<StreamLabels, Gauge<f64, AtomicU64>>,
    pub streams: Gauge,
    pub kills: Family<RuleLabels, Counter>,
    pub would_kills: Family<RuleLabels, Counter>,
    pub kill_failures: Family<RuleLabels, Counter>,
    pub rule_evaluations: Counter,
    pub capture_packets: Counter,
    pub capture_drops: Counter,
    pub decode_skipped: Counter,
    pub poll_errors: Counter,
    pub http_connections: Gauge,
    pub http_dropped: Family<DropLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("streamwarden");
        let m = Metrics {
            measured_kbps: Family::default(),
            streams: Gauge::default(),
            kills: Family::default(),
            would_kills: Family::default(),
            kill_failures: Family::default(),
            rule_evaluations: Counter::default(),
            capture_packets: Counter::default(),
            capture_drops: Counter::default(),
            decode_skipped: Counter::default(),
            poll_errors: Counter::default(),
            http_connections: Gauge::default(),
            http_dropped: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "stream_measured_kbps",
            "What each stream really sends, measured from packets, per window (kbps)",
            m.measured_kbps.clone(),
        );
        registry.register("streams", "Streams Plex lists", m.streams.clone());
        registry.register("kills", "Streams killed", m.kills.clone());
        registry.register(
            "would_kills",
            "Kills a dry run decided but did not send",
            m.would_kills.clone(),
        );
        registry.register(
            "kill_failures",
            "Kills that failed",
            m.kill_failures.clone(),
        );
        registry.register(
            "rule_evaluations",
            "Rule evaluations",
            m.rule_evaluations.clone(),
        );
        registry.register(
            "capture_packets",
            "Packets the capture received (pcap statistics)",
            m.capture_packets.clone(),
        );
        registry.register(
            "capture_drops",
            "Packets the kernel dropped (pcap statistics)",
            m.capture_drops.clone(),
        );
        registry.register(
            "decode_skipped",
            "Packets skipped as not TCP/IP, truncated or malformed",
            m.decode_skipped.clone(),
        );
        registry.register(
            "plex_poll_errors",
            "Failed reads of /status/sessions",
            m.poll_errors.clone(),
        );
        registry.register(
            "http_connections",
            "Connections open to this HTTP endpoint",
            m.http_connections.clone(),
        );
        registry.register(
            "http_connections_dropped",
            "Connections the HTTP endpoint closed or refused on a limit, by reason",
            m.http_dropped.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts a connection the HTTP endpoint closed or refused on a limit.
    pub fn dropped(&self, reason: &str) {
        self.http_dropped
            .get_or_create(&DropLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Brings the per-round metrics up to date: each stream's measured rates, the stream
    /// count, and the feed's counters since `last`.
    pub fn update(&self, tick: &Tick<'_>, feed: &FeedStats, last: &FeedStats) {
        self.measured_kbps.clear();
        for (e, a) in tick.streams.iter().zip(&tick.attributed) {
            let Some(a) = a else { continue };
            let s = &e.session;
            let m = a.measured;
            for (window, v) in [
                ("10s", m.kbps_10s),
                ("1m", m.kbps_1m),
                ("5m", m.kbps_5m),
                ("10m", m.kbps_10m),
            ] {
                self.measured_kbps
                    .get_or_create(&StreamLabels {
                        session: s.identity(),
                        user: s.user.clone().unwrap_or_default(),
                        player: s.player.clone().unwrap_or_default(),
                        decision: s.transcode_decision.clone().unwrap_or_default(),
                        window: window.to_string(),
                    })
                    .set(v);
            }
        }
        self.streams.set(tick.streams.len() as i64);
        if let Some(c) = feed.capture {
            let before = last.capture.unwrap_or_default();
            self.capture_packets
                .inc_by(u64::from(c.received.saturating_sub(before.received)));
            self.capture_drops
                .inc_by(u64::from(c.dropped.saturating_sub(before.dropped)));
        } else {
            self.capture_packets
                .inc_by(feed.decode.read.saturating_sub(last.decode.read));
        }
        self.decode_skipped
            .inc_by(feed.decode.skipped.saturating_sub(last.decode.skipped));
    }
}
