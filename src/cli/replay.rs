//! `streamwarden replay FILE`: the measurement engine over a capture file. Never kills.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use crate::capture::{Next, Packet, PacketSource};
use crate::config::Config;
use crate::enforce::{Applied, AuditLog, Decision, Enforcer, Terminator};
use crate::engine::{self, Metering, Sustain};
use crate::exit;
use crate::plex::{Session, session::parse_sessions};
use crate::rules::RuleSet;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A capture file (pcap or pcapng).
    pub file: PathBuf,
    /// The sessions to attribute traffic to: a saved /status/sessions response.
    #[arg(long, value_name = "FILE.xml")]
    pub sessions: Option<PathBuf>,
    /// Ignore the port filter and meter every TCP connection.
    #[arg(long)]
    pub all_tcp: bool,
    /// Include per-connection totals.
    #[arg(long)]
    pub flows: bool,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Replay never kills: its enforcer runs dry with this terminator.
struct NeverKill;

impl Terminator for NeverKill {
    async fn preflight(&self) -> Result<(), String> {
        Ok(())
    }
    async fn terminate(&self, _: &str, _: &str) -> Result<(), String> {
        Err("replay never kills".into())
    }
}

/// A decision made while replaying, with its packet time.
struct Made {
    ts_micros: i64,
    decision: Decision,
    applied: Applied,
}

pub async fn run(args: ReplayArgs, config: &Config) -> i32 {
    let rules = match RuleSet::compile(config) {
        Ok(r) => r,
        Err(errors) => {
            super::report_config(&errors);
            return exit::USAGE;
        }
    };
    let sessions = match &args.sessions {
        None => Vec::new(),
        Some(p) => match read_sessions(p) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        },
    };
    let ports = config.capture.ports.clone();
    // No BPF filter on a file: the meter checks ports after decoding, which also sees
    // inside VLAN tags that a plain "tcp and port N" filter would miss.
    let mut source = match PacketSource::open_file(&args.file, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
    };
    let mut metering = Metering::new(source.linktype(), (!args.all_tcp).then(|| ports.clone()));
    let mut cfg = config.enforce.clone();
    cfg.dry_run = true;
    let mut enforcer = Enforcer::new(NeverKill, &cfg, AuditLog::none());
    let mut sustain = Sustain::default();
    let evaluate = !rules.is_empty() && !sessions.is_empty();
    let mut made: Vec<Made> = Vec::new();
    let mut first_ts: Option<i64> = None;
    // Rules are evaluated once a second of packet time, as the daemon does: packets are
    // pumped in a tight loop until the first one of a new second, the engine ticks, then
    // that packet is metered and pumping goes on.
    let mut last_sec: Option<i64> = None;
    loop {
        match pump(
            &mut source,
            &mut metering,
            evaluate,
            &mut last_sec,
            &mut first_ts,
        ) {
            Ok(Some(held)) => {
                let at = held.ts_micros.div_euclid(1_000_000) * 1_000_000;
                let first = first_ts.unwrap_or(at);
                step(
                    &rules,
                    &sessions,
                    &metering,
                    &ports,
                    at,
                    first,
                    &mut sustain,
                    &mut enforcer,
                    &mut made,
                )
                .await;
                metering.ingest(&Packet {
                    ts_micros: held.ts_micros,
                    orig_len: held.orig_len,
                    data: &held.data,
                });
            }
            Ok(None) => break,
            Err(e) => {
                eprintln!("error: {e}");
                return e.exit_code();
            }
        }
    }
    let now = metering.meter.latest_micros().unwrap_or(0);
    if evaluate {
        step(
            &rules,
            &sessions,
            &metering,
            &ports,
            now,
            first_ts.unwrap_or(now),
            &mut sustain,
            &mut enforcer,
            &mut made,
        )
        .await;
    }
    let attributed = crate::attribute::attribute(&metering.meter, &sessions, &ports, now);
    let report = Report {
        args: &args,
        metering: &metering,
        sessions: &sessions,
        attributed: &attributed,
        made: &made,
        ports: &ports,
        now,
    };
    if args.json {
        print_json(&report);
    } else {
        print_text(&report);
    }
    exit::OK
}

/// A packet kept aside while the engine ticks.
struct Held {
    ts_micros: i64,
    orig_len: u32,
    data: Vec<u8>,
}

/// Meters packets until the capture ends (`None`) or, when `evaluate`, until the first
/// packet of a second after `last_sec`, which is handed back unmetered so the engine can
/// tick first.
fn pump(
    source: &mut PacketSource,
    metering: &mut Metering,
    evaluate: bool,
    last_sec: &mut Option<i64>,
    first_ts: &mut Option<i64>,
) -> Result<Option<Held>, crate::capture::CaptureError> {
    loop {
        let p = match source.next_packet()? {
            Next::Packet(p) => p,
            Next::Eof => return Ok(None),
            Next::Idle => continue,
        };
        first_ts.get_or_insert(p.ts_micros);
        if evaluate {
            let sec = p.ts_micros.div_euclid(1_000_000);
            match *last_sec {
                Some(l) if sec > l => {
                    *last_sec = Some(sec);
                    return Ok(Some(Held {
                        ts_micros: p.ts_micros,
                        orig_len: p.orig_len,
                        data: p.data.to_vec(),
                    }));
                }
                None => *last_sec = Some(sec),
                _ => {}
            }
        }
        metering.ingest(&p);
    }
}

#[allow(clippy::too_many_arguments)]
async fn step(
    rules: &RuleSet,
    sessions: &[Session],
    metering: &Metering,
    ports: &[u16],
    at: i64,
    first: i64,
    sustain: &mut Sustain,
    enforcer: &mut Enforcer<NeverKill>,
    made: &mut Vec<Made>,
) {
    let tick = engine::tick(rules, sessions, &metering.meter, ports, at, sustain);
    for d in tick.due {
        sustain.acted(&d);
        let offset = std::time::Duration::from_micros(at.saturating_sub(first).max(0) as u64);
        let applied = enforcer.apply_at(&d, offset).await;
        let repeat = made.iter().any(|m| {
            m.decision.rule == d.rule
                && m.decision.session.session_id == d.session.session_id
                && m.applied == applied
        });
        if applied != Applied::AlreadyKilled && !repeat {
            made.push(Made {
                ts_micros: at,
                decision: d,
                applied,
            });
        }
    }
}

fn read_sessions(path: &Path) -> Result<Vec<Session>, String> {
    let body = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read sessions file {}: {e}", path.display()))?;
    parse_sessions(&body).map_err(|e| {
        format!(
            "{} is not a saved /status/sessions response: {e}",
            path.display()
        )
    })
}

fn time_of(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| micros.to_string())
}

fn verdict(applied: &Applied) -> (&'static str, Option<String>) {
    match applied {
        Applied::WouldKill => ("would-kill", None),
        Applied::Logged => ("log", None),
        Applied::Skipped(r) => ("kill-skipped", Some(r.clone())),
        Applied::Failed(r) => ("kill-failed", Some(r.clone())),
        Applied::Killed => ("kill", None),
        Applied::AlreadyKilled => ("already-killed", None),
    }
}

/// Per client address of the Plex-port flows, for a replay without sessions.
fn addresses(
    metering: &Metering,
    ports: &[u16],
    now: i64,
) -> Vec<(String, crate::rules::Measured)> {
    let mut by: std::collections::BTreeMap<String, crate::attribute::Bytes> = Default::default();
    for (k, f) in metering.meter.flows() {
        if ports.contains(&k.sport) {
            by.entry(crate::attribute::unmap(k.dst).to_string())
                .or_default()
                .add(f, now, 1.0);
        }
    }
    by.into_iter().map(|(a, b)| (a, b.measured(now))).collect()
}

/// What a replay found, as of the capture's last packet.
struct Report<'a> {
    args: &'a ReplayArgs,
    metering: &'a Metering,
    sessions: &'a [Session],
    attributed: &'a [Option<crate::attribute::Attributed>],
    made: &'a [Made],
    ports: &'a [u16],
    now: i64,
}

/// The parts of a report, as the printers use them.
type Parts<'a> = (
    &'a ReplayArgs,
    &'a Metering,
    &'a [Session],
    &'a [Option<crate::attribute::Attributed>],
    &'a [Made],
    &'a [u16],
    i64,
);

impl<'a> Report<'a> {
    fn parts(&self) -> Parts<'a> {
        (
            self.args,
            self.metering,
            self.sessions,
            self.attributed,
            self.made,
            self.ports,
            self.now,
        )
    }
}

fn print_text(r: &Report<'_>) {
    let (args, metering, sessions, attributed, made, ports, now) = r.parts();
    let mbps = |k: f64| format!("{:.2}", k / 1000.0);
    if metering.meter.latest_micros().is_some() {
        println!("as of {} (the capture's last packet)", time_of(now));
    } else {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        if args.all_tcp {
            println!("no TCP packets in this capture");
        } else {
            println!(
                "no TCP packets on port {} in this capture (--all-tcp meters every TCP connection)",
                ports.join(", ")
            );
        }
    }
    if sessions.is_empty() {
        for (addr, m) in addresses(metering, ports, now) {
            println!(
                "[{addr}] [-] [-] [{}, {}, {} Mbps] [-]",
                mbps(m.kbps_1m),
                mbps(m.kbps_5m),
                mbps(m.kbps_10m)
            );
        }
    }
    for (s, a) in sessions.iter().zip(attributed) {
        // No traffic seen for a session: unknown, not zero.
        let rates = a.map_or_else(
            || "no traffic seen".to_string(),
            |a| {
                let m = a.measured;
                let est = if m.estimated { " (estimated)" } else { "" };
                format!(
                    "{}, {}, {} Mbps{est}",
                    mbps(m.kbps_1m),
                    mbps(m.kbps_5m),
                    mbps(m.kbps_10m)
                )
            },
        );
        println!(
            "[{}] [{}] [{}] [{rates}] [{}]",
            s.address.as_deref().unwrap_or("-"),
            s.transcode_decision.as_deref().unwrap_or("-"),
            s.user.as_deref().unwrap_or("-"),
            s.display_title()
        );
    }
    for m in made {
        let (action, reason) = verdict(&m.applied);
        let reason = reason.map(|r| format!(" ({r})")).unwrap_or_default();
        println!(
            "{} {action} [{}] session {} ({}): {}{reason}",
            time_of(m.ts_micros),
            m.decision.rule,
            m.decision.session.session_id.as_deref().unwrap_or("-"),
            m.decision.session.user.as_deref().unwrap_or("-"),
            m.decision.message
        );
    }
    if args.flows {
        let mut flows: Vec<_> = metering.meter.flows().collect();
        flows.sort_by_key(|(k, _)| **k);
        for (k, f) in flows {
            println!(
                "flow {}:{} -> {}:{} packets {} bytes {}",
                k.src, k.sport, k.dst, k.dport, f.packets, f.bytes
            );
        }
    }
    let s = &metering.stats;
    println!(
        "packets: {} read, {} decoded, {} skipped",
        s.read, s.decoded, s.skipped
    );
}

fn print_json(r: &Report<'_>) {
    let (args, metering, sessions, attributed, made, ports, now) = r.parts();
    let round = |k: f64| (k * 1000.0).round() / 1000.0;
    let mut list: Vec<serde_json::Value> = sessions
        .iter()
        .zip(attributed)
        .map(|(s, a)| {
            let m = a.map(|a| a.measured);
            json!({
                "session_id": s.session_id,
                "session_key": s.session_key,
                "user": s.user,
                "address": s.address,
                "title": s.display_title(),
                "transcode_decision": s.transcode_decision,
                "measured_kbps_10s": m.map(|m| round(m.kbps_10s)),
                "measured_kbps_1m": m.map(|m| round(m.kbps_1m)),
                "measured_kbps_5m": m.map(|m| round(m.kbps_5m)),
                "measured_kbps_10m": m.map(|m| round(m.kbps_10m)),
                "estimated": m.is_some_and(|m| m.estimated),
                "connections": a.map_or(0, |a| a.flows),
            })
        })
        .collect();
    if sessions.is_empty() {
        list = addresses(metering, ports, now)
            .into_iter()
            .map(|(addr, m)| {
                json!({
                    "session_id": null, "session_key": null, "user": null, "address": addr,
                    "measured_kbps_10s": round(m.kbps_10s), "measured_kbps_1m": round(m.kbps_1m),
                    "measured_kbps_5m": round(m.kbps_5m), "measured_kbps_10m": round(m.kbps_10m),
                    "estimated": false,
                })
            })
            .collect();
    }
    let decisions: Vec<_> = made
        .iter()
        .map(|m| {
            let (action, reason) = verdict(&m.applied);
            json!({
                "ts": time_of(m.ts_micros),
                "rule": m.decision.rule,
                "action": action,
                "reason": reason,
                "session_id": m.decision.session.session_id,
                "user": m.decision.session.user,
                "message": m.decision.message,
                "estimated": m.decision.estimated,
            })
        })
        .collect();
    let s = &metering.stats;
    let mut out = json!({
        "as_of": metering.meter.latest_micros().map(time_of),
        "sessions": list,
        "decisions": decisions,
        "packets": {"read": s.read, "decoded": s.decoded, "skipped": s.skipped},
    });
    if args.flows {
        let mut flows: Vec<_> = metering.meter.flows().collect();
        flows.sort_by_key(|(k, _)| **k);
        out["flows"] = flows
            .into_iter()
            .map(|(k, f)| {
                json!({"src": k.src.to_string(), "sport": k.sport, "dst": k.dst.to_string(), "dport": k.dport, "packets": f.packets, "bytes": f.bytes})
            })
            .collect();
    }
    println!("{out}");
}
