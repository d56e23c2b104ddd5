//! The daemon's behaviour, in process and without privileges: the real loop, the real Plex
//! client against the fake Plex server, generated packets pushed into its feed at known
//! rates, and the control channel in place of signals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use streamwarden::capture::Packet;
use streamwarden::capture::decode::LINKTYPE_ETHERNET;
use streamwarden::config::Config;
use streamwarden::daemon::{self, Control, Feed, Setup, Summary, SystemClock, View};
use streamwarden::engine::Clock;
use streamwarden::engine::open::{compile, open_audit};
use streamwarden::engine::row::StreamRow;
use streamwarden::meter::Metering;
use streamwarden::plex::{PlexClient, PlexSettings};
use tokio::sync::mpsc;

use crate::common::capture::eth_tcp;
use crate::common::logs::Logs;
use crate::common::*;

const FAST: &str = "session_id_1"; // user 7 at 1.2.3.11
const SLOW: &str = "rxiscwekkvkpukgi3pm9nklp"; // the plexopedia track at 127.0.0.1
const ZOMBIE: &str = "2894294r2jf2038fj3098jgf3gt"; // homarr's transcode, user example_usr

const RULE: &str = "[[rules]]\nname = \"fast\"\nwhen = 'measured_kbps_10s > 8000'\nsustain = \"3s\"\nmessage = \"{user}: {measured_kbps_10s_mbps} Mbps\"\n";

/// Server → client traffic at fixed rates, pushed into the daemon's feed in real time.
struct Traffic {
    stop: Arc<AtomicBool>,
}

impl Traffic {
    fn start(feed: Feed, flows: Vec<([u8; 4], u16, u64)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            const IP_LEN: usize = 1500;
            let frames: Vec<(Vec<u8>, u64)> = flows
                .iter()
                .map(|(client, port, kbps)| {
                    let f = eth_tcp([10, 0, 0, 1], 32400, *client, *port, &[0u8; IP_LEN - 40]);
                    (f, *kbps)
                })
                .collect();
            let mut owed = vec![0.0f64; frames.len()];
            let mut last = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
                let dt = last.elapsed().as_secs_f64();
                last = Instant::now();
                let ts = SystemClock.now().0;
                for ((frame, kbps), o) in frames.iter().zip(&mut owed) {
                    *o += *kbps as f64 * 125.0 * dt;
                    while *o >= IP_LEN as f64 {
                        *o -= IP_LEN as f64;
                        feed.ingest(&Packet {
                            ts_micros: ts,
                            orig_len: frame.len() as u32,
                            data: frame,
                        });
                    }
                }
            }
        });
        Self { stop }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A daemon running in this test's runtime.
struct Daemon {
    plex: FakePlex,
    control: mpsc::Sender<Control>,
    task: tokio::task::JoinHandle<Summary>,
    dir: tempfile::TempDir,
    http: Option<std::net::SocketAddr>,
    feed: Feed,
    _traffic: Option<Traffic>,
}

struct Options {
    /// The token the HTTP endpoint requires.
    http_token: Option<String>,
    /// Point the client elsewhere than the fake server.
    url: Option<String>,
    dry_run: bool,
    poll_interval: Duration,
    http: bool,
    reload: Option<daemon::Reload>,
    flows: Vec<([u8; 4], u16, u64)>,
    notify: Option<streamwarden::notify::Notifier>,
    /// What throttles (none: throttle decisions fail).
    shaper: Option<Arc<dyn streamwarden::enforce::shape::Shaper>>,
    /// `[measure] source`.
    measure: streamwarden::config::MeasureSource,
    /// The state database (default: a new one in the daemon's folder).
    state: Option<std::path::PathBuf>,
    /// Listen to the fake's event stream, polling at `fallback` while it is down.
    events: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            http_token: None,
            url: None,
            dry_run: false,
            poll_interval: Duration::from_millis(500),
            http: false,
            reload: None,
            flows: Vec::new(),
            notify: None,
            shaper: None,
            measure: Default::default(),
            state: None,
            events: None,
        }
    }
}

fn config(dir: &std::path::Path, rules: &str) -> Config {
    let mut c = Config::parse(rules, None).expect("config");
    c.enforce.audit_log = Some(dir.join("audit.jsonl"));
    c
}

async fn start(plex: FakePlex, rules: &str, opts: Options) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), rules);
    cfg.enforce.dry_run = opts.dry_run;
    let settings = PlexSettings {
        url: opts.url.unwrap_or_else(|| plex.url.clone()),
        token: TOKEN.into(),
        client_identifier: "test".into(),
        timeout: Duration::from_secs(2),
        tls_verify: true,
        max_response: streamwarden::plex::DEFAULT_MAX_RESPONSE,
    };
    let client = PlexClient::new(settings.clone()).unwrap();
    let feed =
        Feed::new(Metering::new(LINKTYPE_ETHERNET, Some(vec![32400]))).with_source(opts.measure);
    let listener = if opts.http {
        Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    } else {
        None
    };
    let http = listener.as_ref().map(|l| l.local_addr().unwrap());
    let traffic = (!opts.flows.is_empty()).then(|| Traffic::start(feed.clone(), opts.flows));
    let setup = Setup {
        rules: compile(&cfg).expect("rules"),
        enforce: cfg.enforce.clone(),
        plex: Arc::new(client),
        state: streamwarden::state::State::open(
            &opts
                .state
                .clone()
                .unwrap_or_else(|| dir.path().join("state.db")),
        )
        .expect("state"),
        audit: open_audit(&cfg).unwrap(),
        notify: opts.notify,
        ports: vec![32400],
        poll_interval: opts.poll_interval,
        events: opts.events.is_some(),
        fallback_interval: opts.events.unwrap_or(opts.poll_interval),
        usage: Default::default(),
        feed: feed.clone(),
        clock: Arc::new(SystemClock),
        view: View::Logs,
        http: listener,
        http_token: opts
            .http_token
            .clone()
            .map(streamwarden::config::Secret::new),
        http_hosts: Vec::new(),
        reload: opts.reload,
        webhook: opts.http.then_some(daemon::webhook::Webhook {
            plex: settings,
            config_file: None,
        }),
        tick: Duration::from_secs(1),
        shaper: opts
            .shaper
            .ok_or_else(|| "this test gave no shaper".to_string()),
    };
    let (control, rx) = mpsc::channel(4);
    let task = tokio::spawn(daemon::run(setup, rx));
    Daemon {
        plex,
        control,
        task,
        dir,
        http,
        feed,
        _traffic: traffic,
    }
}

impl Daemon {
    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn until(&self, limit: Duration, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the daemon; what it did, the fake Plex, and the audit log as the stop left it.
    async fn stop(self) -> (Summary, FakePlex, Vec<serde_json::Value>) {
        self.control.send(Control::Stop).await.unwrap();
        let summary = tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the daemon stops on Control::Stop")
            .unwrap();
        let audit = std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (summary, self.plex, audit)
    }
}

#[tokio::test]
async fn the_kill_lands_after_sustain_and_the_slow_stream_is_spared() {
    let plex = FakePlex::start(&mixed_sessions());
    let t0 = Instant::now();
    let opts = Options {
        flows: vec![
            ([1, 2, 3, 11], 50_000, 20_000),
            ([127, 0, 0, 1], 50_001, 2_000),
        ],
        http: true,
        ..Default::default()
    };
    let d = start(plex, RULE, opts).await;
    d.until(Duration::from_secs(15), |d| !d.plex.terminates().is_empty())
        .await;
    // Served while running: the typed rows and the Prometheus text.
    let addr = d.http.unwrap();
    let body = reqwest::get(format!("http://{addr}/api/streams"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows: Vec<StreamRow> = serde_json::from_str(&body).unwrap();
    let slow = rows
        .iter()
        .find(|r| r.session_id.as_deref() == Some(SLOW))
        .unwrap();
    let kbps = slow.measured_kbps_10s.unwrap();
    assert!((1_500.0..2_500.0).contains(&kbps), "{kbps}");
    assert_eq!(slow.rules[0].state, "ok");
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("streamwarden_kills_total{rule=\"fast\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("streamwarden_stream_measured_kbps{"),
        "{metrics}"
    );
    let (summary, plex, audit) = d.stop().await;
    let terminates = plex.terminates();
    assert_eq!(terminates.len(), 1, "{terminates:?}");
    assert_eq!(terminates[0].0, FAST);
    assert!(
        terminates[0].1.starts_with("User 7: "),
        "{}",
        terminates[0].1
    );
    let at = plex.state.lock().unwrap().terminate_times[0] - t0;
    // The condition first holds after the first complete second (and the next tick);
    // the kill comes sustain (3 s) later.
    assert!(
        at >= Duration::from_secs(3),
        "killed after {at:?}, before sustain"
    );
    assert!(at <= Duration::from_secs(3 + 2 + 2), "killed after {at:?}");
    assert_eq!(summary.kills.len(), 1);
    let kill = audit
        .iter()
        .find(|l| l["action"] == "kill")
        .expect("a kill");
    assert_eq!(kill["session_id"], FAST);
    assert!(kill["values"]["measured_kbps_10s"].as_f64().unwrap() > 8000.0);
    assert!(audit.iter().all(|l| l["session_id"] != SLOW), "{audit:?}");
}

#[tokio::test]
async fn dry_run_audits_one_would_kill_per_hold_and_kills_nothing() {
    let plex = FakePlex::start(&mixed_sessions());
    let opts = Options {
        flows: vec![([1, 2, 3, 11], 50_000, 20_000)],
        dry_run: true,
        ..Default::default()
    };
    let d = start(plex, RULE, opts).await;
    d.until(Duration::from_secs(15), |d| {
        d.audit().iter().any(|l| l["action"] == "would-kill")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (summary, plex, audit) = d.stop().await;
    let w: Vec<_> = audit
        .iter()
        .filter(|l| l["action"] == "would-kill")
        .collect();
    assert_eq!(w.len(), 1, "once per hold: {audit:?}");
    assert_eq!(w[0]["mode"], "dry-run");
    assert_eq!(w[0]["session_id"], FAST);
    assert!(plex.terminates().is_empty());
    assert_eq!(summary.would_kills.len(), 1);
}

/// A rule that always matches user 7 (sustain 4 s) while Plex misbehaves from 1.5 s on:
/// nothing may be killed on stale data, the daemon says what is wrong once, and once Plex
/// recovers the kill goes through.
async fn outage(set: impl Fn(&mut PlexState), clear: impl Fn(&mut PlexState), expect: &str) {
    let logs = Logs::default();
    let _guard = logs.subscriber();
    let plex = FakePlex::start(&mixed_sessions());
    let rule = "[[rules]]\nname = \"any\"\nwhen = 'state == \"playing\" && user_id == 7'\nsustain = \"4s\"\n";
    let d = start(plex, rule, Options::default()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.plex.set(set);
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(d.plex.terminates().is_empty(), "killed on stale data");
    d.plex.set(clear);
    let back = Instant::now();
    d.until(Duration::from_secs(10), |d| !d.plex.terminates().is_empty())
        .await;
    let (_, plex, _) = d.stop().await;
    let log = logs.text();
    assert!(log.contains(expect), "expected {expect:?} in:\n{log}");
    assert_eq!(log.matches(expect).count(), 1, "said once: {log}");
    // The hold counted only fresh data: about 1.5 s before the outage, so the kill needs
    // some 2.5 s of fresh data after it, not the 7 s Plex was away.
    let at = plex.state.lock().unwrap().terminate_times[0] - back;
    assert!(
        at >= Duration::from_millis(1500),
        "killed {at:?} after Plex came back"
    );
    assert!(log.contains("Plex answers again"), "{log}");
    assert_eq!(
        plex.terminates().len(),
        1,
        "the kill goes through once Plex is back"
    );
    assert!(!log.contains(TOKEN));
}

#[tokio::test]
async fn plex_answering_500() {
    outage(
        |s| s.sessions_failure = Some((500, "Internal Server Error".into())),
        |s| s.sessions_failure = None,
        "Plex answered 500",
    )
    .await;
}

#[tokio::test]
async fn plex_answering_garbage() {
    outage(
        |s| s.sessions_failure = Some((200, "<<<garbage".into())),
        |s| s.sessions_failure = None,
        "not the XML expected",
    )
    .await;
}

#[tokio::test]
async fn plex_answering_slowly() {
    outage(
        |s| s.sessions_delay = Some(Duration::from_secs(5)),
        |s| s.sessions_delay = None,
        "did not answer",
    )
    .await;
}

#[tokio::test]
async fn plex_rejecting_the_token() {
    outage(
        |s| s.sessions_failure = Some((401, "<html>401</html>".into())),
        |s| s.sessions_failure = None,
        "Plex rejected the token",
    )
    .await;
}

#[tokio::test]
async fn a_kill_the_player_ignores_gets_its_transcode_stopped_then_is_audited_as_a_zombie() {
    // homarr's session is a transcode with key example-session; the fake keeps listing it
    // after the terminate, like a player that ignores the kill.
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.remove_on_kill = false);
    let rule = "[[rules]]\nname = \"audio-transcode\"\nwhen = 'audio_decision == \"transcode\" && user == \"example_usr\"'\nsustain = \"1s\"\n";
    let d = start(plex, rule, Options::default()).await;
    d.until(Duration::from_secs(20), |d| {
        d.audit().iter().any(|l| l["action"] == "zombie")
    })
    .await;
    let (_, plex, audit) = d.stop().await;
    let actions: Vec<&str> = audit
        .iter()
        .filter(|l| l["session_id"] == ZOMBIE)
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["kill", "transcode-stopped", "zombie"]);
    assert_eq!(plex.terminates().len(), 1, "a terminate is never repeated");
    assert_eq!(
        plex.state.lock().unwrap().deleted_transcodes,
        vec!["example-session".to_string()]
    );
}

#[tokio::test]
async fn a_reload_applies_new_rules_and_a_refused_one_keeps_the_running_rules() {
    let logs = Logs::default();
    let _guard = logs.subscriber();
    let plex = FakePlex::start(&mixed_sessions());
    let calls = Arc::new(Mutex::new(0u32));
    let reload: daemon::Reload = {
        let calls = calls.clone();
        Box::new(move || {
            let mut n = calls.lock().unwrap();
            *n += 1;
            let dir = std::env::temp_dir();
            let rules = if *n == 1 {
                "[[rules]]\nname = \"x\"\nwhen = 'usr == 1'\n"
            } else {
                "[[rules]]\nname = \"owner-only\"\nwhen = 'user_id == 7'\nsustain = \"1s\"\n"
            };
            let cfg = config(&dir, rules);
            Ok(daemon::Reloaded {
                rules: compile(&cfg).map_err(|e| e.to_string())?,
                enforce: cfg.enforce,
                restart_needed: Vec::new(),
            })
        })
    };
    let opts = Options {
        reload: Some(reload),
        ..Default::default()
    };
    let d = start(plex, "", opts).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.control.send(Control::Reload).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(d.plex.terminates().is_empty());
    d.control.send(Control::Reload).await.unwrap();
    d.until(Duration::from_secs(10), |d| !d.plex.terminates().is_empty())
        .await;
    let (_, plex, _) = d.stop().await;
    let log = logs.text();
    assert!(
        log.contains("reload failed, keeping the running configuration"),
        "{log}"
    );
    assert!(log.contains("unknown variable `usr`"), "{log}");
    assert!(log.contains("configuration reloaded"), "{log}");
    assert_eq!(plex.terminates().len(), 1, "{log}");
    assert_eq!(plex.terminates()[0].0, FAST);
}

#[tokio::test]
async fn the_kill_budget_holds_the_second_kill_back() {
    // Two killable streams match at once; one kill a minute is allowed.
    let plex = FakePlex::start(&mixed_sessions());
    let rule = "[enforce]\nmax_kills_per_minute = 1\n\n[[rules]]\nname = \"both\"\nwhen = 'user_id == 7 || user == \"example_usr\"'\nsustain = \"1s\"\n";
    let d = start(plex, rule, Options::default()).await;
    d.until(Duration::from_secs(10), |d| {
        d.audit().iter().any(|l| l["action"] == "kill-skipped")
    })
    .await;
    let (_, plex, audit) = d.stop().await;
    assert_eq!(plex.terminates().len(), 1, "{audit:?}");
    let skipped = audit
        .iter()
        .find(|l| l["action"] == "kill-skipped")
        .expect("the second kill skipped");
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap()
            .contains("kill budget exhausted"),
        "{skipped}"
    );
}

#[tokio::test]
async fn a_kill_is_rechecked_on_fresh_data_first() {
    // Polled every 10 s, the loop's view stays fresh for 20 s. The stream pauses right
    // after the first poll: the loop still sees it playing when the rule is due, but the
    // re-read before the kill sees the pause, and nothing is killed.
    let logs = Logs::default();
    let _guard = logs.subscriber();
    let plex = FakePlex::start(&mixed_sessions());
    let rule = "[[rules]]\nname = \"playing\"\nwhen = 'user_id == 7 && state == \"playing\"'\nsustain = \"2s\"\n";
    let opts = Options {
        poll_interval: Duration::from_secs(10),
        ..Default::default()
    };
    let d = start(plex, rule, opts).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.plex.set(|s| {
        s.sessions_body = s
            .sessions_body
            .replacen("state=\"playing\"", "state=\"paused\"", 1)
    });
    assert!(
        d.plex
            .state
            .lock()
            .unwrap()
            .sessions_body
            .contains("state=\"paused\"")
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, plex, audit) = d.stop().await;
    let log = logs.text();
    assert!(plex.terminates().is_empty(), "{log}");
    assert!(audit.is_empty(), "{audit:?}");
    assert!(
        log.contains("no longer holds on fresh data: not killing"),
        "{log}"
    );
}

#[tokio::test]
async fn plex_down_from_the_start_is_said_once_and_the_daemon_stops_cleanly() {
    let logs = Logs::default();
    let _guard = logs.subscriber();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let opts = Options {
        url: Some(url),
        ..Default::default()
    };
    let d = start(FakePlex::start(""), RULE, opts).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    d.stop().await;
    let log = logs.text();
    assert_eq!(
        log.matches("cannot reach Plex").count(),
        1,
        "said once per state change: {log}"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_holds_of_unchanged_rules_and_names_what_needs_a_restart() {
    let logs = Logs::default();
    let _guard = logs.subscriber();
    let plex = FakePlex::start(&mixed_sessions());
    let rule = "[[rules]]\nname = \"owner-only\"\nwhen = 'user_id == 7'\nsustain = \"4s\"\n";
    let reload: daemon::Reload = Box::new(move || {
        // The same rule, one more, and a changed poll interval.
        let text = format!("{rule}\n[[rules]]\nname = \"other\"\nwhen = 'user_id == 99'\n");
        let cfg = config(&std::env::temp_dir(), &text);
        Ok(daemon::Reloaded {
            rules: compile(&cfg).map_err(|e| e.to_string())?,
            enforce: cfg.enforce,
            restart_needed: vec!["[plex]"],
        })
    });
    let opts = Options {
        reload: Some(reload),
        ..Default::default()
    };
    let t0 = Instant::now();
    let d = start(plex, rule, opts).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    d.control.send(Control::Reload).await.unwrap();
    d.until(Duration::from_secs(10), |d| !d.plex.terminates().is_empty())
        .await;
    let (_, plex, _) = d.stop().await;
    let log = logs.text();
    let at = plex.state.lock().unwrap().terminate_times[0] - t0;
    // Held since about 1 s: due about 5 s in. A reset at 2.5 s would put it past 6.5 s.
    assert!(
        at < Duration::from_millis(6300),
        "killed {at:?} in: the hold was reset\n{log}"
    );
    assert!(
        log.contains("[plex] changed and take effect only after a restart"),
        "{log}"
    );
}

#[tokio::test]
async fn a_failed_kill_is_tried_again_with_backoff_and_each_attempt_is_audited() {
    let logs = Logs::default();
    let _guard = logs.subscriber();
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.terminate_failures = 1);
    let rule = "[[rules]]\nname = \"owner-only\"\nwhen = 'user_id == 7'\nsustain = \"1s\"\n";
    let d = start(plex, rule, Options::default()).await;
    d.until(Duration::from_secs(12), |d| !d.plex.terminates().is_empty())
        .await;
    let (_, plex, audit) = d.stop().await;
    let actions: Vec<&str> = audit
        .iter()
        .filter(|l| l["session_id"] == FAST)
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["kill-failed", "kill"],
        "{audit:?}\n{}",
        logs.text()
    );
    assert_eq!(plex.terminates().len(), 1);
}

#[tokio::test]
async fn a_kill_that_keeps_failing_is_given_up_after_its_retries() {
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.terminate_failures = 100);
    let rule = "[[rules]]\nname = \"owner-only\"\nwhen = 'user_id == 7'\nsustain = \"1s\"\n";
    let d = start(plex, rule, Options::default()).await;
    // 2 + 4 + 8 s of waits after the first attempt (each on a one-second tick), then no
    // more.
    tokio::time::sleep(Duration::from_secs(26)).await;
    let (_, plex, audit) = d.stop().await;
    let failed = audit
        .iter()
        .filter(|l| l["action"] == "kill-failed")
        .count();
    assert_eq!(failed, 1 + daemon::KILL_RETRIES as usize, "{audit:?}");
    let sent = plex
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.starts_with("/status/sessions/terminate"))
        .count();
    assert_eq!(sent, 1 + daemon::KILL_RETRIES as usize);
}

#[tokio::test]
async fn control_characters_from_plex_cannot_forge_lines_in_the_text_log() {
    let logs = Logs::default();
    let _guard = logs.subscriber();
    let body = mixed_sessions().replace(
        "title=\"User 7\"",
        "title=\"User 7&#10;2026-01-01T00:00:00Z  INFO streamwarden: forged\"",
    );
    assert!(body.contains("forged"), "the fixture changed");
    let plex = FakePlex::start(&body);
    let rule = "[[rules]]\nname = \"owner-only\"\nwhen = 'user_id == 7'\nsustain = \"1s\"\nmessage = \"Bye {user}\"\n";
    let d = start(plex, rule, Options::default()).await;
    d.until(Duration::from_secs(10), |d| !d.plex.terminates().is_empty())
        .await;
    let (_, plex, _) = d.stop().await;
    assert_eq!(plex.terminates().len(), 1);
    let log = logs.text();
    assert!(log.contains("forged"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a forged line:\n{log}"
    );
}

/// Reads from `s` until the server closes it (end of stream or a reset); what it sent
/// before (a 408, say) is skipped.
async fn closed(s: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// A value of `metrics`' text: the first sample line starting with `series`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn idle_and_stalled_clients_cannot_starve_metrics() {
    use streamwarden::daemon::http::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let opts = Options {
        http: true,
        ..Default::default()
    };
    let d = start(FakePlex::start(&mixed_sessions()), RULE, opts).await;
    let addr = d.http.unwrap();
    let opened = Instant::now();
    // More idle connections than the endpoint serves at once...
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS + 72 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // ...and some that send part of a request's headers, then a byte of a header name every
    // half second (so they never look idle), never finishing.
    let mut stalled = Vec::new();
    for _ in 0..6 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: streamwarden\r\nX-Slow")
            .await
            .unwrap();
        stalled.push(tokio::spawn(async move {
            let started = Instant::now();
            let (mut rx, mut tx) = s.split();
            let mut buf = [0u8; 256];
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    n = rx.read(&mut buf) => if matches!(n, Ok(0) | Err(_)) {
                        return started.elapsed();
                    },
                    _ = tick.tick() => { let _ = tx.write_all(b"w").await; }
                }
            }
        }));
    }

    // A scrape is answered at once, long before any of them times out.
    let asked = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let response = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("/metrics answers while idle and stalled clients are connected");
    assert_eq!(response.status(), 200);
    let metrics = response.text().await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        asked.elapsed()
    );
    // Never more than the cap open: the idlest made room for the newcomers.
    let open = sample(&metrics, "streamwarden_http_connections ").expect(&metrics);
    assert!(open <= MAX_CONNECTIONS as f64, "{open} open:\n{metrics}");
    let evicted = sample(
        &metrics,
        "streamwarden_http_connections_dropped_total{reason=\"evicted\"}",
    )
    .unwrap_or(0.0);
    assert!(evicted >= 72.0, "{evicted} evicted:\n{metrics}");

    // The stalled ones are closed by the header timeout, though bytes keep coming.
    for s in stalled {
        let after = tokio::time::timeout(HEADER_READ_TIMEOUT * 3, s)
            .await
            .expect("a stalled request is closed")
            .unwrap();
        assert!(
            after >= HEADER_READ_TIMEOUT - Duration::from_millis(500)
                && after <= HEADER_READ_TIMEOUT + Duration::from_secs(3),
            "closed after {after:?}"
        );
    }
    // And every idle one is gone by then too.
    for mut s in idle {
        let left = (opened + HEADER_READ_TIMEOUT * 2).saturating_duration_since(Instant::now());
        tokio::time::timeout(left + Duration::from_secs(1), closed(&mut s))
            .await
            .expect("an idle connection is closed");
    }
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let timed_out = sample(
        &metrics,
        "streamwarden_http_connections_dropped_total{reason=\"header-timeout\"}",
    )
    .unwrap_or(0.0);
    assert!(timed_out >= 6.0, "{metrics}");
    d.stop().await;
}

/// `promtool check metrics`, Prometheus's own linter: its complaints (empty when none),
/// or None when promtool is not installed (outside CI only).
fn promtool(metrics: &str) -> Option<(bool, String)> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: promtool cannot run ({e}); scripts/deps.sh --tests installs it");
            return None;
        }
        Err(e) => panic!("promtool cannot run under CI ({e}); scripts/deps.sh --tests installs it"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), said))
}

#[tokio::test]
async fn metrics_pass_promtool() {
    // One kill ("fast"), then a kill that fails ("homarr": Plex refuses the terminate with a
    // 401), with the slow stream measured throughout.
    let plex = FakePlex::start(&mixed_sessions());
    let rules = "[[rules]]\nname = \"fast\"\nwhen = 'measured_kbps_10s > 8000'\nsustain = \"1s\"\n\n[[rules]]\nname = \"homarr\"\nwhen = 'audio_decision == \"transcode\" && user == \"example_usr\"'\nsustain = \"6s\"\n";
    let opts = Options {
        flows: vec![
            ([1, 2, 3, 11], 50_000, 20_000),
            ([127, 0, 0, 1], 50_001, 2_000),
        ],
        http: true,
        ..Default::default()
    };
    let d = start(plex, rules, opts).await;
    d.until(Duration::from_secs(15), |d| !d.plex.terminates().is_empty())
        .await;
    d.plex.set(|s| s.plex_pass = false);
    d.until(Duration::from_secs(20), |d| {
        d.audit().iter().any(|l| l["action"] == "kill-failed")
    })
    .await;
    let addr = d.http.unwrap();
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let metrics = response.text().await.unwrap();
    let (_, _, audit) = d.stop().await;
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let failed = sample(
        &metrics,
        "streamwarden_kill_failures_total{rule=\"homarr\"}",
    );
    assert!(failed >= Some(1.0), "{metrics}\n{audit:?}");
    for series in [
        "streamwarden_kills_total{rule=\"fast\"} 1",
        "streamwarden_stream_measured_kbps{",
        "streamwarden_rule_evaluations_total ",
        "streamwarden_http_connections ",
    ] {
        assert!(
            metrics.contains(series),
            "{series} in:\n{metrics}\n{audit:?}"
        );
    }
    let Some((ok, said)) = promtool(&metrics) else {
        return;
    };
    assert!(
        ok && said.is_empty(),
        "promtool says:\n{said}\nof:\n{metrics}"
    );
}

#[tokio::test]
async fn the_http_token_is_required_and_the_hook_sends_it() {
    let logs = Logs::default();
    let _guard = logs.subscriber();
    let secret = "http-SECRET-71d3";
    let plex = FakePlex::start(&mixed_sessions());
    let opts = Options {
        http: true,
        http_token: Some(secret.into()),
        flows: vec![([1, 2, 3, 11], 50_000, 20_000)],
        ..Default::default()
    };
    let d = start(plex, "", opts).await;
    let addr = d.http.unwrap();
    let client = reqwest::Client::new();
    let get = |path: &str, auth: Option<(&str, String)>| {
        let mut r = client.get(format!("http://{addr}{path}"));
        if let Some((k, v)) = auth {
            r = r.header(k, v);
        }
        r.send()
    };
    for path in ["/api/streams", "/metrics"] {
        let none = get(path, None).await.unwrap();
        assert_eq!(none.status(), 401, "{path}");
        assert!(none.headers().contains_key("www-authenticate"));
        let wrong = get(path, Some(("authorization", "Bearer nope".into())))
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let right = get(path, Some(("authorization", format!("Bearer {secret}"))))
            .await
            .unwrap();
        assert_eq!(right.status(), 200, "{path}");
    }
    // A browser: any user name, the token as password.
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("owner:{secret}"));
    let r = get(
        "/api/streams",
        Some(("authorization", format!("Basic {basic}"))),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    // The hook reads the daemon's measured figures with the token from the same config.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("streamwarden.toml"),
        format!(
            "[http]\nlisten = \"{addr}\"\ntoken = \"{secret}\"\n\n[[rules]]\nname = \"real\"\nwhen = 'measured_kbps_10s > 8000'\nmessage = \"{{measured_kbps_10s_mbps}} Mbps\"\n[enforce]\ndry_run = true\n"
        ),
    )
    .unwrap();
    let url = d.plex.url.clone();
    let o = tokio::task::spawn_blocking(move || {
        run(dir.path(), &url, TOKEN, &["hook", "--session-id", FAST])
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("measured figures from the daemon"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("would kill"), "{}", stdout(&o));
    assert!(!stdout(&o).contains(secret) && !stderr(&o).contains(secret));
    d.stop().await;
    assert!(
        !logs.text().contains(secret),
        "the token leaked into the log"
    );
}

mod events;
mod one_state;
mod reload;
mod slow;
mod throttle;
mod usage;
mod web;

mod counters;

mod tautulli_webhook {
    use super::*;

    const SECRET: &str = "hook-SECRET-9a2e";

    async fn post(
        addr: std::net::SocketAddr,
        body: &str,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut r = reqwest::Client::new()
            .post(format!("http://{addr}/api/tautulli"))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, v)
    }

    async fn daemon(rules: &str) -> Daemon {
        let plex = FakePlex::start(&mixed_sessions());
        let opts = Options {
            http: true,
            http_token: Some(SECRET.into()),
            ..Default::default()
        };
        start(plex, rules, opts).await
    }

    #[tokio::test]
    async fn a_kill_by_post_reaches_the_daemons_notify_targets() {
        use crate::common::receiver::Receiver;
        use streamwarden::notify::{Delivery, Notifier};
        let family = Receiver::start(200, "");
        let targets = Config::parse(
            &format!(
                "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\n",
                family.url("/SECRET-family")
            ),
            None,
        )
        .unwrap();
        let opts = Options {
            http: true,
            http_token: Some(SECRET.into()),
            notify: Notifier::from_config(&targets, Delivery::DAEMON).unwrap(),
            ..Default::default()
        };
        let d = start(FakePlex::start(&mixed_sessions()), "", opts).await;
        let body =
            r#"{"jbop": "stream", "sessionId": "session_id_1", "killMessage": "Not tonight."}"#;
        let (status, v) = post(d.http.unwrap(), body, Some(SECRET)).await;
        assert_eq!((status, v["outcome"].as_str()), (200, Some("done")), "{v}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while family.got().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, _, audit) = d.stop().await;
        let got = family.at("/SECRET-family");
        assert_eq!(got.len(), 1, "{got:?}");
        let line = got[0].json();
        assert_eq!(line["action"], "kill");
        assert_eq!(line["rule"], "jbop:stream");
        assert_eq!(line["message"], "Not tonight.");
        assert_eq!(
            line, audit[0],
            "the webhook target gets the audit line itself"
        );
    }

    #[tokio::test]
    async fn a_tautulli_shaped_post_kills_as_the_hook_would() {
        let d = daemon("").await;
        // The player ignores the kill: the session stays listed.
        d.plex.set(|s| s.remove_on_kill = false);
        let addr = d.http.unwrap();
        // As Tautulli's JSON Data template fills it in: every value a string.
        let body = r#"{"jbop": "stream", "sessionId": "session_id_1", "username": "User 7", "userId": "7", "killMessage": "Transcoding streams are not allowed.", "delay": "0"}"#;
        let (status, v) = post(addr, body, Some(SECRET)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["outcome"], "done", "{v}");
        assert!(
            v["lines"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with("killed session session_id_1"),
            "{v}"
        );
        assert_eq!(
            d.plex.terminates(),
            vec![(
                "session_id_1".to_string(),
                "Transcoding streams are not allowed.".to_string()
            )]
        );
        // Never twice, as the hook: the audit remembers.
        let (_, v) = post(addr, body, Some(SECRET)).await;
        assert!(
            v["lines"][0]["text"]
                .as_str()
                .unwrap()
                .contains("already killed")
                || v["lines"].to_string().contains("no such session")
                || v.to_string().contains("Plex lists no such session"),
            "{v}"
        );
        let (_, plex, audit) = d.stop().await;
        assert_eq!(plex.terminates().len(), 1);
        assert_eq!(
            audit.iter().filter(|l| l["action"] == "kill").count(),
            1,
            "{audit:?}"
        );
        assert_eq!(audit[0]["rule"], "jbop:stream");
    }

    #[tokio::test]
    async fn bad_bodies_get_400_with_the_reason_and_kill_nothing() {
        let d = daemon("").await;
        let addr = d.http.unwrap();
        for (body, reason) in [
            ("not json", "not JSON"),
            ("[1]", "JSON object"),
            (
                r#"{"jbop": "stream", "sesionId": "x"}"#,
                "unknown key \"sesionId\"",
            ),
            (r#"{"jbop": "everything", "sessionId": "x"}"#, "everything"),
            (
                r#"{"jbop": "allStreams"}"#,
                "refusing --jbop allStreams without --userId",
            ),
            (
                r#"{"jbop": "stream", "sessionId": "x", "delay": "99999"}"#,
                "99999",
            ),
            (r#"{"jbop": "stream", "sessionId": {"a": 1}}"#, "sessionId"),
            ("{}", "nothing to do"),
        ] {
            let (status, v) = post(addr, body, Some(SECRET)).await;
            assert_eq!(status, 400, "{body}: {v}");
            assert!(v["error"].as_str().unwrap().contains(reason), "{body}: {v}");
        }
        // Without the token: 401, and nothing done.
        let (status, _) = post(
            addr,
            r#"{"jbop": "stream", "sessionId": "session_id_1"}"#,
            None,
        )
        .await;
        assert_eq!(status, 401);
        let (_, plex, audit) = d.stop().await;
        assert!(plex.terminates().is_empty());
        assert!(audit.is_empty(), "{audit:?}");
    }

    #[tokio::test]
    async fn without_jbop_it_applies_the_rules_to_the_session_and_dry_run_is_honoured() {
        let rule = "[[rules]]\nname = \"owner-only\"\nwhen = 'user_id == 7'\nmessage = \"Rule says bye\"\n";
        let d = daemon(rule).await;
        let addr = d.http.unwrap();
        let (status, v) = post(
            addr,
            r#"{"sessionId": "session_id_1", "dryRun": true}"#,
            Some(SECRET),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert!(v.to_string().contains("would kill"), "{v}");
        assert!(d.plex.terminates().is_empty());
        let (status, v) = post(addr, r#"{"sessionId": "session_id_1"}"#, Some(SECRET)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            d.plex.terminates(),
            vec![("session_id_1".to_string(), "Rule says bye".to_string())]
        );
        // A delay is accepted at once and done in the background.
        let (status, v) = post(
            addr,
            r#"{"jbop": "stream", "sessionId": "2894294r2jf2038fj3098jgf3gt", "delay": 1}"#,
            Some(SECRET),
        )
        .await;
        assert_eq!(status, 202, "{v}");
        d.until(Duration::from_secs(8), |d| d.plex.terminates().len() == 2)
            .await;
        let (_, plex, _) = d.stop().await;
        assert_eq!(plex.terminates().len(), 2);
    }
}

#[tokio::test]
async fn a_kill_reaches_the_notify_targets_and_a_failing_one_is_counted_in_metrics() {
    use crate::common::receiver::Receiver;
    use streamwarden::notify::{Delivery, Notifier};
    let family = Receiver::start(204, "");
    let phone = Receiver::start(500, "");
    let targets = Config::parse(
        &format!(
            "[[notify]]\nkind = \"discord\"\nname = \"family\"\nurl = \"{}\"\n\n[[notify]]\nkind = \"ntfy\"\nname = \"phone\"\nurl = \"{}\"\n",
            family.url("/api/webhooks/1/SECRET-family"),
            phone.url("/SECRET-phone")
        ),
        None,
    )
    .unwrap();
    let notify = Notifier::from_config(&targets, Delivery::DAEMON).unwrap();
    let plex = FakePlex::start(&mixed_sessions());
    let opts = Options {
        flows: vec![([1, 2, 3, 11], 50_000, 20_000)],
        http: true,
        notify,
        ..Default::default()
    };
    let d = start(plex, RULE, opts).await;
    let addr = d.http.unwrap();
    let failures = "streamwarden_notify_failures_total{target=\"phone\"}";
    let mut metrics = String::new();
    let deadline = Instant::now() + Duration::from_secs(25);
    while Instant::now() < deadline {
        metrics = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if sample(&metrics, failures) == Some(1.0) && !family.got().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, plex, audit) = d.stop().await;
    assert_eq!(plex.terminates().len(), 1, "{audit:?}");
    assert_eq!(sample(&metrics, failures), Some(1.0), "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "streamwarden_notify_failures_total{target=\"family\"}"
        ),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        phone.got().len(),
        Delivery::DAEMON.attempts as usize,
        "tried again, then given up"
    );
    let got = family.at("/api/webhooks/1/SECRET-family");
    assert_eq!(got.len(), 1, "{got:?}");
    let embed = got[0].json()["embeds"][0].clone();
    let kill = audit.iter().find(|l| l["action"] == "kill").unwrap();
    let user = kill["user"].as_str().unwrap();
    assert_eq!(embed["title"], format!("Killed {user}'s stream"));
    assert_eq!(embed["timestamp"], kill["ts"]);
    let field = |name: &str| {
        embed["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .map(|f| f["value"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    // The rule read only the 10 s figure; the notification shows the stream's rates anyway.
    assert!(field("Measured").contains(" Mbps over 1 min"), "{embed}");
    assert!(field("Reported by Plex").starts_with("stream "), "{embed}");
    assert_ne!(field("Player"), "unknown player", "{embed}");
    assert_eq!(field("Rule"), "fast");
    for g in family.got().iter().chain(&phone.got()) {
        assert!(
            !g.body.contains(TOKEN),
            "the Plex token in a payload: {}",
            g.body
        );
    }
    if let Some((ok, said)) = promtool(&metrics) {
        assert!(
            ok && said.is_empty(),
            "promtool says:\n{said}\nof:\n{metrics}"
        );
    }
}

/// `notify_after`: the owner is told (audited as "warn", so the notify targets hear it)
/// when the hold reaches it, once, before the kill at `sustain`.
#[tokio::test]
async fn notify_after_tells_the_owner_before_the_rule_acts() {
    let rule = "[[rules]]\nname = \"fast\"\nwhen = 'measured_kbps_10s > 8000'\nsustain = \"4s\"\nnotify_after = \"1s\"\n";
    let opts = Options {
        flows: vec![([1, 2, 3, 11], 50_000, 20_000)],
        ..Default::default()
    };
    let d = start(FakePlex::start(&mixed_sessions()), rule, opts).await;
    d.until(Duration::from_secs(15), |d| !d.plex.terminates().is_empty())
        .await;
    let (_, _, audit) = d.stop().await;
    let actions: Vec<&str> = audit
        .iter()
        .filter(|l| l["rule"] == "fast")
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["warn", "kill"], "{audit:?}");
    let warn = audit.iter().find(|l| l["action"] == "warn").unwrap();
    assert_eq!(warn["session_id"], FAST);
    let reason = warn["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("acts in ") && reason.ends_with(" s unless the stream stops"),
        "{reason}"
    );
    // notify_after must come before sustain.
    let e = streamwarden::config::Config::parse(
        "[[rules]]\nname = \"r\"\nwhen = 'user == \"x\"'\nsustain = \"5s\"\nnotify_after = \"5s\"\n",
        Some("c.toml".into()),
    )
    .and_then(|c| streamwarden::rules::RuleSet::compile(&c).map_err(|e| e[0].clone()))
    .unwrap_err();
    assert!(
        e.to_string().contains("must be shorter than sustain"),
        "{e}"
    );
}
