//! `action = "throttle"` through the real loop, with a shaper that records what it is asked
//! (the kernel side is tested in `shape`): which connections at what rate, new connections
//! covered, lifted when the stream ends, on release_after, on a reload and at stop; the
//! escalation to a kill; dry run; audit lines and metrics.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use streamwarden::capture::Packet;
use streamwarden::daemon::{Control, Reloaded, SystemClock};
use streamwarden::enforce::shape::{Conn, ShapeError, Shaper, ThrottleId};
use streamwarden::engine::Clock;
use streamwarden::engine::open::compile;

use super::*;

/// What the loop asked of the shaper, in order.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Apply(ThrottleId, u64, Vec<Conn>),
    Release(ThrottleId),
    ReleaseAll,
}

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Call>>,
    fail: Option<String>,
}

impl Shaper for Recorder {
    fn apply(&self, id: ThrottleId, rate: u64, conns: &[Conn]) -> Result<(), ShapeError> {
        if let Some(f) = &self.fail {
            return Err(ShapeError::Other(f.clone()));
        }
        let mut conns = conns.to_vec();
        conns.sort();
        self.calls
            .lock()
            .unwrap()
            .push(Call::Apply(id, rate, conns));
        Ok(())
    }
    fn release(&self, id: ThrottleId) -> Result<(), ShapeError> {
        self.calls.lock().unwrap().push(Call::Release(id));
        Ok(())
    }
    fn release_all(&self) -> Result<(), ShapeError> {
        self.calls.lock().unwrap().push(Call::ReleaseAll);
        Ok(())
    }
}

impl Recorder {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn applies(&self) -> Vec<(ThrottleId, u64, Vec<Conn>)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Apply(i, r, c) => Some((i, r, c)),
                _ => None,
            })
            .collect()
    }
}

fn conn(client: [u8; 4], port: u16) -> Conn {
    Conn {
        server: SocketAddr::from(([10, 0, 0, 1], 32400)),
        client: SocketAddr::from((client, port)),
    }
}

const THROTTLE: &str = "[[rules]]\nname = \"heavy\"\nwhen = 'measured_kbps_10s > 8000'\naction = \"throttle\"\nrate = \"5 Mbps\"\nsustain = \"2s\"\n";

fn opts(shaper: &Arc<Recorder>) -> Options {
    Options {
        flows: vec![
            ([1, 2, 3, 11], 50_000, 20_000),
            ([127, 0, 0, 1], 50_001, 2_000),
        ],
        http: true,
        shaper: Some(shaper.clone() as Arc<dyn Shaper>),
        ..Default::default()
    }
}

/// Sends `kbps` from Plex to `client:port` for `secs` seconds, straight into the feed.
fn push(feed: &Feed, client: [u8; 4], port: u16, kbps: u64, secs: u64) {
    let frame = eth_tcp([10, 0, 0, 1], 32400, client, port, &[0u8; 1460]);
    let per_10ms = (kbps * 125 / 100 / 1500).max(1);
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let ts = SystemClock.now().0;
        for _ in 0..per_10ms {
            feed.ingest(&Packet {
                ts_micros: ts,
                orig_len: frame.len() as u32,
                data: &frame,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn a_throttle_rule_limits_the_streams_connections_and_lifts_them_at_stop() {
    let plex = FakePlex::start(&mixed_sessions());
    let shaper = Arc::new(Recorder::default());
    let d = start(plex, THROTTLE, opts(&shaper)).await;
    d.until(Duration::from_secs(15), |_| !shaper.applies().is_empty())
        .await;
    let first = shaper.applies();
    assert_eq!(
        first,
        vec![(1, 625_000, vec![conn([1, 2, 3, 11], 50_000)])],
        "5 Mbps = 625000 bytes/s on the fast stream's one connection only"
    );
    // The player opens a new connection: it is covered too.
    let feed = d.feed.clone();
    let pusher = std::thread::spawn(move || push(&feed, [1, 2, 3, 11], 50_002, 4_000, 3));
    d.until(Duration::from_secs(8), |_| shaper.applies().len() >= 2)
        .await;
    let second = shaper.applies();
    assert_eq!(
        second.get(1),
        Some(&(
            1,
            625_000,
            vec![conn([1, 2, 3, 11], 50_000), conn([1, 2, 3, 11], 50_002)]
        )),
        "{second:?}"
    );
    pusher.join().unwrap();
    // Shown on the page's API and in /metrics while on.
    let addr = d.http.unwrap();
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("streamwarden_throttles_total{rule=\"heavy\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("streamwarden_throttled_streams 1"),
        "{metrics}"
    );
    let body = reqwest::get(format!("http://{addr}/api/streams"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows: Vec<StreamRow> = serde_json::from_str(&body).unwrap();
    let fast = rows
        .iter()
        .find(|r| r.session_id.as_deref() == Some(FAST))
        .unwrap();
    let t = fast.throttle.as_ref().expect("the row shows the throttle");
    assert_eq!(
        (t.rule.as_str(), t.rate.as_str(), t.dry),
        ("heavy", "5 Mbps", false)
    );
    assert!(
        rows.iter()
            .filter(|r| r.session_id.as_deref() != Some(FAST))
            .all(|r| r.throttle.is_none())
    );
    let (summary, plex, audit) = d.stop().await;
    assert!(
        plex.terminates().is_empty(),
        "a throttle sends no terminate"
    );
    assert!(summary.kills.is_empty());
    let calls = shaper.calls();
    assert_eq!(
        &calls[calls.len() - 2..],
        &[Call::Release(1), Call::ReleaseAll],
        "{calls:?}"
    );
    let actions: Vec<&str> = audit
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["throttle", "unthrottle"], "{audit:?}");
    assert_eq!(audit[0]["session_id"], FAST);
    assert_eq!(audit[0]["rate"], "5 Mbps");
    assert_eq!(audit[1]["reason"], "streamwarden stopped");
}

#[tokio::test]
async fn a_throttled_stream_still_over_the_escalation_limit_is_killed_after_the_hold() {
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.remove_on_kill = true);
    let shaper = Arc::new(Recorder::default());
    // The generated traffic keeps its rate (nothing here really shapes it): still over
    // 8000 kbps 3 s after the throttle, the stream is killed, then its throttle lifted.
    let rules = format!(
        "{THROTTLE}escalate = {{ after = \"3s\", action = \"kill\", message = \"Still too fast: {{measured_kbps_10s_mbps}} Mbps\" }}\n"
    );
    let t0 = Instant::now();
    let d = start(plex, &rules, opts(&shaper)).await;
    d.until(Duration::from_secs(20), |d| {
        d.audit().iter().any(|l| l["action"] == "unthrottle")
    })
    .await;
    let throttled_at = t0.elapsed();
    let (_, plex, audit) = d.stop().await;
    let actions: Vec<&str> = audit
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["throttle", "kill", "unthrottle"], "{audit:?}");
    assert_eq!(audit[1]["rule"], "heavy/escalate");
    assert_eq!(audit[2]["reason"], "the stream ended");
    let terminates = plex.terminates();
    assert_eq!(terminates.len(), 1);
    assert_eq!(terminates[0].0, FAST);
    assert!(
        terminates[0].1.starts_with("Still too fast: "),
        "{}",
        terminates[0].1
    );
    // The kill came at least `after` past the throttle.
    let ts = |l: &serde_json::Value| {
        time::OffsetDateTime::parse(
            l["ts"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let gap = ts(&audit[1]) - ts(&audit[0]);
    assert!(
        gap >= time::Duration::seconds(3),
        "escalated {gap} after the throttle"
    );
    assert!(throttled_at < Duration::from_secs(20));
    assert!(shaper.calls().contains(&Call::Release(1)));
}

#[tokio::test]
async fn a_dry_run_audits_would_throttle_and_its_escalation_and_touches_nothing() {
    let plex = FakePlex::start(&mixed_sessions());
    let shaper = Arc::new(Recorder::default());
    let rules = format!("{THROTTLE}escalate = {{ after = \"2s\" }}\n");
    let d = start(
        plex,
        &rules,
        Options {
            dry_run: true,
            ..opts(&shaper)
        },
    )
    .await;
    d.until(Duration::from_secs(20), |d| {
        d.audit().iter().any(|l| l["action"] == "would-kill")
    })
    .await;
    let (_, plex, audit) = d.stop().await;
    let actions: Vec<&str> = audit
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["would-throttle", "would-kill"], "{audit:?}");
    assert!(audit.iter().all(|l| l["mode"] == "dry-run"));
    assert!(
        shaper.calls().iter().all(|c| *c == Call::ReleaseAll),
        "{:?}",
        shaper.calls()
    );
    assert!(plex.terminates().is_empty());
}

#[tokio::test]
async fn a_throttle_is_lifted_when_the_stream_ends_and_after_release_after() {
    let plex = FakePlex::start(&mixed_sessions());
    let shaper = Arc::new(Recorder::default());
    let rules = format!("{THROTTLE}release_after = \"3s\"\n");
    let d = start(plex, &rules, opts(&shaper)).await;
    d.until(Duration::from_secs(20), |d| {
        d.audit().iter().any(|l| l["action"] == "unthrottle")
    })
    .await;
    let audit = d.audit();
    let lifted = audit.iter().find(|l| l["action"] == "unthrottle").unwrap();
    assert_eq!(lifted["reason"], "release_after = 3s is over");
    // Released, the rule does not throttle again during the same hold.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        d.audit()
            .iter()
            .filter(|l| l["action"] == "throttle")
            .count(),
        1
    );
    let (_, _, audit) = d.stop().await;
    let actions: Vec<&str> = audit
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["throttle", "unthrottle"], "{audit:?}");

    // Without release_after, the end of the stream lifts it.
    let plex = FakePlex::start(&mixed_sessions());
    let shaper = Arc::new(Recorder::default());
    let d = start(plex, THROTTLE, opts(&shaper)).await;
    d.until(Duration::from_secs(15), |_| !shaper.applies().is_empty())
        .await;
    let body = streamwarden::fakeplex::remove_session(&mixed_sessions(), FAST);
    d.plex.set(|s| s.sessions_body = body);
    d.until(Duration::from_secs(10), |d| {
        d.audit().iter().any(|l| l["action"] == "unthrottle")
    })
    .await;
    let (_, _, audit) = d.stop().await;
    let lifted = audit.iter().find(|l| l["action"] == "unthrottle").unwrap();
    assert_eq!(lifted["reason"], "the stream ended");
    assert_eq!(shaper.calls()[1], Call::Release(1));
}

#[tokio::test]
async fn a_reload_that_drops_the_rule_lifts_its_throttle() {
    let plex = FakePlex::start(&mixed_sessions());
    let shaper = Arc::new(Recorder::default());
    let reload: streamwarden::daemon::Reload = Box::new(|| {
        let cfg = streamwarden::config::Config::parse(
            "[[rules]]\nname = \"other\"\nwhen = 'false'\n",
            None,
        )
        .unwrap();
        Ok(Reloaded {
            rules: compile(&cfg).unwrap(),
            enforce: cfg.enforce,
            restart_needed: Vec::new(),
        })
    });
    let d = start(
        plex,
        THROTTLE,
        Options {
            reload: Some(reload),
            ..opts(&shaper)
        },
    )
    .await;
    d.until(Duration::from_secs(15), |_| !shaper.applies().is_empty())
        .await;
    d.control.send(Control::Reload).await.unwrap();
    d.until(Duration::from_secs(5), |d| {
        d.audit().iter().any(|l| l["action"] == "unthrottle")
    })
    .await;
    let (_, _, audit) = d.stop().await;
    let lifted = audit.iter().find(|l| l["action"] == "unthrottle").unwrap();
    assert_eq!(
        lifted["reason"],
        "a reload removed rule \"heavy\" or its throttle"
    );
    assert_eq!(shaper.calls()[1], Call::Release(1));
}

#[tokio::test]
async fn a_throttle_that_cannot_be_put_on_is_audited_once_with_the_reason() {
    let plex = FakePlex::start(&mixed_sessions());
    let shaper = Arc::new(Recorder {
        fail: Some("eth9: CAP_NET_ADMIN is needed".into()),
        ..Default::default()
    });
    let d = start(plex, THROTTLE, opts(&shaper)).await;
    d.until(Duration::from_secs(15), |d| {
        d.audit().iter().any(|l| l["action"] == "throttle-failed")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, plex, audit) = d.stop().await;
    let failed: Vec<_> = audit
        .iter()
        .filter(|l| l["action"] == "throttle-failed")
        .collect();
    assert_eq!(failed.len(), 1, "{audit:?}");
    assert_eq!(failed[0]["reason"], "eth9: CAP_NET_ADMIN is needed");
    assert!(
        plex.terminates().is_empty(),
        "a failed throttle is not turned into a kill"
    );
}

#[tokio::test]
async fn the_hooks_rules_mode_asks_the_running_daemon_to_throttle() {
    const SECRET: &str = "throttle-SECRET-77";
    let plex = FakePlex::start(&mixed_sessions());
    let shaper = Arc::new(Recorder::default());
    // The daemon's own hold is long: only the hook's request throttles here.
    let rule = "[[rules]]\nname = \"heavy\"\nwhen = 'measured_kbps_10s > 8000'\naction = \"throttle\"\nrate = \"5 Mbps\"\nsustain = \"1h\"\n";
    let d = start(
        plex,
        rule,
        Options {
            http_token: Some(SECRET.into()),
            ..opts(&shaper)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let addr = d.http.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("streamwarden.toml"),
        format!("[http]\nlisten = \"{addr}\"\ntoken = \"{SECRET}\"\n\n{rule}"),
    )
    .unwrap();
    let url = d.plex.url.clone();
    let path = dir.path().to_path_buf();
    let o = tokio::task::spawn_blocking(move || {
        run(&path, &url, TOKEN, &["hook", "--session-id", FAST])
    })
    .await
    .unwrap();
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!("the daemon at {addr}: throttled session {FAST}")),
        "{out}"
    );
    assert!(!out.contains(SECRET), "{out}");
    assert_eq!(
        shaper.applies(),
        vec![(1, 625_000, vec![conn([1, 2, 3, 11], 50_000)])]
    );
    // Asked again: already throttled, nothing new.
    let url = d.plex.url.clone();
    let path = dir.path().to_path_buf();
    let o = tokio::task::spawn_blocking(move || {
        run(&path, &url, TOKEN, &["hook", "--session-id", FAST])
    })
    .await
    .unwrap();
    assert!(stdout(&o).contains("already throttled"), "{}", stdout(&o));
    assert_eq!(shaper.applies().len(), 1);
    let (_, plex, audit) = d.stop().await;
    assert!(plex.terminates().is_empty());
    let actions: Vec<&str> = audit
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["throttle", "unthrottle"], "{audit:?}");

    // No daemon: the hook says a throttle needs one, and fails.
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("streamwarden.toml"),
        "[[rules]]\nname = \"any\"\nwhen = 'true'\naction = \"throttle\"\nrate = \"5 Mbps\"\n",
    )
    .unwrap();
    let url = plex.url.clone();
    let path = dir.path().to_path_buf();
    let o = tokio::task::spawn_blocking(move || {
        run(&path, &url, TOKEN, &["hook", "--session-id", FAST])
    })
    .await
    .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("a throttle is kept by the daemon (streamwarden run)"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(plex.terminates().is_empty());
}
