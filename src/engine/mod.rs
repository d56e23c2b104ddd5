//! The one join between what is known of each stream and the rules.
//!
//! `hook`, `replay`, `run` and `demo` all come through here: they differ only in where
//! sessions and measurements come from and which enforcer receives the decisions.

pub mod daemon;

use std::collections::HashMap;
use std::time::Duration;

use crate::attribute::{self, Attributed};
use crate::capture::{DecodeStats, Packet, decode};
use crate::enforce::Decision;
use crate::meter::Meter;
use crate::plex::Session;
use crate::rules::{Evaluation, Measured, Outcome, RuleSet, Vars, vars};

/// One stream with its values and every rule's verdict.
#[derive(Debug)]
pub struct StreamEval<'r> {
    pub session: Session,
    pub vars: Vars,
    pub evaluations: Vec<Evaluation<'r>>,
}

impl StreamEval<'_> {
    /// The decisions of the matching rules, in rule order.
    pub fn decisions(&self) -> Vec<Decision> {
        self.evaluations
            .iter()
            .filter(|e| e.outcome == Outcome::Match)
            .map(|e| Decision {
                rule: e.rule.name.clone(),
                action: e.rule.action,
                session: self.session.clone(),
                message: e.rule.message.render(&e.rule.name, &self.vars),
                values: e.values.clone(),
                estimated: self.vars.estimated
                    && e.rule.reads.iter().any(|r| vars::MEASURED.contains(r)),
            })
            .collect()
    }
}

/// Evaluates every rule against every stream. `measure` gives a stream's measured
/// figures when a meter is running.
pub fn evaluate<'r>(
    rules: &'r RuleSet,
    sessions: &[Session],
    measure: impl Fn(&Session) -> Option<Measured>,
) -> Vec<StreamEval<'r>> {
    (0..sessions.len())
        .map(|i| evaluate_one(rules, sessions, i, measure(&sessions[i]).as_ref()))
        .collect()
}

/// Evaluates every rule against `sessions[index]`, seen among all `sessions` (for
/// counts such as user_streams).
pub fn evaluate_one<'r>(
    rules: &'r RuleSet,
    sessions: &[Session],
    index: usize,
    measured: Option<&Measured>,
) -> StreamEval<'r> {
    let s = &sessions[index];
    let vars = Vars::for_session(s, sessions, measured);
    let evaluations = rules.evaluate(&vars);
    for e in &evaluations {
        match &e.outcome {
            Outcome::Unknown { missing } => tracing::debug!(
                rule = %e.rule.name,
                session = s.session_id.as_deref().unwrap_or("-"),
                "rule not matched: unknown value of {}",
                missing.join(", ")
            ),
            Outcome::Error(msg) => tracing::warn!(
                rule = %e.rule.name,
                session = s.session_id.as_deref().unwrap_or("-"),
                "rule could not be evaluated: {msg}"
            ),
            _ => {}
        }
    }
    StreamEval {
        session: s.clone(),
        vars,
        evaluations,
    }
}

/// A stable name for a stream across polls.
pub fn stream_identity(s: &Session) -> String {
    match (&s.session_id, &s.session_key) {
        (Some(id), _) => format!("id:{id}"),
        (None, Some(key)) => format!("key:{key}"),
        (None, None) => format!(
            "addr:{}/{}",
            s.address.as_deref().unwrap_or("-"),
            s.display_title()
        ),
    }
}

/// Where a rule stands for one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleState {
    /// The condition does not hold.
    Ok,
    /// The condition holds and has held this long, short of the rule's sustain.
    Sustaining { held: Duration, sustain: Duration },
    /// The condition has held for the rule's sustain: act.
    Due { held: Duration },
    /// Acted on (killed, logged or skipped) during this hold.
    Acted,
}

/// How long each rule has held for each stream: a rule acts only once its condition held
/// continuously for its `sustain`, and once per continuous hold.
#[derive(Debug, Default)]
pub struct Sustain {
    held: HashMap<(String, String), Held>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    since: i64,
    acted: bool,
}

impl Sustain {
    /// Feeds one round of evaluations made at `now_micros`. Returns, per stream, each
    /// rule's state and the decisions that are due (and not yet acted on).
    pub fn update(
        &mut self,
        evals: &[StreamEval<'_>],
        now_micros: i64,
    ) -> Vec<(Vec<RuleState>, Vec<Decision>)> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(evals.len());
        for e in evals {
            let id = stream_identity(&e.session);
            let mut states = Vec::with_capacity(e.evaluations.len());
            let mut due = Vec::new();
            let decisions = e.decisions();
            for ev in &e.evaluations {
                let key = (id.clone(), ev.rule.name.clone());
                if ev.outcome != Outcome::Match {
                    states.push(RuleState::Ok);
                    continue;
                }
                let h = *self.held.entry(key.clone()).or_insert(Held {
                    since: now_micros,
                    acted: false,
                });
                seen.insert(key);
                let held = Duration::from_micros(now_micros.saturating_sub(h.since).max(0) as u64);
                if h.acted {
                    states.push(RuleState::Acted);
                } else if held >= ev.rule.sustain {
                    states.push(RuleState::Due { held });
                    if let Some(d) = decisions.iter().find(|d| d.rule == ev.rule.name) {
                        due.push(d.clone());
                    }
                } else {
                    states.push(RuleState::Sustaining {
                        held,
                        sustain: ev.rule.sustain,
                    });
                }
            }
            out.push((states, due));
        }
        self.held.retain(|k, _| seen.contains(k));
        out
    }

    /// Marks a due decision as acted on: it is not due again while its condition holds.
    pub fn acted(&mut self, d: &Decision) {
        if let Some(h) = self
            .held
            .get_mut(&(stream_identity(&d.session), d.rule.clone()))
        {
            h.acted = true;
        }
    }
}

/// Packets in, flows metered: the same for a live capture and a file.
#[derive(Debug)]
pub struct Metering {
    pub meter: Meter,
    pub stats: DecodeStats,
    linktype: i32,
    /// Only connections with one of these ports on either side are metered; `None`
    /// meters every TCP connection.
    ports: Option<Vec<u16>>,
}

impl Metering {
    pub fn new(linktype: i32, ports: Option<Vec<u16>>) -> Self {
        Self {
            meter: Meter::new(),
            stats: DecodeStats::default(),
            linktype,
            ports,
        }
    }

    /// Decodes one frame and meters it; undecodable frames are counted and skipped.
    /// The port check happens here, after decoding, so VLAN-tagged and cooked frames are
    /// filtered exactly like plain Ethernet ones.
    #[inline]
    pub fn ingest(&mut self, p: &Packet<'_>) {
        if let Ok(seg) = self.stats.count(decode(self.linktype, p.data)) {
            let wanted = match &self.ports {
                None => true,
                Some(ports) => ports.contains(&seg.sport) || ports.contains(&seg.dport),
            };
            if wanted {
                self.meter.record(p.ts_micros, &seg);
            }
        }
    }
}

/// One evaluation round: every stream with its measured figures, its rule states, and the
/// decisions now due.
#[derive(Debug)]
pub struct Tick<'r> {
    pub streams: Vec<StreamEval<'r>>,
    pub attributed: Vec<Option<Attributed>>,
    pub states: Vec<Vec<RuleState>>,
    pub due: Vec<Decision>,
}

/// The join of measurement and rules, as of `now_micros`: attributes the meter's flows to
/// the sessions, evaluates every rule, and advances sustain.
pub fn tick<'r>(
    rules: &'r RuleSet,
    sessions: &[Session],
    meter: &Meter,
    ports: &[u16],
    now_micros: i64,
    sustain: &mut Sustain,
) -> Tick<'r> {
    let attributed = attribute::attribute(meter, sessions, ports, now_micros);
    let streams: Vec<StreamEval<'r>> = (0..sessions.len())
        .map(|i| {
            evaluate_one(
                rules,
                sessions,
                i,
                attributed[i].as_ref().map(|a| &a.measured),
            )
        })
        .collect();
    let mut states = Vec::with_capacity(streams.len());
    let mut due = Vec::new();
    for (s, d) in sustain.update(&streams, now_micros) {
        states.push(s);
        due.extend(d);
    }
    Tick {
        streams,
        attributed,
        states,
        due,
    }
}
