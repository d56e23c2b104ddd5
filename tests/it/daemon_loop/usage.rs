//! Usage: what the meter counts for each stream lands in the state database, minute by
//! minute, exactly; unattributed traffic has a row of its own; a restart carries on.

use super::*;

use streamwarden::state::State;
use streamwarden::state::usage::{GroupBy, UNATTRIBUTED};

/// Pushes `n` frames of 1500 IP bytes from Plex's port to `client` into the feed, now.
fn push(feed: &Feed, client: [u8; 4], port: u16, n: usize) -> i64 {
    let frame = eth_tcp([10, 0, 0, 1], 32400, client, port, &[0u8; 1460]);
    for _ in 0..n {
        feed.ingest(&Packet {
            ts_micros: SystemClock.now().0,
            orig_len: frame.len() as u32,
            data: &frame,
        });
    }
    n as i64 * 1500
}

/// A daemon without rules recording usage in the state at `path`, once the first read of
/// the sessions has landed.
async fn recording(path: &std::path::Path) -> Daemon {
    let opts = Options {
        state: Some(path.to_path_buf()),
        ..Default::default()
    };
    let d = start(FakePlex::start(&mixed_sessions()), "", opts).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    d
}

fn totals(path: &std::path::Path) -> Vec<(String, i64)> {
    State::open_read_only(path)
        .unwrap()
        .usage_totals(0, None, GroupBy::User)
        .unwrap()
        .into_iter()
        .map(|t| (t.key, t.bytes))
        .collect()
}

fn bytes_of(t: &[(String, i64)], user: &str) -> i64 {
    t.iter().find(|(u, _)| u == user).map_or(0, |(_, b)| *b)
}

#[tokio::test]
async fn each_users_bytes_are_recorded_exactly_and_a_restart_carries_them_on() {
    let keep = tempfile::tempdir().unwrap();
    let path = keep.path().join("state.db");
    let run = |extra: usize| {
        let path = path.clone();
        async move {
            let d = recording(&path).await;
            let sent = (
                push(&d.feed, [1, 2, 3, 11], 50_000, 1000 + extra),
                push(&d.feed, [127, 0, 0, 1], 50_001, 200),
                push(&d.feed, [9, 9, 9, 9], 50_002, 50),
            );
            tokio::time::sleep(Duration::from_millis(2200)).await;
            d.stop().await;
            sent
        }
    };
    let (fast, slow, stray) = run(0).await;
    let t = totals(&path);
    assert_eq!(bytes_of(&t, "User 7"), fast, "{t:?}");
    assert_eq!(bytes_of(&t, "APlexUser"), slow, "{t:?}");
    assert_eq!(bytes_of(&t, UNATTRIBUTED), stray, "{t:?}");
    // The same file after a restart: totals go on from there.
    let (fast2, _, _) = run(100).await;
    let t = totals(&path);
    assert_eq!(bytes_of(&t, "User 7"), fast + fast2, "{t:?}");
    assert_eq!(bytes_of(&t, "APlexUser"), 2 * slow, "{t:?}");
    // Play time counts while a stream plays: some seconds each run for user 7.
    let by_user = State::open_read_only(&path)
        .unwrap()
        .usage_totals(0, Some("user 7"), GroupBy::User)
        .unwrap();
    assert!(by_user[0].seconds >= 4, "{by_user:?}");
    assert_eq!(by_user[0].transcodes, 1, "{by_user:?}");
}

/// What `streamwarden usage` prints from the same file, and what sqlite3 reads there.
#[tokio::test]
async fn usage_prints_the_recorded_totals_as_json_csv_and_text() {
    let keep = tempfile::tempdir().unwrap();
    let path = keep.path().join("state.db");
    let d = recording(&path).await;
    let fast = push(&d.feed, [1, 2, 3, 11], 50_000, 700);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    d.stop().await;
    let dir = keep.path();
    let o = run(dir, "", "", &["usage", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let bob = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["user"] == "User 7")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(bob["bytes"].as_i64(), Some(fast), "{v}");
    assert!(bob["bytes"].is_i64());
    let o = run(dir, "", "", &["usage", "--csv", "--user", "user 7"]);
    let csv = stdout(&o);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("user,bytes,gb,seconds,hours,streams,transcodes,estimated")
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with(&format!("User 7,{fast},")),
        "{csv}"
    );
    let o = run(dir, "", "", &["usage", "--by", "day"]);
    assert!(stdout(&o).contains("GB"), "{}", stdout(&o));
    let o = run(dir, "", "", &["usage", "--by", "month"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--by \"month\""), "{}", stderr(&o));
    // sqlite3 reads the same from the file, as docs/usage.md says.
    if crate::common::need::have(
        "sqlite3 on the state file",
        &[crate::common::need::Need::Tool("sqlite3")],
    ) {
        let out = std::process::Command::new("sqlite3")
            .arg(&path)
            .arg("SELECT sum(bytes) FROM usage WHERE user = 'User 7'")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            fast.to_string()
        );
    }
}

/// A quota is a rule: `user_gb_today` counts what the state holds and this minute so far,
/// so the heavy user's stream is stopped and the light one's is not.
#[tokio::test]
async fn a_quota_rule_on_user_gb_today_stops_only_the_user_over_it() {
    let rule = "[[rules]]\nname = \"quota\"\nwhen = 'user_gb_today > 0.001'\nmessage = \"{user}: {user_gb_today} GB today\"\n";
    let d = start(FakePlex::start(&mixed_sessions()), rule, Options::default()).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    push(&d.feed, [127, 0, 0, 1], 50_001, 10);
    assert!(d.plex.terminates().is_empty(), "no one is over it yet");
    // 1.5 MB for user 7: over 0.001 GB.
    push(&d.feed, [1, 2, 3, 11], 50_000, 1000);
    d.until(Duration::from_secs(10), |d| !d.plex.terminates().is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, plex, _) = d.stop().await;
    let t = plex.terminates();
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].0, FAST);
    assert!(
        t[0].1.starts_with("User 7: ") && t[0].1.ends_with(" GB today"),
        "{t:?}"
    );
}

/// `backtest` replays the recorded minutes through a rule: bob (user 7) pulled 200 kbps over
/// the minute, the other 2 kbps; a rule over 100 kbps names user 7 only. What was actually
/// done (nothing: the daemon ran without the rule) is said beside it.
#[tokio::test]
async fn backtest_names_who_a_rule_would_have_stopped_from_the_recorded_minutes() {
    let keep = tempfile::tempdir().unwrap();
    let path = keep.path().join("state.db");
    let d = recording(&path).await;
    push(&d.feed, [1, 2, 3, 11], 50_000, 1000);
    push(&d.feed, [127, 0, 0, 1], 50_001, 10);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    d.stop().await;
    let dir = keep.path();
    std::fs::write(
        dir.join("bt.toml"),
        "[[rules]]\nname = \"heavy\"\nwhen = 'measured_kbps_1m > 100'\nmessage = \"{user} over 100\"\n\n[[rules]]\nname = \"reserved\"\nwhen = 'bandwidth > 1'\n",
    )
    .unwrap();
    let o = run(dir, "", "", &["backtest", "--config", "bt.toml", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let heavy = &v["rules"][0];
    assert_eq!(heavy["rule"], "heavy");
    let users: Vec<&str> = heavy["would"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["User 7"], "{v}");
    assert_eq!(heavy["users"], 1);
    assert_eq!(heavy["actually"], serde_json::json!({}), "{v}");
    // Plex's reservation is not recorded: that rule is unknown, not silently false.
    let reserved = &v["rules"][1];
    assert_eq!(reserved["would"], serde_json::json!([]));
    assert_eq!(reserved["unknown"], serde_json::json!(["bandwidth"]), "{v}");
    let o = run(
        dir,
        "",
        "",
        &["backtest", "--config", "bt.toml", "--rule", "nope"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no such rule"), "{}", stderr(&o));
    let o = run(dir, "", "", &["backtest", "--config", "bt.toml"]);
    let text = stdout(&o);
    assert!(
        text.contains("rule heavy (kill): would have acted 1 times, on 1 streams of 1 users"),
        "{text}"
    );
}

/// Sustain counts at the record's resolution: a 3-minute sustain over five heavy minutes
/// acts once, three minutes in; a pause in between starts the hold again.
#[test]
fn a_backtest_sustains_by_the_minute_and_acts_once_per_hold() {
    use streamwarden::state::usage::UsageRow;
    let config = Config::parse(
        "[[rules]]\nname = \"heavy\"\nwhen = 'measured_kbps_1m > 1000'\nsustain = \"3m\"\n",
        None,
    )
    .unwrap();
    let rules = compile(&config).unwrap();
    let t0: i64 = 1_800_000_000; // a whole minute
    let row = |m: i64, kbps: i64| UsageRow {
        start: t0 + m * 60,
        span: 60,
        user: "bob".into(),
        stream: "id:b".into(),
        bytes: kbps * 1000 / 8 * 60,
        seconds: 60,
        ..Default::default()
    };
    let rows: Vec<UsageRow> = [2000, 2000, 2000, 2000, 2000, 10, 2000, 2000]
        .iter()
        .enumerate()
        .map(|(m, k)| row(m as i64, *k))
        .collect();
    let b = streamwarden::engine::backtest::run(&rules, &rows, &config.usage, &[]);
    let at: Vec<i64> = b.rules[0].would.iter().map(|w| (w.at - t0) / 60).collect();
    // Held from minute 0; 3 minutes of hold at minute 3. After the dip at 5, minutes 6 and
    // 7 are only 1 minute of hold: not yet.
    assert_eq!(at, [3], "{b:?}");
    assert_eq!(b.rounds, 8);
}
