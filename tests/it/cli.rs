//! `check` and `sessions` as a user runs them.

use crate::common::*;

#[test]
fn check_accepts_the_example_config() {
    let dir = tempfile::tempdir().unwrap();
    let example = format!("{}/rules.example.toml", env!("CARGO_MANIFEST_DIR"));
    let o = run(dir.path(), "", "", &["check", "--config", &example]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("OK"));
}

#[test]
fn check_rejects_a_bad_rule_with_its_place_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[[rules]]\nname = \"x\"\nwhen = 'stream_bitrate >'\n").unwrap();
    let o = run(dir.path(), "", "", &["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("c.toml:3:"), "{err}");
    assert!(err.contains("rule \"x\""), "{err}");
}

#[test]
fn check_rejects_toml_errors_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[enforce]\nmax_kills_per_minute = 0\n").unwrap();
    let o = run(dir.path(), "", "", &["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("c.toml:2:24: max_kills_per_minute"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&cfg, "[plex\n").unwrap();
    let o = run(dir.path(), "", "", &["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("c.toml:1:"), "{}", stderr(&o));
}

#[test]
fn sessions_json_lists_every_stream() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &plex.url, TOKEN, &["sessions", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 5);
    let ha = &list[0];
    for key in [
        "session_id",
        "session_key",
        "user",
        "user_id",
        "address",
        "location",
        "state",
        "media_type",
        "title",
        "video_decision",
        "audio_decision",
        "transcode_decision",
        "stream_bitrate_kbps",
        "video_resolution",
        "bandwidth_kbps",
        "killable",
    ] {
        assert!(ha.get(key).is_some(), "missing {key}");
    }
    assert_eq!(ha["session_id"], "session_id_1");
    assert_eq!(ha["user_id"], 7);
    assert_eq!(ha["stream_bitrate_kbps"], 6000);
    assert_eq!(ha["video_resolution"], "720");
    assert_eq!(ha["killable"], true);
    let old = &list[3];
    assert_eq!(old["session_id"], serde_json::Value::Null);
    assert_eq!(old["killable"], false);
    assert_eq!(old["media_type"], "track");
    assert_no_token(&o);
}

#[test]
fn sessions_table_is_aligned_and_marks_unkillable_streams() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &plex.url, TOKEN, &["sessions"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(lines[0].starts_with("SESSION"));
    let user_col = lines[0].find("USER").unwrap();
    assert_eq!(&lines[1][user_col..user_col + 6], "User 7");
    assert!(lines[4].starts_with("(not killable)"), "{out}");
    assert!(out.contains("Talking Dead - Shiva"));
}

#[test]
fn no_url_or_token_says_how_to_set_them() {
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(bin())
        .args(["sessions"])
        .current_dir(dir.path())
        .env_clear()
        .env("STATE_DIRECTORY", dir.path())
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("PLEX_URL"), "{}", stderr(&o));
}

#[test]
fn tls_to_a_server_without_a_valid_certificate_fails_unless_disabled() {
    // A plain-TCP server that is not TLS: verification on or off, https fails clearly.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            drop(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &url, TOKEN, &["sessions"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot reach Plex"), "{}", stderr(&o));
    assert_no_token(&o);
}

#[test]
fn the_tautulli_wrapper_passes_every_argument_on() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let wrapper = format!(
        "{}/contrib/tautulli/streamwarden.sh",
        env!("CARGO_MANIFEST_DIR")
    );
    let o = std::process::Command::new(&wrapper)
        .args([
            "--jbop",
            "stream",
            "--sessionId",
            "session_id_1",
            "--killMessage",
            "Transcoding streams",
            "are not allowed.",
        ])
        .current_dir(dir.path())
        .env("STREAMWARDEN_BIN", bin())
        .env("PLEX_URL", &plex.url)
        .env("PLEX_TOKEN", TOKEN)
        .env("HOME", dir.path())
        .env("STATE_DIRECTORY", dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        plex.terminates(),
        vec![(
            "session_id_1".to_string(),
            "Transcoding streams are not allowed.".to_string()
        )]
    );
}

#[test]
fn a_named_config_that_does_not_exist_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(bin())
        .arg("check")
        .current_dir(dir.path())
        .env_clear()
        .env("STATE_DIRECTORY", dir.path())
        .env("HOME", dir.path())
        .env("STREAMWARDEN_CONFIG", dir.path().join("nope.toml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nope.toml"), "{}", stderr(&o));
}

#[test]
fn check_validates_the_plex_url_the_token_and_the_audit_path() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let check = |text: &str, url: &str| {
        std::fs::write(&cfg, text).unwrap();
        run(dir.path(), url, "", &["check", "-c", cfg.to_str().unwrap()])
    };
    let o = check("[plex]\nurl = \"127.0.0.1:32400\"\n", "");
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("http://"), "{}", stderr(&o));
    let o = check("", "http://127.0.0.1:32400/?X-Plex-Token=SECRET123");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("without a query or credentials"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("SECRET123"), "{}", stderr(&o));
    let o = check(
        &format!(
            "[enforce]\naudit_log = {:?}\n",
            dir.path().display().to_string()
        ),
        "",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
    let o = check("[plex]\ntoken = \"abc\\n\"\n", "");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("control characters"), "{}", stderr(&o));
}

#[test]
fn a_json_answer_is_named_as_such() {
    let plex = FakePlex::start("{\"MediaContainer\":{\"size\":0}}");
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &plex.url, TOKEN, &["sessions"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("the body is JSON"), "{}", stderr(&o));
}

#[test]
fn sessions_json_shows_every_rule_variable_as_the_rules_see_it() {
    use streamwarden::rules::vars::{MEASURED, VARIABLES};
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &plex.url, TOKEN, &["sessions", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let list = v.as_array().unwrap();
    for s in list {
        let vars = s["vars"].as_object().expect("a vars object");
        for (name, _) in VARIABLES {
            assert!(vars.contains_key(*name), "vars lacks {name}: {s}");
            if MEASURED.contains(name) || *name == "paused_for" {
                assert_eq!(vars[*name], serde_json::Value::Null, "{name}");
                continue;
            }
            assert!(s.get(*name).is_some(), "missing {name}: {s}");
        }
    }
    // ha_session_base: user 7, a local, not relayed movie from the Movies library.
    let ha = &list[0];
    assert_eq!(ha["local"], true);
    assert_eq!(ha["relayed"], false);
    assert_eq!(ha["library"], "Movies");
    assert_eq!(ha["username"], "User 7");
    assert_eq!(ha["user_streams"], 1);
    assert_eq!(ha["stream_bitrate"], 6000);
    assert_eq!(ha["vars"]["user_id"], 7);
    // The rules' title is the episode's own; `title` keeps "Show - Episode".
    let shiva = &list[4];
    assert_eq!(shiva["title"], "Talking Dead - Shiva");
    assert_eq!(shiva["vars"]["title"], "Shiva");
    assert_eq!(shiva["grandparent_title"], "Talking Dead");
    assert_eq!(shiva["killable"], false);
    // Unknown is null, not absent: no metadata means no source bitrate.
    assert_eq!(ha["source_bitrate"], serde_json::Value::Null);
    assert_no_token(&o);
}

#[test]
fn sessions_table_escapes_control_characters_from_plex() {
    let body = mixed_sessions().replace(
        r#"title="example_usr""#,
        r#"title="example_usr&#10;killed session 99&#13;&#27;[2K""#,
    );
    let plex = FakePlex::start(&body);
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &plex.url, TOKEN, &["sessions"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 6, "{out}");
    assert!(
        !out.lines().any(|l| l.starts_with("killed session 99")),
        "{out}"
    );
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    assert!(
        out.contains(r"example_usr\nkilled session 99\r\u{1b}[2K"),
        "{out}"
    );
}

#[test]
fn a_slow_plex_fails_sessions_well_within_30_seconds() {
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.sessions_delay = Some(std::time::Duration::from_secs(120)));
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let o = run(dir.path(), &plex.url, TOKEN, &["sessions"]);
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Plex did not answer /status/sessions within 20s"),
        "{}",
        stderr(&o)
    );
    assert!(took < std::time::Duration::from_secs(25), "took {took:?}");
    assert_no_token(&o);
}
