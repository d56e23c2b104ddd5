//! Backtests: the configured rules replayed over the usage the state recorded, minute by
//! minute (hour by hour where minutes were rolled up), to see what each rule would have
//! done, to whom and when, before arming it.
//!
//! Each recorded period of a stream becomes one round: the stream's facts (user, title,
//! player, location, transcode decision, resolutions), its measured rate over the period
//! while it played (every window gets that average), playing when it played, and its user's
//! usage so far in the day, week, month, 7 and 30 days. Sustain and acting once per hold
//! are the daemon's, at that resolution. What the rows do not keep (Plex's bitrates,
//! video and audio decisions, pauses) is unknown: rules that need it do not match and are
//! counted as unknown.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::attribute::Attributed;
use crate::config::UsageConfig;
use crate::meter::{Measured, RateSource};
use crate::micros::Micros;
use crate::plex::{PlayState, Session};
use crate::rules::{Outcome, RuleSet, UserUsage};
use crate::state::usage::{UNATTRIBUTED, UsageRow};

use super::{Tracker, tick_measured};

/// What one rule would have done.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleResult {
    pub rule: String,
    /// "kill", "throttle" or "log".
    pub action: String,
    /// Each time it would have acted, oldest first.
    pub would: Vec<Would>,
    /// Distinct streams and users it would have acted on.
    pub streams: usize,
    pub users: usize,
    /// Rounds in which it could not be judged (a value it reads is not recorded).
    pub unknown_rounds: usize,
    /// What it needed and the record does not keep.
    pub unknown: Vec<String>,
}

/// One time a rule would have acted.
#[derive(Debug, Clone, Serialize)]
pub struct Would {
    /// Unix seconds.
    pub at: i64,
    pub user: String,
    pub stream: String,
    pub title: Option<String>,
    pub message: String,
}

/// The whole backtest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Backtest {
    /// The first and last period replayed (unix seconds), when any.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Rounds replayed.
    pub rounds: usize,
    pub rules: Vec<RuleResult>,
}

/// Replays `rows` (oldest first) through `rules`; only the rules named in `only` when any.
pub fn run(rules: &RuleSet, rows: &[UsageRow], usage: &UsageConfig, only: &[String]) -> Backtest {
    let mut results: Vec<RuleResult> = rules
        .rules
        .iter()
        .filter(|r| only.is_empty() || only.contains(&r.name))
        .map(|r| RuleResult {
            rule: r.name.clone(),
            action: r.action.as_str().to_string(),
            ..RuleResult::default()
        })
        .collect();
    let mut acted_on: HashMap<String, (HashSet<String>, HashSet<String>)> = HashMap::new();
    let mut unknown: HashMap<String, HashSet<String>> = HashMap::new();
    let history = History::of(rows);
    let mut tracker = Tracker::default();
    let mut out = Backtest::default();
    let mut by_start: BTreeMap<i64, Vec<&UsageRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.user != UNATTRIBUTED) {
        by_start.entry(r.start).or_default().push(r);
    }
    for (&start, list) in &by_start {
        let end = start + list.iter().map(|r| r.span).max().unwrap_or(60);
        let sessions: Vec<Session> = list.iter().map(|r| session(r)).collect();
        let attributed: Vec<Option<Attributed>> = list.iter().map(|r| Some(measured(r))).collect();
        let starts = usage.period_starts(end);
        tracker.usage = Some(
            sessions
                .iter()
                .map(|s| {
                    let user = super::usage::user_of(s).to_lowercase();
                    let u = history.until(&user, end, &starts);
                    (user, u)
                })
                .collect(),
        );
        let tick = tick_measured(
            rules,
            &sessions,
            attributed,
            Micros::from_secs(end),
            true,
            &mut tracker,
        );
        out.rounds += 1;
        out.from.get_or_insert(start);
        out.to = Some(start);
        for e in &tick.streams {
            for ev in &e.evaluations {
                if let Outcome::Unknown { missing } = &ev.outcome
                    && let Some(r) = results.iter_mut().find(|r| r.rule == ev.rule.name)
                {
                    r.unknown_rounds += 1;
                    let set = unknown.entry(r.rule.clone()).or_default();
                    set.extend(missing.iter().map(|m| m.to_string()));
                }
            }
        }
        for d in &tick.due {
            tracker.sustain.acted(d);
            let Some(r) = results.iter_mut().find(|r| r.rule == d.rule) else {
                continue;
            };
            let user = super::usage::user_of(&d.session);
            let stream = d.session.identity();
            let seen = acted_on.entry(r.rule.clone()).or_default();
            seen.0.insert(stream.clone());
            seen.1.insert(user.to_lowercase());
            r.would.push(Would {
                at: start,
                user,
                stream,
                title: d.session.title.clone(),
                message: d.message.clone(),
            });
        }
    }
    for r in &mut results {
        if let Some((streams, users)) = acted_on.get(&r.rule) {
            r.streams = streams.len();
            r.users = users.len();
        }
        if let Some(u) = unknown.remove(&r.rule) {
            r.unknown = u.into_iter().collect();
            r.unknown.sort();
        }
    }
    out.rules = results;
    out
}

/// A recorded period as the session rules see.
fn session(r: &UsageRow) -> Session {
    let user_id = r
        .user
        .strip_prefix("user ")
        .and_then(|id| id.parse::<i64>().ok());
    Session {
        session_id: r.stream.strip_prefix("id:").map(str::to_string),
        session_key: r.stream.strip_prefix("key:").map(str::to_string),
        user: (user_id.is_none() && r.user != "?").then(|| r.user.clone()),
        user_id,
        title: r.title.clone(),
        player: r.player.clone(),
        location: r.location.clone(),
        local: r.location.as_deref().map(|l| l == "lan"),
        transcode_decision: r.decision.clone(),
        video_resolution: r.video_resolution.clone(),
        source_resolution: r.source_resolution.clone(),
        state: Some(if r.seconds > 0 {
            PlayState::Playing
        } else {
            PlayState::Paused
        }),
        ..Session::default()
    }
}

/// The period's average rate while the stream played (over the whole period when it did
/// not play), in every window: a stream that started half a minute in is judged on its
/// rate, not on half of it.
fn measured(r: &UsageRow) -> Attributed {
    let secs = if r.seconds > 0 {
        r.seconds.min(r.span)
    } else {
        r.span
    };
    let kbps = r.bytes as f64 * 8.0 / secs.max(1) as f64 / 1000.0;
    Attributed {
        measured: Measured {
            kbps_10s: kbps,
            kbps_1m: kbps,
            kbps_5m: kbps,
            kbps_10m: kbps,
            estimated: r.estimated,
            source: if r.rate_source.as_deref() == Some("plex") {
                RateSource::Plex
            } else {
                RateSource::Packets
            },
        },
        flows: 1,
        exact: Vec::new(),
    }
}

/// Each user's periods in time order, with running totals, to answer "how much since T,
/// up to now" in logarithmic time.
struct History {
    /// By user in lower case: (end of period, bytes so far, seconds so far, transcodes so far).
    by_user: HashMap<String, Vec<(i64, i64, i64, i64)>>,
}

impl History {
    fn of(rows: &[UsageRow]) -> Self {
        let mut by_user: HashMap<String, Vec<(i64, i64, i64, i64)>> = HashMap::new();
        let mut seen: HashSet<(String, String)> = HashSet::new();
        for r in rows {
            let user = r.user.to_lowercase();
            let list = by_user.entry(user.clone()).or_default();
            let (b, s, t) = list.last().map_or((0, 0, 0), |l| (l.1, l.2, l.3));
            // A transcoding stream counts once a day at most (as the daemon counts it).
            let day = r.start.div_euclid(86_400).to_string();
            let new_tc = r.decision.as_deref() == Some("transcode")
                && seen.insert((format!("{user}/{day}"), r.stream.clone()));
            list.push((
                r.start + r.span,
                b + r.bytes,
                s + r.seconds,
                t + i64::from(new_tc),
            ));
        }
        Self { by_user }
    }

    /// The user's totals over (since, until] for each of `starts` (today, week, month,
    /// 7 days, 30 days).
    fn until(&self, user: &str, until: i64, starts: &[i64; 5]) -> UserUsage {
        let Some(list) = self.by_user.get(user) else {
            return UserUsage::default();
        };
        let at = |t: i64| -> (i64, i64, i64) {
            let i = list.partition_point(|e| e.0 <= t);
            if i == 0 {
                (0, 0, 0)
            } else {
                (list[i - 1].1, list[i - 1].2, list[i - 1].3)
            }
        };
        let end = at(until);
        let between = |from: i64| {
            let f = at(from);
            crate::state::usage::Since {
                bytes: end.0 - f.0,
                seconds: end.1 - f.1,
                transcodes: end.2 - f.2,
            }
        };
        super::usage::usage_of(&starts.map(between))
    }
}
