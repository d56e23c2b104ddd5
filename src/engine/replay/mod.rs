//! Replay: the engine over a capture file, in packet time. Rules are evaluated once a
//! second of packet time, with sustain, exactly as the daemon would; the enforcer runs dry
//! against a terminator that never kills.

mod report;

use std::path::Path;
use std::time::Duration;

use crate::Failure;
use crate::attribute::Attributed;
use crate::capture::{CaptureError, Next, Packet, PacketSource};
use crate::config::EnforceConfig;
use crate::enforce::{Applied, AuditLog, Enforcer, Terminator};
use crate::meter::Metering;
use crate::plex::{Session, session::parse_sessions};
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
    pub made: Vec<Made>,
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
        enforcer: Enforcer::new(NeverKill, &cfg, AuditLog::none()),
        made: Vec::new(),
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
        let at = aside.ts_micros.div_euclid(1_000_000) * 1_000_000;
        run.step(&metering, at).await;
        metering.ingest(&Packet {
            ts_micros: aside.ts_micros,
            orig_len: aside.orig_len,
            data: &aside.data,
        });
    }
    let now = metering.meter.latest_micros().unwrap_or(0);
    if evaluate {
        run.step(&metering, now).await;
    }
    let made = run.made;
    let attributed = crate::attribute::attribute(&metering.meter, &sessions, &ports, now);
    Ok(Replay {
        metering,
        sessions,
        attributed,
        made,
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
            let sec = p.ts_micros.div_euclid(1_000_000);
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
    first: Option<i64>,
}

impl Run<'_> {
    /// One round at packet time `at`; each decision is recorded once.
    async fn step(&mut self, metering: &Metering, at: i64) {
        let tick = super::tick(
            self.rules,
            self.sessions,
            &metering.meter,
            self.ports,
            at,
            true,
            &mut self.tracker,
        );
        let first = self.first.unwrap_or(at);
        for d in tick.due {
            self.tracker.sustain.acted(&d);
            let offset = Duration::from_micros(at.saturating_sub(first).max(0) as u64);
            let applied = self.enforcer.apply_at(&d, offset).await;
            let repeat = self.made.iter().any(|m| {
                m.decision.rule == d.rule
                    && m.decision.session.session_id == d.session.session_id
                    && m.applied == applied
            });
            if applied != Applied::AlreadyKilled && !repeat {
                self.made.push(Made {
                    ts_micros: at,
                    decision: d,
                    applied,
                });
            }
        }
    }
}
