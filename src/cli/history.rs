//! `streamwarden history`: the audit log's kills, would-kills, failed kills, zombies and throttles,
//! newest first, with how often each user was acted on.

use std::path::Path;

use crate::Failure;
use crate::enforce::escape;
use crate::enforce::history::{self, Query, Report};
use crate::engine::{open, query};

use super::Done;

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Only this user's streams (any case).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Only this rule's decisions.
    #[arg(long, value_name = "RULE")]
    pub rule: Option<String>,
    /// Only since then: back from now ("7d", "24h"), a date (2026-11-01) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only these actions, comma-separated (default: kill,would-kill,kill-failed,zombie,
    /// throttle,would-throttle,throttle-failed,unthrottle).
    #[arg(long, value_name = "ACTIONS", value_delimiter = ',')]
    pub action: Vec<String>,
    /// List at most this many (the newest); the counts cover every match.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub limit: usize,
    /// JSON (as the page's /api/history) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: HistoryArgs, config: Option<&Path>) -> Result<Done, Failure> {
    let config = open::load(config)?;
    let since = args
        .since
        .as_deref()
        .map(|s| history::parse_since(s, time::OffsetDateTime::now_utc()))
        .transpose()
        .map_err(Failure::Usage)?;
    let query = Query {
        user: args.user.clone(),
        rule: args.rule.clone(),
        since,
        actions: args.action.clone(),
        limit: Some(args.limit),
    };
    let report = query::history(&config, &query)?;
    if args.json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| Failure::Failed(e.to_string()))?;
        println!("{text}");
    } else {
        let period = args
            .since
            .as_deref()
            .map_or_else(|| "in the whole log".to_string(), |s| format!("since {s}"));
        print!("{}", text(&report, &period));
    }
    Ok(Done::Ok)
}

/// The report for people; everything from the log is escaped onto its line.
fn text(report: &Report, period: &str) -> String {
    let mut out = String::new();
    if report.entries.is_empty() {
        out.push_str(&format!("nothing {period}\n"));
    }
    for e in &report.entries {
        let when = e.ts.get(..19).unwrap_or(&e.ts).replace('T', " ");
        let dry = if e.mode == "dry-run" && !e.action.starts_with("would-") {
            " (dry run)"
        } else {
            ""
        };
        out.push_str(&format!(
            "{when}  {:<11} {}  [{}]  {}{dry}\n",
            e.action,
            escape(e.user.as_deref().unwrap_or("?")),
            escape(&e.rule),
            escape(e.title.as_deref().unwrap_or("")),
        ));
        if let Some(rate) = &e.rate {
            out.push_str(&format!("    to {}\n", escape(rate)));
        }
        if !e.message.is_empty() {
            out.push_str(&format!("    \"{}\"\n", escape(&e.message)));
        }
        if let Some(r) = &e.reason {
            out.push_str(&format!("    {}\n", escape(r)));
        }
    }
    if report.total > report.entries.len() {
        out.push_str(&format!(
            "(the newest {} of {}; --limit shows more)\n",
            report.entries.len(),
            report.total
        ));
    }
    if !report.users.is_empty() {
        out.push_str(&format!("\nper user, {period}:\n"));
    }
    for u in &report.users {
        let parts: Vec<String> = [
            (u.kills, "killed"),
            (u.would_kills, "would have been killed"),
            (u.failures, "a kill failed"),
            (u.zombies, "survived a kill"),
            (u.throttles, "throttled"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| match n {
            1 => format!("{what} once"),
            n => format!("{what} {n} times"),
        })
        .collect();
        out.push_str(&format!("  {}: {}\n", escape(&u.user), parts.join(", ")));
    }
    if report.unreadable > 0 {
        out.push_str(&format!(
            "({} unreadable line(s) skipped)\n",
            report.unreadable
        ));
    }
    out
}
