//! Reading the audit log back: what was killed (or would have been, or failed, or survived
//! its kill), newest first, filtered by user, rule and time, with per-user counts. The
//! daemon's page (`/api/history`) and `streamwarden history` both read through here.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::state::{AuditAction, AuditFilter, AuditRow, State, StateError};

/// The actions listed unless a query names others: kills, dry-run kills, failed kills,
/// zombies (streams still listed after their kill), and throttles put on, lifted, failed
/// or decided in a dry run.
pub const ACTIONS: &[AuditAction] = &[
    AuditAction::Kill,
    AuditAction::WouldKill,
    AuditAction::KillFailed,
    AuditAction::Zombie,
    AuditAction::Throttle,
    AuditAction::WouldThrottle,
    AuditAction::ThrottleFailed,
    AuditAction::Unthrottle,
];

/// At most this many entries are listed unless a query says otherwise (the counts cover
/// every matching line).
pub const DEFAULT_LIMIT: usize = 200;

/// One audit line as read back. Lenient: a field a line lacks takes its default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Entry {
    /// RFC 3339, UTC.
    pub ts: String,
    /// "enforce" or "dry-run".
    pub mode: String,
    pub action: String,
    pub rule: String,
    pub session_id: Option<String>,
    pub user: Option<String>,
    pub address: Option<String>,
    pub title: Option<String>,
    /// The message the viewer saw (or would have seen).
    pub message: String,
    /// Why a kill failed or was skipped, or what became of it.
    pub reason: Option<String>,
    /// A throttle's rate ("5 Mbps").
    pub rate: Option<String>,
    pub estimated: bool,
    /// The values the rule read; null where unknown.
    pub values: Map<String, Json>,
}

impl Entry {
    /// When it was written, if its stamp can be read.
    pub fn time(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.ts, &Rfc3339).ok()
    }
}

/// What to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Only this user's (case-insensitive).
    pub user: Option<String>,
    /// Only this rule's.
    pub rule: Option<String>,
    /// Only entries written at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only these actions; empty: [`ACTIONS`].
    pub actions: Vec<String>,
    /// At most this many entries (the newest); `None`: [`DEFAULT_LIMIT`].
    pub limit: Option<usize>,
}

impl Query {
    fn wants(&self, e: &Entry) -> bool {
        let action = if self.actions.is_empty() {
            AuditAction::parse(&e.action).is_some_and(|a| ACTIONS.contains(&a))
        } else {
            self.actions.contains(&e.action)
        };
        action
            && self.user.as_ref().is_none_or(|u| {
                e.user
                    .as_deref()
                    .is_some_and(|eu| eu.trim().eq_ignore_ascii_case(u.trim()))
            })
            && self.rule.as_ref().is_none_or(|r| e.rule == r.trim())
            && self
                .since
                .is_none_or(|since| e.time().is_some_and(|t| t >= since))
    }
}

/// How often one user's streams were acted on, over the entries a query matched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserCounts {
    pub user: String,
    pub kills: u32,
    pub would_kills: u32,
    pub failures: u32,
    pub zombies: u32,
    pub throttles: u32,
}

/// The entries a query matched, newest first, and the per-user counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// At most the query's limit, newest first.
    pub entries: Vec<Entry>,
    /// Every matching entry, listed or not.
    pub total: usize,
    /// Per user (most kills first), over every matching entry.
    pub users: Vec<UserCounts>,
    /// Lines that are not audit records (cut short, or not JSON), skipped.
    pub unreadable: usize,
}

/// Builds a report from entries in the order they were written (oldest first).
pub fn collect(entries: impl IntoIterator<Item = Entry>, q: &Query) -> Report {
    let mut c = Collector::new(q);
    for e in entries {
        c.add(e);
    }
    c.finish()
}

/// Reads an audit log (JSON lines, oldest first). A log that does not exist yet is empty.
pub fn read(path: &Path, q: &Query) -> std::io::Result<Report> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Report::default()),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut c = Collector::new(q);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Entry>(text) {
            Ok(e) => c.add(e),
            Err(_) => c.unreadable += 1,
        }
    }
    Ok(c.finish())
}

/// Reads the audit records of the state database: the entries through an indexed query
/// (newest first, at most the limit), the counts by user and action through another.
pub fn from_state(state: &State, q: &Query) -> Result<Report, StateError> {
    let actions: Vec<String> = if q.actions.is_empty() {
        ACTIONS.iter().map(|a| a.as_str().to_string()).collect()
    } else {
        q.actions.clone()
    };
    let filter = AuditFilter {
        user: q.user.as_deref(),
        rule: q.rule.as_deref(),
        since: q
            .since
            .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MIN)),
        actions: &actions,
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let entries = state
        .audit_newest(&filter, limit)?
        .into_iter()
        .map(|r| Entry {
            ts: r.ts,
            mode: r.mode,
            action: r.action,
            rule: r.rule,
            session_id: r.session_id,
            user: r.user,
            address: r.address,
            title: r.title,
            message: r.message,
            reason: r.reason,
            rate: r.rate,
            estimated: r.estimated,
            values: serde_json::from_str(&r.values).unwrap_or_default(),
        })
        .collect();
    let mut users: BTreeMap<String, UserCounts> = BTreeMap::new();
    let mut total = 0usize;
    for c in state.audit_counts(&filter)? {
        total += c.count as usize;
        let name = c.user.clone().unwrap_or_else(|| "?".to_string());
        let counts = users
            .entry(name.to_lowercase())
            .or_insert_with(|| UserCounts {
                user: name,
                ..UserCounts::default()
            });
        counts.add(&c.action, c.count);
    }
    Ok(Report {
        entries,
        total,
        users: sorted(users),
        unreadable: 0,
    })
}

fn sorted(users: BTreeMap<String, UserCounts>) -> Vec<UserCounts> {
    let mut users: Vec<UserCounts> = users.into_values().collect();
    users.sort_by(|a, b| {
        (b.kills, b.would_kills, b.failures, b.zombies)
            .cmp(&(a.kills, a.would_kills, a.failures, a.zombies))
            .then_with(|| a.user.cmp(&b.user))
    });
    users
}

impl UserCounts {
    fn add(&mut self, action: &str, n: u32) {
        use AuditAction as A;
        let Some(action) = AuditAction::parse(action) else {
            return;
        };
        match action {
            A::Kill => self.kills += n,
            A::WouldKill => self.would_kills += n,
            A::KillFailed => self.failures += n,
            A::Zombie => self.zombies += n,
            A::Throttle => self.throttles += n,
            A::Log
            | A::KillSkipped
            | A::AlreadyKilled
            | A::TranscodeStopped
            | A::WouldThrottle
            | A::ThrottleFailed
            | A::ThrottleSkipped
            | A::Unthrottle
            | A::RiskyReload
            | A::Warn => {}
        }
    }
}

/// Brings an older install's JSONL audit log into a new state database (lines that are not
/// records are left out). How many records came in.
pub fn import(state: &mut State, path: &Path) -> Result<usize, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rows = Vec::new();
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        let Ok(e) = serde_json::from_slice::<Entry>(line.trim_ascii()) else {
            continue;
        };
        let Some(at) = e.time() else { continue };
        rows.push(AuditRow {
            at: i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(0),
            ts: e.ts,
            mode: e.mode,
            action: e.action,
            rule: e.rule,
            session_id: e.session_id,
            session_key: None,
            user: e.user,
            address: e.address,
            title: e.title,
            message: e.message,
            reason: e.reason,
            rate: e.rate,
            estimated: e.estimated,
            values: Json::Object(e.values).to_string(),
        });
    }
    state.import(&rows).map_err(|e| e.to_string())
}

/// Parses a `--since` or `since=`: a duration back from `now` ("7d", "24h", "90m"), an
/// RFC 3339 time, or a date (midnight UTC).
pub fn parse_since(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let t = text.trim();
    if let Ok(at) = OffsetDateTime::parse(t, &Rfc3339) {
        return Ok(at);
    }
    if let Ok(date) =
        time::Date::parse(t, time::macros::format_description!("[year]-[month]-[day]"))
    {
        return Ok(date.midnight().assume_utc());
    }
    let back = crate::config::parse_duration(t).map_err(|_| {
        format!("since: {text:?} is not a duration such as \"7d\" or \"24h\", nor a date such as 2026-11-01")
    })?;
    let back = time::Duration::try_from(back).map_err(|e| format!("since: {e}"))?;
    Ok(now.checked_sub(back).unwrap_or(OffsetDateTime::UNIX_EPOCH))
}

struct Collector<'q> {
    q: &'q Query,
    limit: usize,
    newest: VecDeque<Entry>,
    total: usize,
    users: BTreeMap<String, UserCounts>,
    unreadable: usize,
}

impl<'q> Collector<'q> {
    fn new(q: &'q Query) -> Self {
        Self {
            q,
            limit: q.limit.unwrap_or(DEFAULT_LIMIT),
            newest: VecDeque::new(),
            total: 0,
            users: BTreeMap::new(),
            unreadable: 0,
        }
    }

    fn add(&mut self, e: Entry) {
        if !self.q.wants(&e) {
            return;
        }
        self.total += 1;
        let name = e.user.clone().unwrap_or_else(|| "?".to_string());
        let counts = self
            .users
            .entry(name.to_lowercase())
            .or_insert_with(|| UserCounts {
                user: name,
                ..UserCounts::default()
            });
        counts.add(&e.action, 1);
        if self.limit == 0 {
            return;
        }
        if self.newest.len() == self.limit {
            self.newest.pop_front();
        }
        self.newest.push_back(e);
    }

    fn finish(self) -> Report {
        Report {
            entries: self.newest.into_iter().rev().collect(),
            total: self.total,
            users: sorted(self.users),
            unreadable: self.unreadable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ts: &str, action: &str, user: &str, rule: &str) -> Entry {
        Entry {
            ts: ts.into(),
            action: action.into(),
            user: Some(user.into()),
            rule: rule.into(),
            message: format!("{user} {rule}"),
            ..Entry::default()
        }
    }

    #[test]
    fn newest_first_filtered_and_counted() {
        let all = vec![
            entry("2026-11-01T10:00:00Z", "kill", "Bob", "4k"),
            entry("2026-11-02T10:00:00Z", "log", "bob", "4k"),
            entry("2026-11-03T10:00:00Z", "would-kill", "alice", "over"),
            entry("2026-11-04T10:00:00Z", "kill", "bob", "over"),
            entry("2026-11-05T10:00:00Z", "zombie", "bob", "over"),
        ];
        let r = collect(all.clone(), &Query::default());
        assert_eq!(r.total, 4, "log lines are not listed");
        assert_eq!(r.entries[0].ts, "2026-11-05T10:00:00Z");
        assert_eq!(r.users[0].user, "Bob");
        assert_eq!((r.users[0].kills, r.users[0].zombies), (2, 1));
        let q = Query {
            user: Some("BOB".into()),
            rule: Some("over".into()),
            ..Query::default()
        };
        let r = collect(all.clone(), &q);
        assert_eq!(r.total, 2);
        let since = OffsetDateTime::parse("2026-11-04T00:00:00Z", &Rfc3339).unwrap();
        let q = Query {
            since: Some(since),
            limit: Some(1),
            ..Query::default()
        };
        let r = collect(all, &q);
        assert_eq!((r.total, r.entries.len()), (2, 1));
        assert_eq!(r.entries[0].action, "zombie");
    }

    #[test]
    fn since_reads_durations_dates_and_times() {
        let now = OffsetDateTime::parse("2026-11-08T12:00:00Z", &Rfc3339).unwrap();
        let week = parse_since("7d", now).unwrap();
        assert_eq!(
            week,
            OffsetDateTime::parse("2026-11-01T12:00:00Z", &Rfc3339).unwrap()
        );
        let day = parse_since("2026-11-02", now).unwrap();
        assert_eq!(
            day,
            OffsetDateTime::parse("2026-11-02T00:00:00Z", &Rfc3339).unwrap()
        );
        assert!(parse_since("last tuesday", now).is_err());
    }
}
