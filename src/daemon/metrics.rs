//! The daemon's Prometheus metrics, served in Prometheus's text format (0.0.4): what
//! Prometheus scrapes and `promtool check metrics` lints.

use std::collections::HashSet;
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

/// Labels of a notification target (its name, never its URL).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

/// Labels of a user's usage.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UserLabels {
    pub user: String,
}

/// Labels of a connection the HTTP endpoint closed on one of its limits.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// header-timeout, idle, evicted (to make room) or refused (no room).
    pub reason: String,
}

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric the daemon exports; names start with `streamwarden_`.
pub struct Metrics {
    registry: Registry,
    pub measured_kbps: Family<StreamLabels, Gauge<f64, AtomicU64>>,
    pub streams: Gauge,
    pub kills: Family<RuleLabels, Counter>,
    pub would_kills: Family<RuleLabels, Counter>,
    pub kill_failures: Family<RuleLabels, Counter>,
    pub throttles: Family<RuleLabels, Counter>,
    pub would_throttles: Family<RuleLabels, Counter>,
    pub throttle_failures: Family<RuleLabels, Counter>,
    pub unthrottles: Family<RuleLabels, Counter>,
    pub throttled_streams: Gauge,
    pub rule_evaluations: Counter,
    pub capture_packets: Counter,
    pub capture_drops: Counter,
    pub decode_skipped: Counter,
    pub poll_errors: Counter,
    /// Notifications read from Plex's event stream.
    pub events: Counter,
    /// Times the event stream dropped or could not be opened.
    pub event_reconnects: Counter,
    /// 1 while the event stream is open.
    pub events_up: Gauge,
    pub state_write_failures: Counter,
    pub http_connections: Gauge,
    pub http_dropped: Family<DropLabels, Counter>,
    pub notify_failures: Family<TargetLabels, Counter>,
    /// IP bytes sent to each user's streams since the start (what `usage` records).
    pub user_bytes: Family<UserLabels, Counter>,
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
            throttles: Family::default(),
            would_throttles: Family::default(),
            throttle_failures: Family::default(),
            unthrottles: Family::default(),
            throttled_streams: Gauge::default(),
            rule_evaluations: Counter::default(),
            capture_packets: Counter::default(),
            capture_drops: Counter::default(),
            decode_skipped: Counter::default(),
            poll_errors: Counter::default(),
            events: Counter::default(),
            event_reconnects: Counter::default(),
            events_up: Gauge::default(),
            state_write_failures: Counter::default(),
            http_connections: Gauge::default(),
            http_dropped: Family::default(),
            notify_failures: Family::default(),
            user_bytes: Family::default(),
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
            "throttles",
            "Streams throttled in the kernel",
            m.throttles.clone(),
        );
        registry.register(
            "would_throttles",
            "Throttles a dry run decided but did not put on",
            m.would_throttles.clone(),
        );
        registry.register(
            "throttle_failures",
            "Throttles that could not be put on",
            m.throttle_failures.clone(),
        );
        registry.register(
            "unthrottles",
            "Throttles lifted (stream ended, release_after, reload, shutdown)",
            m.unthrottles.clone(),
        );
        registry.register(
            "throttled_streams",
            "Streams throttled now",
            m.throttled_streams.clone(),
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
            "plex_events",
            "Notifications read from Plex's event stream (/:/websockets/notifications)",
            m.events.clone(),
        );
        registry.register(
            "plex_event_reconnects",
            "Times Plex's event stream dropped or could not be opened",
            m.event_reconnects.clone(),
        );
        registry.register(
            "plex_events_up",
            "1 while Plex's event stream is open, else 0 (streams are then found by polling)",
            m.events_up.clone(),
        );
        registry.register(
            "state_write_failures",
            "Writes to the state database that failed (no kill is sent while it cannot be written)",
            m.state_write_failures.clone(),
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
        registry.register(
            "notify_failures",
            "Notifications that could not be sent, by [[notify]] target",
            m.notify_failures.clone(),
        );
        registry.register(
            "user_bytes",
            "IP bytes Plex sent to each user's streams since streamwarden started (see `streamwarden usage`)",
            m.user_bytes.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The Prometheus text exposition (format 0.0.4, see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        openmetrics_to_prometheus(&out)
    }

    /// Counts a connection the HTTP endpoint closed or refused on a limit.
    pub fn dropped(&self, reason: &str) {
        self.http_dropped
            .get_or_create(&DropLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Brings the notification failures up to the notifier's tally (every target listed,
    /// from 0).
    pub fn notify(&self, counts: &std::collections::BTreeMap<String, crate::notify::Counts>) {
        for (name, c) in counts {
            let counter = self.notify_failures.get_or_create(&TargetLabels {
                target: name.clone(),
            });
            counter.inc_by(c.failed.saturating_sub(counter.get()));
        }
    }

    /// Brings the per-round metrics up to date: each stream's measured rates, the stream
    /// count, and the feed's counters since `last`.
    /// Brings the state's failed writes up to `total` (the enforcer's count).
    pub fn state_failures(&self, total: u64) {
        let now = self.state_write_failures.get();
        if total > now {
            self.state_write_failures.inc_by(total - now);
        }
    }

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

/// prometheus-client writes OpenMetrics, where a counter family is named without the
/// `_total` its samples carry and the text ends in `# EOF`. In Prometheus's text format a
/// family is named as its samples are: read that way, every counter's samples would have no
/// HELP or TYPE (`promtool check metrics` says "no help text"). So counters' HELP and TYPE
/// lines get the `_total` name and `# EOF` goes; samples are the same in both formats.
fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len() + 16 * counters.len());
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        let described = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match described {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(p);
                out.push_str(name);
                if counters.contains(name) && !name.ends_with("_total") {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_described_under_their_sample_names() {
        let m = Metrics::default();
        m.kills
            .get_or_create(&RuleLabels {
                rule: "fast".into(),
            })
            .inc();
        m.poll_errors.inc();
        let text = m.encode();
        assert!(
            text.contains("# HELP streamwarden_kills_total Streams killed"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE streamwarden_kills_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("streamwarden_kills_total{rule=\"fast\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE streamwarden_plex_poll_errors_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE streamwarden_streams gauge\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("_total_total"), "{text}");
    }
}
