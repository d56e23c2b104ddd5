//! Rules: compilation errors located in the file, arithmetic that mixes whole and decimal
//! numbers, unknown values, templates.

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
    let rules = compile(&one_rule("user_streams > 1 && server_streams == 3")).unwrap();
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
