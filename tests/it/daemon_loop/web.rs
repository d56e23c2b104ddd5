//! The owner's page and its APIs, served by the real loop: `/`, `/api/status`,
//! `/api/history`, `POST /api/rules/try`, and the token in front of all of them.

use super::*;

use serde_json::{Value, json};

const SECRET: &str = "page-SECRET-5c1f";

/// A GET or POST with the token as Bearer, answered as (status, JSON or text).
async fn api(addr: std::net::SocketAddr, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("http://{addr}{path}");
    let r = match body {
        Some(b) => client
            .post(url)
            .header("content-type", "application/json")
            .body(b.to_string()),
        None => client.get(url),
    };
    let resp = r.bearer_auth(SECRET).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn daemon(rules: &str, flows: Vec<([u8; 4], u16, u64)>, dry_run: bool) -> Daemon {
    let opts = Options {
        http: true,
        http_token: Some(SECRET.into()),
        flows,
        dry_run,
        reload: Some(Box::new(|| {
            Err("streamwarden.toml:3:8: rule \"x\": when: unknown variable `usr`".into())
        })),
        ..Default::default()
    };
    start(FakePlex::start(&mixed_sessions()), rules, opts).await
}

#[tokio::test]
async fn the_page_and_its_apis_need_the_token_and_load_nothing_from_elsewhere() {
    let d = daemon("", Vec::new(), false).await;
    let addr = d.http.unwrap();
    let client = reqwest::Client::new();
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{SECRET}"));
    for (path, post) in [
        ("/", false),
        ("/app.js", false),
        ("/app.css", false),
        ("/api/status", false),
        ("/api/history", false),
        ("/api/rules/try", true),
    ] {
        let req = |auth: Option<String>| {
            let url = format!("http://{addr}{path}");
            let mut r = if post {
                client.post(url).body(r#"{"when": "user == \"x\""}"#)
            } else {
                client.get(url)
            };
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            r.send()
        };
        let none = req(None).await.unwrap();
        assert_eq!(none.status(), 401, "{path}");
        assert!(
            none.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic"),
            "{path}: a browser is asked to sign in"
        );
        let wrong = req(Some("Bearer nope".into())).await.unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let browser = req(Some(format!("Basic {basic}"))).await.unwrap();
        assert_eq!(browser.status(), 200, "{path}");
        let api = req(Some(format!("Bearer {SECRET}"))).await.unwrap();
        assert_eq!(api.status(), 200, "{path}");
        let body = api.text().await.unwrap();
        assert!(!body.contains(SECRET), "{path} shows the token");
    }
    let page = client
        .get(format!("http://{addr}/"))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>streamwarden</title>"));
    // Only relative references: nothing is fetched from another host.
    for attr in ["src=\"", "href=\""] {
        for at in html.match_indices(attr) {
            let rest = &html[at.0 + attr.len()..];
            assert!(
                !rest.starts_with("http") && !rest.starts_with("//"),
                "{}",
                &rest[..rest.len().min(40)]
            );
        }
    }
    d.stop().await;
}

#[tokio::test]
async fn status_tells_plex_capture_dry_run_budget_and_a_refused_reload() {
    let rule = "[enforce]\nmax_kills_per_minute = 4\n\n[[rules]]\nname = \"fast\"\nwhen = 'measured_kbps_10s > 8000'\nsustain = \"1s\"\n";
    let d = daemon(rule, vec![([1, 2, 3, 11], 50_000, 20_000)], true).await;
    let addr = d.http.unwrap();
    d.until(Duration::from_secs(15), |d| {
        d.audit().iter().any(|l| l["action"] == "would-kill")
    })
    .await;
    let (code, st) = api(addr, "/api/status", None).await;
    assert_eq!(code, 200);
    assert_eq!(st["dry_run"], true);
    assert_eq!(st["plex"]["state"], "ok", "{st}");
    assert!(st["plex"]["since"].is_string());
    assert_eq!(st["capture"]["state"], "fed");
    assert!(st["capture"]["packets"].as_u64().unwrap() > 0);
    // A dry run's would-kill spends the budget as a kill would.
    assert_eq!(st["budget"]["max_per_minute"], 4);
    assert_eq!(st["budget"]["left"], 3, "{st}");
    // As the audit says: one would-kill this minute.
    let would = d
        .audit()
        .iter()
        .filter(|l| l["action"] == "would-kill")
        .count();
    assert_eq!(st["budget"]["left"], 4 - would as u64, "{st}");
    assert_eq!(st["rules"][0]["name"], "fast");
    assert!(st["total_kbps_10s"].as_f64().unwrap() > 8_000.0, "{st}");
    assert!(st["reload"].is_null());
    assert_eq!(st["audit"]["file"], true);
    // A refused reload is shown with its error.
    d.control.send(Control::Reload).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, st) = api(addr, "/api/status", None).await;
    assert_eq!(st["reload"]["ok"], false, "{st}");
    assert!(
        st["reload"]["error"]
            .as_str()
            .unwrap()
            .contains("unknown variable `usr`")
    );
    // Plex failing: unreachable, with the error, since a time after the start.
    let before = st["plex"]["since"].as_str().unwrap().to_string();
    d.plex
        .set(|s| s.sessions_failure = Some((500, "Internal Server Error".into())));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, st) = api(addr, "/api/status", None).await;
    assert_eq!(st["plex"]["state"], "unreachable", "{st}");
    assert!(st["plex"]["error"].as_str().unwrap().contains("500"));
    assert!(st["plex"]["since"].as_str().unwrap() > before.as_str());
    let text = st.to_string();
    assert!(!text.contains(SECRET) && !text.contains(TOKEN));
    d.stop().await;
}

#[tokio::test]
async fn history_lists_kills_newest_first_filtered_with_per_user_counts() {
    let d = daemon(RULE, vec![([1, 2, 3, 11], 50_000, 20_000)], false).await;
    let addr = d.http.unwrap();
    // An older kill of another user, from an earlier run.
    let old = (time::OffsetDateTime::now_utc() - time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    // It is in the state database, where every record lives.
    let mut state = streamwarden::state::State::open(&d.dir.path().join("state.db")).unwrap();
    state
        .insert_audit(&streamwarden::state::AuditRow {
            at: streamwarden::state::now_micros() - 30 * 86_400 * 1_000_000,
            ts: old,
            mode: "enforce".into(),
            action: "kill".into(),
            rule: "other".into(),
            session_id: Some("gone".into()),
            user: Some("Old Friend".into()),
            message: "long ago".into(),
            values: "{}".into(),
            ..Default::default()
        })
        .unwrap();
    drop(state);
    d.until(Duration::from_secs(15), |d| !d.plex.terminates().is_empty())
        .await;
    let (code, h) = api(addr, "/api/history", None).await;
    assert_eq!(code, 200);
    assert_eq!(h["total"], 2, "{h}");
    let newest = &h["entries"][0];
    assert_eq!(newest["action"], "kill");
    assert_eq!(newest["session_id"], FAST);
    assert_eq!(newest["user"], "User 7");
    assert!(
        newest["message"].as_str().unwrap().starts_with("User 7: "),
        "the message the viewer saw: {newest}"
    );
    assert_eq!(h["entries"][1]["user"], "Old Friend");
    let (_, week) = api(addr, "/api/history?since=7d", None).await;
    assert_eq!(week["total"], 1, "{week}");
    assert_eq!(week["users"][0]["user"], "User 7");
    assert_eq!(week["users"][0]["kills"], 1);
    let (_, by_user) = api(addr, "/api/history?user=old%20friend", None).await;
    assert_eq!(by_user["total"], 1);
    assert_eq!(by_user["entries"][0]["rule"], "other");
    let (_, by_rule) = api(addr, "/api/history?rule=fast", None).await;
    assert_eq!(by_rule["total"], 1);
    let (_, nobody) = api(addr, "/api/history?user=nobody", None).await;
    assert_eq!(nobody["total"], 0);
    let (code, bad) = api(addr, "/api/history?since=someday", None).await;
    assert_eq!(code, 400);
    assert!(bad["error"].as_str().unwrap().contains("since"));
    d.stop().await;
}

#[tokio::test]
async fn rules_try_shows_matches_values_and_unknowns_or_a_located_error() {
    let d = daemon(
        "[enforce]\nexempt_users = [\"User 7\"]\n\n[[rules]]\nname = \"fast\"\nwhen = 'measured_kbps_10s > 8000'\nsustain = \"1s\"\n",
        vec![
            ([1, 2, 3, 11], 50_000, 20_000),
            ([127, 0, 0, 1], 50_001, 2_000),
        ],
        false,
    )
    .await;
    let addr = d.http.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (code, r) = api(
        addr,
        "/api/rules/try",
        Some(json!({"when": "measured_kbps_10s > 8000 && user != \"nobody\""})),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["reads"], json!(["user", "measured_kbps_10s"]));
    let stream = |id: &str| {
        r["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["session_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} in {r}"))
    };
    let fast = stream(FAST);
    assert_eq!(fast["matched"], true, "{fast}");
    assert_eq!(fast["user"], "User 7");
    assert!(fast["values"]["measured_kbps_10s"].as_f64().unwrap() > 8000.0);
    assert_eq!(stream(SLOW)["matched"], false);
    // No traffic of its own: its measured rate is unknown, so the condition is too.
    let zombie = stream(ZOMBIE);
    assert!(zombie["matched"].is_null(), "{zombie}");
    assert_eq!(zombie["missing"], json!(["measured_kbps_10s"]));
    assert!(zombie["values"]["measured_kbps_10s"].is_null());

    // Errors come with their place in the condition.
    let (code, e) = api(
        addr,
        "/api/rules/try",
        Some(json!({"when": "measured_kbps_10s > 8000 &&\n  usr == \"bob\""})),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("unknown variable `usr`"),
        "{e}"
    );
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(e["offset"], 30);
    let (code, e) = api(addr, "/api/rules/try", Some(json!({"when": "user > 5"}))).await;
    assert_eq!(code, 400);
    assert!(e["error"].as_str().unwrap().contains("type error"), "{e}");
    let (code, e) = api(addr, "/api/rules/try", Some(json!({"when": "user == "}))).await;
    assert_eq!(code, 400);
    assert!(e["error"].as_str().unwrap().contains("syntax error"), "{e}");
    assert_eq!(e["column"], 9, "{e}");
    let (code, e) = api(addr, "/api/rules/try", Some(json!({"if": "x"}))).await;
    assert_eq!(code, 400);
    assert!(e["error"].as_str().unwrap().contains("when"), "{e}");

    // The live rows: the exempt user's due rule reads exempt, and rates have a history.
    let (_, rows) = api(addr, "/api/streams", None).await;
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["session_id"] == FAST)
        .unwrap();
    assert_eq!(row["exempt"], true);
    assert_eq!(row["notes"]["fast"], "exempt", "{row}");
    assert!(row["history_kbps"].as_array().unwrap().len() >= 3, "{row}");
    assert!(
        d.plex.terminates().is_empty(),
        "an exempt user is not killed"
    );
    d.stop().await;
}

#[tokio::test]
async fn kill_now_goes_through_the_enforcer_and_only_from_this_origin() {
    let d = daemon(
        "[enforce]\nmax_kills_per_minute = 1\nexempt_users = [\"example_usr\"]\n",
        Vec::new(),
        false,
    )
    .await;
    let addr = d.http.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let kill = |id: &str| json!({"session_id": id, "message": "Stopped by the owner.\u{7}"});
    // Not as JSON, or from another site: refused, nothing killed.
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/streams/kill");
    let form = client
        .post(&url)
        .bearer_auth(SECRET)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("session_id={FAST}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 403);
    let other = client
        .post(&url)
        .bearer_auth(SECRET)
        .header("content-type", "application/json")
        .header("origin", "http://evil.example")
        .body(kill(FAST).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    let none = client
        .post(&url)
        .header("content-type", "application/json")
        .body(kill(FAST).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    assert!(d.plex.terminates().is_empty());

    let (code, r) = api(addr, "/api/streams/kill", Some(kill(FAST))).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["outcome"], "kill");
    let t = d.plex.terminates();
    assert_eq!(
        t,
        vec![(FAST.to_string(), "Stopped by the owner.".to_string())]
    );
    let (code, r) = api(addr, "/api/streams/kill", Some(kill(FAST))).await;
    assert_eq!((code, r["outcome"].as_str()), (409, Some("already-killed")));
    let (code, r) = api(addr, "/api/streams/kill", Some(kill(ZOMBIE))).await;
    assert_eq!((code, r["outcome"].as_str()), (409, Some("kill-skipped")));
    assert!(r["said"].as_str().unwrap().contains("exempt"), "{r}");
    let (code, r) = api(addr, "/api/streams/kill", Some(kill(SLOW))).await;
    assert_eq!((code, r["outcome"].as_str()), (409, Some("kill-skipped")));
    assert!(r["said"].as_str().unwrap().contains("budget"), "{r}");
    let (code, _) = api(addr, "/api/streams/kill", Some(kill("no-such-session"))).await;
    assert_eq!(code, 404);
    // The status is published once a round.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, st) = api(addr, "/api/status", None).await;
    assert_eq!(st["can_kill"], true);
    assert_eq!(st["budget"]["left"], 0, "{st}");
    let (summary, plex, audit) = d.stop().await;
    assert_eq!(plex.terminates().len(), 1);
    assert_eq!(summary.kills.len(), 1);
    let by_hand: Vec<_> = audit.iter().filter(|l| l["rule"] == "kill-now").collect();
    let actions: Vec<&str> = by_hand
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["kill", "kill-skipped", "kill-skipped"],
        "{audit:?}"
    );
    assert_eq!(by_hand[0]["message"], "Stopped by the owner.");
}

#[tokio::test]
async fn kill_now_needs_a_token_configured() {
    let opts = Options {
        http: true,
        ..Default::default()
    };
    let d = start(FakePlex::start(&mixed_sessions()), "", opts).await;
    let addr = d.http.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/streams/kill"))
        .header("content-type", "application/json")
        .body(json!({"session_id": FAST}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let text = reqwest::get(format!("http://{addr}/api/status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let st: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(st["can_kill"], false);
    let (_, plex, _) = d.stop().await;
    assert!(plex.terminates().is_empty());
}

#[tokio::test]
async fn a_rule_that_cannot_be_judged_says_unknown_and_what_it_lacks_not_ok() {
    // No traffic at all: every stream's measured rate is unknown.
    let rule = "[[rules]]\nname = \"fast\"\nwhen = 'measured_kbps_10s > 1'\n";
    let d = daemon(rule, Vec::new(), false).await;
    let addr = d.http.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (code, rows) = api(addr, "/api/streams", None).await;
    assert_eq!(code, 200);
    let states: Vec<&Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["rules"].as_array().unwrap())
        .collect();
    assert!(!states.is_empty());
    for s in states {
        assert_eq!(s["state"], "unknown", "{s}");
        assert_eq!(s["unknown"], json!(["measured_kbps_10s"]), "{s}");
    }
    d.stop().await;
}

#[tokio::test]
async fn a_stream_whose_share_is_unknown_shows_its_addresss_total_and_who_shares_it() {
    // ha_session_base's viewer (user 7) and homarr's (example_usr) both at 1.2.3.11, the
    // first with no reported bitrate: 4 Mbps flows there, nobody can say whose.
    let body = mixed_sessions()
        .replace("address=\"0.0.0.0\"", "address=\"::ffff:1.2.3.11\"")
        .replace("bitrate=\"6000\"", "bitrate=\"0\"")
        .replace("bandwidth=\"7000\"", "");
    let opts = Options {
        http: true,
        http_token: Some(SECRET.into()),
        flows: vec![
            ([1, 2, 3, 11], 50_000, 4_000),
            ([127, 0, 0, 1], 50_001, 2_000),
        ],
        ..Default::default()
    };
    let d = start(FakePlex::start(&body), "", opts).await;
    let addr = d.http.unwrap();
    // Until a full window of the paced 4000 kbps is counted.
    let t0 = Instant::now();
    let rows = loop {
        let (code, rows) = api(addr, "/api/streams", None).await;
        assert_eq!(code, 200);
        let near = rows.as_array().unwrap().iter().any(|r| {
            r["address_kbps_1m"]
                .as_f64()
                .is_some_and(|k| (3600.0..4400.0).contains(&k))
        });
        if near || t0.elapsed() > Duration::from_secs(15) {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let row = |id: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["session_id"] == id)
            .unwrap_or_else(|| panic!("{id} in {rows}"))
            .clone()
    };
    for (id, other) in [(FAST, "example_usr"), (ZOMBIE, "User 7")] {
        let r = row(id);
        assert!(r["measured_kbps_10s"].is_null(), "{r}");
        let total = r["address_kbps_1m"].as_f64().unwrap_or(0.0);
        assert!((3600.0..4400.0).contains(&total), "{r}");
        assert_eq!(r["shared_with"], json!([other]), "{r}");
    }
    // A stream alone at its address has no such figure.
    assert!(row(SLOW)["address_kbps_10s"].is_null());
    // `streamwarden sessions`, configured with this daemon's [http], says the same: the
    // table with a line for each, and --json with the daemon's figures.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!("[http]\nlisten = \"{addr}\"\ntoken = \"{SECRET}\"\n"),
    )
    .unwrap();
    let url = d.plex.url.clone();
    let cli = |args: &'static [&'static str]| {
        let (dir, url) = (dir.path().to_path_buf(), url.clone());
        tokio::task::spawn_blocking(move || run(&dir, &url, TOKEN, args))
    };
    let (table, listed) = (
        cli(&["sessions", "--config", "c.toml"]).await.unwrap(),
        cli(&["sessions", "--config", "c.toml", "--json"])
            .await
            .unwrap(),
    );
    assert_eq!(table.status.code(), Some(0), "{}", stderr(&table));
    let out = stdout(&table);
    for (id, other) in [(FAST, "example_usr"), (ZOMBIE, "User 7")] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{id}: ")))
            .unwrap_or_else(|| panic!("no line for {id} in\n{out}"));
        let total: f64 = line[id.len() + 2..]
            .split(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!((3.6..4.4).contains(&total), "{line}");
        assert!(
            line.ends_with(&format!(
                " Mbps at this address, shared with {other}, share unknown"
            )),
            "{line}"
        );
    }
    let measured_col = out.lines().next().unwrap().find("MEASURED").unwrap();
    let slow = out.lines().find(|l| l.starts_with(SLOW)).unwrap();
    assert!(
        slow[measured_col..].starts_with(|c: char| c.is_ascii_digit()),
        "the lone stream's measured rate: {slow}"
    );
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let entry = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["session_id"] == id)
            .unwrap()
            .clone()
    };
    let fast = entry(FAST);
    assert!(fast["measured_kbps_1m"].is_null(), "{fast}");
    let total = fast["address_kbps_1m"].as_f64().unwrap_or(0.0);
    assert!((3600.0..4400.0).contains(&total), "{fast}");
    assert_eq!(fast["shared_with"], json!(["example_usr"]), "{fast}");
    // The lone stream's figure is there, and rules would see it.
    let slow = entry(SLOW);
    assert!(slow["measured_kbps_1m"].as_f64().is_some(), "{slow}");
    assert_eq!(
        slow["vars"]["measured_kbps_1m"].as_f64(),
        slow["measured_kbps_1m"].as_f64()
    );
    d.stop().await;
}
