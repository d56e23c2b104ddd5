//! What every command starts from: the configuration, its rules, the Plex client and the
//! audit log, each refused with a located, readable error.

use std::collections::BTreeMap;
use std::path::Path;

use crate::Failure;
use crate::config::Config;
use crate::enforce::AuditLog;
use crate::plex::PlexClient;
use crate::rules::RuleSet;

pub use crate::config::failure as config_failure;

/// Loads the configuration (`--config`, or the search order).
pub fn load(path: Option<&Path>) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| config_failure(&[e]))
}

/// Logs what the configuration sets that does nothing (check prints it instead).
pub fn warn(config: &Config) {
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
}

/// Compiles the configuration's rules.
pub fn compile(config: &Config) -> Result<RuleSet, Failure> {
    RuleSet::compile(config).map_err(|errors| config_failure(&errors))
}

/// The Plex client the config describes.
pub fn plex_client(config: &Config) -> Result<PlexClient, Failure> {
    let settings = config
        .plex_settings()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    PlexClient::new(settings).map_err(|e| Failure::Usage(e.to_string()))
}

/// The configured audit log (or none); an unopenable log is a configuration error.
pub fn open_audit(config: &Config) -> Result<AuditLog, Failure> {
    match &config.enforce.audit_log {
        Some(p) => AuditLog::open(p)
            .map_err(|e| Failure::Usage(format!("cannot use the audit log {}: {e}", p.display()))),
        None => Ok(AuditLog::none()),
    }
}

/// The audit records a query asks for: from the state database (indexed), or, where no
/// state was ever written, from the JSONL `audit_log` of an older install.
pub fn history(
    config: &Config,
    query: &crate::enforce::history::Query,
) -> Result<crate::enforce::history::Report, Failure> {
    use crate::enforce::history;
    if let Some(path) = config.state_path().filter(|p| p.exists()) {
        let state = crate::state::State::open_read_only(&path)
            .map_err(|e| Failure::Failed(e.to_string()))?;
        return history::from_state(&state, query).map_err(|e| Failure::Failed(e.to_string()));
    }
    let Some(path) = config.enforce.audit_log.clone() else {
        return Err(Failure::Usage(
            "nothing was recorded yet: no state database (see [state] path) and no [enforce] audit_log".into(),
        ));
    };
    history::read(&path, query)
        .map_err(|e| Failure::Failed(format!("cannot read the audit log {}: {e}", path.display())))
}

/// What the state database recorded of each stream since `since` (unix seconds), for one
/// user or all, grouped.
pub fn usage(
    config: &Config,
    since: i64,
    user: Option<&str>,
    by: crate::state::usage::GroupBy,
) -> Result<Vec<crate::state::usage::UsageTotal>, Failure> {
    let Some(path) = config.state_path().filter(|p| p.exists()) else {
        return Err(Failure::Usage(
            "nothing was recorded yet: no state database (`streamwarden run` records usage there; see [state] path)".into(),
        ));
    };
    let state =
        crate::state::State::open_read_only(&path).map_err(|e| Failure::Failed(e.to_string()))?;
    state
        .usage_totals(since, user, by)
        .map_err(|e| Failure::Failed(e.to_string()))
}

/// What each rule actually did: its audit actions and how many of each.
pub type Actual = Vec<(String, BTreeMap<String, usize>)>;

/// A backtest of the configured rules (only those named in `only`, when any) over the usage
/// recorded since `since` (unix seconds), and what each rule actually did meanwhile (audit
/// actions and their counts, from the same state).
pub fn backtest(
    config: &Config,
    since: i64,
    only: &[String],
) -> Result<(super::backtest::Backtest, Actual), Failure> {
    let rules = compile(config)?;
    if let Some(name) = only.iter().find(|n| rules.get(n).is_none()) {
        return Err(Failure::Usage(format!(
            "--rule {name:?}: the configuration has no such rule (it has: {})",
            rules
                .rules
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let Some(path) = config.state_path().filter(|p| p.exists()) else {
        return Err(Failure::Usage(
            "nothing was recorded yet: no state database (`streamwarden run` records usage there; see [state] path)".into(),
        ));
    };
    let state =
        crate::state::State::open_read_only(&path).map_err(|e| Failure::Failed(e.to_string()))?;
    let rows = state
        .usage_rows(since)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let result = super::backtest::run(&rules, &rows, &config.usage, only);
    let mut actual = Vec::new();
    for r in &result.rules {
        let q = crate::enforce::history::Query {
            rule: Some(r.rule.clone()),
            since: time::OffsetDateTime::from_unix_timestamp(since).ok(),
            limit: Some(100_000),
            ..Default::default()
        };
        let report = crate::enforce::history::from_state(&state, &q)
            .map_err(|e| Failure::Failed(e.to_string()))?;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for e in report.entries {
            *counts.entry(e.action).or_default() += 1;
        }
        actual.push((r.rule.clone(), counts));
    }
    Ok((result, actual))
}

/// Opens the state database the configuration names (made when missing), refusing with
/// the path and the reason when it cannot.
pub fn open_state(config: &Config) -> Result<crate::state::State, Failure> {
    let Some(path) = config.state_path() else {
        return Err(Failure::Usage(
            "no place for the state database: set [state] path (no HOME, XDG_STATE_HOME or STATE_DIRECTORY here)".into(),
        ));
    };
    let mut state = crate::state::State::open(&path).map_err(|e| Failure::Usage(e.to_string()))?;
    if state.created()
        && let Some(log) = config.enforce.audit_log.as_deref().filter(|l| l.exists())
    {
        match crate::enforce::history::import(&mut state, log) {
            Ok(n) => tracing::info!(
                "brought {n} records of the audit log {} into the new state database {}",
                log.display(),
                path.display()
            ),
            Err(e) => tracing::warn!("cannot bring the audit log into the state database: {e}"),
        }
    }
    Ok(state)
}

/// The hook's state: the daemon's database when it can be opened (SQLite's locking keeps the
/// two apart), else one in memory for this run, with a warning saying what that costs.
pub fn hook_state(config: &Config) -> Result<crate::state::State, Failure> {
    open_state(config)
}

/// What `check` says of the state database: where it is and who will use it.
pub fn state_line(config: &Config) -> String {
    let Some(path) = config.state_path() else {
        return "state: no place for it (no HOME, XDG_STATE_HOME or STATE_DIRECTORY): set [state] path; `run` refuses to start, the hook keeps never-twice and the budget for its own run only".into();
    };
    let shown = path.display();
    if path.exists() {
        return match crate::state::State::open_read_only(&path).and_then(|s| s.version()) {
            Ok(v) => format!("state: {shown} (schema {v}): run, history and the hook share it"),
            Err(e) => format!(
                "state: {e}: `run` refuses to start; the hook keeps never-twice and the budget for its own run only"
            ),
        };
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut probe = dir;
    while !probe.exists() {
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p,
            _ => break,
        }
    }
    let refuse = |why: String| {
        format!(
            "state: {shown} cannot be made ({why}): `run` refuses to start; the hook keeps never-twice and the budget for its own run only"
        )
    };
    if !probe.is_dir() {
        return refuse(format!("{} is not a folder", probe.display()));
    }
    let writable = nix::unistd::access(probe, nix::unistd::AccessFlags::W_OK).is_ok();
    if writable {
        format!("state: {shown} (made by the first run): run, history and the hook will share it")
    } else {
        refuse(format!("{} is not writable by this user", probe.display()))
    }
}
