//! The one join between what is known of each stream and the rules.
//!
//! `hook`, `replay`, `run` and `demo` all come through here: they differ only in where
//! sessions and measurements come from and which enforcer receives the decisions.

pub mod backtest;
pub mod clock;
pub mod open;
pub mod query;
pub mod replay;
pub mod row;
pub mod usage;

pub use clock::{Clock, SystemClock};

use std::collections::HashMap;
use std::time::Duration;

use crate::attribute::{self, Attributed};
use crate::config::MeasureSource;
use crate::meter::{Measured, Meter, RateSource};
use crate::micros::Micros;
use crate::plex::Session;
use crate::plex::bandwidth::Counters;
use crate::rules::{Decision, Evaluation, Observed, Outcome, Population, RuleSet, Vars, vars};

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
                values: with_rate_source(e, &self.vars),
                estimated: self.vars.estimated
                    && e.rule.reads.iter().any(|r| vars::MEASURED.contains(r)),
                vars: self.vars.clone(),
                throttle: e.rule.throttle,
            })
            .collect()
    }
}

/// The values a rule read, and where the measured figures came from when it read one:
/// an audit record says whether a kill rested on packets or on Plex's counters.
fn with_rate_source(
    e: &Evaluation<'_>,
    vars: &Vars,
) -> std::collections::BTreeMap<&'static str, Option<crate::rules::Value>> {
    let mut values = e.values.clone();
    if e.rule.reads.iter().any(|r| vars::MEASURED.contains(r))
        && let Some(source) = vars.get("rate_source")
    {
        values.insert("rate_source", Some(source.clone()));
    }
    values
}

/// Each stream's measured figures as of `now`, from the sources configured:
///
/// - `Packets`: the meter's connections attributed to the sessions.
/// - `Plex`: Plex's per-second counters, for each stream that is the only one of its
///   account on its device; unknown otherwise (never shared out).
/// - `Both`: packets first, with Plex's counters splitting several viewers behind one
///   address where their series match unambiguously; Plex's figure for a stream packets
///   have none for.
pub fn measure(
    meter: &Meter,
    sessions: &[Session],
    ports: &[u16],
    now: Micros,
    source: MeasureSource,
    counters: Option<&Counters>,
    owners: Option<&attribute::Owners>,
) -> Vec<Option<Attributed>> {
    let now_sec = now.secs();
    let from_plex = |i: usize| -> Option<Attributed> {
        let [kbps_10s, kbps_1m, kbps_5m, kbps_10m] = counters?.kbps(sessions, i, now_sec)?;
        Some(Attributed {
            measured: Measured {
                kbps_10s,
                kbps_1m,
                kbps_5m,
                kbps_10m,
                estimated: false,
                source: RateSource::Plex,
            },
            flows: 0,
            exact: Vec::new(),
        })
    };
    match source {
        MeasureSource::Packets => {
            attribute::attribute_with(meter, sessions, ports, now.0, None, owners)
        }
        MeasureSource::Plex => (0..sessions.len()).map(from_plex).collect(),
        MeasureSource::Both => {
            attribute::attribute_with(meter, sessions, ports, now.0, counters, owners)
                .into_iter()
                .enumerate()
                .map(|(i, a)| a.or_else(|| from_plex(i)))
                .collect()
        }
    }
}

/// Evaluates every rule against every stream. `measure` gives a stream's measured
/// figures when a meter is running.
pub fn evaluate<'r>(
    rules: &'r RuleSet,
    sessions: &[Session],
    measure: impl Fn(&Session) -> Option<Measured>,
) -> Vec<StreamEval<'r>> {
    let population = Population::of(sessions);
    (0..sessions.len())
        .map(|i| {
            let observed = Observed {
                measured: measure(&sessions[i]),
                now_micros: Some(crate::state::now_micros()),
                ..Observed::default()
            };
            evaluate_among(rules, sessions, &population, i, &observed, None)
        })
        .collect::<Vec<_>>()
        .apply_picks()
}

/// Rules over stream counts act on the stream they pick (`Rule::pick`), not on every
/// stream of the user they hold for: the others of the user are marked as not matching.
trait Picks {
    fn apply_picks(self) -> Self;
}

impl Picks for Vec<StreamEval<'_>> {
    fn apply_picks(mut self) -> Self {
        use crate::rules::pick::{Pick, start_order};
        let rules = self.first().map_or(0, |s| s.evaluations.len());
        for r in 0..rules {
            let pick = self[0].evaluations[r].rule.pick;
            if pick == Pick::All {
                continue;
            }
            // The matching streams of each user, and which one is picked.
            let mut chosen: HashMap<String, usize> = HashMap::new();
            for (i, s) in self.iter().enumerate() {
                if s.evaluations[r].outcome != Outcome::Match {
                    continue;
                }
                let user = match (&s.session.user_id, &s.session.user) {
                    (Some(id), _) => format!("id:{id}"),
                    (None, Some(name)) => format!("name:{name}"),
                    (None, None) => format!("stream:{i}"),
                };
                let key = |j: usize| start_order(self[j].session.session_key.as_deref());
                let better = |old: usize| match pick {
                    Pick::Newest => key(i) > key(old),
                    _ => key(i) < key(old),
                };
                let slot = chosen.entry(user).or_insert(i);
                if better(*slot) {
                    *slot = i;
                }
            }
            let picked: std::collections::HashSet<usize> = chosen.into_values().collect();
            for (i, s) in self.iter_mut().enumerate() {
                if s.evaluations[r].outcome == Outcome::Match && !picked.contains(&i) {
                    s.evaluations[r].outcome = Outcome::NoMatch;
                }
            }
        }
        self
    }
}

/// Evaluates every rule against `sessions[index]`, seen among all `sessions` (for
/// counts such as user_streams). `throttled_by` names the rule whose throttle is on the
/// stream: a throttle rule's escalation matches only under its own rule's throttle.
pub fn evaluate_one<'r>(
    rules: &'r RuleSet,
    sessions: &[Session],
    index: usize,
    observed: &Observed,
    throttled_by: Option<&str>,
) -> StreamEval<'r> {
    evaluate_among(
        rules,
        sessions,
        &Population::of(sessions),
        index,
        observed,
        throttled_by,
    )
}

/// As [`evaluate_one`], with the per-user counts made once for every stream of a round.
pub fn evaluate_among<'r>(
    rules: &'r RuleSet,
    sessions: &[Session],
    population: &Population<'_>,
    index: usize,
    observed: &Observed,
    throttled_by: Option<&str>,
) -> StreamEval<'r> {
    let s = &sessions[index];
    let mut vars = Vars::for_session_among(s, population, observed);
    // What the configuration knows of the user, and the owner's clock.
    vars.set(
        "groups",
        crate::rules::Value::List(rules.groups.of_user(s.user.as_deref(), s.user_id)),
    );
    if let (Some(now), Some(zone)) = (observed.now_micros, &rules.timezone) {
        vars.set_clock(now, zone);
    }
    let mut evaluations = rules.evaluate(&vars);
    for e in &mut evaluations {
        if let Some(parent) = &e.rule.escalates
            && throttled_by != Some(parent.as_str())
        {
            e.outcome = Outcome::NoMatch;
        }
    }
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
/// continuously for its `sustain`, and once per continuous hold. Only time covered by fresh
/// session data counts, and a hold built on an estimated figure starts again when the
/// figure becomes exact (an estimate must not turn into a kill by waiting).
#[derive(Debug, Default)]
pub struct Sustain {
    held: HashMap<(String, String), Held>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    /// Microseconds of fresh data the condition has held for.
    held: i64,
    /// When the hold was last updated.
    last: i64,
    acted: bool,
    /// The owner was told of the hold (`notify_after`).
    warned: bool,
    /// The decision rested on an estimated figure at the last update.
    estimated: bool,
}

impl Sustain {
    /// Feeds one round of evaluations made at `now_micros`. Returns, per stream, each
    /// rule's state, the decisions that are due (and not yet acted on), and those whose
    /// hold just reached their `notify_after`. When `fresh`
    /// is false (Plex's data is stale) holds go on but the time since the last round is
    /// not counted.
    pub fn update(
        &mut self,
        evals: &[StreamEval<'_>],
        now_micros: i64,
        fresh: bool,
    ) -> Vec<(Vec<RuleState>, Vec<Decision>, Vec<Decision>)> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(evals.len());
        for e in evals {
            let id = e.session.identity();
            let mut states = Vec::with_capacity(e.evaluations.len());
            let mut due = Vec::new();
            let mut warn = Vec::new();
            let decisions = e.decisions();
            for ev in &e.evaluations {
                let key = (id.clone(), ev.rule.name.clone());
                if ev.outcome != Outcome::Match {
                    states.push(RuleState::Ok);
                    continue;
                }
                let decision = decisions.iter().find(|d| d.rule == ev.rule.name);
                let estimated = decision.is_some_and(|d| d.estimated);
                let start = Held {
                    held: 0,
                    last: now_micros,
                    acted: false,
                    warned: false,
                    estimated,
                };
                let h = self.held.entry(key.clone()).or_insert(start);
                if h.estimated && !estimated {
                    *h = start;
                } else {
                    if fresh {
                        h.held = h
                            .held
                            .saturating_add(now_micros.saturating_sub(h.last).max(0));
                    }
                    h.last = now_micros;
                    h.estimated = estimated;
                }
                let h = *h;
                seen.insert(key.clone());
                let held = Duration::from_micros(h.held.max(0) as u64);
                if h.acted {
                    states.push(RuleState::Acted);
                } else if held >= ev.rule.sustain {
                    states.push(RuleState::Due { held });
                    if let Some(d) = decision {
                        due.push(d.clone());
                    }
                } else {
                    states.push(RuleState::Sustaining {
                        held,
                        sustain: ev.rule.sustain,
                    });
                    if let (Some(after), Some(d)) = (ev.rule.notify_after, decision)
                        && held >= after
                        && !h.warned
                    {
                        warn.push(d.clone());
                        if let Some(h) = self.held.get_mut(&key) {
                            h.warned = true;
                        }
                    }
                }
            }
            out.push((states, due, warn));
        }
        self.held.retain(|k, _| seen.contains(k));
        out
    }

    /// Keeps only the holds of rules for which `keep` says yes (a reload drops the holds
    /// of rules that changed or went away).
    pub fn retain_rules(&mut self, keep: impl Fn(&str) -> bool) {
        self.held.retain(|(_, rule), _| keep(rule));
    }

    /// How long the hold behind `d` has lasted.
    pub fn held_for(&self, d: &Decision) -> Option<Duration> {
        self.held
            .get(&(d.session.identity(), d.rule.clone()))
            .map(|h| Duration::from_micros(h.held.max(0) as u64))
    }

    /// Marks a due decision as acted on: it is not due again while its condition holds.
    pub fn acted(&mut self, d: &Decision) {
        if let Some(h) = self.held.get_mut(&(d.session.identity(), d.rule.clone())) {
            h.acted = true;
        }
    }
}

/// One evaluation round: every stream with its measured figures, its rule states, and the
/// decisions now due.
#[derive(Debug)]
pub struct Tick<'r> {
    pub streams: Vec<StreamEval<'r>>,
    pub attributed: Vec<Option<Attributed>>,
    /// For a stream without a figure because it shares its address: the address's total
    /// (empty where nobody computed them).
    pub addresses: Vec<Option<attribute::AddressTotal>>,
    pub states: Vec<Vec<RuleState>>,
    pub due: Vec<Decision>,
    /// Holds that just reached their rule's `notify_after`: the owner is told.
    pub warn: Vec<Decision>,
}

/// What the engine remembers of each stream between rounds: how long each rule has held
/// and how long the stream has been paused.
#[derive(Debug, Default)]
pub struct Tracker {
    pub sustain: Sustain,
    pub pauses: Pauses,
    pub throttled: Throttled,
    /// What each user streamed (by `usage::user_of`, in lower case), when usage is
    /// recorded (the daemon); a user not listed streamed nothing.
    pub usage: Option<HashMap<String, crate::rules::UserUsage>>,
}

impl Tracker {
    /// What the user of `s` streamed, when usage is recorded.
    pub fn usage_of(&self, s: &Session) -> Option<crate::rules::UserUsage> {
        let by_user = self.usage.as_ref()?;
        Some(
            by_user
                .get(&usage::user_of(s).to_lowercase())
                .copied()
                .unwrap_or_default(),
        )
    }
}

/// Which streams are throttled, by which rule and since when: what `throttled_for` reads
/// and what arms a throttle rule's escalation. The daemon notes each throttle it puts on
/// or lifts (dry-run throttles too, so a dry run shows the whole chain).
#[derive(Debug, Default, Clone)]
pub struct Throttled {
    by: HashMap<String, (String, Micros)>,
}

impl Throttled {
    /// Notes that `rule` throttled the stream `identity` at `since`.
    pub fn on(&mut self, identity: String, rule: String, since: Micros) {
        self.by.insert(identity, (rule, since));
    }

    /// Notes that the stream's throttle was lifted.
    pub fn off(&mut self, identity: &str) {
        self.by.remove(identity);
    }

    /// The rule whose throttle is on the stream.
    pub fn rule(&self, identity: &str) -> Option<&str> {
        self.by.get(identity).map(|(r, _)| r.as_str())
    }

    /// Whole seconds the stream has been throttled as of `now` (0 when it is not).
    pub fn secs(&self, identity: &str, now: Micros) -> f64 {
        self.by
            .get(identity)
            .map_or(0.0, |(_, since)| now.whole_secs_since(*since) as f64)
    }

    pub fn is_empty(&self) -> bool {
        self.by.is_empty()
    }
}

/// The join of measurement and rules, as of `now`: attributes the meter's flows to
/// the sessions, notes pauses, evaluates every rule, and advances sustain (counting the time
/// since the last round only when `fresh`: the sessions are current).
pub fn tick<'r>(
    rules: &'r RuleSet,
    sessions: &[Session],
    meter: &Meter,
    ports: &[u16],
    now: Micros,
    fresh: bool,
    tracker: &mut Tracker,
) -> Tick<'r> {
    let attributed = attribute::attribute(meter, sessions, ports, now.0);
    let addresses = attribute::address_totals(meter, sessions, ports, now.0, &attributed);
    let mut tick = tick_measured(rules, sessions, attributed, now, fresh, tracker);
    tick.addresses = addresses;
    tick
}

/// [`tick`] with the streams' figures already measured (by [`measure`]).
pub fn tick_measured<'r>(
    rules: &'r RuleSet,
    sessions: &[Session],
    attributed: Vec<Option<Attributed>>,
    now: Micros,
    fresh: bool,
    tracker: &mut Tracker,
) -> Tick<'r> {
    let paused = tracker.pauses.observe(sessions, now);
    let population = Population::of(sessions);
    let streams: Vec<StreamEval<'r>> = (0..sessions.len())
        .map(|i| {
            let id = sessions[i].identity();
            let observed = Observed {
                measured: attributed[i].as_ref().map(|a| a.measured),
                paused_for_secs: Some(paused[i]),
                throttled_for_secs: Some(tracker.throttled.secs(&id, now)),
                usage: tracker.usage_of(&sessions[i]),
                now_micros: Some(now.0),
            };
            evaluate_among(
                rules,
                sessions,
                &population,
                i,
                &observed,
                tracker.throttled.rule(&id),
            )
        })
        .collect::<Vec<_>>()
        .apply_picks();
    let mut states = Vec::with_capacity(streams.len());
    let mut due = Vec::new();
    let mut warn = Vec::new();
    for (s, d, w) in tracker.sustain.update(&streams, now.0, fresh) {
        states.push(s);
        due.extend(d);
        warn.extend(w);
    }
    Tick {
        streams,
        attributed,
        warn,
        addresses: Vec::new(),
        states,
        due,
    }
}

/// How long each stream has been seen paused, from one observation to the next: the
/// daemon's `paused_for` and the hook's `--jbop paused` both count it here.
#[derive(Debug, Default)]
pub struct Pauses {
    since: HashMap<String, Micros>,
}

impl Pauses {
    /// Notes the sessions as seen at `now`; returns, per session, the whole seconds it has
    /// been paused (0 when it is not). Streams no longer listed are forgotten.
    pub fn observe(&mut self, sessions: &[Session], now: Micros) -> Vec<f64> {
        let mut seen = std::collections::HashSet::new();
        let out = sessions
            .iter()
            .map(|s| {
                let id = s.identity();
                let secs = if s.is_paused() {
                    let since = *self.since.entry(id.clone()).or_insert(now);
                    now.whole_secs_since(since) as f64
                } else {
                    self.since.remove(&id);
                    0.0
                };
                seen.insert(id);
                secs
            })
            .collect();
        self.since.retain(|k, _| seen.contains(k));
        out
    }

    /// Whole seconds `s` has been paused as of `now`, without noting anything.
    pub fn paused_for(&self, s: &Session, now: Micros) -> f64 {
        match self.since.get(&s.identity()) {
            Some(since) if s.is_paused() => now.whole_secs_since(*since) as f64,
            _ => 0.0,
        }
    }
}
