//! The rule lab: one condition, typed by the owner, compiled with exactly the checks a
//! config's `when` gets (it is compiled as a rule of a config), and tried against streams'
//! values without acting on anything.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{Config, ConfigError};

use super::{Outcome, RuleSet, Value, Vars};

/// The name the condition is compiled under (never shown).
const NAME: &str = "lab";

/// A condition that compiled.
#[derive(Debug)]
pub struct Condition {
    rules: RuleSet,
}

/// Why a condition does not compile, and where in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConditionError {
    pub error: String,
    /// 1-based line and column (in characters) of the condition the error points at.
    pub line: usize,
    pub column: usize,
    /// The same place as a byte offset into the condition.
    pub offset: usize,
}

/// One stream tried against a condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    /// true or false; null when a value it needed is unknown or it failed to evaluate.
    pub matched: Option<bool>,
    /// The values it read (null: unknown).
    pub values: BTreeMap<&'static str, Option<Value>>,
    /// The unknown values it needed.
    pub missing: Vec<&'static str>,
    /// Why it could not be evaluated, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Condition {
    /// Compiles `when` as a config's rule is compiled: the same variables, types, limits
    /// and messages.
    pub fn compile(when: &str) -> Result<Self, ConditionError> {
        let text = format!(
            "[[rules]]\nname = \"{NAME}\"\nwhen = {}\n",
            basic_string(when)
        );
        let config = Config::parse(&text, None).map_err(|e| locate(&e, None, when))?;
        match RuleSet::compile(&config) {
            Ok(rules) if rules.rules.len() == 1 => Ok(Self { rules }),
            Ok(_) => Err(ConditionError {
                error: "the condition did not compile".into(),
                line: 1,
                column: 1,
                offset: 0,
            }),
            Err(errors) => {
                let first = errors.first().cloned().unwrap_or(ConfigError {
                    file: None,
                    position: None,
                    message: "the condition did not compile".into(),
                });
                Err(locate(&first, Some(&config), when))
            }
        }
    }

    /// The condition as a rule set of one rule (what a backtest replays).
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The variables the condition reads.
    pub fn reads(&self) -> &[&'static str] {
        self.rules.rules.first().map_or(&[], |r| r.reads.as_slice())
    }

    /// Tries the condition on one stream's values.
    pub fn try_on(&self, vars: &Vars) -> Trial {
        let Some(e) = self.rules.evaluate(vars).into_iter().next() else {
            return Trial {
                matched: None,
                values: BTreeMap::new(),
                missing: Vec::new(),
                error: Some("nothing to evaluate".into()),
            };
        };
        let (matched, missing, error) = match e.outcome {
            Outcome::Match => (Some(true), Vec::new(), None),
            Outcome::NoMatch => (Some(false), Vec::new(), None),
            Outcome::Unknown { missing } => (None, missing, None),
            Outcome::Error(m) => (None, Vec::new(), Some(m)),
        };
        Trial {
            matched,
            values: e.values,
            missing,
            error,
        }
    }
}

/// `text` as a one-line TOML basic string: `\\`, `\"` and control characters escaped.
fn basic_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The error of the generated config as an error of the condition: its message without
/// the rule's name, its position mapped back into the condition.
fn locate(e: &ConfigError, config: Option<&Config>, when: &str) -> ConditionError {
    let mut message = e.message.as_str();
    for prefix in [format!("rule {NAME:?}: "), "when: ".to_string()] {
        message = message.strip_prefix(prefix.as_str()).unwrap_or(message);
    }
    if message.ends_with(" of the expression)")
        && let Some(at) = message.rfind(" (at ")
    {
        message = &message[..at];
    }
    let offset = match (config, config.and_then(|c| c.rules.first()), e.position) {
        (Some(c), Some(raw), Some(pos)) => {
            // The last character of the condition at or before the error's position.
            let span = raw.when.span();
            when.char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(when.len()))
                .take_while(|i| c.source.position(c.source.string_offset(&span, when, *i)) <= pos)
                .last()
                .unwrap_or(0)
        }
        _ => 0,
    };
    let before = &when[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ConditionError {
        error: message.to_string(),
        line,
        column,
        offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_point_into_the_condition() {
        let e = Condition::compile("user == \"bob\" && bitrat > 5").unwrap_err();
        assert!(e.error.contains("unknown variable `bitrat`"), "{e:?}");
        assert_eq!((e.line, e.column, e.offset), (1, 18, 17));
        let e = Condition::compile("user == \"b\\\"ob\"\n  && (").unwrap_err();
        assert!(e.error.starts_with("syntax error"), "{e:?}");
        assert_eq!(e.line, 2, "{e:?}");
        let e = Condition::compile("user > 5").unwrap_err();
        assert!(e.error.contains("type error"), "{e:?}");
        assert_eq!((e.line, e.column), (1, 1));
        assert!(Condition::compile("  ").is_err());
    }

    #[test]
    fn tries_known_and_unknown_values() {
        let c = Condition::compile("user == \"bob\" && measured_kbps_1m > 1000").unwrap();
        assert_eq!(c.reads(), ["user", "measured_kbps_1m"]);
        let mut v = Vars::default();
        v.set("user", Value::Text("bob".into()));
        let t = c.try_on(&v);
        assert_eq!(t.matched, None);
        assert_eq!(t.missing, ["measured_kbps_1m"]);
        v.set("measured_kbps_1m", Value::Number(2000.0));
        assert_eq!(c.try_on(&v).matched, Some(true));
        v.set("user", Value::Text("alice".into()));
        assert_eq!(c.try_on(&v).matched, Some(false));
    }
}
