//! The terminal view: one line per stream with its rule states, and the latest events.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::engine::row::StreamRow;
use crate::micros::Micros;

use super::{FeedStats, Reloaded, Summary};

/// How the daemon shows what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// A live table on the terminal, refreshed every second.
    Terminal,
    /// Log lines only.
    Logs,
}

impl View {
    /// The terminal view when stdout is a terminal, logs otherwise.
    pub fn detect() -> Self {
        if std::io::stdout().is_terminal() {
            View::Terminal
        } else {
            View::Logs
        }
    }
}

/// The header's facts, and what was done to the streams.
pub struct Status<'a> {
    pub plex_error: Option<&'a str>,
    pub fresh: bool,
    pub feed: &'a FeedStats,
    pub rules: usize,
    pub up: Duration,
    /// The enforcer is in dry run: decisions are audited, nothing is killed.
    pub dry_run: bool,
    /// The last reload's result, shown until the next reload.
    pub reload: Option<&'a LastReload>,
    /// What the enforcer did to the streams shown.
    pub acted: &'a Acted,
}

/// What the last reload (SIGHUP) came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastReload {
    /// When, on the daemon's clock.
    pub at: Micros,
    /// Applied, or why the new configuration was refused (the running one stays).
    pub result: Result<ReloadApplied, String>,
}

/// A reload that was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadApplied {
    /// Rules running since.
    pub rules: usize,
    /// Changed settings that wait for a restart (named as in the file).
    pub restart_needed: Vec<&'static str>,
}

impl LastReload {
    /// From what the daemon's [`super::Reload`] returned, at `at`.
    pub fn of(reloaded: &Result<Reloaded, String>, at: Micros) -> Self {
        LastReload {
            at,
            result: match reloaded {
                Ok(new) => Ok(ReloadApplied {
                    rules: new.rules.rules.len(),
                    restart_needed: new.restart_needed.clone(),
                }),
                Err(e) => Err(e.clone()),
            },
        }
    }
}

/// What the enforcer did to streams, by Plex Session id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acted {
    /// Killed, by this run or (per the audit log) an earlier one.
    pub killed: BTreeSet<String>,
    /// (Session id, rule): a dry run decided to kill and did not.
    pub would_kill: BTreeSet<(String, String)>,
    /// (Session id, rule): the kill failed.
    pub failed: BTreeSet<(String, String)>,
}

impl Acted {
    /// For the sessions of `rows`: what this run did (`done`), and which sessions the
    /// enforcer will not kill again (`never_again`: killed, or would-killed in dry run).
    pub fn of(rows: &[StreamRow], done: &Summary, never_again: impl Fn(&str) -> bool) -> Self {
        let mut acted = Acted::default();
        for id in rows.iter().filter_map(|r| r.session_id.as_deref()) {
            let of = |d: &crate::rules::Decision| d.session.session_id.as_deref() == Some(id);
            let would: Vec<&str> = done
                .would_kills
                .iter()
                .filter(|d| of(d))
                .map(|d| d.rule.as_str())
                .collect();
            if done.kills.iter().any(of) || (never_again(id) && would.is_empty()) {
                acted.killed.insert(id.to_string());
            }
            for rule in would {
                acted.would_kill.insert((id.to_string(), rule.to_string()));
            }
            for (d, _) in done.failures.iter().filter(|(d, _)| of(d)) {
                acted.failed.insert((id.to_string(), d.rule.clone()));
            }
        }
        acted
    }
}

/// `micros` since the epoch as hh:mm:ss UTC (as the events are stamped).
fn hms(at: Micros) -> String {
    at.datetime().map_or_else(
        || "--:--:--".to_string(),
        |t| format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
    )
}

/// The whole screen as text.
pub fn screen(rows: &[StreamRow], st: &Status<'_>, events: &[String]) -> String {
    let mut out = String::from("\x1b[H\x1b[2J");
    let plex = match st.plex_error {
        Some(e) => format!("Plex: {e}"),
        None if st.fresh => "Plex: ok".to_string(),
        None => "Plex: waiting for the first read".to_string(),
    };
    let drops = st.feed.capture.map_or_else(String::new, |c| {
        format!(", {} dropped by the kernel", c.dropped)
    });
    let dry = if st.dry_run {
        "  DRY RUN (nothing is killed)"
    } else {
        ""
    };
    out.push_str(&format!(
        "streamwarden{dry}  up {}s  {} rules  {plex}  packets {}{drops}\n",
        st.up.as_secs(),
        st.rules,
        st.feed.decode.read
    ));
    match st.reload.map(|r| (hms(r.at), &r.result)) {
        Some((at, Ok(applied))) => {
            out.push_str(&format!("reload {at}: applied, {} rules", applied.rules));
            if !applied.restart_needed.is_empty() {
                out.push_str(&format!(
                    "; {} changed and wait for a restart",
                    applied.restart_needed.join(", ")
                ));
            }
            out.push('\n');
        }
        Some((at, Err(e))) => {
            out.push_str(&format!(
                "reload {at}: REFUSED, still running the previous configuration:\n"
            ));
            for line in e.lines() {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
        }
        None => {}
    }
    out.push('\n');
    if rows.is_empty() {
        out.push_str("no streams\n");
    }
    let mbps = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |k| format!("{:.2}", k / 1000.0));
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    for r in rows {
        let id = r.session_id.as_deref().unwrap_or_default();
        let pair = |rule: &str| (id.to_string(), rule.to_string());
        let state = if r.killed {
            // Killed, and Plex has not yet been seen to stop listing it.
            "killed".to_string()
        } else if r.session_id.is_some() && st.acted.killed.contains(id) {
            // Killed before, and listed after the kill was checked (a zombie).
            "killed (still listed)".to_string()
        } else {
            let parts: Vec<String> = r
                .rules
                .iter()
                .filter_map(|rule| match rule.state.as_str() {
                    "sustaining" => Some(format!(
                        "{} sustaining {}/{} s",
                        rule.rule,
                        rule.held_s.unwrap_or(0),
                        rule.sustain_s
                    )),
                    "acted" if st.acted.would_kill.contains(&pair(&rule.rule)) => {
                        Some(format!("{} would kill", rule.rule))
                    }
                    "acted" if st.acted.failed.contains(&pair(&rule.rule)) => {
                        Some(format!("{} kill failed", rule.rule))
                    }
                    "due" | "acted" => Some(format!("{} matched", rule.rule)),
                    _ => None,
                })
                .collect();
            if parts.is_empty() {
                "ok".to_string()
            } else {
                parts.join(", ")
            }
        };
        let est = match (r.estimated, r.rate_source.as_deref()) {
            (true, _) => " est.",
            (false, Some("plex")) => " plex",
            _ => "",
        };
        out.push_str(&format!(
            "[{}] [{}] [{}] [{}, {}, {} Mbps{est}] [{}]  {state}\n",
            text(&r.address),
            text(&r.transcode_decision),
            text(&r.user),
            mbps(r.measured_kbps_1m),
            mbps(r.measured_kbps_5m),
            mbps(r.measured_kbps_10m),
            r.title,
        ));
    }
    if !events.is_empty() {
        out.push_str("\nrecent:\n");
        for e in events.iter().rev().take(6).rev() {
            out.push_str("  ");
            out.push_str(e);
            out.push('\n');
        }
    }
    out
}

/// Draws the screen on stdout.
pub fn render(rows: &[StreamRow], st: &Status<'_>, events: &[String]) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(screen(rows, st, events).as_bytes());
    let _ = stdout.flush();
}
