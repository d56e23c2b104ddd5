//! Property tests over the variable table: for every variable and every operator, a
//! well-typed condition compiles and evaluates without an error on any stream (matching,
//! not matching, or unknown), and an ill-typed one is refused at load, wherever it sits in
//! the condition.

use proptest::prelude::*;
use streamwarden::config::Config;
use streamwarden::engine;
use streamwarden::plex::{PlayState, Session};
use streamwarden::rules::vars::{Kind, VARIABLES};
use streamwarden::rules::{Measured, Outcome, RuleSet};

fn compile(when: &str) -> Result<RuleSet, String> {
    let text = format!("[[rules]]\nname = \"p\"\nwhen = '{when}'\n");
    let c = Config::parse(&text, None).map_err(|e| e.to_string())?;
    RuleSet::compile(&c).map_err(|es| {
        es.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// A literal of the variable's type (for text with a known set, one of its values).
fn literal(name: &str, kind: Kind, pick: usize, number: f64) -> String {
    match kind {
        Kind::Number => format!("{number}"),
        Kind::List => format!("[\"g{pick}\"]"),
        Kind::Flag => (if pick.is_multiple_of(2) {
            "true"
        } else {
            "false"
        })
        .to_string(),
        Kind::Text => match streamwarden::rules::types::known_values(name) {
            Some(k) => format!("\"{}\"", k[pick % k.len()]),
            None => format!("\"v{pick}\""),
        },
    }
}

/// A literal of another type than the variable's.
fn wrong(kind: Kind, pick: usize) -> String {
    match (kind, pick % 2) {
        (Kind::Number, 0) => "\"600\"".into(),
        (Kind::Number, _) => "true".into(),
        (Kind::Text, 0) => "600".into(),
        (Kind::Text, _) => "false".into(),
        (Kind::List, 0) => "1".into(),
        (Kind::List, _) => "\"family\"".into(),
        (Kind::Flag, 0) => "1".into(),
        (Kind::Flag, _) => "\"yes\"".into(),
    }
}

fn operators(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Number => &["==", "!=", "<", "<=", ">", ">="],
        Kind::Text | Kind::Flag | Kind::List => &["==", "!="],
    }
}

/// A stream with each field present or not, from the seeds.
fn stream(seed: u64, number: f64) -> Session {
    let some = |bit: u32| seed & (1 << bit) != 0;
    let text = |bit: u32, v: &str| some(bit).then(|| v.to_string());
    Session {
        session_id: Some("s".into()),
        session_key: text(0, "3"),
        user: text(1, "bob"),
        user_id: some(2).then_some(4),
        address: text(3, "192.0.2.1"),
        state: some(4).then_some(PlayState::Playing),
        location: text(5, "wan"),
        media_type: text(6, "movie"),
        transcode_decision: text(7, "transcode"),
        video_decision: text(8, "copy"),
        stream_bitrate_kbps: some(9).then_some(number as i64),
        source_bitrate_kbps: some(10).then_some(0),
        bandwidth_kbps: some(11).then_some(7000),
        video_resolution: text(12, "1080"),
        source_resolution: text(13, "4k"),
        local: some(14).then_some(false),
        title: text(15, "T"),
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Well typed: compiles, and on any stream evaluates to match, no match or unknown,
    /// never an error, alone or on either side of && and ||.
    #[test]
    fn well_typed_conditions_compile_and_never_fail(
        v in 0..VARIABLES.len(),
        w in 0..VARIABLES.len(),
        op in 0usize..6,
        pick in 0usize..8,
        number in -1.0e6f64..1.0e6,
        seed in any::<u64>(),
        measured in any::<bool>(),
        join in 0usize..3,
    ) {
        let clause = |i: usize| {
            let (name, kind) = VARIABLES[i];
            let ops = operators(kind);
            format!("{name} {} {}", ops[op % ops.len()], literal(name, kind, pick, number))
        };
        let when = match join {
            0 => clause(v),
            1 => format!("{} && {}", clause(v), clause(w)),
            _ => format!("{} || !({})", clause(v), clause(w)),
        };
        let rules = compile(&when).map_err(|e| TestCaseError::fail(format!("{when}: {e}")))?;
        let s = stream(seed, number.abs());
        let m = measured.then_some(Measured { kbps_10s: number.abs(), kbps_1m: 1.0, kbps_5m: 0.0, kbps_10m: 2.0, ..Default::default() });
        let evals = engine::evaluate(&rules, std::slice::from_ref(&s), |_| m);
        let outcome = &evals[0].evaluations[0].outcome;
        prop_assert!(!matches!(outcome, Outcome::Error(_)), "{when} on {s:?}: {outcome:?}");
    }

    /// Ill typed anywhere: refused at load with the rule named.
    #[test]
    fn ill_typed_conditions_are_refused_wherever_they_are(
        v in 0..VARIABLES.len(),
        w in 0..VARIABLES.len(),
        pick in 0usize..8,
        side in 0usize..3,
    ) {
        let (name, kind) = VARIABLES[v];
        let bad = format!("{name} == {}", wrong(kind, pick));
        let (other, okind) = VARIABLES[w];
        let good = format!("{other} == {}", literal(other, okind, pick, 1.0));
        let when = match side {
            0 => bad.clone(),
            1 => format!("{good} && {bad}"),
            _ => format!("({good}) || ({bad})"),
        };
        let e = compile(&when).err();
        prop_assert!(e.as_deref().is_some_and(|e| e.contains("rule \"p\"") && e.contains("type error")), "{when}: {e:?}");
    }
}
