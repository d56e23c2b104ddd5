//! A replay as text and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::attribute::{Bytes, unmap};
use crate::meter::Measured;

use super::Replay;

/// The RFC 3339 time of a packet timestamp.
fn time_of(micros: i64) -> String {
    crate::micros::Micros(micros)
        .rfc3339()
        .unwrap_or_else(|| micros.to_string())
}

/// One stream (or, without sessions, one client address) in the JSON report.
#[derive(Serialize)]
struct Row {
    session_id: Option<String>,
    session_key: Option<String>,
    user: Option<String>,
    address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transcode_decision: Option<Option<String>>,
    measured_kbps_10s: Option<f64>,
    measured_kbps_1m: Option<f64>,
    measured_kbps_5m: Option<f64>,
    measured_kbps_10m: Option<f64>,
    estimated: bool,
    /// All the traffic to the address, when the session shares it and its share is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    address_kbps_10s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address_kbps_1m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address_kbps_5m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address_kbps_10m: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    shared_with: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connections: Option<usize>,
}

#[derive(Serialize)]
struct DecisionRow<'a> {
    ts: String,
    rule: &'a str,
    action: crate::state::AuditAction,
    reason: Option<&'a str>,
    session_id: Option<&'a str>,
    user: Option<&'a str>,
    message: &'a str,
    estimated: bool,
}

#[derive(Serialize)]
struct Packets {
    read: u64,
    decoded: u64,
    skipped: u64,
}

#[derive(Serialize)]
struct FlowRow {
    src: String,
    sport: u16,
    dst: String,
    dport: u16,
    packets: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct Report<'a> {
    as_of: Option<String>,
    sessions: Vec<Row>,
    decisions: Vec<DecisionRow<'a>>,
    /// Rules that could not be judged at the end, and why.
    unevaluated: &'a [super::Unevaluated],
    packets: Packets,
    #[serde(skip_serializing_if = "Option::is_none")]
    flows: Option<Vec<FlowRow>>,
}

fn round(k: f64) -> f64 {
    (k * 1000.0).round() / 1000.0
}

impl Replay {
    /// The address total of session `i`, when its share of its address is unknown.
    fn address_total(&self, i: usize) -> Option<&crate::attribute::AddressTotal> {
        self.addresses.get(i).and_then(Option::as_ref)
    }

    /// Who else is at session `i`'s address, when its share is unknown.
    fn shared_with(&self, i: usize) -> Vec<String> {
        self.address_total(i).map_or_else(Vec::new, |t| {
            t.with
                .iter()
                .filter_map(|&j| self.sessions.get(j))
                .map(crate::plex::Session::who)
                .collect()
        })
    }

    /// Per client address of the Plex-port flows, for a replay without sessions.
    fn addresses(&self) -> Vec<(String, Measured)> {
        let mut by: BTreeMap<String, Bytes> = BTreeMap::new();
        for (k, f) in self.metering.meter.flows() {
            if self.ports.contains(&k.sport) {
                by.entry(unmap(k.dst).to_string())
                    .or_default()
                    .add(f, self.now, 1.0);
            }
        }
        by.into_iter()
            .map(|(a, b)| (a, b.measured(self.now)))
            .collect()
    }

    fn flow_rows(&self) -> Vec<FlowRow> {
        let mut flows: Vec<_> = self.metering.meter.flows().collect();
        flows.sort_by_key(|(k, _)| **k);
        flows
            .into_iter()
            .map(|(k, f)| FlowRow {
                src: k.src.to_string(),
                sport: k.sport,
                dst: k.dst.to_string(),
                dport: k.dport,
                packets: f.packets,
                bytes: f.bytes,
            })
            .collect()
    }

    /// The report as one JSON object.
    pub fn json(&self, flows: bool) -> String {
        let sessions = if self.sessions.is_empty() {
            self.addresses()
                .into_iter()
                .map(|(addr, m)| Row {
                    session_id: None,
                    session_key: None,
                    user: None,
                    address: Some(addr),
                    title: None,
                    transcode_decision: None,
                    measured_kbps_10s: Some(round(m.kbps_10s)),
                    measured_kbps_1m: Some(round(m.kbps_1m)),
                    measured_kbps_5m: Some(round(m.kbps_5m)),
                    measured_kbps_10m: Some(round(m.kbps_10m)),
                    estimated: false,
                    address_kbps_10s: None,
                    address_kbps_1m: None,
                    address_kbps_5m: None,
                    address_kbps_10m: None,
                    shared_with: Vec::new(),
                    connections: None,
                })
                .collect()
        } else {
            self.sessions
                .iter()
                .zip(&self.attributed)
                .enumerate()
                .map(|(i, (s, a))| {
                    let m = a.as_ref().map(|a| a.measured);
                    let at = self.address_total(i).map(|t| t.measured);
                    Row {
                        session_id: s.session_id.clone(),
                        session_key: s.session_key.clone(),
                        user: s.user.clone(),
                        address: s.address.clone(),
                        title: Some(s.display_title()),
                        transcode_decision: Some(s.transcode_decision.clone()),
                        measured_kbps_10s: m.map(|m| round(m.kbps_10s)),
                        measured_kbps_1m: m.map(|m| round(m.kbps_1m)),
                        measured_kbps_5m: m.map(|m| round(m.kbps_5m)),
                        measured_kbps_10m: m.map(|m| round(m.kbps_10m)),
                        estimated: m.is_some_and(|m| m.estimated),
                        address_kbps_10s: at.map(|m| round(m.kbps_10s)),
                        address_kbps_1m: at.map(|m| round(m.kbps_1m)),
                        address_kbps_5m: at.map(|m| round(m.kbps_5m)),
                        address_kbps_10m: at.map(|m| round(m.kbps_10m)),
                        shared_with: self.shared_with(i),
                        connections: Some(a.as_ref().map_or(0, |a| a.flows)),
                    }
                })
                .collect()
        };
        let decisions = self
            .made
            .iter()
            .map(|m| DecisionRow {
                ts: time_of(m.ts_micros),
                rule: &m.decision.rule,
                action: m.applied.action(),
                reason: m.applied.reason(),
                session_id: m.decision.session.session_id.as_deref(),
                user: m.decision.session.user.as_deref(),
                message: &m.decision.message,
                estimated: m.decision.estimated,
            })
            .collect();
        let s = &self.metering.stats;
        let report = Report {
            as_of: self.metering.meter.latest_micros().map(time_of),
            sessions,
            decisions,
            unevaluated: &self.unevaluated,
            packets: Packets {
                read: s.read,
                decoded: s.decoded,
                skipped: s.skipped,
            },
            flows: flows.then(|| self.flow_rows()),
        };
        serde_json::to_string(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report as text, a line each.
    pub fn text(&self, flows: bool) -> String {
        let mut out = String::new();
        let mbps = |k: f64| format!("{:.2}", k / 1000.0);
        if self.metering.meter.latest_micros().is_some() {
            let _ = writeln!(
                out,
                "as of {} (the capture's last packet)",
                time_of(self.now)
            );
        } else if self.all_tcp {
            out.push_str("no TCP packets in this capture\n");
        } else {
            let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
            let _ = writeln!(
                out,
                "no TCP packets on port {} in this capture (--all-tcp meters every TCP connection)",
                ports.join(", ")
            );
        }
        if self.sessions.is_empty() {
            for (addr, m) in self.addresses() {
                let _ = writeln!(
                    out,
                    "[{addr}] [-] [-] [{}, {}, {} Mbps] [-]",
                    mbps(m.kbps_1m),
                    mbps(m.kbps_5m),
                    mbps(m.kbps_10m)
                );
            }
        }
        for (i, (s, a)) in self.sessions.iter().zip(&self.attributed).enumerate() {
            // No traffic seen for a session: unknown, not zero. When it shares an address
            // and its share cannot be told, the address's total, said as such.
            let unknown = || match self.address_total(i) {
                Some(t) => {
                    crate::engine::row::unknown_share(t.measured.kbps_1m, &self.shared_with(i))
                }
                None => "no traffic seen".to_string(),
            };
            let rates = a.as_ref().map_or_else(unknown, |a| {
                let m = a.measured;
                let est = if m.estimated { " (estimated)" } else { "" };
                format!(
                    "{}, {}, {} Mbps{est}",
                    mbps(m.kbps_1m),
                    mbps(m.kbps_5m),
                    mbps(m.kbps_10m)
                )
            });
            let _ = writeln!(
                out,
                "[{}] [{}] [{}] [{rates}] [{}]",
                s.address.as_deref().unwrap_or("-"),
                s.transcode_decision.as_deref().unwrap_or("-"),
                s.user.as_deref().unwrap_or("-"),
                s.display_title()
            );
        }
        for m in &self.made {
            let reason = m
                .applied
                .reason()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{} {} [{}] session {} ({}): {}{reason}",
                time_of(m.ts_micros),
                m.applied.action(),
                m.decision.rule,
                m.decision.session.session_id.as_deref().unwrap_or("-"),
                m.decision.session.user.as_deref().unwrap_or("-"),
                m.decision.message
            );
        }
        for u in &self.unevaluated {
            let _ = writeln!(
                out,
                "rule {:?} could not be evaluated for session {}: unknown {} ({})",
                u.rule,
                u.session_id.as_deref().unwrap_or("-"),
                u.missing.join(", "),
                u.why
            );
        }
        if flows {
            for f in self.flow_rows() {
                let _ = writeln!(
                    out,
                    "flow {}:{} -> {}:{} packets {} bytes {}",
                    f.src, f.sport, f.dst, f.dport, f.packets, f.bytes
                );
            }
        }
        let s = &self.metering.stats;
        let _ = writeln!(
            out,
            "packets: {} read, {} decoded, {} skipped",
            s.read, s.decoded, s.skipped
        );
        out
    }
}
