//! The terminal view: one line per stream with its rule states, and the latest events.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::engine::row::StreamRow;

use super::FeedStats;

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

/// The header line's facts.
pub struct Status<'a> {
    pub plex_error: Option<&'a str>,
    pub fresh: bool,
    pub feed: &'a FeedStats,
    pub rules: usize,
    pub up: Duration,
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
    out.push_str(&format!(
        "streamwarden  up {}s  {} rules  {plex}  packets {}{drops}\n\n",
        st.up.as_secs(),
        st.rules,
        st.feed.decode.read
    ));
    if rows.is_empty() {
        out.push_str("no streams\n");
    }
    let mbps = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |k| format!("{:.2}", k / 1000.0));
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    for r in rows {
        let state = if r.killed {
            "killed".to_string()
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
        let est = if r.estimated { " est." } else { "" };
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
