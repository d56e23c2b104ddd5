//! Division and remainder in rule conditions, with the meaning an owner expects.
//!
//! CEL divides doubles as IEEE does: `x / 0` is +Infinity, so the condition
//! `bandwidth / stream_bitrate > 1.5` would match a stream whose bitrate is reported as 0.
//! And it has no `%` for doubles, while every variable is a double. streamwarden rewrites
//! each `/` and `%` of a compiled condition into a call of its own (`DIVIDE`, `REMAINDER`),
//! declared in the rules' CEL environment:
//! - a division or remainder by 0 makes the value unknown, so the rule does not match and
//!   says why, as for a variable that is not known;
//! - `%` works on whole numbers (`minute % 15 == 0`), and says so for others.

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue, operators};
use cel::common::types::{CelDouble, CelInt, CelUInt, DYN_TYPE};
use cel::common::value::CowVal;
use cel::{Env, ExecutionError};

/// The function `/` becomes.
pub const DIVIDE: &str = "streamwarden_divide";
/// The function `%` becomes.
pub const REMAINDER: &str = "streamwarden_remainder";
/// The message of the error a division by 0 gives; `is_by_zero` recognises it.
const BY_ZERO: &str = "by zero";

/// Declares `DIVIDE` and `REMAINDER` in `env`.
pub fn install(env: &mut Env) -> Result<(), cel::DeclarationError> {
    env.add_overload(
        DIVIDE,
        "streamwarden_divide",
        vec![DYN_TYPE, DYN_TYPE],
        divide,
    )?;
    env.add_overload(
        REMAINDER,
        "streamwarden_remainder",
        vec![DYN_TYPE, DYN_TYPE],
        remainder,
    )
}

/// Whether an evaluation error is a division or remainder by 0 (the value is unknown).
pub fn is_by_zero(e: &ExecutionError) -> bool {
    matches!(e, ExecutionError::FunctionError { function, message }
        if (function == DIVIDE || function == REMAINDER) && message == BY_ZERO)
}

/// Whether an evaluation error depends on the values only (a division by 0, a remainder
/// of a fraction), so that sample values at load cannot judge it.
pub fn depends_on_values(e: &ExecutionError) -> bool {
    matches!(e, ExecutionError::FunctionError { function, message }
        if (function == DIVIDE || function == REMAINDER)
            && (message == BY_ZERO || message.starts_with(WHOLE)))
}

/// How the error of a remainder of fractions starts.
const WHOLE: &str = "% takes whole numbers";

/// Rewrites every `/` and `%` of `root` into calls of `DIVIDE` and `REMAINDER`; false when
/// one of them divides by a literal 0 (a condition that can never be known).
pub fn guard(root: &mut IdedExpr) -> bool {
    let mut sane = true;
    // Iterative, as the tree may be deep (limits::MAX_DEPTH).
    let mut pending = vec![root];
    while let Some(node) = pending.pop() {
        match &mut node.expr {
            Expr::Call(call) => {
                if call.target.is_none() && call.args.len() == 2 {
                    let name = call.func_name.as_str();
                    if name == operators::DIVIDE || name == operators::MODULO {
                        sane &= !is_literal_zero(&call.args[1]);
                        call.func_name = if name == operators::DIVIDE {
                            DIVIDE.to_string()
                        } else {
                            REMAINDER.to_string()
                        };
                    }
                }
                if let Some(t) = call.target.as_deref_mut() {
                    pending.push(t);
                }
                pending.extend(call.args.iter_mut());
            }
            Expr::Comprehension(c) => {
                let c = &mut **c;
                pending.push(&mut c.iter_range);
                pending.push(&mut c.accu_init);
                pending.push(&mut c.loop_cond);
                pending.push(&mut c.loop_step);
                pending.push(&mut c.result);
            }
            Expr::List(l) => pending.extend(l.elements.iter_mut()),
            Expr::Map(m) => {
                for e in &mut m.entries {
                    match &mut e.expr {
                        EntryExpr::MapEntry(me) => {
                            pending.push(&mut me.key);
                            pending.push(&mut me.value);
                        }
                        EntryExpr::StructField(f) => pending.push(&mut f.value),
                    }
                }
            }
            Expr::Struct(s) => {
                for e in &mut s.entries {
                    match &mut e.expr {
                        EntryExpr::MapEntry(me) => {
                            pending.push(&mut me.key);
                            pending.push(&mut me.value);
                        }
                        EntryExpr::StructField(f) => pending.push(&mut f.value),
                    }
                }
            }
            Expr::Select(s) => pending.push(&mut s.operand),
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    sane
}

fn is_literal_zero(e: &IdedExpr) -> bool {
    match &e.expr {
        Expr::Literal(LiteralValue::Double(d)) => *d.inner() == 0.0,
        Expr::Literal(LiteralValue::Int(i)) => *i.inner() == 0,
        Expr::Literal(LiteralValue::UInt(u)) => *u.inner() == 0,
        _ => false,
    }
}

/// A number of any of CEL's numeric types, as a double.
fn number(v: &CowVal<'_, '_>) -> Option<f64> {
    if let Some(d) = v.downcast_ref::<CelDouble>() {
        return Some(*d.inner());
    }
    if let Some(i) = v.downcast_ref::<CelInt>() {
        return Some(*i.inner() as f64);
    }
    v.downcast_ref::<CelUInt>().map(|u| *u.inner() as f64)
}

fn operands(name: &str, args: &[CowVal<'_, '_>]) -> Result<(f64, f64), ExecutionError> {
    match args {
        [a, b] => match (number(a), number(b)) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(ExecutionError::function_error(
                name,
                "both sides must be numbers",
            )),
        },
        _ => Err(ExecutionError::invalid_argument_count(2, args.len())),
    }
}

fn divide<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = operands(DIVIDE, &args)?;
    if b == 0.0 {
        return Err(ExecutionError::function_error(DIVIDE, BY_ZERO));
    }
    Ok(CowVal::owned(CelDouble::from(a / b)))
}

fn remainder<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = operands(REMAINDER, &args)?;
    if a.fract() != 0.0 || b.fract() != 0.0 || !a.is_finite() || !b.is_finite() {
        return Err(ExecutionError::function_error(
            REMAINDER,
            format!("{WHOLE}, not {a} % {b}"),
        ));
    }
    if b == 0.0 {
        return Err(ExecutionError::function_error(REMAINDER, BY_ZERO));
    }
    Ok(CowVal::owned(CelDouble::from(a % b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn eval(src: &str, x: f64) -> Result<cel::Value, ExecutionError> {
        let mut env = Env::stdlib();
        install(&mut env).unwrap();
        let env = Arc::new(env);
        let program = env.compile(src).unwrap();
        let mut expr = program.expression().clone();
        assert!(guard(&mut expr));
        let mut ctx = cel::Context::with_env(env);
        ctx.add_variable_from_value("x", cel::Value::Float(x));
        cel::Value::resolve(&expr, &ctx)
    }

    #[test]
    fn division_by_zero_is_unknown_not_infinity() {
        assert_eq!(eval("10.0 / x > 1.5", 4.0), Ok(cel::Value::Bool(true)));
        let e = eval("10.0 / x > 1.5", 0.0).unwrap_err();
        assert!(is_by_zero(&e), "{e:?}");
        // Inside a list and a macro, too.
        let e = eval("[1.0, 2.0].exists(i, i / x > 0.0)", 0.0).unwrap_err();
        assert!(is_by_zero(&e), "{e:?}");
        // Short-circuit still spares it.
        assert_eq!(
            eval("x == 0.0 || 1.0 / x > 2.0", 0.0),
            Ok(cel::Value::Bool(true))
        );
    }

    #[test]
    fn a_literal_zero_divisor_is_found() {
        for src in [
            "x / 0.0 > 1.0",
            "[x % 0].size() == 1",
            "x > 1.0 && (x + 1.0) / 0u > 2.0",
        ] {
            let mut expr = Env::stdlib().compile(src).unwrap().expression().clone();
            assert!(!guard(&mut expr), "{src}");
        }
        let mut expr = Env::stdlib()
            .compile("x / (x - 0.0) > 1.0")
            .unwrap()
            .expression()
            .clone();
        assert!(guard(&mut expr));
    }

    #[test]
    fn remainder_takes_whole_numbers() {
        assert_eq!(eval("x % 15.0 == 0.0", 45.0), Ok(cel::Value::Bool(true)));
        assert_eq!(eval("x % 15.0 == 0.0", 46.0), Ok(cel::Value::Bool(false)));
        assert_eq!(
            eval("size('abc') % 2 == 1", 0.0),
            Ok(cel::Value::Bool(true))
        );
        assert!(is_by_zero(&eval("7.0 % x == 1.0", 0.0).unwrap_err()));
        let e = eval("x % 2.0 == 0.0", 2.5).unwrap_err();
        assert!(
            !is_by_zero(&e) && e.to_string().contains("whole numbers"),
            "{e}"
        );
    }
}
