//! Counting what each stream sends and plays, minute by minute, for the state database.
//!
//! Bytes are the meter's: each round, every connection from Plex's ports is asked how many
//! IP bytes it carried since the last round, and they go to the stream the connection is
//! tied to exactly; what several streams at one address share, untied, is split by their
//! measured rates (and the minute is marked estimated); what no session accounts for goes
//! to [`UNATTRIBUTED`]. A stream measured by Plex's counters instead counts its rate over
//! the round. Seconds count while the stream plays. A minute's rows are handed out once the
//! clock is past it: a crash loses at most the current minute.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::attribute::{Attributed, unmap};
use crate::meter::{FlowKey, Meter, RateSource};
use crate::micros::Micros;
use crate::plex::Session;
use crate::rules::UserUsage;
pub use crate::state::usage::UNATTRIBUTED;
use crate::state::usage::UsageRow;

/// The longest gap between two rounds counted as play time (a stalled loop is not play).
const MAX_ROUND_MICROS: i64 = 5_000_000;

/// Counts usage between rounds; see the module's text.
#[derive(Debug, Default)]
pub struct Recorder {
    /// IP bytes of each connection already counted.
    counted: HashMap<FlowKey, u64>,
    /// The minute being counted (unix seconds at its start).
    minute: Option<i64>,
    /// Its rows, by stream.
    rows: BTreeMap<String, Row>,
    last_round: Option<i64>,
}

#[derive(Debug, Default)]
struct Row {
    row: UsageRow,
    /// Play time in microseconds (rounded to seconds when handed out).
    micros: i64,
    /// Bytes estimated from a rate (fractions kept until handed out).
    rated: f64,
}

/// What one round counted: bytes by user (for `/metrics`).
pub type Counted = Vec<(String, u64)>;

impl Recorder {
    /// Counts one round as of `now_micros`; returns the rows of the minutes that ended,
    /// and the bytes counted this round by user.
    pub fn round(
        &mut self,
        meter: &Meter,
        sessions: &[Session],
        attributed: &[Option<Attributed>],
        ports: &[u16],
        now_micros: i64,
    ) -> (Vec<UsageRow>, Counted) {
        let minute = Micros(now_micros).minute() * 60;
        let mut done = Vec::new();
        if self.minute.is_some_and(|m| m != minute) {
            done = self.flush();
        }
        self.minute = Some(minute);
        let dt = self.last_round.map_or(0, |l| {
            now_micros.saturating_sub(l).clamp(0, MAX_ROUND_MICROS)
        });
        self.last_round = Some(now_micros);
        let mut counted: HashMap<String, u64> = HashMap::new();
        // Who owns each connection exactly.
        let mut owner: HashMap<FlowKey, usize> = HashMap::new();
        for (i, a) in attributed.iter().enumerate() {
            for k in a.iter().flat_map(|a| &a.exact) {
                owner.insert(*k, i);
            }
        }
        // The estimated sharers of each address, by their measured rate.
        let mut sharers: HashMap<IpAddr, Vec<(usize, f64)>> = HashMap::new();
        for (i, (s, a)) in sessions.iter().zip(attributed).enumerate() {
            if let Some(a) = a.as_ref().filter(|a| a.measured.estimated)
                && let Some(ip) = address(s)
            {
                sharers
                    .entry(ip)
                    .or_default()
                    .push((i, a.measured.kbps_10s.max(0.0)));
            }
        }
        let mut live = std::collections::HashSet::new();
        for (key, stats) in meter.flows() {
            if !ports.contains(&key.sport) {
                continue;
            }
            live.insert(*key);
            let before = self.counted.insert(*key, stats.bytes).unwrap_or(0);
            let delta = stats.bytes.saturating_sub(before);
            if delta == 0 {
                continue;
            }
            if let Some(&i) = owner.get(key) {
                self.add(
                    &sessions[i],
                    attributed[i].as_ref(),
                    delta as f64,
                    0,
                    minute,
                );
                *counted.entry(user_of(&sessions[i])).or_default() += delta;
                continue;
            }
            let shares = sharers.get(&unmap(key.dst)).filter(|s| !s.is_empty());
            let total: f64 = shares.map_or(0.0, |s| s.iter().map(|(_, r)| r).sum());
            match shares {
                Some(list) if total > 0.0 => {
                    for &(i, rate) in list {
                        let part = delta as f64 * rate / total;
                        self.add(&sessions[i], attributed[i].as_ref(), part, 0, minute);
                        *counted.entry(user_of(&sessions[i])).or_default() += part as u64;
                    }
                }
                _ => {
                    self.unattributed(delta, minute);
                    *counted.entry(UNATTRIBUTED.to_string()).or_default() += delta;
                }
            }
        }
        self.counted.retain(|k, _| live.contains(k));
        // Rates from Plex's counters, and play time.
        for (s, a) in sessions.iter().zip(attributed) {
            let rated = a
                .as_ref()
                .filter(|a| a.measured.source == RateSource::Plex)
                .map_or(0.0, |a| {
                    a.measured.kbps_10s.max(0.0) * 125.0 * dt as f64 / 1e6
                });
            let playing = matches!(s.state, Some(crate::plex::PlayState::Playing));
            if rated > 0.0 || playing {
                self.add(s, a.as_ref(), rated, if playing { dt } else { 0 }, minute);
                if rated > 0.0 {
                    *counted.entry(user_of(s)).or_default() += rated as u64;
                }
            }
        }
        (done, counted.into_iter().collect())
    }

    /// The rows of the minute being counted (at a stop: the state keeps them).
    pub fn flush(&mut self) -> Vec<UsageRow> {
        std::mem::take(&mut self.rows)
            .into_values()
            .map(|r| {
                let mut row = r.row;
                row.bytes += r.rated.round() as i64;
                row.seconds = Micros(r.micros).round_secs();
                row
            })
            .filter(|r| r.bytes > 0 || r.seconds > 0)
            .collect()
    }

    /// What this minute counted so far, by user in lower case (bytes, seconds): rules add it
    /// to what the state holds.
    pub fn pending(&self) -> HashMap<String, (i64, i64)> {
        let mut out: HashMap<String, (i64, i64)> = HashMap::new();
        for r in self.rows.values() {
            let e = out.entry(r.row.user.to_lowercase()).or_default();
            e.0 += r.row.bytes + r.rated as i64;
            e.1 += Micros(r.micros).secs();
        }
        out
    }

    /// Each user's usage as rules read it (by user in lower case): `base`, what the state
    /// holds since each of today, this week, this month, 7 and 30 days ago (see
    /// `UsageConfig::period_starts`), plus this minute so far.
    pub fn by_user(
        &self,
        base: &[(String, Vec<crate::state::usage::Since>)],
    ) -> HashMap<String, crate::rules::UserUsage> {
        let mut totals: HashMap<String, [crate::state::usage::Since; 5]> = HashMap::new();
        for (user, since) in base {
            let slot = totals.entry(user.to_lowercase()).or_default();
            for (t, s) in slot.iter_mut().zip(since) {
                t.bytes += s.bytes;
                t.seconds += s.seconds;
                t.transcodes += s.transcodes;
            }
        }
        for (user, (bytes, seconds)) in self.pending() {
            for t in totals.entry(user).or_default().iter_mut() {
                t.bytes += bytes;
                t.seconds += seconds;
            }
        }
        totals
            .into_iter()
            .map(|(user, periods)| (user, usage_of(&periods)))
            .collect()
    }

    fn add(&mut self, s: &Session, a: Option<&Attributed>, bytes: f64, micros: i64, minute: i64) {
        let r = self.rows.entry(s.identity()).or_insert_with(|| Row {
            row: UsageRow {
                start: minute,
                span: 60,
                user: user_of(s),
                stream: s.identity(),
                title: Some(s.display_title()),
                player: s.player.clone(),
                location: s.location.clone(),
                decision: s.transcode_decision.clone(),
                video_resolution: s.video_resolution.clone(),
                source_resolution: s.source_resolution.clone(),
                ..UsageRow::default()
            },
            ..Row::default()
        });
        if let Some(a) = a {
            r.row.rate_source = Some(a.measured.source.as_str().to_string());
            r.row.estimated |= a.measured.estimated;
        }
        if bytes.fract() == 0.0 && a.is_none_or(|a| a.measured.source == RateSource::Packets) {
            r.row.bytes += bytes as i64;
        } else {
            r.rated += bytes;
        }
        r.micros += micros;
    }

    fn unattributed(&mut self, bytes: u64, minute: i64) {
        let r = self
            .rows
            .entry(UNATTRIBUTED.to_string())
            .or_insert_with(|| Row {
                row: UsageRow {
                    start: minute,
                    span: 60,
                    user: UNATTRIBUTED.to_string(),
                    stream: UNATTRIBUTED.to_string(),
                    rate_source: Some("packets".into()),
                    ..UsageRow::default()
                },
                ..Row::default()
            });
        r.row.bytes += bytes as i64;
    }
}

/// A user's usage as rules read it from their totals since today, this week, this month,
/// 7 and 30 days ago (GB are 10^9 bytes).
pub fn usage_of(periods: &[crate::state::usage::Since; 5]) -> UserUsage {
    let [today, week, month, d7, d30] = periods;
    let gb = |b: i64| b as f64 / 1e9;
    let hours = |s: i64| s as f64 / 3600.0;
    UserUsage {
        gb_today: gb(today.bytes),
        gb_week: gb(week.bytes),
        gb_month: gb(month.bytes),
        gb_7d: gb(d7.bytes),
        gb_30d: gb(d30.bytes),
        hours_today: hours(today.seconds),
        hours_week: hours(week.seconds),
        hours_month: hours(month.seconds),
        transcodes_today: today.transcodes as f64,
    }
}

/// The name usage is kept under: the user's name, else their id, else "?".
pub fn user_of(s: &Session) -> String {
    s.user
        .clone()
        .or_else(|| s.user_id.map(|id| format!("user {id}")))
        .unwrap_or_else(|| "?".to_string())
}

fn address(s: &Session) -> Option<IpAddr> {
    s.address
        .as_deref()
        .and_then(|a| a.parse::<IpAddr>().ok())
        .map(unmap)
}

/// What the page's Usage view shows: each user's today, this week and this month, their
/// last 30 days by day, and the quota rule they are closest to.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UsageReport {
    /// The 30 UTC days the charts cover, oldest first (YYYY-MM-DD).
    pub days: Vec<String>,
    pub users: Vec<UserReport>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UserReport {
    pub user: String,
    pub today_bytes: i64,
    pub today_seconds: i64,
    pub week_bytes: i64,
    pub week_seconds: i64,
    pub month_bytes: i64,
    pub month_seconds: i64,
    /// Bytes on each of `days`.
    pub daily_bytes: Vec<i64>,
    /// The quota rule the user is closest to, when a rule compares a usage variable.
    pub closest: Option<Closest>,
}

/// How near a user is to one quota rule's limit.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Closest {
    pub rule: String,
    pub variable: String,
    pub limit: f64,
    pub value: f64,
    pub percent: f64,
}

/// The quota limits a condition sets: each `user_gb_*`/`user_hours_*`/`user_transcodes_*`
/// variable compared with `>` or `>=` to a number.
pub fn quota_limits(when: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let b = when.as_bytes();
    let mut i = 0;
    while let Some(at) = when[i..].find("user_") {
        let start = i + at;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        i = end.max(start + 1);
        let name = &when[start..end];
        let is_usage = ["user_gb_", "user_hours_", "user_transcodes_"]
            .iter()
            .any(|p| name.starts_with(p));
        let boundary =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        if !is_usage || !boundary {
            continue;
        }
        let rest = when[end..].trim_start();
        let Some(rest) = rest.strip_prefix(">=").or_else(|| rest.strip_prefix('>')) else {
            continue;
        };
        let rest = rest.trim_start();
        let num: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        if let Ok(limit) = num.parse::<f64>()
            && limit > 0.0
        {
            out.push((name.to_string(), limit));
        }
    }
    out
}

impl UserUsage {
    /// The value of a usage variable by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        Some(match name {
            "user_gb_today" => self.gb_today,
            "user_gb_week" => self.gb_week,
            "user_gb_month" => self.gb_month,
            "user_gb_7d" => self.gb_7d,
            "user_gb_30d" => self.gb_30d,
            "user_hours_today" => self.hours_today,
            "user_hours_week" => self.hours_week,
            "user_hours_month" => self.hours_month,
            "user_transcodes_today" => self.transcodes_today,
            _ => return None,
        })
    }
}

/// The Usage view from the state, as of `now` (unix seconds), with the quota rules among
/// `rules` (name, condition).
pub fn report(
    state: &crate::state::State,
    cfg: &crate::config::UsageConfig,
    rules: &[(String, String)],
    now: i64,
) -> Result<UsageReport, crate::state::StateError> {
    let starts = cfg.period_starts(now);
    let first_day = (now.div_euclid(86_400) - 29) * 86_400;
    let days: Vec<String> = (0..30)
        .map(|d| {
            time::OffsetDateTime::from_unix_timestamp(first_day + d * 86_400)
                .map(|t| t.date().to_string())
                .unwrap_or_default()
        })
        .collect();
    let since = state.usage_since(&starts)?;
    let daily = state.usage_daily(first_day)?;
    let recorder = Recorder::default();
    let usage = recorder.by_user(&since);
    let quotas: Vec<(String, String, f64)> = rules
        .iter()
        .flat_map(|(name, when)| {
            quota_limits(when)
                .into_iter()
                .map(move |(var, limit)| (name.clone(), var, limit))
        })
        .collect();
    let mut users: Vec<UserReport> = since
        .iter()
        .filter(|(u, _)| u != UNATTRIBUTED)
        .map(|(user, s)| {
            let u = usage.get(&user.to_lowercase()).copied().unwrap_or_default();
            let closest = quotas
                .iter()
                .filter_map(|(rule, var, limit)| {
                    let value = u.get(var)?;
                    Some(Closest {
                        rule: rule.clone(),
                        variable: var.clone(),
                        limit: *limit,
                        value,
                        percent: (value / limit * 100.0).min(999.0),
                    })
                })
                .max_by(|a, b| a.percent.total_cmp(&b.percent));
            UserReport {
                user: user.clone(),
                today_bytes: s[0].bytes,
                today_seconds: s[0].seconds,
                week_bytes: s[1].bytes,
                week_seconds: s[1].seconds,
                month_bytes: s[2].bytes,
                month_seconds: s[2].seconds,
                daily_bytes: days
                    .iter()
                    .map(|d| {
                        daily
                            .iter()
                            .filter(|(du, dd, _)| du == user && dd == d)
                            .map(|(_, _, b)| *b)
                            .sum()
                    })
                    .collect(),
                closest,
            }
        })
        .collect();
    users.sort_by(|a, b| b.month_bytes.cmp(&a.month_bytes).then(a.user.cmp(&b.user)));
    Ok(UsageReport { days, users })
}

#[cfg(test)]
mod tests {
    use super::quota_limits;

    #[test]
    fn quota_limits_are_read_from_comparisons_of_usage_variables() {
        assert_eq!(
            quota_limits(r#"user_gb_month > 200 && location == "wan""#),
            [("user_gb_month".to_string(), 200.0)]
        );
        assert_eq!(
            quota_limits("user_hours_week >= 12.5 || user_gb_today>3"),
            [
                ("user_hours_week".to_string(), 12.5),
                ("user_gb_today".to_string(), 3.0)
            ]
        );
        // Not a limit: another variable, a comparison the other way, or inside a name.
        assert!(quota_limits("user_streams > 2 && user_gb_month < 5").is_empty());
        assert!(quota_limits("xuser_gb_month > 5").is_empty());
    }
}
