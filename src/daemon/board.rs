//! What the owner's page reads: once a round the loop publishes its rows (with what the page
//! adds: exemptions, what was done, a short history of each measured rate), every stream's
//! rule values (for the rule lab) and the daemon's status; the HTTP handlers read them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::enforce::audit::Recent;
use crate::engine::Tick;
use crate::engine::row::StreamRow;
use crate::lock;
use crate::micros::Micros;
use crate::plex::Session;
use crate::rules::{Action, RuleSet, Vars};

use super::FeedStats;
use super::manual::Requests;
use super::view::{Acted, LastReload};

/// Samples of a measured rate kept for a sparkline: one a round, two minutes' worth.
pub const HISTORY: usize = 120;

/// A stream as the page shows it: the daemon's row and what the page adds.
#[derive(Debug, Clone, Serialize)]
pub struct LiveRow {
    #[serde(flatten)]
    pub row: StreamRow,
    /// The user is exempt: kill rules that match do not kill.
    pub exempt: bool,
    /// By rule, what was done once it matched: "killed", "would kill", "kill failed" or
    /// "exempt" (the rule state then reads "acted" or "due").
    pub notes: BTreeMap<String, &'static str>,
    /// Killed earlier and still listed by Plex (a zombie).
    pub still_listed: bool,
    /// The measured 10 s rate (kbps), once a round, oldest first; null where unmeasured.
    pub history_kbps: Vec<Option<f64>>,
}

/// The daemon as the page's header shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub version: &'static str,
    /// RFC 3339.
    pub now: Option<String>,
    pub up_s: u64,
    pub plex: PlexStatus,
    /// Plex's event stream: whether streams are seen as Plex announces them.
    pub events: EventsView,
    pub capture: CaptureStatus,
    pub dry_run: bool,
    pub budget: Budget,
    /// The last reload (SIGHUP) and what it came to; null before the first.
    pub reload: Option<ReloadStatus>,
    pub rules: Vec<RuleInfo>,
    /// The page may kill a stream (`POST /api/streams/kill`): only with an HTTP token.
    pub can_kill: bool,
    pub streams: usize,
    /// The sum of the streams' measured rates (kbps).
    pub total_kbps_10s: f64,
    pub total_kbps_1m: f64,
    /// `total_kbps_10s` once a round, oldest first.
    pub total_history_kbps: Vec<f64>,
    pub audit: AuditStatus,
}

/// Plex's event stream as `/api/status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventsView {
    /// "off", "connecting", "live" or "down".
    pub state: &'static str,
    /// Since when (RFC 3339).
    pub since: Option<String>,
    pub received: u64,
    pub reconnects: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PlexStatus {
    /// "ok", "unreachable", or "waiting" (for the first read).
    pub state: &'static str,
    /// Since when it has been in that state (RFC 3339).
    pub since: Option<String>,
    pub error: Option<String>,
    /// When the sessions were last read (RFC 3339).
    pub last_read: Option<String>,
    /// The sessions are recent enough to act on.
    pub fresh: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CaptureStatus {
    /// "live" (a packet capture with kernel statistics), "fed" (packets without kernel
    /// statistics: generated traffic) or "off" (no packets at all).
    pub state: &'static str,
    /// Frames read.
    pub packets: u64,
    /// Frames skipped as not TCP/IP, truncated or malformed.
    pub skipped: u64,
    /// The kernel's counts of a live capture.
    pub kernel_received: Option<u64>,
    pub kernel_dropped: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Budget {
    /// Kills allowed right now.
    pub left: u32,
    pub max_per_minute: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    /// RFC 3339.
    pub at: Option<String>,
    pub ok: bool,
    /// Rules running since (applied reloads).
    pub rules: Option<usize>,
    /// Changed settings that wait for a restart.
    pub restart_needed: Vec<&'static str>,
    /// Why it was refused (the previous configuration runs on).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleInfo {
    pub name: String,
    pub when: String,
    pub action: Action,
    pub sustain_s: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditStatus {
    /// An audit file is configured (else the page lists this run's records only).
    pub file: bool,
    /// Changes whenever a record is written: the page reloads the history then.
    pub version: u64,
}

/// A stream's values, for the rule lab.
#[derive(Debug, Clone)]
pub struct LabStream {
    pub session_id: Option<String>,
    pub user: Option<String>,
    pub title: String,
    pub vars: Vars,
}

/// Where the history comes from: the audit file, or this run's records when there is none.
#[derive(Debug, Clone)]
pub enum AuditSource {
    /// The state database (read through a connection of the reader's own), and the records
    /// this process wrote, whose count versions what the page shows.
    State(PathBuf, Recent),
    /// No database file (a demo, a state in memory): the records this process wrote.
    Memory(Recent),
}

impl AuditSource {
    pub fn of(state: Option<&std::path::Path>, recent: Recent) -> Self {
        match state {
            Some(path) => AuditSource::State(path.to_path_buf(), recent),
            None => AuditSource::Memory(recent),
        }
    }
}

/// The facts of a round beyond the engine's tick.
pub struct Facts<'a> {
    /// The clock now, and when the daemon started.
    pub now: Micros,
    pub started: Micros,
    pub plex_error: Option<&'a str>,
    /// Plex's event stream.
    pub events: &'a crate::daemon::events::EventsStatus,
    /// When the sessions were last read.
    pub fetched: Option<Micros>,
    pub fresh: bool,
    pub feed: &'a FeedStats,
    pub dry_run: bool,
    /// (left, max_kills_per_minute).
    pub budget: (u32, u32),
    pub reload: Option<&'a LastReload>,
    pub rules: &'a RuleSet,
    pub exempt: &'a dyn Fn(&Session) -> bool,
    pub acted: &'a Acted,
}

#[derive(Debug, Default)]
struct Inner {
    rows: Vec<LiveRow>,
    lab: Vec<LabStream>,
    status: Status,
    history: HashMap<String, VecDeque<Option<f64>>>,
    total_history: VecDeque<f64>,
    /// The Plex state shown, and since when (the clock's microseconds).
    plex: Option<(&'static str, Micros)>,
}

/// What the loop publishes and the page reads; cheap to clone.
#[derive(Debug, Clone)]
pub struct Board {
    inner: Arc<Mutex<Inner>>,
    audit: AuditSource,
    kills: Option<Requests>,
    /// How usage periods are counted (the Usage view).
    usage: crate::config::UsageConfig,
}

impl Board {
    /// `kills`: where the page's kill requests go; none, and the page cannot kill.
    pub fn new(audit: AuditSource, kills: Option<Requests>) -> Self {
        Self {
            inner: Arc::default(),
            audit,
            kills,
            usage: crate::config::UsageConfig::default(),
        }
    }

    /// The same board, counting usage periods as `usage` says.
    pub fn with_usage(mut self, usage: crate::config::UsageConfig) -> Self {
        self.usage = usage;
        self
    }

    pub fn usage_config(&self) -> &crate::config::UsageConfig {
        &self.usage
    }

    /// The rules as of the last round: (name, condition).
    pub fn rule_conditions(&self) -> Vec<(String, String)> {
        lock(&self.inner)
            .status
            .rules
            .iter()
            .map(|r| (r.name.clone(), r.when.clone()))
            .collect()
    }

    pub fn kills(&self) -> Option<&Requests> {
        self.kills.as_ref()
    }

    pub fn audit(&self) -> &AuditSource {
        &self.audit
    }

    /// The streams as of the last round.
    pub fn rows(&self) -> Vec<LiveRow> {
        lock(&self.inner).rows.clone()
    }

    /// Every stream's values as of the last round.
    pub fn lab(&self) -> Vec<LabStream> {
        lock(&self.inner).lab.clone()
    }

    /// The status as of the last round, with the audit's current version.
    pub fn status(&self) -> Status {
        let mut status = lock(&self.inner).status.clone();
        status.can_kill = self.kills.is_some();
        status.audit = match &self.audit {
            AuditSource::State(_, recent) | AuditSource::Memory(recent) => {
                use std::hash::{Hash, Hasher};
                let recent = lock(recent);
                let mut h = std::collections::hash_map::DefaultHasher::new();
                recent.len().hash(&mut h);
                if let Some(e) = recent.back() {
                    (&e.ts, &e.action, &e.session_id, &e.rule).hash(&mut h);
                }
                AuditStatus {
                    file: matches!(self.audit, AuditSource::State(..)),
                    version: h.finish(),
                }
            }
        };
        status
    }

    /// Publishes one round: `table` is the rows built from `tick`, in its order.
    pub fn publish(&self, tick: &Tick<'_>, table: &[StreamRow], f: &Facts<'_>) {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        let mut seen = HashMap::new();
        let mut rows = Vec::with_capacity(table.len());
        let mut lab = Vec::with_capacity(table.len());
        for (row, eval) in table.iter().zip(&tick.streams) {
            let s = &eval.session;
            let id = s.identity();
            let mut history = inner.history.remove(&id).unwrap_or_default();
            if history.len() >= HISTORY {
                history.pop_front();
            }
            history.push_back(row.measured_kbps_10s.map(f64::round));
            let exempt = (f.exempt)(s);
            let sid = row.session_id.clone().unwrap_or_default();
            let notes = row
                .rules
                .iter()
                .filter(|r| matches!(r.state.as_str(), "due" | "acted"))
                .filter_map(|r| {
                    let pair = (sid.clone(), r.rule.clone());
                    let kill = f
                        .rules
                        .get(&r.rule)
                        .is_some_and(|x| x.action == Action::Kill);
                    let note = if f.acted.would_kill.contains(&pair) {
                        "would kill"
                    } else if f.acted.failed.contains(&pair) {
                        "kill failed"
                    } else if kill && exempt {
                        "exempt"
                    } else if kill && row.session_id.is_some() && f.acted.killed.contains(&sid) {
                        "killed"
                    } else {
                        return None;
                    };
                    Some((r.rule.clone(), note))
                })
                .collect();
            rows.push(LiveRow {
                row: row.clone(),
                exempt,
                notes,
                still_listed: !row.killed
                    && row.session_id.is_some()
                    && f.acted.killed.contains(&sid),
                history_kbps: history.iter().copied().collect(),
            });
            lab.push(LabStream {
                session_id: row.session_id.clone(),
                user: row.user.clone(),
                title: row.title.clone(),
                vars: eval.vars.clone(),
            });
            seen.insert(id, history);
        }
        inner.history = seen;
        let total = |rate: fn(&StreamRow) -> Option<f64>| {
            table.iter().filter_map(rate).fold(0.0, |a, b| a + b)
        };
        let (total_10s, total_1m) = (
            total(|r| r.measured_kbps_10s),
            total(|r| r.measured_kbps_1m),
        );
        if inner.total_history.len() >= HISTORY {
            inner.total_history.pop_front();
        }
        inner.total_history.push_back(total_10s.round());
        let state = match (f.plex_error, f.fetched) {
            (Some(_), _) => "unreachable",
            (None, Some(_)) => "ok",
            (None, None) => "waiting",
        };
        let since = match inner.plex {
            Some((was, since)) if was == state => since,
            _ => f.now,
        };
        inner.plex = Some((state, since));
        inner.status = Status {
            version: env!("CARGO_PKG_VERSION"),
            now: f.now.rfc3339(),
            up_s: f.now.whole_secs_since(f.started),
            plex: PlexStatus {
                state,
                since: since.rfc3339(),
                error: f.plex_error.map(str::to_string),
                last_read: f.fetched.and_then(Micros::rfc3339),
                fresh: f.fresh,
            },
            events: EventsView {
                state: f.events.state.as_str(),
                since: f.events.since.and_then(Micros::rfc3339),
                received: f.events.received,
                reconnects: f.events.reconnects,
                error: f.events.error.clone(),
            },
            capture: capture(f.feed),
            dry_run: f.dry_run,
            budget: Budget {
                left: f.budget.0,
                max_per_minute: f.budget.1,
            },
            reload: f.reload.map(|r| match &r.result {
                Ok(applied) => ReloadStatus {
                    at: r.at.rfc3339(),
                    ok: true,
                    rules: Some(applied.rules),
                    restart_needed: applied.restart_needed.clone(),
                    error: None,
                },
                Err(e) => ReloadStatus {
                    at: r.at.rfc3339(),
                    ok: false,
                    rules: None,
                    restart_needed: Vec::new(),
                    error: Some(e.clone()),
                },
            }),
            rules: f
                .rules
                .rules
                .iter()
                .map(|r| RuleInfo {
                    name: r.name.clone(),
                    when: r.when.clone(),
                    action: r.action,
                    sustain_s: r.sustain.as_secs(),
                })
                .collect(),
            can_kill: false,
            streams: table.len(),
            total_kbps_10s: total_10s,
            total_kbps_1m: total_1m,
            total_history_kbps: inner.total_history.iter().copied().collect(),
            audit: AuditStatus::default(),
        };
        inner.rows = rows;
        inner.lab = lab;
    }
}

fn capture(feed: &FeedStats) -> CaptureStatus {
    let state = match feed.capture {
        Some(_) => "live",
        None if feed.decode.read > 0 => "fed",
        None => "off",
    };
    CaptureStatus {
        state,
        packets: feed.decode.read,
        skipped: feed.decode.skipped,
        kernel_received: feed.capture.map(|c| u64::from(c.received)),
        kernel_dropped: feed
            .capture
            .map(|c| u64::from(c.dropped) + u64::from(c.if_dropped)),
    }
}
