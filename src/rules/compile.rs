//! Compiling one rule of the configuration: its condition (slips, syntax, variables, types
//! and values, limits), its action, throttle, message, sustain, pick and notify_after, each
//! error located in the file.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ConfigError, RawRule, parse_duration};

use super::*;

pub(super) fn compile_rule(
    env: &Arc<cel::Env>,
    raw: &RawRule,
    config: &Config,
) -> Result<Rule, ConfigError> {
    let src = &config.source;
    let name = raw.name.get_ref().trim().to_string();
    if name.is_empty() {
        return Err(src.error(Some(raw.name.span()), "a rule's name must not be empty"));
    }
    let here = |span: std::ops::Range<usize>, msg: String| {
        src.error(Some(span), format!("rule {name:?}: {msg}"))
    };
    let when = raw.when.get_ref();
    // The file position of byte `offset` of the expression.
    let file_position =
        |offset: usize| src.position(src.string_offset(&raw.when.span(), when, offset));
    // Points at a (line, column) inside the expression, as a file position.
    let inside = |line: usize, col: usize, msg: String| {
        let offset = when
            .split_inclusive('\n')
            .take(line.saturating_sub(1))
            .map(str::len)
            .sum::<usize>()
            + col.saturating_sub(1);
        ConfigError {
            file: src.file.clone(),
            position: Some(file_position(offset)),
            message: format!("rule {name:?}: when: {msg} (at {line}:{col} of the expression)"),
        }
    };
    // Points at byte `offset` of the expression.
    let at_byte = |offset: usize, msg: String| {
        let (line, col) = line_col(when, offset);
        ConfigError {
            file: src.file.clone(),
            position: Some(file_position(offset)),
            message: format!("rule {name:?}: when: {msg} (at {line}:{col} of the expression)"),
        }
    };
    // Points at the first character of the expression.
    let at_start = |msg: String| ConfigError {
        file: src.file.clone(),
        position: Some(file_position(0)),
        message: format!("rule {name:?}: when: {msg}"),
    };
    if when.trim().is_empty() {
        return Err(here(
            raw.when.span(),
            "`when` is empty: write a condition such as transcode_decision == \"transcode\"".into(),
        ));
    }
    // Too long or too deep a condition would overflow the stack of the parser or of the
    // evaluator: refused before parsing, and again on the parsed tree.
    if let Err(e) = limits::check_text(when) {
        return Err(if e.offset == 0 {
            at_start(e.message)
        } else {
            at_byte(e.offset, e.message)
        });
    }
    if let Some((at, msg)) = slips::before_parsing(when) {
        return Err(at_byte(at, msg));
    }
    let parse = |text: &str| limits::parse(env, text).map_err(|m| here(raw.when.span(), m));
    // Syntax errors are reported against what the user wrote.
    let original = match parse(when)? {
        limits::Parsed::Program(p) => p,
        limits::Parsed::TooDeep(depth) => return Err(at_start(limits::too_deep(depth))),
        limits::Parsed::Syntax(errs) => {
            let first = errs.errors.first();
            let (line, col) = first.map_or((1, 1), |e| {
                (e.pos.0.max(1) as usize, e.pos.1.max(1) as usize)
            });
            let msg = first.map_or_else(|| errs.to_string(), |e| e.msg.clone());
            let msg = msg
                .strip_prefix("Syntax error: ")
                .map(str::to_string)
                .unwrap_or(msg);
            return Err(inside(line, col, format!("syntax error: {msg}")));
        }
    };
    let mut reads = Vec::new();
    for var in original.references().variables() {
        match vars::lookup(var) {
            Some((n, _)) => reads.push(n),
            None if bound_by_macro(when, var) => {}
            None => {
                return Err(at_byte(
                    when.find(var).unwrap_or(0),
                    format!(
                        "unknown variable `{var}`{}",
                        slips::unquoted(var).unwrap_or_else(|| slips::suggest(var))
                    ),
                ));
            }
        }
    }
    reads.sort_by_key(|n| vars::VARIABLES.iter().position(|(v, _)| v == n));
    // Every branch type-checked, and values checked against the known sets.
    if let Err(e) = types::check(original.expression(), original.source_info()) {
        let mut byte = e.offset.min(when.len());
        while !when.is_char_boundary(byte) {
            byte -= 1;
        }
        return Err(at_byte(byte, e.message));
    }
    let program = match parse(&numeric::decimalise(when))? {
        limits::Parsed::Program(p) => {
            let mut e = p.expression().clone();
            if !arith::guard(&mut e) {
                return Err(here(
                    raw.when.span(),
                    "`when` divides by 0, which is never known: divide by a value that can be other than 0".into(),
                ));
            }
            e
        }
        limits::Parsed::TooDeep(depth) => return Err(at_start(limits::too_deep(depth))),
        limits::Parsed::Syntax(e) => {
            return Err(here(raw.when.span(), format!("cannot compile: {e}")));
        }
    };
    // A type error or a non-boolean result shows on sample values of the right types.
    match run(env, &program, &Vars::samples()) {
        Ok(cel::Value::Bool(_)) => {}
        // A sample value of 0 under a division, a fraction under `%`: the known values
        // decide at run time.
        Err(e) if arith::depends_on_values(&e) => {}
        Ok(other) => {
            return Err(here(
                raw.when.span(),
                format!(
                    "`when` must be true or false, but it gives a {}",
                    type_name(&other)
                ),
            ));
        }
        Err(e) => return Err(here(raw.when.span(), format!("when: type error: {e}"))),
    }
    let action_span = raw
        .action
        .as_ref()
        .map(|a| a.span())
        .unwrap_or_else(|| raw.name.span());
    let action = match raw.action.as_ref().map(|a| a.get_ref().as_str()) {
        None | Some("kill") => Action::Kill,
        Some("log") => Action::Log,
        Some("throttle") => Action::Throttle,
        Some(other) => {
            return Err(here(
                action_span,
                format!("action {other:?} is not \"kill\", \"throttle\" or \"log\""),
            ));
        }
    };
    let throttle = if action == Action::Throttle {
        let Some(rate) = &raw.rate else {
            return Err(here(
                action_span,
                "action \"throttle\" needs a rate, such as rate = \"5 Mbps\"".into(),
            ));
        };
        let rate_bps = rate::parse_rate(rate.get_ref())
            .map_err(|m| here(rate.span(), format!("rate: {m}")))?;
        let release_after = match &raw.release_after {
            None => None,
            Some(s) => Some(
                parse_duration(s.get_ref())
                    .map_err(|m| here(s.span(), format!("release_after: {m}")))?,
            ),
        };
        if !config.capture.enabled {
            return Err(here(
                action_span,
                "action \"throttle\" limits the connections the capture sees, but [capture] enabled = false: turn the capture on or use \"kill\"".into(),
            ));
        }
        if !config.measure.source.packets() {
            return Err(here(
                action_span,
                format!(
                    "action \"throttle\" limits the connections the capture sees, but [measure] source = \"{}\" reads no packets: use \"packets\" or \"both\", or \"kill\"",
                    config.measure.source.as_str()
                ),
            ));
        }
        if config.capture.interface.as_deref() == Some("any") {
            return Err(here(
                action_span,
                "action \"throttle\" shapes one interface's egress, but [capture] interface = \"any\": name the interface Plex sends on".into(),
            ));
        }
        Some(ThrottleSpec {
            rate_bps,
            release_after,
        })
    } else {
        let only_throttle = [
            ("rate", raw.rate.as_ref().map(|s| s.span())),
            (
                "release_after",
                raw.release_after.as_ref().map(|s| s.span()),
            ),
            ("escalate", raw.escalate.as_ref().map(|s| s.span())),
        ];
        if let Some((key, Some(span))) = only_throttle.into_iter().find(|(_, s)| s.is_some()) {
            return Err(here(
                span,
                format!(
                    "{key} belongs to action = \"throttle\"; this rule's action is \"{}\"",
                    action.as_str()
                ),
            ));
        }
        None
    };
    let message = match &raw.message {
        None => Template::literal(DEFAULT_MESSAGE),
        Some(m) => Template::parse(m.get_ref()).map_err(|e| {
            let (l, c) = src.position(src.string_offset(&m.span(), m.get_ref(), e.offset));
            ConfigError {
                file: src.file.clone(),
                position: Some((l, c)),
                message: format!("rule {name:?}: message: {}", e.message),
            }
        })?,
    };
    let sustain = match &raw.sustain {
        None => Duration::ZERO,
        Some(s) => {
            parse_duration(s.get_ref()).map_err(|m| here(s.span(), format!("sustain: {m}")))?
        }
    };
    let notify_after = match &raw.notify_after {
        None => None,
        Some(n) => {
            let d = parse_duration(n.get_ref())
                .map_err(|m| here(n.span(), format!("notify_after: {m}")))?;
            if d >= sustain {
                return Err(here(
                    n.span(),
                    format!(
                        "notify_after ({}) must be shorter than sustain ({}): the owner is told before the rule acts",
                        n.get_ref(),
                        raw.sustain.as_ref().map_or("0s", |s| s.get_ref().as_str())
                    ),
                ));
            }
            Some(d)
        }
    };
    let pick =
        pick::parse(raw.pick.as_ref().map(|p| p.get_ref().as_str()), &reads).map_err(|m| {
            here(
                raw.pick
                    .as_ref()
                    .map_or_else(|| raw.name.span(), |p| p.span()),
                m,
            )
        })?;
    Ok(Rule {
        name,
        when: when.clone(),
        action,
        message,
        sustain,
        reads,
        throttle,
        pick,
        notify_after,
        escalates: None,
        program,
    })
}

/// A throttle rule's `escalate` table, compiled as a rule of its own: its condition (the
/// throttle rule's, unless it has one), its action (kill unless "log"), its sustain the
/// `after` that counts from when the throttle went on.
pub(super) fn compile_escalation(
    env: &Arc<cel::Env>,
    parent: &RawRule,
    esc: &toml::Spanned<crate::config::RawEscalate>,
    config: &Config,
) -> Result<Rule, ConfigError> {
    let src = &config.source;
    let parent_name = parent.name.get_ref().trim();
    let e = esc.get_ref();
    if let Some(a) = &e.action
        && !matches!(a.get_ref().as_str(), "kill" | "log")
    {
        return Err(src.error(
            Some(a.span()),
            format!(
                "rule {parent_name:?}: escalate: action {:?} is not \"kill\" or \"log\"",
                a.get_ref()
            ),
        ));
    }
    let raw = RawRule {
        name: toml::Spanned::new(parent.name.span(), rate::escalation_name(parent_name)),
        when: e.when.clone().unwrap_or_else(|| parent.when.clone()),
        action: Some(
            e.action
                .clone()
                .unwrap_or_else(|| toml::Spanned::new(esc.span(), "kill".to_string())),
        ),
        message: e.message.clone().or_else(|| parent.message.clone()),
        sustain: Some(e.after.clone()),
        rate: None,
        release_after: None,
        escalate: None,
        pick: parent.pick.clone(),
        notify_after: None,
    };
    parse_duration(e.after.get_ref()).map_err(|m| {
        src.error(
            Some(e.after.span()),
            format!("rule {parent_name:?}: escalate: after: {m}"),
        )
    })?;
    let mut rule = compile_rule(env, &raw, config)?;
    rule.escalates = Some(parent_name.to_string());
    Ok(rule)
}

/// 1-based line and column (in characters) of byte `at` of `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn type_name(v: &cel::Value) -> &'static str {
    match v {
        cel::Value::Int(_) | cel::Value::UInt(_) | cel::Value::Float(_) => "number",
        cel::Value::String(_) => "string",
        cel::Value::List(_) => "list",
        cel::Value::Map(_) => "map",
        cel::Value::Null => "null",
        _ => "value of another type",
    }
}

/// Whether `var` is the loop variable of a macro such as `list.exists(var, …)`.
fn bound_by_macro(src: &str, var: &str) -> bool {
    ["all", "exists", "exists_one", "map", "filter"]
        .iter()
        .any(|m| {
            let mut rest = src;
            while let Some(at) = rest.find(&format!("{m}(")) {
                let args = rest[at + m.len() + 1..].trim_start();
                if args
                    .strip_prefix(var)
                    .is_some_and(|r| r.trim_start().starts_with(','))
                {
                    return true;
                }
                rest = &rest[at + m.len() + 1..];
            }
            false
        })
}
