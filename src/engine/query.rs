//! What the commands ask of the record: the audit history, usage totals and backtests, read
//! from the state database (read-only) that `run` and the hook write.

use std::collections::BTreeMap;

use crate::Failure;
use crate::config::Config;

use super::open::{compile, nothing_recorded, recorded};

/// The audit records a query asks for: from the state database (indexed), or, where no
/// state was ever written, from the JSONL `audit_log` of an older install.
pub fn history(
    config: &Config,
    query: &crate::enforce::history::Query,
) -> Result<crate::enforce::history::Report, Failure> {
    use crate::enforce::history;
    if let Some(state) = recorded(config)? {
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
    let state = recorded(config)?.ok_or_else(nothing_recorded)?;
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
    let state = recorded(config)?.ok_or_else(nothing_recorded)?;
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
