//! The one join between what is known of each stream and the rules.
//!
//! `hook`, `replay`, `run` and `demo` all come through here: they differ only in where
//! sessions and measurements come from and which enforcer receives the decisions.

use crate::enforce::Decision;
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
                session = ?s.session_id,
                "rule not matched: unknown value of {}",
                missing.join(", ")
            ),
            Outcome::Error(msg) => tracing::warn!(
                rule = %e.rule.name,
                session = ?s.session_id,
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
