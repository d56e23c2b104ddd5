//! The type check of a condition: every branch, not only what sample values reach.
//!
//! CEL checks types as it evaluates, so `state == "paused" && paused_for > "600"` passed a
//! check on sample values (the left side is false, the right never runs) and failed on
//! every paused stream at run time. Here the parsed expression is walked once: each
//! variable has its declared type, each literal its own, and every operator is checked
//! against its operands wherever it sits. A comparison of a variable with a known set of
//! values (`state`, `location`, the decisions, the resolutions, `media_type`) is also
//! checked against that set ("'4K' is not a resolution; did you mean '4k'?").

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue, operators};

use super::vars::{Kind, lookup};

/// The type of a sub-expression, as far as the check can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Text,
    Number,
    Flag,
    List,
    /// Anything (a macro's variable, a function's result): not checked.
    Any,
}

impl Ty {
    fn of(kind: Kind) -> Ty {
        match kind {
            Kind::Text => Ty::Text,
            Kind::Number => Ty::Number,
            Kind::Flag => Ty::Flag,
            Kind::List => Ty::List,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Ty::Text => "text",
            Ty::Number => "a number",
            Ty::Flag => "true or false",
            Ty::List => "a list",
            Ty::Any => "anything",
        }
    }

    fn fits(self, other: Ty) -> bool {
        self == other || self == Ty::Any || other == Ty::Any
    }
}

/// The values a variable can take, where Plex's set is known.
pub fn known_values(var: &str) -> Option<&'static [&'static str]> {
    Some(match var {
        "state" => &["playing", "paused", "buffering"],
        "location" => &["lan", "wan", "cellular"],
        "video_decision" | "audio_decision" => &["transcode", "copy", "direct play"],
        "transcode_decision" => &["transcode", "direct stream", "direct play"],
        "video_resolution" | "source_resolution" => &["4k", "1080", "720", "480", "sd"],
        "media_type" => &["movie", "episode", "track", "clip", "photo"],
        "rate_source" => &["packets", "plex"],
        "weekday" => &[
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ],
        _ => return None,
    })
}

/// A type error: where (a byte offset into the condition) and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    pub offset: usize,
    pub message: String,
}

/// Checks `root`, parsed from `source`; the first error found.
pub fn check(root: &IdedExpr, info: &cel::common::ast::SourceInfo) -> Result<(), TypeError> {
    let mut c = Checker { info, error: None };
    let ty = c.ty(root);
    if let Some(e) = c.error {
        return Err(e);
    }
    if !ty.fits(Ty::Flag) {
        return Err(TypeError {
            offset: c.offset(root),
            message: format!(
                "type error: `when` must be true or false, but it gives {}: compare it, e.g. `{} > 0`",
                ty.name(),
                c.text(root).unwrap_or("x")
            ),
        });
    }
    Ok(())
}

struct Checker<'a> {
    info: &'a cel::common::ast::SourceInfo,
    error: Option<TypeError>,
}

impl Checker<'_> {
    /// Where a node's text begins and ends in the source: its own place widened to its
    /// operands' (an operator's own place is the operator alone).
    fn span(&self, e: &IdedExpr) -> Option<(usize, usize)> {
        // The stop is the last character, inclusive.
        let own = self
            .info
            .offset_for(e.id)
            .map(|(s, t)| (s as usize, (t as usize).max(s as usize) + 1));
        let children: Vec<&IdedExpr> = match &e.expr {
            Expr::Call(c) => c
                .target
                .as_deref()
                .into_iter()
                .chain(c.args.iter())
                .collect(),
            Expr::List(l) => l.elements.iter().collect(),
            Expr::Select(s) => vec![&s.operand],
            _ => Vec::new(),
        };
        children
            .into_iter()
            .filter_map(|c| self.span(c))
            .chain(own)
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
    }

    fn offset(&self, e: &IdedExpr) -> usize {
        self.span(e).map_or(0, |(s, _)| s)
    }

    /// The source text of a node, when it can be told (offsets are bytes).
    fn text(&self, e: &IdedExpr) -> Option<&str> {
        let (from, mut to) = self.span(e)?;
        let src = &self.info.source;
        while to < src.len() && !src.is_char_boundary(to) {
            to += 1;
        }
        let text = src.get(from..to.min(src.len()))?.trim();
        (!text.is_empty()).then_some(text)
    }

    /// A type error at `at`.
    fn fail(&mut self, at: &IdedExpr, message: String) -> Ty {
        self.refuse(at, format!("type error: {message}"))
    }

    fn refuse(&mut self, at: &IdedExpr, message: String) -> Ty {
        if self.error.is_none() {
            self.error = Some(TypeError {
                offset: self.offset(at),
                message,
            });
        }
        Ty::Any
    }

    fn ty(&mut self, e: &IdedExpr) -> Ty {
        if self.error.is_some() {
            return Ty::Any;
        }
        match &e.expr {
            Expr::Ident(name) => lookup(name).map_or(Ty::Any, |(_, k)| Ty::of(k)),
            Expr::Literal(l) => match l {
                LiteralValue::String(_) => Ty::Text,
                LiteralValue::Double(_) | LiteralValue::Int(_) | LiteralValue::UInt(_) => {
                    Ty::Number
                }
                LiteralValue::Boolean(_) => Ty::Flag,
                LiteralValue::Null | LiteralValue::Bytes(_) => Ty::Any,
            },
            Expr::List(l) => {
                for x in &l.elements {
                    self.ty(x);
                }
                Ty::List
            }
            Expr::Map(m) => {
                for en in &m.entries {
                    if let EntryExpr::MapEntry(me) = &en.expr {
                        self.ty(&me.key);
                        self.ty(&me.value);
                    }
                }
                Ty::Any
            }
            Expr::Comprehension(c) => {
                self.ty(&c.iter_range);
                Ty::Any
            }
            Expr::Select(s) => {
                self.ty(&s.operand);
                Ty::Any
            }
            Expr::Struct(_) | Expr::Unspecified => Ty::Any,
            Expr::Call(call) => self.call(e, call),
        }
    }

    fn call(&mut self, e: &IdedExpr, call: &cel::common::ast::CallExpr) -> Ty {
        let args = &call.args;
        let name = call.func_name.as_str();
        match (name, args.as_slice()) {
            (operators::LOGICAL_AND | operators::LOGICAL_OR, [a, b]) => {
                for x in [a, b] {
                    let t = self.ty(x);
                    if !t.fits(Ty::Flag) {
                        let word = if name == operators::LOGICAL_AND {
                            "&&"
                        } else {
                            "||"
                        };
                        return self.fail(
                            x,
                            format!(
                                "`{}` is {}, not true or false: each side of {word} must be a condition",
                                self.text(x).unwrap_or("this"),
                                t.name()
                            ),
                        );
                    }
                }
                Ty::Flag
            }
            (operators::LOGICAL_NOT, [a]) => {
                let t = self.ty(a);
                if !t.fits(Ty::Flag) {
                    return self.fail(a, format!("`!` needs a condition, not {}", t.name()));
                }
                Ty::Flag
            }
            (operators::EQUALS | operators::NOT_EQUALS, [a, b]) => {
                let (ta, tb) = (self.ty(a), self.ty(b));
                if !ta.fits(tb) {
                    return self.mismatch(e, a, b, ta, tb);
                }
                self.values(a, b);
                self.values(b, a);
                Ty::Flag
            }
            (
                operators::LESS
                | operators::LESS_EQUALS
                | operators::GREATER
                | operators::GREATER_EQUALS,
                [a, b],
            ) => {
                let (ta, tb) = (self.ty(a), self.ty(b));
                if !ta.fits(tb) || ta == Ty::Flag || tb == Ty::Flag || ta == Ty::List {
                    return self.mismatch(e, a, b, ta, tb);
                }
                Ty::Flag
            }
            (operators::ADD, [a, b]) => {
                let (ta, tb) = (self.ty(a), self.ty(b));
                if !ta.fits(tb) || ta == Ty::Flag {
                    return self.mismatch(e, a, b, ta, tb);
                }
                if ta == Ty::Any { tb } else { ta }
            }
            (
                operators::SUBSTRACT | operators::MULTIPLY | operators::DIVIDE | operators::MODULO,
                [a, b],
            ) => {
                for x in [a, b] {
                    let t = self.ty(x);
                    if !t.fits(Ty::Number) {
                        return self.fail(
                            x,
                            format!(
                                "`{}` is {}: arithmetic needs numbers",
                                self.text(x).unwrap_or("this"),
                                t.name()
                            ),
                        );
                    }
                }
                Ty::Number
            }
            (operators::NEGATE, [a]) => {
                let t = self.ty(a);
                if !t.fits(Ty::Number) {
                    return self.fail(a, format!("`-` needs a number, not {}", t.name()));
                }
                Ty::Number
            }
            (operators::CONDITIONAL, [c, a, b]) => {
                let tc = self.ty(c);
                if !tc.fits(Ty::Flag) {
                    return self.fail(
                        c,
                        format!("the test of `? :` must be a condition, not {}", tc.name()),
                    );
                }
                let (ta, tb) = (self.ty(a), self.ty(b));
                if ta == tb { ta } else { Ty::Any }
            }
            (operators::IN, [a, b]) => {
                let ta = self.ty(a);
                let tb = self.ty(b);
                if !tb.fits(Ty::List) && tb != Ty::Text {
                    return self.fail(
                        b,
                        format!("`in` needs a list on its right, not {}", tb.name()),
                    );
                }
                if let Expr::List(l) = &b.expr {
                    for x in &l.elements {
                        let tx = self.ty(x);
                        if !ta.fits(tx) {
                            return self.mismatch(e, a, x, ta, tx);
                        }
                        self.values(a, x);
                    }
                }
                Ty::Flag
            }
            _ => {
                if let Some(t) = &call.target {
                    self.ty(t);
                }
                for a in args {
                    self.ty(a);
                }
                match name {
                    "size" | "int" | "uint" | "double" => Ty::Number,
                    "contains" | "startsWith" | "endsWith" | "matches" | "exists" | "all"
                    | "exists_one" | "has" => Ty::Flag,
                    "string" | "lowerAscii" | "upperAscii" | "trim" => Ty::Text,
                    _ => Ty::Any,
                }
            }
        }
    }

    /// A comparison of incompatible types, with what to write instead.
    fn mismatch(&mut self, at: &IdedExpr, a: &IdedExpr, b: &IdedExpr, ta: Ty, tb: Ty) -> Ty {
        let (var, lit, tv) = match (&a.expr, &b.expr) {
            (Expr::Ident(v), _) => (Some(v.as_str()), b, ta),
            (_, Expr::Ident(v)) => (Some(v.as_str()), a, tb),
            _ => (None, b, ta),
        };
        let op = match &at.expr {
            Expr::Call(c) => match c.func_name.as_str() {
                operators::EQUALS => "==",
                operators::NOT_EQUALS => "!=",
                operators::LESS => "<",
                operators::LESS_EQUALS => "<=",
                operators::GREATER => ">",
                operators::GREATER_EQUALS => ">=",
                operators::ADD => "+",
                _ => "==",
            },
            _ => "==",
        };
        let hint = match (var, tv, &lit.expr) {
            (Some(v), Ty::Number, Expr::Literal(LiteralValue::String(s))) => {
                let number = plain_number(s.inner());
                let unit = if v.contains("kbps") || super::vars::RATES.contains(&v) {
                    " (in kbps)"
                } else if v.ends_with("_for") {
                    " (in seconds)"
                } else {
                    ""
                };
                format!(
                    ": {v} is a number{unit}: write {v} {op} {}",
                    number.unwrap_or_else(|| "a number".into())
                )
            }
            (Some(v), Ty::Text, Expr::Literal(LiteralValue::Double(_) | LiteralValue::Int(_))) => {
                format!(
                    ": {v} is text: write {v} {op} \"{}\"",
                    self.text(lit).unwrap_or("...")
                )
            }
            _ => String::new(),
        };
        self.fail(
            at,
            format!(
                "`{}` compares {} with {}{hint}",
                self.text(at).unwrap_or("this"),
                ta.name(),
                tb.name()
            ),
        )
    }

    /// When `var` is a variable with known values and `lit` a text literal: the literal
    /// must be one of them.
    fn values(&mut self, var: &IdedExpr, lit: &IdedExpr) {
        let (Expr::Ident(name), Expr::Literal(LiteralValue::String(s))) = (&var.expr, &lit.expr)
        else {
            return;
        };
        let Some(known) = known_values(name) else {
            return;
        };
        let value = s.inner();
        if known.contains(&value) {
            return;
        }
        let nearest = known
            .iter()
            .min_by_key(|k| super::slips::edit_distance(&k.to_lowercase(), &value.to_lowercase()))
            .copied()
            .unwrap_or(known[0]);
        let list = known
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ");
        self.refuse(
            lit,
            format!(
                "\"{value}\" is not a value of {name} (it is one of {list}); did you mean \"{nearest}\"?"
            ),
        );
    }
}

/// "600", "8 Mbps" (as kbps), "1.5" as a number to write without quotes; rates are read as
/// a throttle's `rate` is.
fn plain_number(s: &str) -> Option<String> {
    let t = s.trim();
    if t.parse::<f64>().is_ok() {
        return Some(t.to_string());
    }
    super::rate::parse_rate(t)
        .ok()
        .map(|bps| format!("{}", bps as f64 / 1000.0))
}
