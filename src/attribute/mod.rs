//! Attribution: which connections carry which Plex stream.
//!
//! A session's client address (Player `address`, `::ffff:` stripped; the
//! `remotePublicAddress` when that is what the server sees) joins the connections from
//! Plex's ports to that address. When several sessions share an address, the client's
//! plaintext requests seen on each connection (`/library/parts/PARTID/…`,
//! `/video/:/transcode/universal/session/ID/…`, `X-Plex-Session-Identifier`) tie the
//! connection to one session exactly. What cannot be told apart (TLS) is split by Plex's
//! reported bitrates, and those figures are marked `estimated`; when a sharer's bitrate is
//! not reported, the shares are unknown and no figure is given.
//!
//! Attribution is computed from the meter's flows whenever it is asked for, so traffic
//! that started before a session was listed is attributed, with its history, as soon as
//! the session appears.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::meter::{FlowKey, FlowStats, Measured, Meter, RequestHints, WINDOWS_SECS, second_of};
use crate::plex::Session;

/// How one session's figure was obtained.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attributed {
    pub measured: Measured,
    /// Connections tied to the session (exactly or by sharing its address).
    pub flows: usize,
    /// The connections (server → client) tied to this session exactly: every one to its
    /// address when it is the only session there, else those its requests name. What a
    /// throttle limits.
    pub exact: Vec<FlowKey>,
}

/// Attributes the meter's flows to `sessions` as of `now_micros`. `ports` are Plex's
/// ports: a flow from one of them to a client is the server sending to that client.
/// Returns one entry per session, in order; `None` where no traffic was seen.
pub fn attribute(
    meter: &Meter,
    sessions: &[Session],
    ports: &[u16],
    now_micros: i64,
) -> Vec<Option<Attributed>> {
    // Server → client flows, grouped by client address.
    let mut by_client: HashMap<IpAddr, Vec<(&FlowKey, &FlowStats)>> = HashMap::new();
    for (key, stats) in meter.flows() {
        if ports.contains(&key.sport) {
            by_client
                .entry(unmap(key.dst))
                .or_default()
                .push((key, stats));
        }
    }
    // Each session's effective address: the Player address if traffic goes there,
    // otherwise the remote public address if traffic goes there.
    let effective: Vec<Option<IpAddr>> = sessions
        .iter()
        .map(|s| {
            let candidates = [s.address.as_deref(), s.remote_public_address.as_deref()];
            let parsed: Vec<IpAddr> = candidates
                .into_iter()
                .flatten()
                .filter_map(|a| a.parse::<IpAddr>().ok().map(unmap))
                .collect();
            parsed
                .iter()
                .copied()
                .find(|ip| by_client.contains_key(ip))
                .or_else(|| parsed.first().copied())
        })
        .collect();

    let mut out: Vec<Option<Attributed>> = vec![None; sessions.len()];
    let mut at_address: HashMap<IpAddr, Vec<usize>> = HashMap::new();
    for (i, ip) in effective.iter().enumerate() {
        if let Some(ip) = ip {
            at_address.entry(*ip).or_default().push(i);
        }
    }
    for (ip, members) in at_address {
        let Some(flows) = by_client.get(&ip) else {
            continue;
        };
        if members.len() == 1 {
            let mut acc = Bytes::default();
            for (_, stats) in flows {
                acc.add(stats, now_micros, 1.0);
            }
            out[members[0]] = Some(Attributed {
                measured: acc.measured(now_micros),
                flows: flows.len(),
                exact: flows.iter().map(|(k, _)| **k).collect(),
            });
            continue;
        }
        // Several sessions behind one address: tie each connection by its requests.
        let mut exact: Vec<(Bytes, usize)> = vec![(Bytes::default(), 0); members.len()];
        let mut exact_keys: Vec<Vec<FlowKey>> = vec![Vec::new(); members.len()];
        let mut unknown = Bytes::default();
        let mut unknown_flows = 0;
        for (key, stats) in flows {
            let hints = meter.get(&key.reversed()).map(|r| &r.hints);
            let owner = hints.and_then(|h| members.iter().position(|&i| matches(&sessions[i], h)));
            match owner {
                Some(j) => {
                    exact[j].0.add(stats, now_micros, 1.0);
                    exact[j].1 += 1;
                    exact_keys[j].push(**key);
                }
                None => {
                    unknown.add(stats, now_micros, 1.0);
                    unknown_flows += 1;
                }
            }
        }
        // What could not be told apart goes to the sessions without a connection of their
        // own (or to all when each has one), by Plex's reported bitrates.
        let without: Vec<usize> = (0..members.len()).filter(|&j| exact[j].1 == 0).collect();
        let sharers: Vec<usize> = if without.is_empty() {
            (0..members.len()).collect()
        } else {
            without
        };
        // A sharer whose bitrate Plex does not report makes every share unknown: it could
        // be carrying almost all of it or almost none.
        let weight = |j: usize| -> Option<f64> {
            let s = &sessions[members[j]];
            s.stream_bitrate_kbps
                .or(s.bandwidth_kbps)
                .filter(|b| *b > 0)
                .map(|b| b as f64)
        };
        let weights: Option<Vec<f64>> = sharers.iter().map(|&j| weight(j)).collect();
        let total: f64 = weights.iter().flatten().sum();
        for (j, &i) in members.iter().enumerate() {
            let (mut acc, n) = exact[j];
            let shared = unknown_flows > 0 && sharers.contains(&j);
            if shared {
                match (&weights, weight(j)) {
                    (Some(_), Some(w)) if total > 0.0 => acc.merge(&unknown, w / total),
                    // Its share cannot be told: no figure rather than a wrong one.
                    _ => continue,
                }
            }
            let flows = n + if shared { unknown_flows } else { 0 };
            if flows > 0 {
                let mut measured = acc.measured(now_micros);
                measured.estimated = shared;
                out[i] = Some(Attributed {
                    measured,
                    flows,
                    exact: std::mem::take(&mut exact_keys[j]),
                });
            }
        }
    }
    out
}

/// Whether a connection's requests name this session.
fn matches(s: &Session, h: &RequestHints) -> bool {
    let eq =
        |a: &Option<String>, b: &Option<String>| matches!((a, b), (Some(a), Some(b)) if a == b);
    if let Some(part) = &h.part_id
        && s.part_ids.iter().any(|p| p == part)
    {
        return true;
    }
    eq(&h.transcode_session, &s.transcode_key)
        || eq(&h.session_identifier, &s.session_id)
        || eq(&h.session_identifier, &s.transcode_key)
}

/// Bytes of several connections in each window, and the first second any of them was seen.
///
/// A stream's rate is computed over the stream, not summed from per-connection rates:
/// players open a new connection every few segments, and each connection's own age would
/// otherwise inflate the sum.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bytes {
    window: [f64; 4],
    first_sec: Option<i64>,
}

impl Bytes {
    /// Adds `share` of a connection's bytes.
    pub fn add(&mut self, stats: &FlowStats, now_micros: i64, share: f64) {
        for (w, b) in self.window.iter_mut().zip(stats.window_bytes(now_micros)) {
            *w += b as f64 * share;
        }
        let first = second_of(stats.first_seen_micros);
        self.first_sec = Some(self.first_sec.map_or(first, |f| f.min(first)));
    }

    fn merge(&mut self, other: &Bytes, share: f64) {
        for (w, b) in self.window.iter_mut().zip(other.window) {
            *w += b * share;
        }
        if let Some(first) = other.first_sec {
            self.first_sec = Some(self.first_sec.map_or(first, |f| f.min(first)));
        }
    }

    /// kbps over each window: bytes × 8 / min(window, seconds since first seen) / 1000,
    /// counting complete seconds only (the meter's definition).
    pub fn measured(&self, now_micros: i64) -> Measured {
        let age = self.first_sec.map_or(0, |f| second_of(now_micros) - f);
        let k = |i: usize| {
            let secs = WINDOWS_SECS[i].min(age);
            if secs <= 0 {
                0.0
            } else {
                self.window[i] * 8.0 / secs as f64 / 1000.0
            }
        };
        Measured {
            kbps_10s: k(0),
            kbps_1m: k(1),
            kbps_5m: k(2),
            kbps_10m: k(3),
            estimated: false,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
