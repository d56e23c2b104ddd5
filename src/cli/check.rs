//! `streamwarden check`: validates the config without touching Plex.

use std::path::Path;

use crate::Failure;
use crate::engine::open;
use crate::rules::{Action, RuleSet};

use super::Done;

pub fn run(path: Option<&Path>) -> Result<Done, Failure> {
    let config = open::load(path)?;
    let targets = crate::notify::targets(&config);
    let rules = match (RuleSet::compile(&config), &targets) {
        (Ok(r), Ok(_)) => r,
        (rules, targets) => {
            let errors: Vec<_> = rules
                .err()
                .into_iter()
                .flatten()
                .chain(targets.as_ref().err().into_iter().flatten().cloned())
                .collect();
            for e in &errors {
                eprintln!("error: {e}");
            }
            return Err(Failure::Usage(format!(
                "{} error{} in the configuration",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            )));
        }
    };
    // The audit log is opened by `run` and the hook exactly as probed here.
    if let Some(audit) = &config.enforce.audit_log
        && let Err(why) = crate::enforce::audit::probe(audit)
    {
        return Err(Failure::Usage(format!(
            "cannot use the audit log {}: {why}",
            audit.display()
        )));
    }
    let file = config.source.file.as_ref().map_or_else(
        || "no config file (defaults)".to_string(),
        |f| f.display().to_string(),
    );
    println!("{file}: OK");
    for r in &rules.rules {
        let mut action = r.action.as_str().to_string();
        if let Some(t) = &r.throttle {
            action = format!("throttle to {}", t.rate_text());
            if let Some(after) = t.release_after {
                action.push_str(&format!(
                    ", released after {}",
                    humantime::format_duration(after)
                ));
            }
        }
        if let Some(parent) = &r.escalates {
            action = format!("{action} if still matching while {parent:?} throttles");
        }
        let sustain = if r.sustain.is_zero() {
            String::new()
        } else if r.escalates.is_some() {
            format!(", after {} under it", humantime::format_duration(r.sustain))
        } else {
            format!(", sustain {}", humantime::format_duration(r.sustain))
        };
        println!(
            "  rule {:?}: {action}{sustain}; reads {}",
            r.name,
            r.reads.join(", ")
        );
    }
    for t in targets.iter().flatten() {
        println!(
            "  notify {} ({}): told of {}",
            t.name,
            t.kind.as_str(),
            crate::state::AuditAction::names(&t.on)
        );
    }
    println!(
        "  measure: {}",
        match config.measure.source {
            crate::config::MeasureSource::Packets => "packets (captured on the wire)",
            crate::config::MeasureSource::Plex =>
                "plex (Plex's own counters, /statistics/bandwidth, Plex Pass; no capture)",
            crate::config::MeasureSource::Both =>
                "both (packets first; Plex's counters where packets have none, and to split viewers behind one address)",
        }
    );
    println!("  {}", open::state_line(&config));
    if rules.is_empty() {
        println!("  no rules: nothing will be killed except by hook --jbop");
    }
    if config.enforce.dry_run {
        println!("  dry run: decisions are audited, nothing is killed");
    }
    if rules.rules.iter().any(|r| r.action == Action::Throttle) {
        let interface = config.capture.interface.clone().unwrap_or_else(|| {
            crate::capture::default_interface()
                .unwrap_or_else(|_| "the default route's interface".into())
        });
        crate::capture::privileges::raise_permitted();
        if crate::capture::privileges::has_net_admin() {
            println!("  throttle: shapes {interface}'s egress; this process holds CAP_NET_ADMIN");
        } else {
            println!(
                "  note: throttle rules need CAP_NET_ADMIN when `run` starts (it shapes {interface}'s egress), and this process does not hold it: run as root, or grant it (systemd: AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN and the same in CapabilityBoundingSet; Docker: --cap-add NET_ADMIN; a binary: setcap cap_net_raw,cap_net_admin=eip)"
            );
        }
    }
    for w in config.warnings() {
        println!("  warning: {w}");
    }
    if config.plex.url.is_none() || config.plex.token.is_none() {
        println!(
            "  note: no Plex url/token yet; set [plex] url and token, or PLEX_URL and PLEX_TOKEN"
        );
    }
    Ok(Done::Ok)
}
