//! Rules: CEL conditions over a stream's variables, compiled once at load.

pub mod arith;
mod compile;
pub mod decision;
pub mod lab;
pub mod limits;
pub mod numeric;
pub mod pick;
pub mod rate;
pub mod slips;
pub mod template;
pub mod types;
pub mod vars;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ConfigError};
pub use crate::meter::Measured;
use compile::{compile_escalation, compile_rule};
pub use decision::Decision;
pub use rate::ThrottleSpec;
pub use template::Template;
pub use vars::{Observed, Population, UserUsage, Value, Vars};

/// The message a kill shows when a rule or the hook gives none (as kill_stream.py).
pub const DEFAULT_MESSAGE: &str = "The server owner has ended the stream.";

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Kill,
    Log,
    /// Limit the stream's connections to a rate in the kernel (`Rule::throttle`).
    Throttle,
}

impl Action {
    /// The name written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Kill => "kill",
            Action::Log => "log",
            Action::Throttle => "throttle",
        }
    }
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub when: String,
    pub action: Action,
    pub message: Template,
    /// How long the condition must hold before acting (used by the daemon).
    pub sustain: Duration,
    /// The variables the condition reads, in the order they are listed.
    pub reads: Vec<&'static str>,
    /// The rate and release of a `throttle` rule.
    pub throttle: Option<ThrottleSpec>,
    /// Which of a user's matching streams it acts on.
    pub pick: pick::Pick,
    /// Tell the owner once the condition has held this long, before acting at `sustain`.
    pub notify_after: Option<Duration>,
    /// For a throttle rule's `escalate`: the throttle rule it escalates. It matches only
    /// while that rule's throttle is on the stream, and its sustain (`after`) counts from
    /// then.
    pub escalates: Option<String>,
    /// The condition as compiled, its `/` and `%` guarded (`arith`).
    program: cel::IdedExpr,
}

impl Rule {
    /// What a division by 0 made unknown: the variables read that are 0, or the division
    /// itself when none is.
    fn divided_by_zero(&self, v: &Vars) -> Vec<&'static str> {
        let zero: Vec<_> = self
            .reads
            .iter()
            .copied()
            .filter(|n| matches!(v.get(n), Some(Value::Number(x)) if *x == 0.0))
            .collect();
        if zero.is_empty() {
            vec!["a divisor of 0"]
        } else {
            zero
        }
    }

    /// Whether `other` holds under the same circumstances: same name, condition, action
    /// and sustain (a reload keeps the holds of such rules).
    pub fn same_condition(&self, other: &Rule) -> bool {
        self.name == other.name
            && self.when == other.when
            && self.action == other.action
            && self.sustain == other.sustain
            && self.throttle == other.throttle
            && self.escalates == other.escalates
            && self.pick == other.pick
    }
}

/// The rules of a configuration, with the CEL environment they were compiled in.
#[derive(Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    env: Option<Arc<cel::Env>>,
    /// `[groups]`, for the `groups` variable.
    pub groups: crate::config::people::Groups,
    /// `[enforce] timezone`, for `hour`, `minute`, `weekday` and `date`.
    pub timezone: Option<jiff::tz::TimeZone>,
}

/// The result of one rule on one stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Match,
    NoMatch,
    /// A value the rule needed is unknown: the rule does not match.
    Unknown {
        missing: Vec<&'static str>,
    },
    /// The condition failed at run time (a type error the load check could not see).
    Error(String),
}

/// One rule's verdict with the values it read.
#[derive(Debug, Clone)]
pub struct Evaluation<'r> {
    pub rule: &'r Rule,
    pub outcome: Outcome,
    /// The values the rule read; `None` for unknown.
    pub values: BTreeMap<&'static str, Option<Value>>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules)
            .finish()
    }
}

impl RuleSet {
    /// Compiles every rule of the config; collects every error so `check` can list them all.
    pub fn compile(config: &Config) -> Result<Self, Vec<ConfigError>> {
        let env = Arc::new(environment());
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for raw in &config.rules {
            if !seen.insert(raw.name.get_ref().clone()) {
                errors.push(config.source.error(
                    Some(raw.name.span()),
                    format!(
                        "rule {:?} is defined twice: rule names must be unique",
                        raw.name.get_ref()
                    ),
                ));
                continue;
            }
            match compile_rule(&env, raw, config) {
                Ok(r) => rules.push(r),
                Err(e) => errors.push(e),
            }
            if let Some(esc) = &raw.escalate {
                match compile_escalation(&env, raw, esc, config) {
                    Ok(r) if !seen.insert(r.name.clone()) => errors.push(config.source.error(
                        Some(esc.span()),
                        format!(
                            "rule {:?}: its escalation is named {:?}, like another rule: rename one",
                            raw.name.get_ref(),
                            r.name
                        ),
                    )),
                    Ok(r) => rules.push(r),
                    Err(e) => errors.push(e),
                }
            }
        }
        if errors.is_empty() {
            Ok(Self {
                rules,
                env: Some(env),
                groups: config.groups.clone(),
                timezone: Some(config.enforce.timezone.clone()),
            })
        } else {
            Err(errors)
        }
    }

    /// The rule of this name.
    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Evaluates every rule against one stream's values.
    pub fn evaluate<'r>(&'r self, v: &Vars) -> Vec<Evaluation<'r>> {
        let Some(env) = &self.env else {
            return Vec::new();
        };
        self.rules.iter().map(|r| r.evaluate(env, v)).collect()
    }
}

impl Rule {
    fn evaluate<'r>(&'r self, env: &Arc<cel::Env>, v: &Vars) -> Evaluation<'r> {
        let values: BTreeMap<_, _> = self.reads.iter().map(|n| (*n, v.get(n).cloned())).collect();
        let outcome = match run(env, &self.program, v) {
            Ok(cel::Value::Bool(true)) => Outcome::Match,
            Ok(cel::Value::Bool(false)) => Outcome::NoMatch,
            Ok(other) => Outcome::Error(format!("the condition gave {other:?}, not true or false")),
            Err(e) if arith::is_by_zero(&e) => Outcome::Unknown {
                missing: self.divided_by_zero(v),
            },
            Err(cel::ExecutionError::UndeclaredReference(_)) => Outcome::Unknown {
                missing: self
                    .reads
                    .iter()
                    .copied()
                    .filter(|n| v.get(n).is_none())
                    .collect(),
            },
            Err(e) => Outcome::Error(e.to_string()),
        };
        Evaluation {
            rule: self,
            outcome,
            values,
        }
    }
}

/// Runs a program with the known values bound; unknown values stay unbound, so a
/// condition that needs one fails with an undeclared reference (CEL's `||` and `&&`
/// still short-circuit around it).
fn run(
    env: &Arc<cel::Env>,
    program: &cel::IdedExpr,
    v: &Vars,
) -> Result<cel::Value, cel::ExecutionError> {
    let mut ctx = cel::Context::with_env(env.clone());
    for (name, value) in v.iter() {
        let value = match value {
            Value::Text(s) => cel::Value::String(Arc::new(s.clone())),
            Value::Number(n) => cel::Value::Float(*n),
            Value::Flag(b) => cel::Value::Bool(*b),
            Value::List(l) => cel::Value::List(Arc::new(
                l.iter()
                    .map(|x| cel::Value::String(Arc::new(x.clone())))
                    .collect(),
            )),
        };
        ctx.add_variable_from_value(name, value);
    }
    cel::Value::resolve(program, &ctx)
}

/// CEL's standard environment with `arith`'s division and remainder.
fn environment() -> cel::Env {
    let mut env = cel::Env::stdlib();
    // Two new names in a fresh environment: declaring them cannot clash.
    if let Err(e) = arith::install(&mut env) {
        tracing::error!("rules: cannot declare the guarded division: {e}");
    }
    env
}
