//! Replay: the engine over a capture file, in packet time. Rules are evaluated once a
//! second of packet time, with sustain, exactly as the daemon would; the enforcer runs dry
//! against a terminator that never kills.

mod report;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::Failure;
use crate::attribute::Attributed;
use crate::capture::{CaptureError, Next, Packet, PacketSource};
use crate::config::EnforceConfig;
use crate::enforce::{Applied, AuditLog, Enforcer, Terminator};
use crate::meter::Metering;
use crate::micros::Micros;
use crate::plex::Session;
use crate::plex::session::{parse_sessions, parse_source_facts, rating_keys};
use crate::rules::Outcome;
use crate::rules::{Decision, RuleSet};

use super::Tracker;

/// What to replay.
#[derive(Debug, Clone)]
pub struct Options {
    /// The sessions to attribute traffic to (a saved /status/sessions), or none.
    pub sessions: Vec<Session>,
    /// Plex's ports.
    pub ports: Vec<u16>,
    /// Meter every TCP connection, not only Plex's ports.
    pub all_tcp: bool,
    /// The enforcement settings (the budget and exemptions apply; it always runs dry).
    pub enforce: EnforceConfig,
}

/// A decision made while replaying, with its packet time.
#[derive(Debug, Clone)]
pub struct Made {
    pub ts_micros: i64,
    pub decision: Decision,
    pub applied: Applied,
}

/// What a replay found, as of the capture's last packet.
#[derive(Debug)]
pub struct Replay {
    pub metering: Metering,
    pub sessions: Vec<Session>,
    pub attributed: Vec<Option<Attributed>>,
    /// For a session without a figure because it shares its address: the address's total.
    pub addresses: Vec<Option<crate::attribute::AddressTotal>>,
    pub made: Vec<Made>,
    /// Rules that could not be judged at the end, per session.
    pub unevaluated: Vec<Unevaluated>,
    pub ports: Vec<u16>,
    pub all_tcp: bool,
    /// The capture's last packet time.
    pub now: i64,
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
    async fn stop_transcode(&self, _: &str) -> Result<(), String> {
        Err("replay never kills".into())
    }
}

/// Reads a saved `/status/sessions` response.
pub fn load_sessions(path: &Path) -> Result<Vec<Session>, Failure> {
    let body = std::fs::read_to_string(path).map_err(|e| {
        Failure::Usage(format!("cannot read sessions file {}: {e}", path.display()))
    })?;
    parse_sessions(&body).map_err(|e| {
        Failure::Usage(format!(
            "{} is not a saved /status/sessions response: {e}",
            path.display()
        ))
    })
}

/// Fills the sessions' source facts from saved `/library/metadata/{ratingKey}` responses:
/// files, or folders of them (every `.xml` inside). Returns how many sessions got facts.
pub fn fill_sources(sessions: &mut [Session], paths: &[PathBuf]) -> Result<usize, Failure> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| {
                Failure::Usage(format!("cannot read the folder {}: {e}", p.display()))
            })?;
            let mut inside: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "xml"))
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    let mut by_key: HashMap<String, String> = HashMap::new();
    for f in &files {
        let body = std::fs::read_to_string(f).map_err(|e| {
            Failure::Usage(format!("cannot read metadata file {}: {e}", f.display()))
        })?;
        let keys = rating_keys(&body).map_err(|e| {
            Failure::Usage(format!(
                "{} is not a saved /library/metadata response: {e}",
                f.display()
            ))
        })?;
        for k in keys {
            by_key.insert(k, body.clone());
        }
    }
    let mut filled = 0;
    for s in sessions.iter_mut().filter(|s| !s.live) {
        let Some(body) = s.rating_key.as_ref().and_then(|k| by_key.get(k)) else {
            continue;
        };
        if let Ok(f) = parse_source_facts(body, s.media_id.as_deref()) {
            s.source_bitrate_kbps = f.bitrate_kbps;
            s.source_resolution = f.resolution;
            filled += 1;
        }
    }
    Ok(filled)
}

/// A rule that could not be judged for a session at the end of the capture.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unevaluated {
    pub rule: String,
    pub session_id: Option<String>,
    /// The variables whose values were unknown.
    pub missing: Vec<String>,
    /// Why, and what would help.
    pub why: String,
}

/// Says why each of `missing` was unknown in a replay.
fn why(missing: &[&str]) -> String {
    let has = |names: &[&str]| missing.iter().any(|m| names.contains(m));
    let mut out = Vec::new();
    if has(&["source_bitrate", "source_resolution"]) {
        out.push("a saved /status/sessions has no source facts: add --metadata with the /library/metadata/{ratingKey} responses (a file or a folder)");
    }
    if missing.iter().any(|m| m.starts_with("measured_")) {
        out.push("no traffic in the capture was attributed to this session");
    }
    if out.is_empty() {
        out.push("Plex did not report it in the saved sessions");
    }
    out.join("; ")
}

/// Replays `source` through the engine.
pub async fn replay(
    mut source: PacketSource,
    rules: &RuleSet,
    opts: Options,
) -> Result<Replay, CaptureError> {
    let Options {
        sessions,
        ports,
        all_tcp,
        enforce,
    } = opts;
    let mut metering = Metering::new(source.linktype(), (!all_tcp).then(|| ports.clone()));
    let mut cfg = enforce;
    cfg.dry_run = true;
    let mut run = Run {
        rules,
        sessions: &sessions,
        ports: &ports,
        tracker: Tracker::default(),
        enforcer: Enforcer::new(
            NeverKill,
            &cfg,
            crate::state::State::memory(),
            AuditLog::none(),
        ),
        made: Vec::new(),
        unevaluated: Vec::new(),
        first: None,
    };
    let evaluate = !rules.is_empty() && !sessions.is_empty();
    // Packets are pumped in a tight loop until the first one of a new second, the engine
    // ticks, then that packet is metered and pumping goes on.
    let mut last_sec: Option<i64> = None;
    while let Some(aside) = pump(
        &mut source,
        &mut metering,
        evaluate,
        &mut last_sec,
        &mut run.first,
    )? {
        let at = Micros(aside.ts_micros).floor_sec();
        run.step(&metering, at).await;
        metering.ingest(&Packet {
            ts_micros: aside.ts_micros,
            orig_len: aside.orig_len,
            data: &aside.data,
        });
    }
    let now = metering.meter.latest_micros().unwrap_or(0);
    if evaluate {
        run.step(&metering, Micros(now)).await;
    }
    let (made, unevaluated) = (run.made, run.unevaluated);
    let attributed = crate::attribute::attribute(&metering.meter, &sessions, &ports, now);
    let addresses =
        crate::attribute::address_totals(&metering.meter, &sessions, &ports, now, &attributed);
    Ok(Replay {
        metering,
        sessions,
        attributed,
        addresses,
        made,
        unevaluated,
        ports,
        all_tcp,
        now,
    })
}

/// A packet kept aside while the engine ticks.
struct Aside {
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
) -> Result<Option<Aside>, CaptureError> {
    loop {
        let p = match source.next_packet()? {
            Next::Packet(p) => p,
            Next::Eof => return Ok(None),
            Next::Idle => continue,
        };
        first_ts.get_or_insert(p.ts_micros);
        if evaluate {
            let sec = Micros(p.ts_micros).secs();
            match *last_sec {
                Some(l) if sec > l => {
                    *last_sec = Some(sec);
                    return Ok(Some(Aside {
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

/// The engine's state through a replay.
struct Run<'a> {
    rules: &'a RuleSet,
    sessions: &'a [Session],
    ports: &'a [u16],
    tracker: Tracker,
    enforcer: Enforcer<NeverKill>,
    made: Vec<Made>,
    /// As of the latest round.
    unevaluated: Vec<Unevaluated>,
    first: Option<i64>,
}

impl Run<'_> {
    /// One round at packet time `at`; each decision is recorded once.
    async fn step(&mut self, metering: &Metering, at: Micros) {
        let tick = super::tick(
            self.rules,
            self.sessions,
            &metering.meter,
            self.ports,
            at,
            true,
            &mut self.tracker,
        );
        self.unevaluated = tick
            .streams
            .iter()
            .flat_map(|e| {
                e.evaluations.iter().filter_map(|ev| match &ev.outcome {
                    Outcome::Unknown { missing } => Some(Unevaluated {
                        rule: ev.rule.name.clone(),
                        session_id: e.session.session_id.clone(),
                        missing: missing.iter().map(|m| m.to_string()).collect(),
                        why: why(missing),
                    }),
                    _ => None,
                })
            })
            .collect();
        let first = self.first.map_or(at, Micros);
        for d in tick.due {
            self.tracker.sustain.acted(&d);
            let offset = at.duration_since(first);
            let applied = self.enforcer.apply_at(&d, offset).await;
            // A throttle decided here is kept in mind (not put on), so that its escalation
            // and `throttled_for` play out in packet time as they would live.
            if matches!(applied, Applied::WouldThrottle | Applied::Throttled) {
                self.tracker
                    .throttled
                    .on(d.session.identity(), d.rule.clone(), at);
            }
            let repeat = self.made.iter().any(|m| {
                m.decision.rule == d.rule
                    && m.decision.session.session_id == d.session.session_id
                    && m.applied == applied
            });
            if applied != Applied::AlreadyKilled && !repeat {
                self.made.push(Made {
                    ts_micros: at.0,
                    decision: d,
                    applied,
                });
            }
        }
    }
}
