//! Edges an owner meets first: the hook's output as Tautulli logs it (stderr is an error
//! there), `--jbop paused` saying what it watches before it waits, a Plex URL pasted from the
//! browser, and an audit log that is not a file (`check` and `run` refuse it alike, without
//! hanging on a FIFO).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const HA: &str = "session_id_1";

#[test]
fn a_successful_hook_kill_writes_nothing_to_stderr() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[enforce]\naudit_log = \"audit.jsonl\"\n",
    )
    .unwrap();
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &[
            "hook",
            "--config",
            "c.toml",
            "--jbop",
            "stream",
            "--sessionId",
            HA,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(plex.terminates().len(), 1);
    assert!(
        stdout(&o).contains("killed session session_id_1"),
        "{}",
        stdout(&o)
    );
    assert_eq!(stderr(&o), "", "Tautulli logs stderr as ERROR");
    // With --debug, the log's INFO lines go to stdout (Tautulli's debug log), not stderr.
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &[
            "hook",
            "--config",
            "c.toml",
            "--debug",
            "--jbop",
            "stream",
            "--sessionId",
            "rxiscwekkvkpukgi3pm9nklp",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("INFO"), "{}", stderr(&o));
}

#[test]
fn paused_says_what_it_watches_before_it_waits() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args([
            "hook",
            "--jbop",
            "paused",
            "--sessionId",
            HA,
            "--limit",
            "600",
            "--interval",
            "30",
        ])
        .current_dir(dir.path())
        .env_clear()
        .env("HOME", dir.path())
        .env("STATE_DIRECTORY", dir.path())
        .env("PLEX_URL", &plex.url)
        .env("PLEX_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        first.starts_with(&format!(
            "watching session {HA}: killed once paused for 600 s, checked every 30 s"
        )),
        "{first:?}"
    );
}

#[test]
fn a_plex_web_address_pasted_from_the_browser_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        "http://127.0.0.1:32400/web/index.html#!/",
        TOKEN,
        &["sessions"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("without the path, http://127.0.0.1:32400"),
        "{}",
        stderr(&o)
    );
    assert_no_token(&o);
}

/// Runs `args` in `dir`, failing the test if it does not end within 20 s (a FIFO that blocks
/// the open would hang it).
fn bounded(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("HOME", dir)
        .env("STATE_DIRECTORY", dir)
        .env("PLEX_URL", "http://127.0.0.1:1")
        .env("PLEX_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn an_audit_log_that_is_not_a_file_is_refused_by_check_and_run_alike() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for (path, why) in [
        ("/dev/full", "is a device"),
        (fifo.to_str().unwrap(), "is a FIFO"),
        ("/proc/self/status", "kernel filesystem"),
    ] {
        std::fs::write(
            dir.path().join("c.toml"),
            format!("[capture]\nenabled = false\n[enforce]\naudit_log = \"{path}\"\n"),
        )
        .unwrap();
        for cmd in ["check", "run"] {
            let o = bounded(dir.path(), &[cmd, "--config", "c.toml"]);
            assert_eq!(o.status.code(), Some(2), "{cmd} {path}: {}", stderr(&o));
            assert!(
                stderr(&o).contains(path) && stderr(&o).contains(why),
                "{cmd} {path}: {}",
                stderr(&o)
            );
        }
    }
}

/// A stand-in Plex whose /status/sessions never ends: chunk after chunk of XML-ish bytes
/// until the client hangs up.
fn endless_plex() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let item = "<Video title=\"x\" sessionKey=\"1\"/>".repeat(2000);
                let chunk = format!("{:x}\r\n{item}\r\n", item.len());
                while stream.write_all(chunk.as_bytes()).is_ok() {}
            });
        }
    });
    url
}

#[test]
fn an_endless_answer_from_plex_is_an_error_not_memory() {
    let url = endless_plex();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), "[plex]\nmax_response_mb = 2\n").unwrap();
    let o = run(dir.path(), &url, TOKEN, &["sessions", "--config", "c.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/status/sessions is longer than 2 MB"),
        "{}",
        stderr(&o)
    );
    assert_no_token(&o);
    // A bad setting is named where it stands.
    std::fs::write(dir.path().join("c.toml"), "[plex]\nmax_response_mb = 0\n").unwrap();
    let o = run(dir.path(), &url, TOKEN, &["sessions", "--config", "c.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("c.toml:2:19"), "{}", stderr(&o));
}
