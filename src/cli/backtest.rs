//! `streamwarden backtest`: what the configured rules would have done over the usage the
//! state recorded, to whom and when, beside what was actually done.

use std::path::Path;

use crate::Failure;
use crate::enforce::escape;
use crate::engine::{open, query};

use super::Done;

#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// Replay from then: back from now ("7d", "24h"), a date or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", default_value = "7d")]
    pub since: String,
    /// Only this rule (repeat for more).
    #[arg(long = "rule", value_name = "NAME")]
    pub rules: Vec<String>,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: BacktestArgs, config: Option<&Path>) -> Result<Done, Failure> {
    let since = crate::enforce::history::parse_since(&args.since, time::OffsetDateTime::now_utc())
        .map_err(Failure::Usage)?
        .unix_timestamp();
    let config = open::load(config)?;
    let (result, actual) = query::backtest(&config, since, &args.rules)?;
    if args.json {
        let rules: Vec<serde_json::Value> = result
            .rules
            .iter()
            .map(|r| {
                let did = actual
                    .iter()
                    .find(|(name, _)| *name == r.rule)
                    .map(|(_, c)| c.clone())
                    .unwrap_or_default();
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["actually"] = serde_json::to_value(did).unwrap_or_default();
                v
            })
            .collect();
        let out = serde_json::json!({
            "from": result.from.and_then(rfc3339),
            "to": result.to.and_then(rfc3339),
            "rounds": result.rounds,
            "rules": rules,
        });
        let text =
            serde_json::to_string_pretty(&out).map_err(|e| Failure::Failed(e.to_string()))?;
        println!("{text}");
        return Ok(Done::Ok);
    }
    if result.rounds == 0 {
        println!("no usage recorded since {}: nothing to replay", args.since);
        return Ok(Done::Ok);
    }
    println!(
        "replayed {} recorded periods from {} to {}",
        result.rounds,
        result.from.and_then(rfc3339).unwrap_or_default(),
        result.to.and_then(rfc3339).unwrap_or_default()
    );
    for r in &result.rules {
        println!();
        println!(
            "rule {} ({}): would have acted {} times, on {} streams of {} users",
            escape(&r.rule),
            r.action,
            r.would.len(),
            r.streams,
            r.users
        );
        for w in r.would.iter().take(50) {
            println!(
                "  {}  {}  {}  \"{}\"",
                rfc3339(w.at).unwrap_or_default(),
                escape(&w.user),
                escape(w.title.as_deref().unwrap_or("-")),
                escape(&w.message)
            );
        }
        if r.would.len() > 50 {
            println!("  ... and {} more (--json lists all)", r.would.len() - 50);
        }
        let did = actual
            .iter()
            .find(|(name, _)| *name == r.rule)
            .map(|(_, c)| c);
        match did.filter(|c| !c.is_empty()) {
            Some(c) => println!(
                "  actually: {}",
                c.iter()
                    .map(|(a, n)| format!("{n} {a}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => println!("  actually: nothing audited for this rule meanwhile"),
        }
        if r.unknown_rounds > 0 {
            println!(
                "  could not judge {} periods: the record does not keep {}",
                r.unknown_rounds,
                r.unknown.join(", ")
            );
        }
    }
    Ok(Done::Ok)
}

fn rfc3339(unix: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}
