//! The terminal view (`daemon::view::screen`, a pure function): the dry-run marker, the last
//! reload's result, and what became of the streams the rules acted on.

use std::collections::BTreeMap;
use std::time::Duration;

use streamwarden::daemon::view::{Acted, LastReload, ReloadApplied, Status, screen};
use streamwarden::daemon::{FeedStats, Summary};
use streamwarden::engine::row::{RuleRow, StreamRow};
use streamwarden::micros::Micros;
use streamwarden::plex::Session;
use streamwarden::rules::{Action, Decision};

const ID: &str = "session_id_1";

/// 2026-01-02 03:04:05 UTC.
const AT: i64 = 1_767_323_045_000_000;

fn row(rule_state: &str, killed: bool) -> StreamRow {
    StreamRow {
        session_id: Some(ID.into()),
        user: Some("User 7".into()),
        address: Some("1.2.3.11".into()),
        title: "Movie 1".into(),
        transcode_decision: Some("copy".into()),
        measured_kbps_1m: Some(20_000.0),
        killed,
        rules: vec![RuleRow {
            rule: "fast".into(),
            state: rule_state.into(),
            held_s: None,
            sustain_s: 3,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The facts under test; the rest of the status is quiet.
#[derive(Default)]
struct Shown<'a> {
    dry_run: bool,
    reload: Option<&'a LastReload>,
    acted: Option<&'a Acted>,
}

fn draw(rows: &[StreamRow], shown: Shown<'_>) -> String {
    let feed = FeedStats::default();
    let none = Acted::default();
    let st = Status {
        plex_error: None,
        fresh: true,
        feed: &feed,
        rules: 1,
        up: Duration::from_secs(12),
        dry_run: shown.dry_run,
        reload: shown.reload,
        acted: shown.acted.unwrap_or(&none),
    };
    screen(rows, &st, &[])
}

/// The state column of the one stream's line.
fn state_of(screen: &str) -> String {
    let line = screen
        .lines()
        .find(|l| l.contains("[Movie 1]"))
        .unwrap_or_else(|| panic!("no stream line in:\n{screen}"));
    line.rsplit("]  ").next().unwrap_or_default().to_string()
}

fn header(screen: &str) -> &str {
    screen.lines().next().unwrap_or_default()
}

#[test]
fn the_header_marks_a_dry_run() {
    let dry = draw(
        &[],
        Shown {
            dry_run: true,
            ..Default::default()
        },
    );
    assert!(header(&dry).contains("DRY RUN"), "{dry}");
    let live = draw(&[], Shown::default());
    assert!(!live.contains("DRY RUN"), "{live}");
}

#[test]
fn a_refused_reload_is_shown_with_its_error() {
    let refused = LastReload {
        at: Micros(AT),
        result: Err("rules.toml:3:7: unknown variable `usr`\n  when = 'usr == 1'".into()),
    };
    let s = draw(
        &[],
        Shown {
            reload: Some(&refused),
            ..Default::default()
        },
    );
    assert!(
        s.contains("reload 03:04:05: REFUSED, still running the previous configuration"),
        "{s}"
    );
    assert!(s.contains("rules.toml:3:7: unknown variable `usr`"), "{s}");
    assert!(
        s.contains("when = 'usr == 1'"),
        "every line of the error: {s}"
    );

    let applied = LastReload {
        at: Micros(AT),
        result: Ok(ReloadApplied {
            rules: 2,
            restart_needed: vec!["plex.url"],
        }),
    };
    let s = draw(
        &[],
        Shown {
            reload: Some(&applied),
            ..Default::default()
        },
    );
    assert!(
        s.contains("reload 03:04:05: applied, 2 rules; plex.url changed and wait for a restart"),
        "{s}"
    );
    assert!(!s.contains("REFUSED"), "{s}");

    let s = draw(&[], Shown::default());
    assert!(!s.contains("reload"), "no reload yet: {s}");
}

#[test]
fn a_stream_killed_reads_killed_not_matched() {
    // Awaiting confirmation.
    let s = draw(&[row("acted", true)], Shown::default());
    assert_eq!(state_of(&s), "killed", "{s}");
    // Confirmed by a later poll, or not yet seen as gone: the rule's state is `acted`.
    let acted = Acted {
        killed: [ID.to_string()].into(),
        ..Default::default()
    };
    let s = draw(
        &[row("acted", false)],
        Shown {
            acted: Some(&acted),
            ..Default::default()
        },
    );
    let state = state_of(&s);
    assert!(state.starts_with("killed"), "{s}");
    assert!(!state.contains("matched"), "{s}");
}

#[test]
fn a_dry_run_decision_reads_would_kill() {
    let acted = Acted {
        would_kill: [(ID.to_string(), "fast".to_string())].into(),
        ..Default::default()
    };
    let s = draw(
        &[row("acted", false)],
        Shown {
            dry_run: true,
            acted: Some(&acted),
            ..Default::default()
        },
    );
    assert_eq!(state_of(&s), "fast would kill", "{s}");
}

#[test]
fn a_failed_kill_reads_kill_failed_and_a_logged_match_matched() {
    let acted = Acted {
        failed: [(ID.to_string(), "fast".to_string())].into(),
        ..Default::default()
    };
    let s = draw(
        &[row("acted", false)],
        Shown {
            acted: Some(&acted),
            ..Default::default()
        },
    );
    assert_eq!(state_of(&s), "fast kill failed", "{s}");
    // A rule that only logs, or one due on stale data: matched.
    let s = draw(&[row("acted", false)], Shown::default());
    assert_eq!(state_of(&s), "fast matched", "{s}");
    let s = draw(&[row("due", false)], Shown::default());
    assert_eq!(state_of(&s), "fast matched", "{s}");
}

fn decision(rule: &str, id: &str) -> Decision {
    Decision {
        rule: rule.into(),
        action: Action::Kill,
        session: Session {
            session_id: Some(id.into()),
            ..Default::default()
        },
        message: String::new(),
        values: BTreeMap::new(),
        estimated: false,
        vars: Default::default(),
        throttle: None,
    }
}

#[test]
fn acted_tells_kills_from_would_kills() {
    let rows = [
        StreamRow {
            session_id: Some("a".into()),
            ..Default::default()
        },
        StreamRow {
            session_id: Some("b".into()),
            ..Default::default()
        },
        StreamRow {
            session_id: Some("c".into()),
            ..Default::default()
        },
        StreamRow {
            session_id: Some("d".into()),
            ..Default::default()
        },
    ];
    let done = Summary {
        kills: vec![decision("fast", "a")],
        would_kills: vec![decision("fast", "b")],
        failures: vec![(decision("fast", "d"), "401".into())],
        ..Default::default()
    };
    // The enforcer will not act again on a (killed), b (would-killed in dry run) and c
    // (killed by an earlier run, per the audit log).
    let acted = Acted::of(&rows, &done, |id| ["a", "b", "c"].contains(&id));
    assert_eq!(
        acted.killed,
        ["a".to_string(), "c".to_string()].into(),
        "{acted:?}"
    );
    assert_eq!(
        acted.would_kill,
        [("b".to_string(), "fast".to_string())].into()
    );
    assert_eq!(acted.failed, [("d".to_string(), "fast".to_string())].into());
}
