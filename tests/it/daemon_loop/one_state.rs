//! One enforcer, one durable state: every path that kills (the loop's rules, the page's Kill
//! now, Tautulli's Webhook agent) shares one never-twice, one budget and one audit, kept in
//! the state database, and what it holds survives a restart. Real HTTP requests in parallel
//! against the in-process daemon and the stand-in Plex.

use super::*;

use serde_json::json;

const SECRET: &str = "state-SECRET-77ab";

/// `n` killable streams: the Home Assistant session with ids s0, s1, ... and users 100+i.
fn many_sessions(n: usize) -> String {
    let one = crate::common::fixture("ha_session_base.xml");
    let start = one.find("<Video").expect("a Video");
    let end = one.rfind("</Video>").expect("its end") + "</Video>".len();
    let item = &one[start..end];
    let mut body = format!("<MediaContainer size=\"{n}\">");
    for i in 0..n {
        body.push_str(
            &item
                .replace("session_id_1", &format!("s{i}"))
                .replace("{user_id}", &(100 + i).to_string()),
        );
    }
    body.push_str("</MediaContainer>");
    body
}

async fn daemon(plex: FakePlex, rules: &str, state: Option<std::path::PathBuf>) -> Daemon {
    let opts = Options {
        http: true,
        http_token: Some(SECRET.into()),
        state,
        ..Default::default()
    };
    start(plex, rules, opts).await
}

/// A POST with the token, answered as (status, JSON).
async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .bearer_auth(SECRET)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

fn webhook_kill(id: &str) -> serde_json::Value {
    json!({"jbop": "stream", "sessionId": id, "killMessage": "bye"})
}

fn kill_now(id: &str) -> serde_json::Value {
    json!({"session_id": id, "message": "bye"})
}

#[tokio::test]
async fn twenty_kills_of_one_zombie_from_the_webhook_and_the_page_send_one_terminate() {
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.remove_on_kill = false);
    let d = daemon(plex, "", None).await;
    let addr = d.http.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut all = Vec::new();
    for i in 0..20 {
        let (path, body) = if i % 2 == 0 {
            ("/api/tautulli", webhook_kill(ZOMBIE))
        } else {
            ("/api/streams/kill", kill_now(ZOMBIE))
        };
        all.push(tokio::spawn(async move { post(addr, path, body).await }));
    }
    let mut statuses = Vec::new();
    for h in all {
        statuses.push(h.await.unwrap().0);
    }
    assert!(statuses.iter().all(|s| *s < 500), "{statuses:?}");
    let (_, plex, audit) = d.stop().await;
    assert_eq!(plex.terminates().len(), 1, "one terminate for one stream");
    let kills = audit.iter().filter(|l| l["action"] == "kill").count();
    assert_eq!(kills, 1, "{audit:?}");
}

#[tokio::test]
async fn the_budget_holds_across_the_webhook_and_the_page_in_any_60_seconds() {
    let plex = FakePlex::start(&many_sessions(15));
    let d = daemon(plex, "[enforce]\nmax_kills_per_minute = 3\n", None).await;
    let addr = d.http.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut all = Vec::new();
    for i in 0..15 {
        let id = format!("s{i}");
        let (path, body) = if i < 12 {
            ("/api/tautulli", webhook_kill(&id))
        } else {
            ("/api/streams/kill", kill_now(&id))
        };
        all.push(tokio::spawn(async move { post(addr, path, body).await }));
    }
    for h in all {
        h.await.unwrap();
    }
    let (_, plex, audit) = d.stop().await;
    assert_eq!(plex.terminates().len(), 3, "max_kills_per_minute = 3");
    let refused = audit
        .iter()
        .filter(|l| {
            l["action"] == "kill-skipped"
                && l["reason"].as_str().is_some_and(|r| r.contains("budget"))
        })
        .count();
    assert_eq!(refused, 12, "{audit:?}");
}

#[tokio::test]
async fn a_stream_the_webhook_killed_is_not_killed_again_by_a_rule() {
    // The player ignores the kill (a zombie), so the loop's rule still sees the stream.
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.remove_on_kill = false);
    let rule = "[[rules]]\nname = \"audio\"\nwhen = 'user == \"example_usr\"'\nsustain = \"2s\"\n";
    let d = daemon(plex, rule, None).await;
    let addr = d.http.unwrap();
    let (code, reply) = post(addr, "/api/tautulli", webhook_kill(ZOMBIE)).await;
    assert_eq!(code, 200, "{reply}");
    // Long enough for the rule's sustain and several rounds after it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, plex, audit) = d.stop().await;
    assert_eq!(plex.terminates().len(), 1, "{audit:?}");
}

#[tokio::test]
async fn never_twice_and_the_budget_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.remove_on_kill = false);
    let d = daemon(
        plex,
        "[enforce]\nmax_kills_per_minute = 2\n",
        Some(state.clone()),
    )
    .await;
    let addr = d.http.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        post(addr, "/api/streams/kill", kill_now(ZOMBIE)).await.0,
        200
    );
    let (_, plex, _) = d.stop().await;
    assert_eq!(plex.terminates().len(), 1);

    // A new daemon on the same state: the zombie is not killed twice, and the budget has
    // one kill left in this minute.
    let d = daemon(plex, "[enforce]\nmax_kills_per_minute = 2\n", Some(state)).await;
    let addr = d.http.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, again) = post(addr, "/api/streams/kill", kill_now(ZOMBIE)).await;
    assert_eq!(again["outcome"], "already-killed", "{again}");
    let (_, first) = post(addr, "/api/streams/kill", kill_now(FAST)).await;
    assert_eq!(first["outcome"], "kill", "{first}");
    let (_, over) = post(addr, "/api/streams/kill", kill_now(SLOW)).await;
    assert_eq!(over["outcome"], "kill-skipped", "{over}");
    assert!(over["said"].as_str().unwrap().contains("budget"), "{over}");
    let (_, plex, _) = d.stop().await;
    assert_eq!(plex.terminates().len(), 2);
}

#[tokio::test]
async fn a_kill_is_confirmed_only_by_a_poll_sent_after_its_answer() {
    // Each read of the sessions takes 1.5 s and a poll is nearly always in flight: one sent
    // before the terminate comes back after it, still listing the killed stream.
    let plex = FakePlex::start(&mixed_sessions());
    let opts = Options {
        http: true,
        http_token: Some(SECRET.into()),
        poll_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let d = start(plex, "", opts).await;
    let addr = d.http.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    d.plex
        .set(|s| s.sessions_delay = Some(Duration::from_millis(1500)));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (code, r) = post(addr, "/api/streams/kill", kill_now(ZOMBIE)).await;
    assert_eq!((code, r["outcome"].as_str()), (200, Some("kill")), "{r}");
    // Several polls later.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, plex, audit) = d.stop().await;
    let after: Vec<&str> = audit
        .iter()
        .filter(|l| l["session_id"] == ZOMBIE)
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(after, vec!["kill"], "no false transcode-stopped or zombie");
    assert!(plex.state.lock().unwrap().deleted_transcodes.is_empty());
}

#[tokio::test]
async fn no_kill_is_sent_while_the_state_cannot_be_written_and_kills_resume_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let plex = FakePlex::start(&mixed_sessions());
    let d = daemon(plex, "", Some(path.clone())).await;
    let addr = d.http.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Another process holds the database locked (as a full disk or a read-only mount would
    // refuse the write).
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (code, r) = post(addr, "/api/streams/kill", kill_now(FAST)).await;
    assert_eq!(r["outcome"], "kill-skipped", "{code} {r}");
    assert!(
        r["said"].as_str().unwrap().contains("state database"),
        "{r}"
    );
    assert!(d.plex.terminates().is_empty(), "fail closed: nothing sent");
    let metrics = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("streamwarden_state_write_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "{metrics}");
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    let (_, r) = post(addr, "/api/streams/kill", kill_now(FAST)).await;
    assert_eq!(r["outcome"], "kill", "{r}");
    let (_, plex, _) = d.stop().await;
    assert_eq!(plex.terminates().len(), 1);
}

/// A small tmpfs, filled, unmounted on drop.
struct FullDisk {
    dir: tempfile::TempDir,
}

impl FullDisk {
    fn new() -> Option<Self> {
        use crate::common::need::{Need, have};
        if !have("the full-disk test", &[Need::Mount]) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs");
        Some(FullDisk { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Takes every byte left.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.path().join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.write_all(&[0]);
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_stops_kills_and_they_resume_when_space_comes_back() {
    let Some(disk) = FullDisk::new() else { return };
    let plex = FakePlex::start(&mixed_sessions());
    let d = daemon(plex, "", Some(disk.path().join("state.db"))).await;
    let addr = d.http.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    disk.fill();
    for id in [FAST, SLOW, ZOMBIE] {
        let (_, r) = post(addr, "/api/streams/kill", kill_now(id)).await;
        assert_eq!(r["outcome"], "kill-skipped", "{r}");
        assert!(
            r["said"].as_str().unwrap().contains("state database"),
            "{r}"
        );
    }
    assert!(
        d.plex.terminates().is_empty(),
        "no kill while nothing can be recorded"
    );
    disk.free();
    let (_, r) = post(addr, "/api/streams/kill", kill_now(FAST)).await;
    assert_eq!(r["outcome"], "kill", "{r}");
    let (_, plex, _) = d.stop().await;
    assert_eq!(plex.terminates().len(), 1);
    // Every kill sent is recorded.
    let state = streamwarden::state::State::open_read_only(&disk.path().join("state.db")).unwrap();
    let report = streamwarden::enforce::history::from_state(
        &state,
        &streamwarden::enforce::history::Query::default(),
    )
    .unwrap();
    assert_eq!(report.users.iter().map(|u| u.kills).sum::<u32>(), 1);
}

#[tokio::test]
async fn a_hook_that_cannot_open_the_state_hands_its_run_to_the_daemon() {
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.remove_on_kill = false);
    let d = daemon(plex, "", None).await;
    let addr = d.http.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Tautulli's container: the daemon's state is not reachable from here.
    std::fs::write(dir.path().join("blocked"), "").unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[state]\npath = \"blocked/state.db\"\n[http]\nlisten = \"{addr}\"\ntoken = \"{SECRET}\"\n"
        ),
    )
    .unwrap();
    let url = d.plex.url.clone();
    let hook = {
        let dir = dir.path().to_path_buf();
        move || {
            run(
                &dir,
                &url,
                TOKEN,
                &[
                    "hook",
                    "--config",
                    "c.toml",
                    "--jbop",
                    "stream",
                    "--sessionId",
                    ZOMBIE,
                ],
            )
        }
    };
    let one = tokio::task::spawn_blocking(hook.clone()).await.unwrap();
    assert_eq!(one.status.code(), Some(0), "{}", stderr(&one));
    assert!(
        stdout(&one).contains(&format!("handed to the daemon at {addr}"))
            && stdout(&one).contains("killed"),
        "{}",
        stdout(&one)
    );
    let two = tokio::task::spawn_blocking(hook).await.unwrap();
    assert_eq!(two.status.code(), Some(0), "{}", stderr(&two));
    assert!(!stderr(&two).contains(SECRET) && !stdout(&two).contains(SECRET));
    let (_, plex, audit) = d.stop().await;
    assert_eq!(plex.terminates().len(), 1, "the daemon's never-twice held");
    assert_eq!(audit.iter().filter(|l| l["action"] == "kill").count(), 1);
}

#[tokio::test]
async fn a_stop_during_a_slow_terminate_ends_the_daemon_at_once() {
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.terminate_delay = Some(Duration::from_secs(60)));
    let d = daemon(plex, "", None).await;
    let addr = d.http.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let asked = tokio::spawn(async move { post(addr, "/api/streams/kill", kill_now(FAST)).await });
    // The terminate is on its way to a Plex that takes a minute to answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.plex.terminates().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(d.plex.terminates().len(), 1);
    // stop() fails the test unless the loop ends within its 5 s.
    let (_, plex, _) = d.stop().await;
    asked.abort();
    assert_eq!(plex.terminates().len(), 1);
}
