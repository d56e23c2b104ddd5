//! Rules: compilation errors located in the file, arithmetic that mixes whole and decimal
//! numbers, unknown values, templates.

use crate::common::{run, stderr, stdout};
use streamwarden::config::Config;
use streamwarden::engine;
use streamwarden::plex::Session;
use streamwarden::rules::{Measured, Outcome, RuleSet};

fn compile(text: &str) -> Result<RuleSet, Vec<String>> {
    let c = Config::parse(text, Some("rules.toml".into())).map_err(|e| vec![e.to_string()])?;
    RuleSet::compile(&c).map_err(|es| es.into_iter().map(|e| e.to_string()).collect())
}

fn one_rule(when: &str) -> String {
    format!("[[rules]]\nname = \"r\"\nwhen = '{when}'\n")
}

fn session() -> Session {
    Session {
        session_id: Some("s1".into()),
        user: Some("bob".into()),
        user_id: Some(4),
        address: Some("192.0.2.4".into()),
        state: Some("playing".into()),
        video_decision: Some("transcode".into()),
        audio_decision: Some("copy".into()),
        transcode_decision: Some("transcode".into()),
        stream_bitrate_kbps: Some(8000),
        source_bitrate_kbps: Some(7800),
        bandwidth_kbps: Some(9000),
        video_resolution: Some("1080".into()),
        source_resolution: Some("4k".into()),
        location: Some("wan".into()),
        local: Some(false),
        ..Default::default()
    }
}

fn outcome(when: &str, s: &Session, measured: Option<Measured>) -> Outcome {
    let rules = compile(&one_rule(when)).unwrap_or_else(|e| panic!("{when}: {e:?}"));
    let evals = engine::evaluate(&rules, std::slice::from_ref(s), |_| measured);
    evals[0].evaluations[0].outcome.clone()
}

#[test]
fn mixed_whole_and_decimal_arithmetic_works() {
    let s = session();
    // 8000 > 1.05 * 7800 = 8190: false; 8000 > 1.02 * 7800 = 7956: true.
    assert_eq!(
        outcome("stream_bitrate > 1.05 * source_bitrate", &s, None),
        Outcome::NoMatch
    );
    assert_eq!(
        outcome("stream_bitrate > 1.02 * source_bitrate", &s, None),
        Outcome::Match
    );
    // 16000 < 17100: true.
    assert_eq!(
        outcome("stream_bitrate * 2 < bandwidth * 1.9", &s, None),
        Outcome::Match
    );
    assert_eq!(
        outcome("stream_bitrate * 2 > bandwidth * 1.9", &s, None),
        Outcome::NoMatch
    );
    assert_eq!(
        outcome("user_id == 4 && user_streams >= 1", &s, None),
        Outcome::Match
    );
    assert_eq!(
        outcome("stream_bitrate / 1000 + 1 == 9", &s, None),
        Outcome::Match
    );
    assert_eq!(
        outcome("size(user) == 3 && size(user) < 3.5", &s, None),
        Outcome::Match
    );
    assert_eq!(
        outcome("user in [\"bob\", \"eve\"] && !local", &s, None),
        Outcome::Match
    );
}

#[test]
fn unknown_values_make_the_rule_not_match_and_are_named() {
    let mut s = session();
    s.source_bitrate_kbps = None;
    assert_eq!(
        outcome("stream_bitrate > 1.05 * source_bitrate", &s, None),
        Outcome::Unknown {
            missing: vec!["source_bitrate"]
        }
    );
    assert_eq!(
        outcome("measured_kbps_1m > 5000", &s, None),
        Outcome::Unknown {
            missing: vec!["measured_kbps_1m"]
        }
    );
    // Short-circuit: a known true side decides.
    assert_eq!(
        outcome(
            "transcode_decision == \"transcode\" || measured_kbps_1m > 5000",
            &s,
            None
        ),
        Outcome::Match
    );
    let m = Measured {
        kbps_10s: 6000.0,
        kbps_1m: 5500.5,
        kbps_5m: 1.0,
        kbps_10m: 1.0,
        estimated: false,
        ..Default::default()
    };
    assert_eq!(
        outcome("measured_kbps_1m > 5000", &s, Some(m)),
        Outcome::Match
    );
}

#[test]
fn an_unknown_variable_is_a_configuration_error() {
    let e = compile(&one_rule("stream_bitrat > 1000")).unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("rules.toml:3:9: rule \"r\": when: unknown variable `stream_bitrat`"),
        "{}",
        e[0]
    );
    assert!(e[0].contains("did you mean `stream_bitrate`"), "{}", e[0]);
    // A macro's loop variable is not a rule variable.
    compile(&one_rule("[\"a\", \"b\"].exists(x, x == user)")).unwrap();
}

#[test]
fn syntax_errors_point_into_the_file() {
    let text = "[plex]\nurl = \"http://x:32400\"\n\n[[rules]]\nname = \"broken\"\nwhen = 'user == \"bob\" &&'\n";
    let e = compile(text).unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("rules.toml:6:"), "{}", e[0]);
    assert!(
        e[0].contains("rule \"broken\": when: syntax error"),
        "{}",
        e[0]
    );
}

#[test]
fn type_errors_and_non_boolean_conditions_are_caught_at_load() {
    let e = compile(&one_rule("user > 5")).unwrap_err();
    assert!(e[0].contains("rule \"r\""), "{}", e[0]);
    let e = compile(&one_rule("stream_bitrate * 2")).unwrap_err();
    assert!(e[0].contains("must be true or false"), "{}", e[0]);
}

#[test]
fn templates_are_checked_and_rendered() {
    let text = "[[rules]]\nname = \"t\"\nwhen = 'true'\nmessage = \"Hi {usr}\"\n";
    let e = compile(text).unwrap_err();
    assert!(
        e[0].starts_with("rules.toml:4:15: rule \"t\": message: unknown placeholder {usr}"),
        "{}",
        e[0]
    );
    let text = "[[rules]]\nname = \"t\"\nwhen = 'true'\nmessage = \"{user} at {stream_bitrate_mbps} Mbps ({video_resolution}) broke {rule}; 1m {measured_mbps_1m}\"\n";
    let rules = compile(text).unwrap();
    let evals = engine::evaluate(&rules, &[session()], |_| None);
    let d = evals[0].decisions();
    assert_eq!(d[0].message, "bob at 8.0 Mbps (1080) broke t; 1m unknown");
}

#[test]
fn other_rule_errors_are_all_reported() {
    let text = r#"
[[rules]]
name = "a"
when = 'true'
action = "ban"

[[rules]]
name = "a"
when = 'true'

[[rules]]
name = "b"
when = 'true'
sustain = "a while"
"#;
    let e = compile(text).unwrap_err();
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].contains("rules.toml:5:10") && e[0].contains("\"ban\""),
        "{}",
        e[0]
    );
    assert!(e[1].contains("defined twice"), "{}", e[1]);
    assert!(e[2].contains("sustain"), "{}", e[2]);
}

#[test]
fn user_streams_counts_the_users_sessions() {
    let a = session();
    let mut b = session();
    b.session_id = Some("s2".into());
    let mut c = session();
    c.session_id = Some("s3".into());
    c.user_id = Some(9);
    c.user = Some("eve".into());
    // pick = "all": every stream of the user, to see the count itself.
    let text = format!(
        "{}pick = \"all\"\n",
        one_rule("user_streams > 1 && server_streams == 3")
    );
    let rules = compile(&text).unwrap();
    let evals = engine::evaluate(&rules, &[a, b, c], |_| None);
    let matched: Vec<_> = evals
        .iter()
        .map(|e| e.evaluations[0].outcome == Outcome::Match)
        .collect();
    assert_eq!(matched, vec![true, true, false]);
}

#[test]
fn estimated_measurements_mark_the_decision() {
    let rules = compile(&one_rule("measured_kbps_10s > 1000")).unwrap();
    let m = Measured {
        kbps_10s: 2000.0,
        estimated: true,
        ..Default::default()
    };
    let evals = engine::evaluate(&rules, &[session()], |_| Some(m));
    assert!(evals[0].decisions()[0].estimated);
    let rules = compile(&one_rule("stream_bitrate > 1000")).unwrap();
    let evals = engine::evaluate(&rules, &[session()], |_| Some(m));
    assert!(
        !evals[0].decisions()[0].estimated,
        "a rule that reads no measured figure is not estimated"
    );
}

#[test]
fn positions_point_at_the_character_even_after_escapes() {
    let e = compile("[[rules]]\nname = \"a\"\nwhen = \"user == )\"\n").unwrap_err();
    assert!(e[0].starts_with("rules.toml:3:17:"), "{}", e[0]);
    assert!(e[0].contains("(at 1:9 of the expression)"), "{}", e[0]);
    assert!(!e[0].contains("syntax error: Syntax error"), "{}", e[0]);
    let e =
        compile("[[rules]]\nname = \"b\"\nwhen = \"user == \\\"x\\\" && vide_decision == 1\"\n")
            .unwrap_err();
    assert!(e[0].starts_with("rules.toml:3:26:"), "{}", e[0]);
}

/// A rule whose `when` is a TOML multi-line basic string (the shapes below quote with ').
fn rule_toml(name: &str, when: &str) -> String {
    format!("[[rules]]\nname = \"{name}\"\nwhen = \"\"\"{when}\"\"\"\n")
}

/// Runs `check` on `text` through the binary.
fn check(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, text).unwrap();
    run(dir.path(), "", "", &["check", "-c", cfg.to_str().unwrap()])
}

#[test]
fn check_refuses_huge_conditions_with_their_place_instead_of_crashing() {
    // 10,000 terms: refused for its length, at the first character of `when`.
    let when = vec!["user == 'a'"; 10_000].join(" || ");
    let o = check(&rule_toml("big", &when));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("c.toml:3:11: rule \"big\": when:"), "{err}");
    assert!(err.contains("at most 4096"), "{err}");
    // 10,000 nested parentheses.
    let when = format!("{}user == 'a'{}", "(".repeat(10_000), ")".repeat(10_000));
    let o = check(&rule_toml("deep", &when));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("c.toml:3:11: rule \"deep\": when:"),
        "{}",
        stderr(&o)
    );
    // Short, but nested past the limit: the first bracket too many is named.
    let when = format!("{}user == 'a'{}", "(".repeat(40), ")".repeat(40));
    let o = check(&rule_toml("nested", &when));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("c.toml:3:43: rule \"nested\": when:"), "{err}");
    assert!(err.contains("at most 32"), "{err}");
    // Short and flat, but one long chain of operators.
    let when = format!("stream_bitrate{} > 0", " + 1".repeat(200));
    let o = check(&rule_toml("chain", &when));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("c.toml:3:11: rule \"chain\": when:"), "{err}");
    assert!(err.contains("nests 202 levels deep; at most 24"), "{err}");
}

/// Shapes that make the parser or the evaluator recurse once per step, with `n` steps.
type Shape = fn(usize) -> String;

const SHAPES: &[(&str, Shape)] = &[
    ("parentheses", |n| {
        format!("{}user == 'a'{}", "(".repeat(n), ")".repeat(n))
    }),
    ("sum", |n| format!("stream_bitrate{} > 0", " + 1".repeat(n))),
    ("equalities", |n| format!("local{}", " == true".repeat(n))),
    ("negations", |n| format!("{}local", "!".repeat(n))),
    ("minus signs", |n| {
        format!("{}stream_bitrate < 0", "-".repeat(n))
    }),
    ("else chain", |n| {
        format!("{}true", "local ? false : ".repeat(n))
    }),
    ("nested conditionals", |n| {
        format!("{}local{}", "(local ? ".repeat(n), " : true)".repeat(n))
    }),
    ("nested lists", |n| {
        format!("{}1{} != []", "[".repeat(n), "]".repeat(n))
    }),
    ("nested maps", |n| {
        format!("{}1{} != {{}}", "{'k': ".repeat(n), "}".repeat(n))
    }),
    ("nested calls", |n| {
        format!("{}stream_bitrate{} > 0", "double(".repeat(n), ")".repeat(n))
    }),
    ("nested macros", |n| {
        format!("{}true{}", "[1].all(x, ".repeat(n), ")".repeat(n))
    }),
    ("right-nested or", |n| {
        format!("{}local{}", "(user == 'a' || ".repeat(n), ")".repeat(n))
    }),
    ("or chain", |n| vec!["user == 'a'"; n].join(" || ")),
];

/// Compiles one rule and evaluates it; Err with the compile errors.
fn compile_and_evaluate(name: &str, when: &str) -> Result<(), Vec<String>> {
    let rules = compile(&rule_toml("r", when))?;
    let evals = engine::evaluate(&rules, &[session()], |_| None);
    let outcome = &evals[0].evaluations[0].outcome;
    assert!(!matches!(outcome, Outcome::Error(_)), "{name}: {outcome:?}");
    Ok(())
}

/// For every shape, the largest `when` that compiles (found by doubling then bisecting:
/// acceptance only shrinks as a shape grows), compiled and evaluated; one step more must
/// be refused with a limit, and so must the biggest text of the shape that the length
/// limit lets through, without crashing.
fn largest_accepted() -> Vec<(&'static str, String)> {
    let mut largest = Vec::new();
    for (name, shape) in SHAPES {
        let fits = |n: usize| shape(n).chars().count() <= 4096;
        let accepted = |n: usize| match compile_and_evaluate(name, &shape(n)) {
            Ok(()) => true,
            Err(e) => {
                assert!(e[0].contains("at most"), "{name} {n}: {e:?}");
                false
            }
        };
        assert!(accepted(1), "{name}: not even one step accepted");
        let (mut good, mut bad) = (1, 2);
        while fits(bad) && accepted(bad) {
            good = bad;
            bad *= 2;
        }
        while bad - good > 1 {
            let mid = (good + bad) / 2;
            if fits(mid) && accepted(mid) {
                good = mid;
            } else {
                bad = mid;
            }
        }
        if fits(good + 1) {
            assert!(!accepted(good + 1), "{name}: {} accepted", good + 1);
        }
        let mut longest = good;
        while fits(longest + 1) {
            longest += 1;
        }
        let _ = accepted(longest);
        largest.push((*name, shape(good)));
    }
    largest
}

#[test]
fn the_largest_accepted_conditions_compile_and_run_on_a_2_mib_thread() {
    let largest = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(largest_accepted)
        .unwrap()
        .join()
        .unwrap();
    // Generous enough for real rules.
    let steps = |name: &str| {
        let (_, when) = largest.iter().find(|(n, _)| *n == name).unwrap();
        when.clone()
    };
    assert!(steps("parentheses").starts_with(&"(".repeat(30)));
    assert!(steps("or chain").len() > 4_000);
    assert!(steps("sum").matches('+').count() >= 20);
}

#[test]
fn the_largest_accepted_conditions_pass_check_on_the_main_thread() {
    // On the test's own thread too (2 MiB unless RUST_MIN_STACK says otherwise).
    let largest = largest_accepted();
    let text: String = largest
        .iter()
        .enumerate()
        .map(|(i, (_, when))| rule_toml(&format!("r{i}"), when))
        .collect();
    let o = check(&text);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn the_worst_texts_within_the_limits_are_parsed_without_crashing() {
    // Pads `unit` between `head` and `tail` up to the length limit.
    let fill = |head: &str, unit: &str, tail: &str| {
        let room = 4096 - head.len() - tail.len();
        format!("{head}{}{tail}", unit.repeat(room / unit.len()))
    };
    let texts = [
        format!("{}1{} != []", "[".repeat(32), "]".repeat(32)),
        format!("{}local{}", "(".repeat(32), ")".repeat(32)),
        fill(
            &format!("{}stream_bitrate", "(".repeat(32)),
            "+1",
            &format!("{}>0", ")".repeat(32)),
        ),
        fill("stream_bitrate", "+1", ">0"),
        fill("user", ".a", "==''"),
        fill("[1]", "[0]", "==1"),
        fill(
            &format!("{}stream_bitrate", "[1].all(x,".repeat(32)),
            "+1",
            &format!(">0{}", ")".repeat(32)),
        ),
        fill(
            &format!("{}user=='a'", "(".repeat(32)),
            "||user=='a'",
            &")".repeat(32),
        ),
    ];
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            for when in &texts {
                assert!(when.len() <= 4096);
                if let Err(e) = compile_and_evaluate("worst", when) {
                    assert!(e[0].contains("at most"), "{e:?}");
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn an_unknown_variable_after_non_ascii_text_is_placed_by_characters() {
    let e = compile(&one_rule("title == \"é\" && usr == \"x\"")).unwrap_err();
    assert!(e[0].starts_with("rules.toml:3:25:"), "{}", e[0]);
    assert!(e[0].contains("(at 1:17 of the expression)"), "{}", e[0]);
}

#[test]
fn throttle_rules_are_checked_where_they_are_written() {
    let ok = compile(
        "[[rules]]\nname = \"heavy\"\nwhen = 'measured_kbps_1m > 20000'\naction = \"throttle\"\nrate = \"5 Mbps\"\nrelease_after = \"30m\"\nescalate = { after = \"5m\", when = 'measured_kbps_1m > 4500' }\n",
    )
    .unwrap();
    let heavy = ok.get("heavy").unwrap();
    let spec = heavy.throttle.unwrap();
    assert_eq!(spec.rate_bps, 5_000_000);
    assert_eq!(
        spec.release_after,
        Some(std::time::Duration::from_secs(1800))
    );
    let esc = ok.get("heavy/escalate").unwrap();
    assert_eq!(esc.escalates.as_deref(), Some("heavy"));
    assert_eq!(esc.sustain, std::time::Duration::from_secs(300));
    assert_eq!(esc.when, "measured_kbps_1m > 4500");
    assert_eq!(esc.action, streamwarden::rules::Action::Kill);

    let err = |text: &str| compile(text).unwrap_err().join("\n");
    let e = err("[[rules]]\nname = \"t\"\nwhen = 'true'\naction = \"throttle\"\n");
    assert!(
        e.contains("rules.toml:4:10") && e.contains("needs a rate"),
        "{e}"
    );
    let e =
        err("[[rules]]\nname = \"t\"\nwhen = 'true'\naction = \"throttle\"\nrate = \"5 MB/s\"\n");
    assert!(
        e.contains("rules.toml:5:8") && e.contains("units: kbps, Mbps, Gbps"),
        "{e}"
    );
    let e = err("[[rules]]\nname = \"t\"\nwhen = 'true'\nrate = \"5 Mbps\"\n");
    assert!(
        e.contains("rules.toml:4:8") && e.contains("belongs to action = \"throttle\""),
        "{e}"
    );
    let e = err(
        "[[rules]]\nname = \"t\"\nwhen = 'true'\naction = \"throttle\"\nrate = \"5 Mbps\"\nescalate = { after = \"soon\" }\n",
    );
    assert!(
        e.contains("rules.toml:6:22") && e.contains("escalate: after"),
        "{e}"
    );
    let e = err(
        "[[rules]]\nname = \"t\"\nwhen = 'true'\naction = \"throttle\"\nrate = \"5 Mbps\"\nescalate = { after = \"1m\", action = \"throttle\" }\n",
    );
    assert!(e.contains("escalate: action \"throttle\""), "{e}");
    let e = err(
        "[[rules]]\nname = \"t\"\nwhen = 'true'\naction = \"throttle\"\nrate = \"5 Mbps\"\nescalate = { after = \"1m\", when = 'measured_kbps > 1' }\n",
    );
    assert!(
        e.contains("rules.toml:6:36") && e.contains("unknown variable"),
        "{e}"
    );
    let e = err(
        "[capture]\nenabled = false\n[[rules]]\nname = \"t\"\nwhen = 'true'\naction = \"throttle\"\nrate = \"5 Mbps\"\n",
    );
    assert!(e.contains("[capture] enabled = false"), "{e}");
}

#[test]
fn an_escalation_matches_only_under_its_own_rules_throttle() {
    let rules = compile(
        "[[rules]]\nname = \"heavy\"\nwhen = 'bandwidth > 1'\naction = \"throttle\"\nrate = \"5 Mbps\"\nescalate = { after = \"1m\" }\n[[rules]]\nname = \"long\"\nwhen = 'throttled_for >= 60'\n",
    )
    .unwrap();
    let s = session();
    let sessions = [s];
    let verdict = |throttled_for: Option<f64>, by: Option<&str>| -> Vec<bool> {
        let observed = streamwarden::rules::Observed {
            throttled_for_secs: throttled_for,
            ..Default::default()
        };
        engine::evaluate_one(&rules, &sessions, 0, &observed, by)
            .evaluations
            .iter()
            .map(|e| e.outcome == Outcome::Match)
            .collect()
    };
    // [heavy, heavy/escalate, long]
    assert_eq!(verdict(Some(0.0), None), [true, false, false]);
    assert_eq!(verdict(Some(90.0), Some("other")), [true, false, true]);
    assert_eq!(verdict(Some(90.0), Some("heavy")), [true, true, true]);
    // Nobody keeps throttles (the hook on its own): throttled_for is unknown.
    assert_eq!(verdict(None, None), [true, false, false]);
}

#[test]
fn a_rate_plex_reports_as_0_is_unknown_so_dividing_by_it_matches_nothing() {
    let body = crate::common::fixture("ha_session_base.xml")
        .replace("{user_id}", "7")
        .replace("bitrate=\"6000\"", "bitrate=\"0\"");
    let sessions = streamwarden::plex::session::parse_sessions(&body).unwrap();
    assert_eq!(sessions[0].stream_bitrate_kbps, None);
    let o = outcome("bandwidth / stream_bitrate > 1.5", &sessions[0], None);
    assert!(
        matches!(&o, Outcome::Unknown { missing } if missing.contains(&"stream_bitrate")),
        "{o:?}"
    );
}

#[test]
fn dividing_by_a_value_that_is_0_makes_the_rule_unknown_not_infinite() {
    let mut s = session();
    // bandwidth - stream_bitrate is 1000 here: 8000 / 1000 = 8 > 1.5.
    let when = "stream_bitrate / (bandwidth - stream_bitrate) > 1.5";
    assert_eq!(outcome(when, &s, None), Outcome::Match);
    // Plex reports the same bandwidth as bitrate: the divisor is 0. IEEE would give
    // +Infinity and a match; the value is unknown instead.
    s.bandwidth_kbps = Some(8000);
    let o = outcome(when, &s, None);
    assert_eq!(
        o,
        Outcome::Unknown {
            missing: vec!["a divisor of 0"]
        }
    );
    // A variable that is 0 is named.
    let mut s = session();
    s.source_bitrate_kbps = Some(7800);
    let o = outcome("user_streams / (user_streams - 1) > 1", &s, None);
    assert!(
        matches!(&o, Outcome::Unknown { .. }),
        "one stream: 1 / 0 is unknown, got {o:?}"
    );
    // A literal 0 divisor can never be known: refused at load, where it is written.
    let e = compile(&one_rule("bandwidth / 0 > 1")).unwrap_err();
    assert!(
        e[0].starts_with("rules.toml:3:8: rule \"r\": `when` divides by 0"),
        "{e:?}"
    );
    let e = compile(&one_rule("bandwidth % 0.0 == 1")).unwrap_err();
    assert!(e[0].contains("divides by 0"), "{e:?}");
}

#[test]
fn remainder_works_on_whole_numbers() {
    let s = session();
    // 8000 % 3 = 2; 9000 % 1000 = 0.
    assert_eq!(outcome("stream_bitrate % 3 == 2", &s, None), Outcome::Match);
    assert_eq!(outcome("bandwidth % 1000 == 0", &s, None), Outcome::Match);
    assert_eq!(outcome("bandwidth % 7 == 0", &s, None), Outcome::NoMatch);
    // A fraction is an error the rule names, not a silent match.
    let o = outcome("stream_bitrate / 3 % 2 == 0", &s, None);
    assert!(
        matches!(&o, Outcome::Error(m) if m.contains("whole numbers")),
        "{o:?}"
    );
}

#[test]
fn every_branch_is_type_checked_with_a_hint() {
    let err = |when: &str| compile(&one_rule(when)).unwrap_err().join("\n");
    // On the right of && the old check never looked.
    let e = err(r#"state == "paused" && paused_for > "600""#);
    assert!(
        e.contains("paused_for is a number (in seconds): write paused_for > 600"),
        "{e}"
    );
    assert!(e.starts_with("rules.toml:3:30: rule \"r\": when:"), "{e}");
    let e = err(r#"location == "wan" || measured_kbps_1m > "8 Mbps""#);
    assert!(
        e.contains("measured_kbps_1m is a number (in kbps): write measured_kbps_1m > 8000"),
        "{e}"
    );
    let e = err("video_resolution == 1080 && user == \"bob\"");
    assert!(
        e.contains(r#"video_resolution is text: write video_resolution == "1080""#),
        "{e}"
    );
    let e = err("user_streams && location == \"wan\"");
    assert!(
        e.contains("`user_streams` is a number, not true or false"),
        "{e}"
    );
    let e = err("user + 1 > 2");
    assert!(e.contains("compares text with a number"), "{e}");
    // Well-typed conditions still compile.
    for ok in [
        r#"state == "paused" && paused_for > 600"#,
        r#"user in ["mum", "dad"] || size(title) > 3"#,
        r#"!(local) && (bandwidth > 1 ? true : false)"#,
        r#"title.startsWith("A") && [1, 2].exists(x, x > 1)"#,
    ] {
        assert!(compile(&one_rule(ok)).is_ok(), "{ok}");
    }
}

#[test]
fn values_outside_the_known_sets_are_refused_with_the_nearest() {
    let err = |when: &str| compile(&one_rule(when)).unwrap_err().join("\n");
    let e = err(r#"video_resolution == "4K""#);
    assert!(
        e.contains(r#""4K" is not a value of video_resolution"#)
            && e.contains(r#"did you mean "4k"?"#),
        "{e}"
    );
    let e = err(r#"transcode_decision == "directplay""#);
    assert!(e.contains(r#"did you mean "direct play"?"#), "{e}");
    let e = err(r#"state in ["playing", "pasued"]"#);
    assert!(e.contains(r#"did you mean "paused"?"#), "{e}");
    let e = err(r#""WAN" != location"#);
    assert!(e.contains(r#"did you mean "wan"?"#), "{e}");
    assert!(
        compile(&one_rule(
            r#"source_resolution == "4k" && location != "lan""#
        ))
        .is_ok()
    );
}

#[test]
fn the_usual_slips_get_one_sentence_saying_what_to_write() {
    let err = |when: &str| compile(&one_rule(when)).unwrap_err().join("\n");
    let e = err(r#"state = "paused""#);
    assert!(
        e.starts_with("rules.toml:3:15:") && e.contains("write `==` to compare"),
        "{e}"
    );
    let e = err("state == paused");
    assert!(
        e.contains(
            r#"`paused` is not a variable but a value of state: put it in quotes, "paused""#
        ),
        "{e}"
    );
    let e = err("measured_kbps_1m > 8 Mbps");
    assert!(
        e.starts_with("rules.toml:3:28:") && e.contains("`8 Mbps`") && e.contains("write 8000"),
        "{e}"
    );
    let e = err("state == \u{201c}paused\u{201d}");
    assert!(
        e.contains("typographic quote") && e.contains("straight quotes"),
        "{e}"
    );
    let e = compile("[rules]\nname = \"r\"\nwhen = 'state == \"paused\"'\n").unwrap_err();
    assert!(
        e[0].starts_with("rules.toml:1:1: [rules] declares one table")
            && e[0].contains("[[rules]], with two brackets"),
        "{e:?}"
    );
}

/// frank has three remote streams and a photo; "at most two remote streams" stops one:
/// the newest by default (Plex's highest session key), the oldest or all when asked.
#[test]
fn a_stream_limit_picks_the_newest_stream_and_counts_remote_video_only() {
    let stream = |key: &str, location: &str, media: &str| Session {
        session_id: Some(format!("s{key}")),
        session_key: Some(key.into()),
        user: Some("frank".into()),
        user_id: Some(9),
        location: Some(location.into()),
        media_type: Some(media.into()),
        ..Default::default()
    };
    let all = vec![
        stream("12", "wan", "episode"),
        stream("31", "wan", "movie"),
        stream("7", "wan", "track"),
        stream("40", "wan", "photo"),
        stream("41", "lan", "movie"),
    ];
    let acted = |pick: &str| -> Vec<String> {
        let text = format!(
            "[[rules]]\nname = \"r\"\nwhen = 'location == \"wan\" && user_wan_streams > 2'\n{pick}"
        );
        let rules = compile(&text).unwrap();
        engine::evaluate(&rules, &all, |_| None)
            .iter()
            .flat_map(|e| e.decisions())
            .map(|d| d.session.session_id.unwrap())
            .collect()
    };
    // 3 remote video and music streams (the photo and the local one do not count).
    let vars = streamwarden::rules::Vars::for_session(&all[0], &all, &Default::default());
    assert_eq!(
        vars.get("user_wan_streams"),
        Some(&streamwarden::rules::Value::Number(3.0))
    );
    assert_eq!(
        vars.get("user_lan_streams"),
        Some(&streamwarden::rules::Value::Number(1.0))
    );
    assert_eq!(
        acted(""),
        ["s40"],
        "the newest remote stream (the photo matches location too)"
    );
    assert_eq!(acted("pick = \"oldest\"\n"), ["s7"]);
    assert_eq!(acted("pick = \"all\"\n").len(), 4);
    let e = compile("[[rules]]\nname = \"r\"\nwhen = 'user_streams > 2'\npick = \"latest\"\n")
        .unwrap_err();
    assert!(e[0].contains("pick \"latest\" is not"), "{e:?}");
}

/// The owner's clock and groups: "no remote 4K on weekday evenings" and "family is exempt"
/// can be written.
#[test]
fn hour_weekday_date_and_groups_are_rule_variables() {
    let text = r#"
[enforce]
timezone = "Europe/Paris"
exempt_groups = ["family"]

[groups]
family = ["Mom", "4"]
friends = ["eve"]

[[rules]]
name = "evenings"
when = 'weekday in ["monday", "tuesday", "wednesday", "thursday", "friday"] && hour >= 18 && !("family" in groups)'
"#;
    let c = Config::parse(text, Some("rules.toml".into())).unwrap();
    // The group's members are exempt as if listed.
    assert!(
        c.enforce.exempt_users.contains(&"Mom".to_string()),
        "{:?}",
        c.enforce.exempt_users
    );
    let rules = RuleSet::compile(&c).unwrap();
    let s = session(); // bob, user 4: in family by id
    let mut eve = session();
    eve.user = Some("eve".into());
    eve.user_id = Some(11);
    // Wednesday 2026-12-16 19:30 in Paris (18:30 UTC).
    let at = 1_797_445_800_000_000;
    let judge = |who: &Session| {
        let all = [who.clone()];
        let observed = streamwarden::rules::Observed {
            now_micros: Some(at),
            ..Default::default()
        };
        let e = engine::evaluate_one(&rules, &all, 0, &observed, None);
        (e.evaluations[0].outcome.clone(), e.vars.clone())
    };
    let (o, v) = judge(&eve);
    assert_eq!(o, Outcome::Match);
    assert_eq!(
        v.get("hour"),
        Some(&streamwarden::rules::Value::Number(19.0))
    );
    assert_eq!(
        v.get("minute"),
        Some(&streamwarden::rules::Value::Number(30.0))
    );
    assert_eq!(
        v.get("weekday"),
        Some(&streamwarden::rules::Value::Text("wednesday".into()))
    );
    assert_eq!(
        v.get("date"),
        Some(&streamwarden::rules::Value::Text("2026-12-16".into()))
    );
    assert_eq!(
        v.get("groups"),
        Some(&streamwarden::rules::Value::List(vec!["friends".into()]))
    );
    // bob is in family (by id).
    assert_eq!(judge(&s).0, Outcome::NoMatch);
    // A group that does not exist is refused where it is written; so is a bad zone.
    let e = Config::parse(
        "[enforce]\nexempt_groups = [\"famly\"]\n[groups]\nfamily = []\n",
        Some("c.toml".into()),
    )
    .unwrap_err();
    assert!(e.to_string().contains("no group \"famly\""), "{e}");
    let e = Config::parse(
        "[enforce]\ntimezone = \"Mars/Olympus\"\n",
        Some("c.toml".into()),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("c.toml:2:12: timezone"), "{e}");
    // groups is a list: comparing it with text is a type error.
    let e = compile(&one_rule(r#"groups == "family""#)).unwrap_err();
    assert!(e[0].contains("type error"), "{e:?}");
}
