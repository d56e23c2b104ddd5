//! The state database from the outside, with the real binary: one daemon per state, the hook
//! sharing the daemon's database (never twice across processes and a torn audit line), an
//! older install's audit log brought in, and `check` saying which state it will use.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const HOMARR: &str = "2894294r2jf2038fj3098jgf3gt";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn daemon(dir: &Path, url: &str, cfg: &str) -> std::process::Child {
    Command::new(bin())
        .args(["run", "--config", cfg])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("PLEX_URL", url)
        .env("PLEX_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start streamwarden run")
}

#[test]
fn a_second_daemon_on_the_same_state_refuses_and_names_the_first() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "c.toml",
        "[capture]\nenabled = false\n[state]\npath = \"st/state.db\"\n",
    );
    let mut first = daemon(dir.path(), &plex.url, &cfg);
    let lock = dir.path().join("st/state.db.lock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&lock).unwrap_or_default().trim() != first.id().to_string()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = daemon(dir.path(), &plex.url, &cfg)
        .wait_with_output()
        .unwrap();
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("another streamwarden daemon (pid {})", first.id())),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "{err}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // Once the first has stopped, a new one may start.
    let mut third = daemon(dir.path(), &plex.url, &cfg);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(third.try_wait().unwrap().is_none(), "the third runs");
    let _ = third.kill();
    let _ = third.wait();
}

#[test]
fn two_hook_runs_after_a_torn_audit_line_kill_once_and_every_record_stays_readable() {
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.remove_on_kill = false);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "c.toml",
        "[enforce]\naudit_log = \"audit.jsonl\"\n",
    );
    // A crash mid-write left half a line at the end of the log.
    let good = r#"{"ts":"2026-11-01T10:00:00Z","mode":"enforce","action":"log","rule":"r","message":"m","values":{},"estimated":false}"#;
    std::fs::write(
        dir.path().join("audit.jsonl"),
        format!("{good}\n{{\"ts\":\"2026-11-0"),
    )
    .unwrap();
    let hook = || {
        run(
            dir.path(),
            &plex.url,
            TOKEN,
            &[
                "hook",
                "--config",
                &cfg,
                "--jbop",
                "stream",
                "--sessionId",
                HOMARR,
            ],
        )
    };
    let one = hook();
    assert_eq!(one.status.code(), Some(0), "{}", stderr(&one));
    let two = hook();
    assert_eq!(two.status.code(), Some(0), "{}", stderr(&two));
    assert_eq!(plex.terminates().len(), 1, "never twice, across processes");
    let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], good);
    assert_eq!(
        lines[1], "{\"ts\":\"2026-11-0",
        "the fragment keeps its own line"
    );
    let records: Vec<serde_json::Value> = lines[2..]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(records.len(), 1, "{text}");
    assert_eq!(records[0]["action"], "kill");
    // The state has it too, for history.
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["history", "--config", &cfg, "--json"],
    );
    let h: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(h["total"], 1, "{h}");
    assert_eq!(h["entries"][0]["session_id"], HOMARR);
}

#[test]
fn an_older_installs_audit_log_is_brought_into_a_new_state() {
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.remove_on_kill = false);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "c.toml",
        "[enforce]\naudit_log = \"audit.jsonl\"\n",
    );
    // Killed a minute ago by a version that kept only the JSONL log.
    let ts = (time::OffsetDateTime::now_utc() - time::Duration::minutes(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let old = serde_json::json!({"ts": ts, "mode": "enforce", "action": "kill", "rule": "r",
        "session_id": HOMARR, "user": "example_usr", "message": "m", "values": {}});
    std::fs::write(dir.path().join("audit.jsonl"), format!("{old}\n")).unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &[
            "hook",
            "--config",
            &cfg,
            "--jbop",
            "stream",
            "--sessionId",
            HOMARR,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(plex.terminates().is_empty(), "{}", stdout(&o));
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["history", "--config", &cfg, "--json"],
    );
    let h: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(h["total"], 1, "{h}");
    assert_eq!(h["users"][0]["user"], "example_usr");
}

#[test]
fn the_hook_without_a_usable_state_says_so_and_still_acts() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    // The state's folder is a file: nothing can be made there.
    std::fs::write(dir.path().join("blocked"), "").unwrap();
    let cfg = write(
        dir.path(),
        "c.toml",
        "[capture]\nenabled = false\n[state]\npath = \"blocked/state.db\"\n",
    );
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &[
            "hook",
            "--config",
            &cfg,
            "--jbop",
            "stream",
            "--sessionId",
            HOMARR,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("blocked/state.db")
            && stderr(&o).contains("never-twice and the kill budget cover this run only"),
        "{}",
        stderr(&o)
    );
    assert_eq!(plex.terminates().len(), 1);
    let o = run(dir.path(), &plex.url, TOKEN, &["check", "--config", &cfg]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("state: ") && stdout(&o).contains("refuses to start"),
        "{}",
        stdout(&o)
    );
    let o = run(dir.path(), &plex.url, TOKEN, &["run", "--config", &cfg]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("blocked"), "{}", stderr(&o));
}

#[test]
fn check_names_the_state_the_daemon_and_the_hook_will_share() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", "");
    let o = run(
        dir.path(),
        "http://127.0.0.1:1",
        TOKEN,
        &["check", "--config", &cfg],
    );
    let expected = format!(
        "state: {}/state.db (made by the first run)",
        dir.path().display()
    );
    assert!(stdout(&o).contains(&expected), "{}", stdout(&o));
}
