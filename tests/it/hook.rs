//! `streamwarden hook` end to end: the real binary against a fake Plex server serving the
//! real fixture responses.

use crate::common::*;
use std::path::Path;

const HOMARR: &str = "2894294r2jf2038fj3098jgf3gt";
const PLEXOPEDIA: &str = "rxiscwekkvkpukgi3pm9nklp";
const HA: &str = "session_id_1";

fn write_config(dir: &Path, text: &str) -> String {
    let p = dir.join("streamwarden.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn stream_kills_that_session_with_the_joined_message() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &[
            "hook",
            "--jbop",
            "stream",
            "--username",
            "example_usr",
            "--sessionId",
            HOMARR,
            "--killMessage",
            "Transcoding",
            "streams",
            "are",
            "not",
            "allowed.",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        plex.terminates(),
        vec![(
            HOMARR.to_string(),
            "Transcoding streams are not allowed.".to_string()
        )]
    );
    assert!(stdout(&o).contains("killed session"), "{}", stdout(&o));
    assert_no_token(&o);
}

#[test]
fn stream_uses_kill_stream_default_message_and_encodes_the_reason() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "stream", "--sessionId", HA],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o2 = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &[
            "hook",
            "--jbop",
            "stream",
            "--sessionId",
            HOMARR,
            "--killMessage",
            "Hey Bob, 100% & more? #1 =2",
        ],
    );
    assert_eq!(o2.status.code(), Some(0), "{}", stderr(&o2));
    assert_eq!(
        plex.terminates(),
        vec![
            (
                HA.to_string(),
                "The server owner has ended the stream.".to_string()
            ),
            (
                HOMARR.to_string(),
                "Hey Bob, 100% & more? #1 =2".to_string()
            ),
        ]
    );
}

#[test]
fn stream_on_unknown_session_fails_with_exit_1() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "stream", "--sessionId", "nope"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
    assert!(plex.terminates().is_empty());
}

#[test]
fn stream_without_session_id_is_synced_content() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["hook", "--jbop", "stream"],
        vec!["hook", "--jbop", "stream", "--sessionId", ""],
    ] {
        let o = run(dir.path(), &plex.url, TOKEN, &args);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("No sessionId provided"),
            "{}",
            stderr(&o)
        );
    }
    assert!(plex.terminates().is_empty());
}

#[test]
fn all_streams_refuses_without_user_id() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "allStreams", "--killMessage", "bye"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--userId"), "{}", stderr(&o));
    assert!(plex.terminates().is_empty());
    assert!(
        plex.state.lock().unwrap().requests.is_empty(),
        "nothing may reach Plex"
    );
}

#[test]
fn all_streams_kills_every_killable_stream_of_that_user_only() {
    // Users: 7 (HA), 1 (homarr, plexopedia), 1 again in the old-server items without Session.
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &[
            "hook",
            "--jbop",
            "allStreams",
            "--userId",
            "1",
            "--notify",
            "1",
            "--killMessage",
            "Hey Bob, we need to talk!",
        ],
    );
    let mut killed: Vec<String> = plex.terminates().into_iter().map(|t| t.0).collect();
    killed.sort();
    assert_eq!(killed, vec![HOMARR.to_string(), PLEXOPEDIA.to_string()]);
    // The two old-server items of user 1 have no Session id: skipped with a note, and
    // everything stoppable was stopped, so exit 0.
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("cannot be stopped"), "{}", stdout(&o));
    // Without Tautulli's environment the notifications cannot go; the kills stand.
    assert!(
        stderr(&o).contains("2 Tautulli notifications not sent: TAUTULLI_URL is not set"),
        "{}",
        stderr(&o)
    );
    assert_no_token(&o);
}

#[test]
fn all_streams_by_user_id_spares_other_users() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "allStreams", "--userId", "7"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(plex.terminates().len(), 1);
    assert_eq!(plex.terminates()[0].0, HA);
}

#[test]
fn dry_run_audits_a_would_kill_and_sends_nothing() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let cfg = write_config(
        dir.path(),
        &format!("[enforce]\naudit_log = {:?}\n", audit.display().to_string()),
    );
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &[
            "hook",
            "--config",
            &cfg,
            "--dry-run",
            "--jbop",
            "stream",
            "--sessionId",
            HOMARR,
            "--killMessage",
            "no",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(plex.terminates().is_empty());
    assert!(stdout(&o).contains("would kill"), "{}", stdout(&o));
    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert_eq!(l["mode"], "dry-run");
    assert_eq!(l["action"], "would-kill");
    assert_eq!(l["session_id"], HOMARR);
    assert_eq!(l["user"], "example_usr");
    assert_eq!(l["address"], "0.0.0.0");
    assert_eq!(l["message"], "no");
    assert_eq!(l["rule"], "jbop:stream");
    assert!(l["ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(l["values"]["transcode_decision"], "transcode");
    assert!(!std::fs::read_to_string(&audit).unwrap().contains(TOKEN));
}

#[test]
fn dry_run_from_the_config_file() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    // Found in the working directory (Tautulli runs scripts from their folder).
    write_config(dir.path(), "[enforce]\ndry_run = true\n");
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "stream", "--sessionId", HOMARR],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(plex.terminates().is_empty());
    assert!(stdout(&o).contains("would kill"));
}

const RULES: &str = r#"
[enforce]
audit_log = "audit.jsonl"

[[rules]]
name = "transcode-above-source"
when = 'transcode_decision == "transcode" && stream_bitrate > 1.05 * source_bitrate'
message = "{user}: {stream_bitrate_mbps} Mbps is more than the {source_bitrate_mbps} Mbps file ({rule})"

[[rules]]
name = "4k-transcodes"
when = 'video_decision == "transcode" && source_resolution == "4k"'
message = "No 4K transcodes"

[[rules]]
name = "watch-wan"
action = "log"
when = 'location == "lan" && stream_bitrate * 2 < bandwidth * 1.9'
"#;

fn with_metadata(plex: &FakePlex) {
    plex.set(|s| {
        s.metadata.insert(
            "1".into(),
            r#"<MediaContainer size="1"><Video ratingKey="1"><Media id="2637" bitrate="5000" videoResolution="1080"/></Video></MediaContainer>"#.into(),
        );
        s.metadata.insert(
            "2".into(),
            r#"<MediaContainer size="1"><Video ratingKey="2"><Media id="2" bitrate="40000" videoResolution="4k"/></Video></MediaContainer>"#.into(),
        );
    });
}

#[test]
fn rules_mode_kills_on_a_matching_rule_with_its_template() {
    let plex = FakePlex::start(&mixed_sessions());
    with_metadata(&plex);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), RULES);
    let o = run(dir.path(), &plex.url, TOKEN, &["hook", "--session-id", HA]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    // 6000 kbps against a 5000 kbps source: above 5 %.
    assert_eq!(
        plex.terminates(),
        vec![(
            HA.to_string(),
            "User 7: 6.0 Mbps is more than the 5.0 Mbps file (transcode-above-source)".to_string()
        )]
    );
    let lines = audit_lines(&dir.path().join("audit.jsonl"));
    let actions: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l["rule"].as_str().unwrap().to_string(),
                l["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // 6000*2 = 12000 < 7000*1.9 = 13300: the log rule matches as well.
    assert_eq!(
        actions,
        vec![
            ("transcode-above-source".to_string(), "kill".to_string()),
            ("watch-wan".to_string(), "log".to_string()),
        ]
    );
    assert_eq!(lines[0]["values"]["stream_bitrate"], 6000.0);
    assert_eq!(lines[0]["values"]["source_bitrate"], 5000.0);
    assert_eq!(lines[0]["mode"], "enforce");
    assert_no_token(&o);
}

#[test]
fn rules_mode_spares_a_stream_no_rule_matches() {
    let plex = FakePlex::start(&mixed_sessions());
    with_metadata(&plex);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), RULES);
    // homarr: video copy of a 4K... no: its source is 4k but video is copied, 20231 < 1.05*40000.
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--session-id", HOMARR],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(plex.terminates().is_empty());
    assert!(
        stdout(&o).contains("\"4k-transcodes\" does not match"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn rules_mode_unknown_value_does_not_match_and_says_which() {
    let plex = FakePlex::start(&mixed_sessions());
    // No metadata: source_bitrate is unknown.
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), RULES);
    let o = run(dir.path(), &plex.url, TOKEN, &["hook", "--session-id", HA]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(plex.terminates().is_empty());
    assert!(
        stdout(&o).contains("unknown source_bitrate"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn kill_budget_stops_further_kills_and_audits_them() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "[enforce]\nmax_kills_per_minute = 1\naudit_log = \"a.jsonl\"\n",
    );
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "allStreams", "--userId", "1"],
    );
    assert_eq!(plex.terminates().len(), 1, "{}", stdout(&o));
    let lines = audit_lines(&dir.path().join("a.jsonl"));
    // (The two streams without a Session id are skipped too, for another reason.)
    let skipped: Vec<_> = lines
        .iter()
        .filter(|l| {
            l["action"] == "kill-skipped"
                && !l["reason"].as_str().unwrap().contains("cannot be stopped")
        })
        .collect();
    assert_eq!(skipped.len(), 1, "{lines:?}");
    assert!(skipped[0]["reason"].as_str().unwrap().contains("budget"));
    // A second run within the minute shares the budget through the audit log.
    let o2 = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "stream", "--sessionId", HA],
    );
    assert_eq!(o2.status.code(), Some(0));
    assert_eq!(plex.terminates().len(), 1);
    assert!(stdout(&o2).contains("budget"), "{}", stdout(&o2));
}

#[test]
fn exempt_users_are_never_killed() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "[enforce]\nexempt_users = [\"Example_Usr\", \"7\"]\n",
    );
    for id in [HOMARR, HA] {
        let o = run(
            dir.path(),
            &plex.url,
            TOKEN,
            &["hook", "--jbop", "stream", "--sessionId", id],
        );
        assert_eq!(o.status.code(), Some(0));
        assert!(stdout(&o).contains("exempt"), "{}", stdout(&o));
    }
    assert!(plex.terminates().is_empty());
    // The others are still killed.
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "stream", "--sessionId", PLEXOPEDIA],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(plex.terminates().len(), 1);
}

#[test]
fn the_same_session_is_never_killed_twice() {
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.remove_on_kill = false);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "[enforce]\naudit_log = \"a.jsonl\"\n");
    for _ in 0..2 {
        let o = run(
            dir.path(),
            &plex.url,
            TOKEN,
            &["hook", "--jbop", "stream", "--sessionId", HA],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    assert_eq!(plex.terminates().len(), 1);
}

#[test]
fn bad_token_fails_clearly_without_leaking_it() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let wrong = "wrong-token-7c1d2e";
    let o = run(
        dir.path(),
        &plex.url,
        wrong,
        &["hook", "--jbop", "stream", "--sessionId", HA],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    assert!(stderr(&o).contains("token"), "{}", stderr(&o));
    assert!(!stderr(&o).contains(wrong) && !stdout(&o).contains(wrong));
    assert!(
        !stderr(&o).contains("<html"),
        "the HTML body is not shown: {}",
        stderr(&o)
    );
    assert!(plex.terminates().is_empty());
}

#[test]
fn no_plex_pass_is_said_plainly_before_trying() {
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.plex_pass = false);
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "stream", "--sessionId", HA],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Plex Pass"), "{}", stderr(&o));
    let requests = plex.state.lock().unwrap().requests.clone();
    assert!(
        requests
            .iter()
            .all(|r| !r.starts_with("/status/sessions/terminate")),
        "{requests:?}"
    );
    assert_no_token(&o);
}

#[test]
fn malformed_xml_is_a_clear_failure() {
    let plex = FakePlex::start("<MediaContainer size=\"1\"><Video title=\"x\"><Session id=");
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "stream", "--sessionId", HA],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/status/sessions"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not the XML expected"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn plex_unreachable_is_a_clear_failure() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let o = run(
        dir.path(),
        &url,
        TOKEN,
        &["hook", "--jbop", "stream", "--sessionId", HA],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot reach Plex"), "{}", stderr(&o));
    assert_no_token(&o);
}

#[test]
fn delay_rechecks_that_the_session_still_exists() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(bin())
        .args([
            "hook",
            "--jbop",
            "stream",
            "--delay",
            "2",
            "--sessionId",
            HA,
        ])
        .current_dir(dir.path())
        .env("STATE_DIRECTORY", dir.path())
        .env("PLEX_URL", &plex.url)
        .env("PLEX_TOKEN", TOKEN)
        .env("HOME", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    plex.set(|s| s.sessions_body = remove_session(&s.sessions_body, HA));
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("ended during the delay"),
        "{}",
        stdout(&o)
    );
    assert!(plex.terminates().is_empty());
}

#[test]
fn paused_kills_after_the_limit() {
    // homarr's player is paused.
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &[
            "hook",
            "--jbop",
            "paused",
            "--interval",
            "1",
            "--limit",
            "1",
            "--sessionId",
            HOMARR,
            "--killMessage",
            "Paused too long.",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        plex.terminates(),
        vec![(HOMARR.to_string(), "Paused too long.".to_string())]
    );
    let polls = plex
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| *r == "/status/sessions")
        .count();
    assert!(polls >= 2, "polled {polls} times");
}

#[test]
fn paused_leaves_a_playing_stream_alone() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &[
            "hook",
            "--jbop",
            "paused",
            "--limit",
            "1",
            "--sessionId",
            HA,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("not paused"), "{}", stdout(&o));
    assert!(plex.terminates().is_empty());
}

#[test]
fn no_arguments_is_a_usage_error_and_no_config_is_needed() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &plex.url, TOKEN, &["hook"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--jbop"), "{}", stderr(&o));
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "sometimes"],
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn client_identifier_is_sent_and_stays_stable() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        run(dir.path(), &plex.url, TOKEN, &["sessions"]);
    }
    let ids = plex.state.lock().unwrap().client_ids.clone();
    assert!(ids.len() >= 2);
    assert!(ids.iter().all(|i| i == &ids[0] && !i.is_empty()), "{ids:?}");
}

#[test]
fn a_terminate_whose_answer_is_lost_is_never_resent_and_is_confirmed_by_a_re_read() {
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.terminate_delay = Some(std::time::Duration::from_secs(3)));
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "[plex]\ntimeout = \"1s\"\n[enforce]\naudit_log = \"a.jsonl\"\n",
    );
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "stream", "--sessionId", HA],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(plex.terminates().len(), 1, "sent once");
    let lines = audit_lines(&dir.path().join("a.jsonl"));
    assert_eq!(lines[0]["action"], "kill");
}

#[test]
fn rules_mode_reads_measured_figures_from_a_running_daemon() {
    let plex = FakePlex::start(&mixed_sessions());
    // A stand-in for the daemon's /api/streams.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in listener.incoming() {
            let mut conn = conn.unwrap();
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf);
            let body = format!(
                r#"[{{"session_id":"{HA}","measured_kbps_10s":9100.5,"measured_kbps_1m":9000.0,"measured_kbps_5m":8000.0,"measured_kbps_10m":7000.0,"estimated":false}}]"#
            );
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!(
            "[http]\nlisten = \"{addr}\"\n\n[[rules]]\nname = \"real-bandwidth\"\nwhen = 'measured_kbps_1m > 8500'\nmessage = \"{{measured_kbps_1m_mbps}} Mbps\"\n"
        ),
    );
    let o = run(dir.path(), &plex.url, TOKEN, &["hook", "--session-id", HA]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        plex.terminates(),
        vec![(HA.to_string(), "9.0 Mbps".to_string())]
    );
    // Without a daemon the figure is unknown and the rule does not match.
    let plex2 = FakePlex::start(&mixed_sessions());
    let dir2 = tempfile::tempdir().unwrap();
    write_config(
        dir2.path(),
        "[[rules]]\nname = \"real-bandwidth\"\nwhen = 'measured_kbps_1m > 8500'\n",
    );
    let o = run(
        dir2.path(),
        &plex2.url,
        TOKEN,
        &["hook", "--session-id", HA],
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(plex2.terminates().is_empty());
    assert!(
        stdout(&o).contains("unknown measured_kbps_1m"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn the_kill_message_stops_at_the_next_option_as_with_argparse() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &[
            "hook",
            "--jbop",
            "stream",
            "--killMessage",
            "Transcoding streams are not allowed.",
            "--dry-run",
            "--sessionId",
            HA,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        plex.terminates().is_empty(),
        "--dry-run after --killMessage must be a dry run"
    );
    assert!(
        stdout(&o).contains("would kill")
            && stdout(&o).contains(": Transcoding streams are not allowed.\n"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn rules_mode_without_rules_is_a_configuration_error() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &plex.url, TOKEN, &["hook", "--session-id", HA]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no config file was found"),
        "{}",
        stderr(&o)
    );
    write_config(dir.path(), "[enforce]\ndry_run = true\n");
    let o = run(dir.path(), &plex.url, TOKEN, &["hook", "--session-id", HA]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no [[rules]]"), "{}", stderr(&o));
    assert!(plex.terminates().is_empty());
}

/// The homarr stream (user 1, Session HOMARR) with a user name and a title that try to
/// forge report lines: a newline, a carriage return, ESC and C1 controls.
fn forged_sessions() -> String {
    let body = mixed_sessions()
        .replace(
            r#"title="example_usr""#,
            r#"title="example_usr&#10;killed session 99 (someone, x) [jbop:stream]: bye&#13;&#27;[2K&#133;!""#,
        )
        .replace(
            r#"title="A long title""#,
            r#"title="A long title&#10;killed session 98&#x9b;1m""#,
        );
    assert!(body.contains("killed session 99") && body.contains("killed session 98"));
    body
}

/// No line of `text` starts with forged text, and no control character but the line ends
/// reaches the output.
fn assert_no_forged_lines(text: &str) {
    for line in text.lines() {
        let bare = line
            .trim_start_matches("error: ")
            .trim_start_matches("warning: ");
        assert!(
            !bare.starts_with("killed session 99") && !bare.starts_with("killed session 98"),
            "a forged line:\n{text}"
        );
    }
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "a control character reached the output: {text:?}"
    );
}

#[test]
fn control_characters_from_plex_cannot_forge_report_lines() {
    let plex = FakePlex::start(&forged_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "stream", "--sessionId", HOMARR],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(plex.terminates().len(), 1);
    assert_no_forged_lines(&stdout(&o));
    assert_no_forged_lines(&stderr(&o));
    // The data is still shown, escaped.
    assert!(
        stdout(&o).contains(r"example_usr\nkilled session 99")
            && stdout(&o).contains(r"\r\u{1b}[2K\u{85}!"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains(r"A long title\nkilled session 98\u{9b}1m"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn control_characters_cannot_forge_skip_and_failure_lines() {
    let plex = FakePlex::start(&forged_sessions());
    let dir = tempfile::tempdir().unwrap();
    // Exempt: the skip reason names the user.
    let user = "example_usr\nkilled session 99 (someone, x) [jbop:stream]: bye\r\u{1b}[2K\u{85}!";
    write_config(
        dir.path(),
        &format!("[enforce]\nexempt_users = [{:?}]\n", user)
            .replace("\\u{1b}", "\\u001b")
            .replace("\\u{85}", "\\u0085"),
    );
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "allStreams", "--userId", "1"],
    );
    assert!(
        stdout(&o).contains("exempt"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert_no_forged_lines(&stdout(&o));
    assert_no_forged_lines(&stderr(&o));
    // A failed kill: no Plex Pass.
    plex.set(|s| s.plex_pass = false);
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "stream", "--sessionId", HOMARR],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("could not kill"), "{}", stderr(&o));
    assert_no_forged_lines(&stdout(&o));
    assert_no_forged_lines(&stderr(&o));
}

#[test]
fn all_streams_skips_what_plex_cannot_stop_and_exits_0() {
    // User 1 has two killable streams and two without a Session id (go_plex_client).
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "[enforce]\naudit_log = \"a.jsonl\"\n");
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "allStreams", "--userId", "1"],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let mut killed: Vec<String> = plex.terminates().into_iter().map(|t| t.0).collect();
    killed.sort();
    assert_eq!(killed, vec![HOMARR.to_string(), PLEXOPEDIA.to_string()]);
    let out = stdout(&o);
    assert_eq!(out.matches("killed session").count(), 2, "{out}");
    assert_eq!(out.matches("cannot be stopped").count(), 2, "{out}");
    assert!(out.contains("no Session id"), "{out}");
    assert!(!stderr(&o).contains("error"), "{}", stderr(&o));
    let actions: Vec<String> = audit_lines(&dir.path().join("a.jsonl"))
        .iter()
        .map(|l| l["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        ["kill", "kill", "kill-skipped", "kill-skipped"],
        "{actions:?}"
    );
    // A stoppable stream that fails still fails the run (a fresh audit log: the first
    // run's kills are not repeated).
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.plex_pass = false);
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "allStreams", "--userId", "1"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("Plex Pass"), "{}", stderr(&o));
}

#[test]
fn all_streams_dry_run_skips_what_plex_cannot_stop_and_exits_0() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--dry-run", "--jbop", "allStreams", "--userId", "1"],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(plex.terminates().is_empty());
    let out = stdout(&o);
    assert_eq!(out.matches("would kill").count(), 2, "{out}");
    assert_eq!(out.matches("cannot be stopped").count(), 2, "{out}");
}

#[test]
fn an_overlong_kill_message_is_a_usage_error_naming_the_limit() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(100 * 1024);
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &[
            "hook",
            "--jbop",
            "stream",
            "--sessionId",
            HA,
            "--killMessage",
            &long,
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--killMessage"), "{}", stderr(&o));
    assert!(stderr(&o).contains("1024"), "{}", stderr(&o));
    assert!(
        stderr(&o).len() < 1000,
        "the message is not echoed: {}",
        stderr(&o).len()
    );
    assert!(plex.state.lock().unwrap().requests.is_empty());
    // The limit counts characters, not bytes: 1024 two-byte characters pass.
    let most = "é".repeat(1024);
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &[
            "hook",
            "--jbop",
            "stream",
            "--sessionId",
            HA,
            "--killMessage",
            &most,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(plex.terminates(), vec![(HA.to_string(), most)]);
}

#[test]
fn delay_limit_and_interval_are_bounded() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let huge = u64::MAX.to_string();
    for (flag, max) in [
        ("--delay", "3600"),
        ("--limit", "86400"),
        ("--interval", "3600"),
    ] {
        let started = std::time::Instant::now();
        let o = run(
            dir.path(),
            &plex.url,
            TOKEN,
            &["hook", "--jbop", "paused", "--sessionId", HA, flag, &huge],
        );
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", stderr(&o));
        assert!(stderr(&o).contains(flag), "{}", stderr(&o));
        assert!(stderr(&o).contains(max), "{flag}: {}", stderr(&o));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let over = (max.parse::<u64>().unwrap() + 1).to_string();
        let o = run(
            dir.path(),
            &plex.url,
            TOKEN,
            &["hook", "--jbop", "paused", "--sessionId", HA, flag, &over],
        );
        assert_eq!(o.status.code(), Some(2), "{flag} {over}: {}", stderr(&o));
    }
    assert!(plex.state.lock().unwrap().requests.is_empty());
    let o = run(dir.path(), &plex.url, TOKEN, &["hook", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = stdout(&o);
    for text in ["at most 3600", "at most 86400", "at most 1024 characters"] {
        assert!(help.contains(text), "--help lacks {text:?}:\n{help}");
    }
}

#[test]
fn a_slow_plex_fails_the_hook_before_tautullis_30_second_timeout() {
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.sessions_delay = Some(std::time::Duration::from_secs(120)));
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "stream", "--sessionId", HA],
    );
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Plex did not answer /status/sessions within 20s"),
        "{}",
        stderr(&o)
    );
    assert!(took < std::time::Duration::from_secs(25), "took {took:?}");
    assert!(plex.terminates().is_empty());
    assert_no_token(&o);
}

#[test]
fn escape_writes_every_line_breaking_or_terminal_character_as_an_escape() {
    use streamwarden::enforce::escape;
    assert_eq!(escape("plain \\ text é"), "plain \\ text é");
    assert_eq!(escape("a\nb\rc\td"), r"a\nb\rc\td");
    assert_eq!(
        escape("\u{1b}[2J\u{7f}\u{85}\u{9b}"),
        r"\u{1b}[2J\u{7f}\u{85}\u{9b}"
    );
    // Unicode line breaks and bidirectional overrides too.
    assert_eq!(escape("a\u{2028}b\u{202e}c"), r"a\u{2028}b\u{202e}c");
    let once = escape("x\n\u{1b}y").into_owned();
    assert_eq!(escape(&once), once, "escaping twice changes nothing");
}
