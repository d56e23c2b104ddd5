//! `streamwarden usage`: what each user (or day, title, player) streamed, from the state
//! database: gigabytes (10^9 bytes) the server sent, hours played, streams and transcodes.

use std::path::Path;

use serde_json::{Map, Value as Json};

use crate::Failure;
use crate::enforce::escape;
use crate::engine::{open, query};
use crate::state::usage::{GroupBy, UsageTotal};

use super::Done;

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// Only this user's streams (any case).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Since then: back from now ("30d", "24h"), a date (2026-11-01) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", default_value = "30d")]
    pub since: String,
    /// One line per user, day (UTC), title or player.
    #[arg(long, value_name = "WHAT", default_value = "user")]
    pub by: String,
    /// JSON: [{"user": ..., "bytes": ..., "seconds": ..., "streams": ..., "transcodes": ...}].
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV with a header line.
    #[arg(long)]
    pub csv: bool,
}

pub fn run(args: UsageArgs, config: Option<&Path>) -> Result<Done, Failure> {
    let by = GroupBy::parse(&args.by).ok_or_else(|| {
        Failure::Usage(format!(
            "--by {:?}: give user, day, title or player",
            args.by
        ))
    })?;
    let since = crate::enforce::history::parse_since(&args.since, time::OffsetDateTime::now_utc())
        .map_err(Failure::Usage)?
        .unix_timestamp();
    let config = open::load(config)?;
    let totals = query::usage(&config, since, args.user.as_deref(), by)?;
    if args.json {
        let list: Vec<Json> = totals.iter().map(|t| json(t, &args.by)).collect();
        let text =
            serde_json::to_string_pretty(&list).map_err(|e| Failure::Failed(e.to_string()))?;
        println!("{text}");
    } else if args.csv {
        println!(
            "{},bytes,gb,seconds,hours,streams,transcodes,estimated",
            args.by
        );
        for t in &totals {
            println!(
                "{},{},{:.3},{},{:.2},{},{},{}",
                csv_field(&t.key),
                t.bytes,
                gb(t.bytes),
                t.seconds,
                t.seconds as f64 / 3600.0,
                t.streams,
                t.transcodes,
                t.estimated
            );
        }
    } else if totals.is_empty() {
        println!("nothing recorded since {}", args.since);
    } else {
        println!(
            "{:<24} {:>10} {:>8} {:>8} {:>11}",
            args.by, "GB", "hours", "streams", "transcodes"
        );
        for t in &totals {
            let est = if t.estimated { " (part estimated)" } else { "" };
            println!(
                "{:<24} {:>10.3} {:>8.2} {:>8} {:>11}{est}",
                escape(&t.key),
                gb(t.bytes),
                t.seconds as f64 / 3600.0,
                t.streams,
                t.transcodes
            );
        }
    }
    Ok(Done::Ok)
}

fn gb(bytes: i64) -> f64 {
    bytes as f64 / 1e9
}

fn json(t: &UsageTotal, by: &str) -> Json {
    let mut m = Map::new();
    m.insert(by.to_string(), Json::from(t.key.clone()));
    m.insert("bytes".into(), Json::from(t.bytes));
    m.insert("gb".into(), Json::from(gb(t.bytes)));
    m.insert("seconds".into(), Json::from(t.seconds));
    m.insert("hours".into(), Json::from(t.seconds as f64 / 3600.0));
    m.insert("streams".into(), Json::from(t.streams));
    m.insert("transcodes".into(), Json::from(t.transcodes));
    m.insert("estimated".into(), Json::from(t.estimated));
    Json::Object(m)
}

/// A CSV field, quoted when it holds a comma, a quote or a line break; one a spreadsheet
/// would take for a formula (=, +, -, @) starts with a quote mark.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}
