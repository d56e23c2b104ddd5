//! Size limits on a rule's `when`, so that no condition can exhaust a thread's stack.
//!
//! The cel crate parses with a recursive-descent (ANTLR) parser and evaluates by walking
//! the expression tree recursively. Both take stack in proportion to how deep the
//! condition is: in a debug build about 150 KiB per level of brackets while parsing, and
//! about 40 KiB per tree level while evaluating. A stack overflow is not an error Rust can
//! report: it aborts the process (`check` died with SIGABRT on 10,000 nested parentheses,
//! which the crate's own limit of 96 nested expressions does not stop). So a condition is
//! measured before and after parsing and refused at load when it is too big, and parsing
//! runs on a thread of its own whose stack fits the largest text the limits let through.
//!
//! The limits are far above real rules, which nest a few levels:
//! - [`MAX_CHARS`] characters of text;
//! - [`MAX_BRACKETS`] levels of `()`, `[]` and `{}` inside one another;
//! - [`MAX_DEPTH`] levels of the parsed tree, where an operator applied to the result of
//!   another is one level (`a + b + c > d` is 4; a macro such as `exists()` costs two;
//!   `&&` and `||` chains are balanced by the parser and cost a few levels whatever their
//!   length).
//!
//! Measured in a debug build: the worst text within them parses in about 6 MiB (the
//! parser thread has [`PARSER_STACK`]), and the deepest accepted tree evaluates in less
//! than 1 MiB, under half of a 2 MiB thread stack (tokio's worker threads and test
//! threads). An optimised build needs less.

use cel::common::ast::{EntryExpr, Expr};

/// The longest `when`, in characters.
pub const MAX_CHARS: usize = 4096;
/// The deepest nesting of brackets: `(`, `[` and `{`.
pub const MAX_BRACKETS: usize = 32;
/// The deepest parsed expression tree.
pub const MAX_DEPTH: usize = 24;

/// Stack for the parser thread: [`MAX_BRACKETS`] levels of about 150 KiB in a debug build,
/// plus the conversion of up to [`MAX_CHARS`] characters of operators into a tree (a
/// 2,000-step chain, refused afterwards for its depth), five times over. Only the pages
/// touched are ever committed.
const PARSER_STACK: usize = 32 * 1024 * 1024;

/// Why a condition is refused, and the byte of it the message points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub offset: usize,
    pub message: String,
}

/// Checks the text of a condition before it is parsed: its length, and how deep its
/// brackets nest outside string literals.
pub fn check_text(when: &str) -> Result<(), Exceeded> {
    let chars = when.chars().count();
    if chars > MAX_CHARS {
        return Err(Exceeded {
            offset: 0,
            message: format!(
                "the condition is {chars} characters long; at most {MAX_CHARS} are allowed: split it into several rules, or list values with `in [...]`"
            ),
        });
    }
    let b = when.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        if let Some(end) = super::numeric::string_literal_end(b, i) {
            i = end;
            continue;
        }
        match b[i] {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_BRACKETS {
                    return Err(Exceeded {
                        offset: i,
                        message: format!(
                            "brackets nest {depth} deep here; at most {MAX_BRACKETS} levels of (), [] and {{}} are allowed"
                        ),
                    });
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The depth of a parsed expression (a lone value is 1), measured without recursion so
/// that it is safe on any tree.
pub fn depth<'e>(root: &'e cel::IdedExpr) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(root, 1usize)];
    while let Some((e, d)) = pending.pop() {
        deepest = deepest.max(d);
        let mut push = |child: &'e cel::IdedExpr| pending.push((child, d + 1));
        match &e.expr {
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    push(target);
                }
                call.args.iter().for_each(push);
            }
            Expr::Comprehension(c) => {
                for child in [
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ] {
                    push(child);
                }
            }
            Expr::List(list) => list.elements.iter().for_each(push),
            Expr::Map(map) => {
                for entry in &map.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(m) => {
                            push(&m.key);
                            push(&m.value);
                        }
                        EntryExpr::StructField(f) => push(&f.value),
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(m) => {
                            push(&m.key);
                            push(&m.value);
                        }
                        EntryExpr::StructField(f) => push(&f.value),
                    }
                }
            }
            Expr::Select(select) => push(&select.operand),
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    deepest
}

/// What parsing a condition gave.
pub enum Parsed {
    Program(cel::Program),
    Syntax(cel::ParseErrors),
    /// Its tree is deeper than [`MAX_DEPTH`]: by this much, when the parser got that far
    /// (the cel crate's own limit on nested expressions may stop it first).
    TooDeep(Option<usize>),
}

/// Parses `src` on a thread with room for any condition [`check_text`] accepts; a tree
/// deeper than [`MAX_DEPTH`] is dropped there too. Err when the thread cannot be
/// started or the parser panicked.
pub fn parse(env: &cel::Env, src: &str) -> Result<Parsed, String> {
    std::thread::scope(|scope| {
        let parser = std::thread::Builder::new()
            .name("rule parser".into())
            .stack_size(PARSER_STACK)
            .spawn_scoped(scope, || match env.compile(src) {
                Err(e) if e.errors.iter().any(|e| e.msg.contains("Recursion limit")) => {
                    Parsed::TooDeep(None)
                }
                Err(e) => Parsed::Syntax(e),
                Ok(program) => match depth(program.expression()) {
                    d if d > MAX_DEPTH => Parsed::TooDeep(Some(d)),
                    _ => Parsed::Program(program),
                },
            })
            .map_err(|e| format!("cannot start a thread to parse the condition: {e}"))?;
        parser
            .join()
            .map_err(|_| "the CEL parser failed on this condition".to_string())
    })
}

/// The message for a tree deeper than [`MAX_DEPTH`].
pub fn too_deep(depth: Option<usize>) -> String {
    let levels = depth.map_or_else(
        || format!("far more than {MAX_DEPTH} levels"),
        |d| format!("{d} levels"),
    );
    format!(
        "the condition nests {levels} deep; at most {MAX_DEPTH} are allowed (an operator applied to the result of another is one level, so a + b + c > d is 4): split it into several rules, or list values with `in [...]`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let quoted = format!("user == '{}'", "(".repeat(100));
        assert_eq!(check_text(&quoted), Ok(()));
        let raw = format!("user == r\"{}\"", "[".repeat(100));
        assert_eq!(check_text(&raw), Ok(()));
        let deep = format!("{}1{}", "[".repeat(33), "]".repeat(33));
        assert_eq!(check_text(&deep).map_err(|e| e.offset), Err(32));
        let at_limit = format!("{}1{}", "{'a': ".repeat(32), "}".repeat(32));
        assert_eq!(check_text(&at_limit), Ok(()));
    }

    #[test]
    fn length_counts_characters() {
        assert_eq!(check_text(&"é".repeat(MAX_CHARS)), Ok(()));
        assert!(check_text(&"é".repeat(MAX_CHARS + 1)).is_err());
    }

    #[test]
    fn depth_counts_tree_levels() {
        let env = cel::Env::stdlib();
        let d = |src: &str| depth(env.compile(src).expect("a valid condition").expression());
        assert_eq!(d("a"), 1);
        assert_eq!(d("a > 0"), 2);
        assert_eq!(d("a + b + c > d"), 4);
        assert_eq!(d("((((a))))"), 1);
        assert_eq!(d("[[1]]"), 3);
        assert_eq!(d("{'k': {'k': 1}}"), 3);
        assert_eq!(d("a.b.c"), 3);
        // Balanced by the parser: eight terms cost four levels, not eight.
        assert!(d("a || b || c || d || e || f || g || h") <= 4);
    }
}
