//! One typed row per stream, built once per round: the daemon serves it at /api/streams,
//! draws it in the terminal, and the hook reads it back from a running daemon.

use serde::{Deserialize, Serialize};

use crate::plex::PlayState;

use super::{RuleState, Tick};

/// A stream with its measured figures and every rule's state. Read back leniently: a
/// field a daemon of another version leaves out takes its default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamRow {
    pub session_id: Option<String>,
    pub session_key: Option<String>,
    pub user: Option<String>,
    /// The user's `[groups]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    pub player: Option<String>,
    pub address: Option<String>,
    pub state: Option<PlayState>,
    pub title: String,
    pub transcode_decision: Option<String>,
    pub stream_bitrate_kbps: Option<i64>,
    /// The file's own bitrate (from the library).
    pub source_bitrate_kbps: Option<i64>,
    pub bandwidth_kbps: Option<i64>,
    pub measured_kbps_10s: Option<f64>,
    pub measured_kbps_1m: Option<f64>,
    pub measured_kbps_5m: Option<f64>,
    pub measured_kbps_10m: Option<f64>,
    /// The measured figures are this stream's estimated share of its address.
    pub estimated: bool,
    /// When the stream has no figure because it shares its address with others and its
    /// share cannot be told: all the traffic to the address.
    pub address_kbps_10s: Option<f64>,
    pub address_kbps_1m: Option<f64>,
    pub address_kbps_5m: Option<f64>,
    pub address_kbps_10m: Option<f64>,
    /// Who else is at that address (user names, or players when unnamed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shared_with: Vec<String>,
    /// Where the measured figures come from: "packets" or "plex" (Plex's own counters);
    /// none when unmeasured.
    pub rate_source: Option<String>,
    /// Killed, and waiting for Plex to stop listing it.
    pub killed: bool,
    /// The throttle on the stream, when one is.
    pub throttle: Option<ThrottleRow>,
    pub rules: Vec<RuleRow>,
}

/// A throttle on a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThrottleRow {
    /// The rule that put it on.
    pub rule: String,
    /// Its rate ("5 Mbps").
    pub rate: String,
    /// Seconds it has been on.
    pub for_s: u64,
    /// A dry run's: nothing was touched.
    pub dry: bool,
    /// The connections it limits.
    pub connections: usize,
}

/// Where one rule stands for a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuleRow {
    pub rule: String,
    /// ok, unknown (the rule could not be judged: a value it reads is unknown), sustaining,
    /// due or acted.
    pub state: String,
    /// What the rule needed and did not have, when `unknown`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
    /// Seconds the condition has held (sustaining and due).
    pub held_s: Option<u64>,
    pub sustain_s: u64,
}

impl StreamRow {
    /// The measured figures, when traffic was attributed to the stream.
    pub fn measured(&self) -> Option<crate::meter::Measured> {
        Some(crate::meter::Measured {
            kbps_10s: self.measured_kbps_10s?,
            kbps_1m: self.measured_kbps_1m?,
            kbps_5m: self.measured_kbps_5m?,
            kbps_10m: self.measured_kbps_10m?,
            estimated: self.estimated,
            source: match self.rate_source.as_deref() {
                Some("plex") => crate::meter::RateSource::Plex,
                _ => crate::meter::RateSource::Packets,
            },
        })
    }
}

/// What a stream whose share of its address cannot be told says instead of a figure:
/// "4.01 Mbps at this address, shared with dave, share unknown" (`replay`, `sessions`).
pub fn unknown_share(address_kbps: f64, shared_with: &[String]) -> String {
    format!(
        "{:.2} Mbps at this address, shared with {}, share unknown",
        address_kbps / 1000.0,
        shared_with.join(", ")
    )
}

/// The rows of one round; `killed` says which Session ids were killed and not yet gone,
/// `throttle` gives the throttle on a stream (by identity).
pub fn rows(
    tick: &Tick<'_>,
    killed: impl Fn(&str) -> bool,
    throttle: impl Fn(&str) -> Option<ThrottleRow>,
) -> Vec<StreamRow> {
    tick.streams
        .iter()
        .enumerate()
        .zip(&tick.attributed)
        .zip(&tick.states)
        .map(|(((i, e), a), states)| {
            let s = &e.session;
            let m = a.as_ref().map(|a| a.measured);
            let total = tick.addresses.get(i).and_then(Option::as_ref);
            let at = total.map(|t| t.measured);
            let shared_with = total.map_or_else(Vec::new, |t| {
                t.with
                    .iter()
                    .filter_map(|&j| tick.streams.get(j))
                    .map(|o| o.session.who())
                    .collect()
            });
            let rules = e
                .evaluations
                .iter()
                .zip(states)
                .map(|(ev, st)| {
                    let unknown = match (&ev.outcome, st) {
                        (crate::rules::Outcome::Unknown { missing }, RuleState::Ok) => {
                            missing.iter().map(|m| m.to_string()).collect()
                        }
                        _ => Vec::new(),
                    };
                    let (state, held) = match st {
                        RuleState::Ok if !unknown.is_empty() => ("unknown", None),
                        RuleState::Ok => ("ok", None),
                        RuleState::Sustaining { held, .. } => ("sustaining", Some(held.as_secs())),
                        RuleState::Due { held } => ("due", Some(held.as_secs())),
                        RuleState::Acted => ("acted", None),
                    };
                    RuleRow {
                        rule: ev.rule.name.clone(),
                        state: state.to_string(),
                        held_s: held,
                        sustain_s: ev.rule.sustain.as_secs(),
                        unknown,
                    }
                })
                .collect();
            StreamRow {
                session_id: s.session_id.clone(),
                session_key: s.session_key.clone(),
                user: s.user.clone(),
                groups: match e.vars.get("groups") {
                    Some(crate::rules::Value::List(g)) => g.clone(),
                    _ => Vec::new(),
                },
                player: s.player.clone(),
                address: s.address.clone(),
                state: s.state.clone(),
                title: s.display_title(),
                transcode_decision: s.transcode_decision.clone(),
                stream_bitrate_kbps: s.stream_bitrate_kbps,
                source_bitrate_kbps: s.source_bitrate_kbps,
                bandwidth_kbps: s.bandwidth_kbps,
                measured_kbps_10s: m.map(|m| m.kbps_10s),
                measured_kbps_1m: m.map(|m| m.kbps_1m),
                measured_kbps_5m: m.map(|m| m.kbps_5m),
                measured_kbps_10m: m.map(|m| m.kbps_10m),
                estimated: m.is_some_and(|m| m.estimated),
                address_kbps_10s: at.map(|m| m.kbps_10s),
                address_kbps_1m: at.map(|m| m.kbps_1m),
                address_kbps_5m: at.map(|m| m.kbps_5m),
                address_kbps_10m: at.map(|m| m.kbps_10m),
                shared_with,
                rate_source: m.map(|m| m.source.as_str().to_string()),
                killed: s.session_id.as_deref().is_some_and(&killed),
                throttle: throttle(&s.identity()),
                rules,
            }
        })
        .collect()
}
