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
use crate::plex::bandwidth::{Counters, Series};

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
    attribute_with(meter, sessions, ports, now_micros, None, None)
}

/// Which session each connection was tied to exactly, kept from one round to the next by
/// whoever attributes repeatedly (the daemon): a connection stays its session's, so when
/// that session ends, the viewer left at the same address does not inherit its bytes (a
/// killed viewer's last seconds would otherwise count as the other's, exactly, and could
/// get it killed too).
#[derive(Debug, Default, Clone)]
pub struct Owners {
    by: HashMap<FlowKey, String>,
}

impl Owners {
    /// Notes the connections each session was tied to exactly this round; forgets the
    /// connections the meter no longer keeps.
    pub fn note(&mut self, meter: &Meter, sessions: &[Session], attributed: &[Option<Attributed>]) {
        for (s, a) in sessions.iter().zip(attributed) {
            if let Some(a) = a {
                let id = s.identity();
                for key in &a.exact {
                    self.by.entry(*key).or_insert_with(|| id.clone());
                }
            }
        }
        self.by.retain(|k, _| meter.get(k).is_some());
    }

    /// The session a connection was tied to.
    pub fn of(&self, key: &FlowKey) -> Option<&str> {
        self.by.get(key).map(String::as_str)
    }
}

/// [`attribute`], with Plex's per-device counters to split what several sessions behind
/// one address send when their requests cannot be read (see [`split_by_series`]).
///
/// With `owners`, a connection already tied to a session stays that session's: the one of a
/// session no longer listed counts for nobody.
pub fn attribute_with(
    meter: &Meter,
    sessions: &[Session],
    ports: &[u16],
    now_micros: i64,
    counters: Option<&Counters>,
    owners: Option<&Owners>,
) -> Vec<Option<Attributed>> {
    let identities: Vec<String> = sessions.iter().map(Session::identity).collect();
    let owner_of = |key: &FlowKey| owners.and_then(|o| o.of(key));
    // Server → client flows, grouped by client address; a connection of a session that has
    // ended is left out.
    let mut by_client: HashMap<IpAddr, Vec<(&FlowKey, &FlowStats)>> = HashMap::new();
    for (key, stats) in meter.flows() {
        if owner_of(key).is_some_and(|o| !identities.iter().any(|i| i == o)) {
            continue;
        }
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
        .map(|s| effective_address(s, |ip| by_client.contains_key(ip)))
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
        let mut tied: Vec<Vec<&FlowStats>> = vec![Vec::new(); members.len()];
        let mut untied: Vec<&FlowStats> = Vec::new();
        // The keys beside the stats, in the same order: what a throttle limits.
        let mut tied_keys: Vec<Vec<FlowKey>> = vec![Vec::new(); members.len()];
        let mut untied_keys: Vec<FlowKey> = Vec::new();
        for (key, stats) in flows {
            let hints = meter.get(&key.reversed()).map(|r| &r.hints);
            let known =
                owner_of(key).and_then(|o| members.iter().position(|&i| identities[i] == o));
            let owner = known.or_else(|| {
                hints.and_then(|h| members.iter().position(|&i| matches(&sessions[i], h)))
            });
            match owner {
                Some(j) => {
                    tied[j].push(stats);
                    tied_keys[j].push(**key);
                }
                None => {
                    untied.push(stats);
                    untied_keys.push(**key);
                }
            }
        }
        // Then by their byte series against Plex's per-device counters, when that is
        // unambiguous.
        if !untied.is_empty()
            && let Some(series) = counters.and_then(|c| {
                members
                    .iter()
                    .map(|&i| c.series(sessions, i, second_of(now_micros)))
                    .collect::<Option<Vec<Series>>>()
            })
            && let Some(Split { owners, left }) =
                split_by_series(&series, &tied, &untied, now_micros)
        {
            for (f, j) in owners {
                tied[j].push(untied[f]);
                tied_keys[j].push(untied_keys[f]);
            }
            untied_keys = left.iter().map(|&f| untied_keys[f]).collect();
            untied = left.into_iter().map(|f| untied[f]).collect();
        }
        let mut exact: Vec<(Bytes, usize)> = vec![(Bytes::default(), 0); members.len()];
        for (j, list) in tied.iter().enumerate() {
            for stats in list {
                exact[j].0.add(stats, now_micros, 1.0);
                exact[j].1 += 1;
            }
        }
        let mut unknown = Bytes::default();
        let unknown_flows = untied.len();
        for stats in &untied {
            unknown.add(stats, now_micros, 1.0);
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
                    exact: std::mem::take(&mut tied_keys[j]),
                });
            }
        }
    }
    out
}

/// A session's effective address: its Player address if traffic goes there (`seen`),
/// otherwise its remote public address if traffic goes there, otherwise the first known.
fn effective_address(s: &Session, seen: impl Fn(&IpAddr) -> bool) -> Option<IpAddr> {
    let candidates = [s.address.as_deref(), s.remote_public_address.as_deref()];
    let parsed: Vec<IpAddr> = candidates
        .into_iter()
        .flatten()
        .filter_map(|a| a.parse::<IpAddr>().ok().map(unmap))
        .collect();
    parsed
        .iter()
        .copied()
        .find(|ip| seen(ip))
        .or_else(|| parsed.first().copied())
}

/// All the traffic to the address of a session whose share of it cannot be told (it shares
/// the address, and a sharer's bitrate is not reported): not this session's figure, but what
/// an owner needs to see that traffic flows.
#[derive(Debug, Clone, PartialEq)]
pub struct AddressTotal {
    /// Everything Plex's ports sent to the address.
    pub measured: Measured,
    /// The other sessions at the address (indices into the sessions).
    pub with: Vec<usize>,
}

/// For each session left without a figure (`attributed[i]` is `None`) that shares an
/// address with traffic: that address's total. `None` elsewhere.
pub fn address_totals(
    meter: &Meter,
    sessions: &[Session],
    ports: &[u16],
    now_micros: i64,
    attributed: &[Option<Attributed>],
) -> Vec<Option<AddressTotal>> {
    let mut out = vec![None; sessions.len()];
    if attributed.iter().all(Option::is_some) {
        return out;
    }
    let mut by_client: HashMap<IpAddr, Bytes> = HashMap::new();
    for (key, stats) in meter.flows() {
        if ports.contains(&key.sport) {
            by_client
                .entry(unmap(key.dst))
                .or_default()
                .add(stats, now_micros, 1.0);
        }
    }
    let effective: Vec<Option<IpAddr>> = sessions
        .iter()
        .map(|s| effective_address(s, |ip| by_client.contains_key(ip)))
        .collect();
    for (i, slot) in out.iter_mut().enumerate() {
        if attributed.get(i).is_some_and(Option::is_some) {
            continue;
        }
        let Some(ip) = effective[i] else { continue };
        let Some(bytes) = by_client.get(&ip) else {
            continue;
        };
        let with: Vec<usize> = (0..sessions.len())
            .filter(|&j| j != i && effective[j] == Some(ip))
            .collect();
        if !with.is_empty() {
            *slot = Some(AddressTotal {
                measured: bytes.measured(now_micros),
                with,
            });
        }
    }
    out
}

/// The fewest complete seconds a series match needs.
pub const MATCH_MIN_SECS: i64 = 10;
/// The most recent complete seconds a series match looks at.
pub const MATCH_SECS: i64 = 120;
/// The largest relative squared error of an accepted match (about 22 % RMS).
pub const MATCH_MAX_ERROR: f64 = 0.05;
/// How much worse (relative squared error) the second-best assignment must be.
pub const MATCH_MARGIN: f64 = 0.05;
/// The most assignments tried (sessions ^ connections); past it the estimate stays.
const MATCH_MAX_TRIES: usize = 4096;

/// Connections assigned to sessions by their byte series: `(connection, member)` pairs,
/// and the connections left out (idle in the compared seconds).
#[derive(Debug, PartialEq)]
pub struct Split {
    pub owners: Vec<(usize, usize)>,
    pub left: Vec<usize>,
}

/// Assigns each connection of `untied` to one of the sessions whose Plex series are
/// `plex` (one per session, as `tied`: the connections already tied to each by their
/// requests), by least squared error over the complete seconds both sides cover: each
/// session's Plex bytes against the bytes of its tied connections plus those assigned to
/// it, second by second. The best assignment is taken only when there are at least
/// [`MATCH_MIN_SECS`] common seconds, its relative error is at most [`MATCH_MAX_ERROR`],
/// and every other assignment is worse by [`MATCH_MARGIN`] and at least twice as bad;
/// otherwise `None` (the caller keeps its estimate). Connections with no bytes in the
/// compared seconds are left out rather than guessed.
///
/// The seconds compared are the last [`MATCH_SECS`] that every series covers and that are
/// complete on the packet side; packet and Plex seconds are taken to be the same clock's
/// (the capture runs on Plex's host, or one synchronised to it).
pub fn split_by_series(
    plex: &[Series],
    tied: &[Vec<&FlowStats>],
    untied: &[&FlowStats],
    now_micros: i64,
) -> Option<Split> {
    let k = plex.len();
    if k < 2 || tied.len() != k || untied.is_empty() {
        return None;
    }
    let hi = plex
        .iter()
        .map(Series::last)
        .min()?
        .min(second_of(now_micros) - 1);
    let lo = plex.iter().map(|p| p.first).max()?.max(hi - MATCH_SECS + 1);
    if hi - lo + 1 < MATCH_MIN_SECS {
        return None;
    }
    let per_second =
        |f: &FlowStats| -> Vec<f64> { (lo..=hi).map(|s| f.windows().second(s) as f64).collect() };
    // What each session still has to explain once its tied connections are taken off.
    let residual: Vec<Vec<f64>> = plex
        .iter()
        .zip(tied)
        .map(|(p, t)| {
            let mut r: Vec<f64> = (lo..=hi).map(|s| p.at(s) as f64).collect();
            for f in t {
                for (x, b) in r.iter_mut().zip(per_second(f)) {
                    *x -= b;
                }
            }
            r
        })
        .collect();
    let energy: f64 = plex
        .iter()
        .map(|p| (lo..=hi).map(|s| (p.at(s) as f64).powi(2)).sum::<f64>())
        .sum();
    if energy <= 0.0 {
        return None;
    }
    let mut active = Vec::new();
    let mut left = Vec::new();
    let mut series = Vec::new();
    for (i, f) in untied.iter().enumerate() {
        let v = per_second(f);
        if v.iter().any(|b| *b > 0.0) {
            active.push(i);
            series.push(v);
        } else {
            left.push(i);
        }
    }
    let m = active.len();
    if m == 0 {
        return None;
    }
    let tries = u32::try_from(m)
        .ok()
        .and_then(|m| k.checked_pow(m))
        .filter(|t| *t <= MATCH_MAX_TRIES)?;
    let n = residual[0].len();
    let mut best: Option<(f64, usize)> = None;
    let mut second = f64::INFINITY;
    let mut sums = vec![vec![0.0f64; n]; k];
    for code in 0..tries {
        for s in &mut sums {
            s.fill(0.0);
        }
        let mut c = code;
        for v in &series {
            let j = c % k;
            c /= k;
            for (x, b) in sums[j].iter_mut().zip(v) {
                *x += b;
            }
        }
        let err: f64 = residual
            .iter()
            .zip(&sums)
            .map(|(r, s)| r.iter().zip(s).map(|(a, b)| (a - b).powi(2)).sum::<f64>())
            .sum::<f64>()
            / energy;
        match best {
            Some((b, _)) if err >= b => second = second.min(err),
            _ => {
                if let Some((b, _)) = best {
                    second = second.min(b);
                }
                best = Some((err, code));
            }
        }
    }
    let (err, code) = best?;
    if err > MATCH_MAX_ERROR || second - err < MATCH_MARGIN || second < 2.0 * err {
        return None;
    }
    let mut c = code;
    let owners = active
        .iter()
        .map(|&f| {
            let j = c % k;
            c /= k;
            (f, j)
        })
        .collect();
    // An idle connection's bytes lie outside the compared seconds: it stays with the
    // estimate only when it still counts in a window.
    let left = left
        .into_iter()
        .filter(|&f| untied[f].window_bytes(now_micros).iter().any(|b| *b > 0))
        .collect();
    Some(Split { owners, left })
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
            source: crate::meter::RateSource::Packets,
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
