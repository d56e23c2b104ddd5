//! `[[notify]]` in process: audit records through the notifier to real HTTP receivers on
//! 127.0.0.1, each service's exact shape, `on`, the rate's summaries, failures and secrets.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use streamwarden::config::Config;
use streamwarden::enforce::Record;
use streamwarden::notify::{self, Delivery, Notifier, Report};
use streamwarden::rules::{Value as Var, Vars};

use crate::common::logs::Logs;
use crate::common::receiver::{Got, Receiver};

const TS: &str = "2026-05-01T12:00:00Z";

/// A kill as the enforcer audits it: alice_b's 4K transcode on the living-room TV.
fn record(action: &'static str) -> Record {
    let mut vars = Vars::default();
    for (k, v) in [
        ("user", "alice_b"),
        ("username", "alice_b"),
        ("title", "Big Buck Bunny"),
        ("player", "Living Room TV"),
        ("transcode_decision", "transcode"),
    ] {
        vars.set(k, Var::Text(v.into()));
    }
    for (k, v) in [
        ("stream_bitrate", 20_000.0),
        ("source_bitrate", 8_000.0),
        ("measured_kbps_10s", 21_500.0),
        ("measured_kbps_1m", 20_800.0),
    ] {
        vars.set(k, Var::Number(v));
    }
    let mut values = Map::new();
    values.insert("transcode_decision".into(), json!("transcode"));
    Record {
        ts: TS.into(),
        mode: streamwarden::state::Mode::Enforce,
        action: streamwarden::state::AuditAction::parse(action).expect("an audit action"),
        rule: "no-4k-transcodes".into(),
        session_id: Some("s1".into()),
        session_key: Some("1".into()),
        user: Some("alice_b".into()),
        address: Some("203.0.113.7".into()),
        title: Some("Big Buck Bunny (2008)".into()),
        message: "4K cannot be transcoded here, alice_b.".into(),
        values,
        missing: Vec::new(),
        estimated: false,
        reason: matches!(action, "kill-failed" | "kill-skipped" | "zombie")
            .then(|| "Plex answered HTTP 500".to_string()),
        rate: action.contains("throttle").then(|| "5 Mbps".to_string()),
        vars,
    }
}

/// Feeds `records` to the notifier of `config`'s targets and waits for it to finish.
async fn notify(config: &str, records: &[Record]) -> Report {
    let c = Config::parse(config, None).expect("config");
    let n = Notifier::from_config(&c, Delivery::HOOK)
        .expect("targets")
        .expect("some targets");
    let sink = n.sink();
    for r in records {
        sink.record(r);
    }
    n.finish(Duration::from_secs(10)).await
}

fn target(kind: &str, url: &str, extra: &str) -> String {
    format!("[[notify]]\nkind = \"{kind}\"\nurl = \"{url}\"\n{extra}\n")
}

const BODY: &str = "Rule no-4k-transcodes stopped Big Buck Bunny (2008).\n\nUser: alice_b\nTitle: Big Buck Bunny (2008)\nPlayer: Living Room TV\nMeasured: 21.5 Mbps over 10 s, 20.8 Mbps over 1 min\nReported by Plex: stream 20.0 Mbps, file 8.0 Mbps\nRule: no-4k-transcodes\nMessage sent: 4K cannot be transcoded here, alice_b.";

fn one(r: &Receiver, path: &str) -> Got {
    let got = r.at(path);
    assert_eq!(got.len(), 1, "{path}: {got:?}");
    got.into_iter().next().unwrap()
}

#[tokio::test]
async fn discord_gets_an_embed_coloured_by_action_that_pings_no_one() {
    let r = Receiver::start(204, "");
    let report = notify(
        &target("discord", &r.url("/api/webhooks/1/SECRET-d1sc"), ""),
        &[record("kill")],
    )
    .await;
    assert!(report.problems().is_empty(), "{:?}", report.problems());
    let got = one(&r, "/api/webhooks/1/SECRET-d1sc");
    assert_eq!(got.method, "POST");
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(
        got.json(),
        json!({
            "username": "streamwarden",
            "allowed_mentions": {"parse": []},
            "embeds": [{
                "title": "Killed alice\\_b's stream",
                "description": "Rule no-4k-transcodes stopped Big Buck Bunny (2008).",
                "color": 0xD9342B,
                "fields": [
                    {"name": "User", "value": "alice\\_b", "inline": true},
                    {"name": "Title", "value": "Big Buck Bunny (2008)", "inline": true},
                    {"name": "Player", "value": "Living Room TV", "inline": true},
                    {"name": "Measured", "value": "21.5 Mbps over 10 s, 20.8 Mbps over 1 min", "inline": true},
                    {"name": "Reported by Plex", "value": "stream 20.0 Mbps, file 8.0 Mbps", "inline": true},
                    {"name": "Rule", "value": "no-4k-transcodes", "inline": true},
                    {"name": "Message sent", "value": "4K cannot be transcoded here, alice\\_b.", "inline": false},
                ],
                "footer": {"text": "streamwarden"},
                "timestamp": TS,
            }],
        })
    );
    // A failed kill: its own colour, title and the reason.
    let r = Receiver::start(204, "");
    notify(
        &target("discord", &r.url("/d"), "on = [\"kill-failed\"]"),
        &[record("kill-failed")],
    )
    .await;
    let embed = one(&r, "/d").json()["embeds"][0].clone();
    assert_eq!(embed["color"], 0xF28C28);
    assert_eq!(embed["title"], "Could not kill alice\\_b's stream");
    assert_eq!(
        embed["fields"][6],
        json!({"name": "Message (not sent)", "value": "4K cannot be transcoded here, alice\\_b.", "inline": false})
    );
    assert_eq!(
        embed["fields"][7],
        json!({"name": "Reason", "value": "Plex answered HTTP 500", "inline": false})
    );
}

#[tokio::test]
async fn slack_gets_text_and_blocks_with_the_templates_rendered() {
    let r = Receiver::start(200, "ok");
    let extra = "title = \"{user} on {player}: {measured_mbps_10s} Mbps\"\nmessage = \"Stopped by {rule} at {stream_bitrate_mbps} Mbps\"";
    notify(
        &target("slack", &r.url("/services/T0/B0/SECRET-s1ack"), extra),
        &[record("kill")],
    )
    .await;
    let got = one(&r, "/services/T0/B0/SECRET-s1ack");
    assert_eq!(got.headers["content-type"], "application/json");
    let field =
        |name: &str, value: &str| json!({"type": "mrkdwn", "text": format!("*{name}*\n{value}")});
    assert_eq!(
        got.json(),
        json!({
            "text": "alice_b on Living Room TV: 21.5 Mbps: Stopped by no-4k-transcodes at 20.0 Mbps",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": ":no_entry: alice_b on Living Room TV: 21.5 Mbps", "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "Stopped by no-4k-transcodes at 20.0 Mbps"}},
                {"type": "section", "fields": [
                    field("User", "alice_b"),
                    field("Title", "Big Buck Bunny (2008)"),
                    field("Player", "Living Room TV"),
                    field("Measured", "21.5 Mbps over 10 s, 20.8 Mbps over 1 min"),
                    field("Reported by Plex", "stream 20.0 Mbps, file 8.0 Mbps"),
                    field("Rule", "no-4k-transcodes"),
                ]},
                {"type": "section", "text": {"type": "mrkdwn", "text": "*Message sent*\n4K cannot be transcoded here, alice_b."}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "streamwarden"}]},
            ],
        })
    );
}

#[tokio::test]
async fn ntfy_gets_a_plain_body_with_title_tags_and_priority_headers() {
    let r = Receiver::start(200, "{}");
    notify(
        &target("ntfy", &r.url("/streamwarden-SECRET-topic"), ""),
        &[record("kill")],
    )
    .await;
    let got = one(&r, "/streamwarden-SECRET-topic");
    assert_eq!(got.method, "POST");
    assert_eq!(got.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(got.headers["title"], "Killed alice_b's stream");
    assert_eq!(got.headers["tags"], "no_entry,streamwarden");
    assert_eq!(got.headers["priority"], "3");
    assert_eq!(got.body, BODY);
    // A zombie is louder.
    let r = Receiver::start(200, "{}");
    notify(&target("ntfy", &r.url("/t"), ""), &[record("zombie")]).await;
    let got = one(&r, "/t");
    assert_eq!(got.headers["priority"], "4");
    assert_eq!(got.headers["tags"], "zombie,streamwarden");
    assert!(
        got.body.ends_with("\nReason: Plex answered HTTP 500"),
        "{}",
        got.body
    );
}

#[tokio::test]
async fn gotify_and_telegram_get_their_json() {
    let r = Receiver::start(200, "{\"ok\":true}");
    let config = format!(
        "{}{}",
        target("gotify", &r.url("/message?token=SECRET-g0t1fy"), ""),
        target(
            "telegram",
            &r.url("/botSECRET-te1egram"),
            "chat_id = -1001234"
        ),
    );
    notify(&config, &[record("kill")]).await;
    let g = one(&r, "/message");
    assert_eq!(g.query.as_deref(), Some("token=SECRET-g0t1fy"));
    assert_eq!(
        g.json(),
        json!({"title": "Killed alice_b's stream", "message": BODY, "priority": 5})
    );
    let t = one(&r, "/botSECRET-te1egram/sendMessage");
    assert_eq!(
        t.json(),
        json!({
            "chat_id": -1001234,
            "text": format!("Killed alice_b's stream\n\n{BODY}"),
            "disable_web_page_preview": true,
        })
    );
}

#[tokio::test]
async fn a_webhook_gets_the_audit_line_itself() {
    let r = Receiver::start(200, "");
    notify(
        &target("webhook", &r.url("/hook/SECRET-w3bh00k"), ""),
        &[record("kill")],
    )
    .await;
    let got = one(&r, "/hook/SECRET-w3bh00k");
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(
        got.json(),
        json!({
            "ts": TS, "mode": "enforce", "action": "kill", "rule": "no-4k-transcodes",
            "session_id": "s1", "session_key": "1", "user": "alice_b", "address": "203.0.113.7",
            "title": "Big Buck Bunny (2008)", "message": "4K cannot be transcoded here, alice_b.",
            "values": {"transcode_decision": "transcode"}, "estimated": false,
        })
    );
    assert_eq!(got.json(), serde_json::to_value(record("kill")).unwrap());
}

/// The actions a webhook target was told of, summaries unfolded.
fn actions(got: &[Got]) -> Vec<String> {
    let mut out = Vec::new();
    for g in got {
        let v = g.json();
        let records = match v.get("records") {
            Some(Value::Array(rs)) => rs.clone(),
            _ => vec![v],
        };
        out.extend(
            records
                .iter()
                .map(|r| r["action"].as_str().unwrap().to_string()),
        );
    }
    out.sort();
    out
}

#[tokio::test]
async fn on_chooses_the_actions_and_a_dry_run_is_opt_in() {
    let r = Receiver::start(200, "");
    let config = format!(
        "{}{}",
        target("webhook", &r.url("/default"), "max_per_minute = 600"),
        target(
            "webhook",
            &r.url("/dry"),
            "on = [\"would-kill\", \"log\"]\nmax_per_minute = 600"
        ),
    );
    let all = [
        "kill",
        "would-kill",
        "log",
        "kill-failed",
        "kill-skipped",
        "zombie",
        "transcode-stopped",
    ];
    let records: Vec<Record> = all.iter().map(|a| record(a)).collect();
    let report = notify(&config, &records).await;
    assert!(report.problems().is_empty(), "{:?}", report.problems());
    assert_eq!(
        actions(&r.at("/default")),
        ["kill", "kill-failed", "kill-skipped", "zombie"]
    );
    assert_eq!(actions(&r.at("/dry")), ["log", "would-kill"]);
}

#[tokio::test]
async fn a_burst_past_the_rate_is_folded_into_one_summary() {
    let r = Receiver::start(204, "");
    // 60 a minute: three at once, then one a second.
    let config = format!(
        "{}{}",
        target("webhook", &r.url("/w"), "max_per_minute = 60"),
        target("discord", &r.url("/d"), "max_per_minute = 60"),
    );
    let c = Config::parse(&config, None).unwrap();
    let n = Notifier::from_config(&c, Delivery::HOOK).unwrap().unwrap();
    let sink = n.sink();
    let t0 = Instant::now();
    for i in 0..8 {
        let mut rec = record("kill");
        rec.session_id = Some(format!("s{i}"));
        sink.record(&rec);
    }
    // Wait for the summary, sent when the rate allows (about a second later).
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.at("/w").len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waited = t0.elapsed();
    let got = r.at("/w");
    assert_eq!(got.len(), 4, "{got:?}");
    for g in &got[..3] {
        assert_eq!(g.json()["action"], "kill");
    }
    let summary = got[3].json();
    assert_eq!(summary["count"], 5);
    assert_eq!(summary["summary"], "5 events at once (kill ×5)");
    let ids: Vec<&str> = summary["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s3", "s4", "s5", "s6", "s7"]);
    assert!(waited >= Duration::from_millis(500), "{waited:?}");
    // Discord's summary: one embed listing them.
    while r.at("/d").len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = r.at("/d");
    assert_eq!(d.len(), 4);
    let embed = d[3].json()["embeds"][0].clone();
    assert_eq!(embed["title"], "5 events at once (kill ×5)");
    assert_eq!(embed["color"], 0xD9342B);
    let lines: Vec<&str> = embed["description"].as_str().unwrap().lines().collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(
        lines[0],
        "kill: alice\\_b · Big Buck Bunny (2008) · rule no-4k-transcodes"
    );
    let report = n.finish(Duration::from_secs(5)).await;
    assert_eq!(report.counts["webhook"].sent, 4);
    assert!(report.problems().is_empty(), "{:?}", report.problems());
}

#[tokio::test]
async fn failures_are_retried_counted_and_never_show_the_url() {
    let logs = Logs::default();
    let _guard = logs.subscriber_at(tracing::Level::DEBUG);
    // A service down (500, echoing the secret path back), and one that refuses (404).
    let down = Receiver::start(500, "no hook at /hooks/SECRET-d0wn here");
    let gone = Receiver::start(404, "Unknown Webhook");
    let config = format!(
        "{}{}",
        target("slack", &down.url("/hooks/SECRET-d0wn"), "name = \"down\""),
        target(
            "discord",
            &gone.url("/api/webhooks/9/SECRET-g0ne"),
            "name = \"gone\""
        ),
    );
    let report = notify(&config, &[record("kill")]).await;
    assert_eq!(
        down.got().len(),
        Delivery::HOOK.attempts as usize,
        "a 500 is tried again"
    );
    assert_eq!(gone.got().len(), 1, "a 404 is not tried again");
    assert_eq!(report.counts["down"].failed, 1);
    assert_eq!(report.counts["gone"].failed, 1);
    let problems = report.problems().join("\n");
    assert!(
        problems.contains(
            "[[notify]] down: 1 notification not sent: HTTP 500 Internal Server Error: no hook at <redacted> here"
        ),
        "{problems}"
    );
    assert!(
        problems.contains(
            "[[notify]] gone: 1 notification not sent: HTTP 404 Not Found: Unknown Webhook"
        ),
        "{problems}"
    );
    let log = logs.text();
    assert!(log.contains("notification not sent"), "{log}");
    for text in [&problems, &log] {
        assert!(
            !text.contains("SECRET") && !text.contains(&down.server.url),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_dead_service_is_given_up_on_at_the_deadline() {
    let dead = crate::common::receiver::Dead::start();
    let c = Config::parse(&target("ntfy", &dead.url("/SECRET-t0pic"), ""), None).unwrap();
    let n = Notifier::from_config(&c, Delivery::DAEMON)
        .unwrap()
        .unwrap();
    n.sink().record(&record("kill"));
    let t0 = Instant::now();
    let report = n.finish(Duration::from_secs(1)).await;
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(report.unfinished, ["ntfy"]);
    assert_eq!(
        report.problems(),
        ["[[notify]] ntfy: still sending after 1 s: given up"]
    );
}

#[tokio::test]
async fn outside_text_cannot_ping_break_a_line_or_a_header() {
    let r = Receiver::start(200, "");
    let config = format!(
        "{}{}{}",
        target("discord", &r.url("/d"), ""),
        target("slack", &r.url("/s"), ""),
        target("ntfy", &r.url("/n"), ""),
    );
    let mut rec = record("kill");
    rec.user = Some("<!channel> @everyone\nZoë".into());
    rec.vars
        .set("user", Var::Text("<!channel> @everyone\nZoë".into()));
    notify(&config, &[rec]).await;
    let d = one(&r, "/d").json();
    assert_eq!(
        d["embeds"][0]["fields"][0]["value"],
        "\\<!channel\\> \\@everyone\\\\nZoë"
    );
    assert_eq!(d["allowed_mentions"], json!({"parse": []}));
    let s = one(&r, "/s").json();
    assert_eq!(
        s["blocks"][2]["fields"][0]["text"],
        "*User*\n&lt;!channel&gt; @everyone\\nZoë"
    );
    let n = one(&r, "/n");
    let title = n.headers["title"].clone();
    use base64::Engine;
    let encoded = title
        .strip_prefix("=?UTF-8?B?")
        .and_then(|t| t.strip_suffix("?="))
        .unwrap_or_else(|| panic!("not an encoded word: {title}"));
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        "Killed <!channel> @everyone\\nZoë's stream"
    );
    assert!(
        n.body.contains("User: <!channel> @everyone\\nZoë\n"),
        "{}",
        n.body
    );
}

#[test]
fn template_and_url_errors_are_located() {
    let text = "[[notify]]\nkind = \"discord\"\nurl = \"https://discord.com/api/webhooks/1/SECRET\"\ntitle = \"Killed {usr}\"\nmessage = \"{rule} {stream_bitrate_mbps}\"\n";
    let c = Config::parse(text, Some("n.toml".into())).unwrap();
    let e = notify::targets(&c).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0].to_string(),
        "n.toml:4:17: [[notify]] discord: title: unknown placeholder {usr} (placeholders are rule variables such as {user}, {title}, {stream_bitrate_mbps}, or {rule})"
    );
    let c = Config::parse(
        "[[notify]]\nkind = \"webhook\"\nurl_env = \"STREAMWARDEN_TEST_UNSET_URL\"\n",
        Some("n.toml".into()),
    )
    .unwrap();
    let e = notify::targets(&c).unwrap_err();
    assert!(
        e[0].to_string().starts_with(
            "n.toml:3:11: [[notify]] webhook: url_env: the environment variable STREAMWARDEN_TEST_UNSET_URL is not set"
        ),
        "{}",
        e[0]
    );
}

mod notify_test {
    use super::*;
    use crate::common::*;

    fn config(dir: &std::path::Path, text: &str) {
        std::fs::write(dir.join("streamwarden.toml"), text).unwrap();
    }

    fn assert_no_secret(o: &std::process::Output) {
        assert_no_token(o);
        let all = format!("{}{}", stdout(o), stderr(o));
        assert!(!all.contains("SECRET"), "a URL leaked:\n{all}");
    }

    #[test]
    fn a_sample_goes_to_every_target_and_the_exit_code_says_how_it_went() {
        let good = Receiver::start(204, "");
        let bad = Receiver::start(500, "");
        let dir = tempfile::tempdir().unwrap();
        config(
            dir.path(),
            &format!(
                "[[notify]]\nkind = \"discord\"\nname = \"family\"\nurl_env = \"FAMILY_HOOK\"\n\n[[notify]]\nkind = \"slack\"\nname = \"team\"\nurl = \"{}\"\non = [\"would-kill\"]\n",
                bad.url("/services/SECRET-team")
            ),
        );
        let env = [(
            "FAMILY_HOOK",
            good.url("/api/webhooks/1/SECRET-family").leak() as &str,
        )];
        let o = run_env(
            dir.path(),
            "http://127.0.0.1:9",
            TOKEN,
            &["notify-test"],
            &env,
        );
        assert_no_secret(&o);
        assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
        assert_eq!(
            stdout(&o),
            "family (discord): sent; told of kill, kill-failed, zombie, kill-skipped, throttle, throttle-failed, risky-reload, warn\nteam (slack): NOT sent: HTTP 500 Internal Server Error\n"
        );
        assert!(
            stderr(&o).contains("1 of 2 notification targets failed"),
            "{}",
            stderr(&o)
        );
        let embed = good.at("/api/webhooks/1/SECRET-family")[0].json()["embeds"][0].clone();
        assert_eq!(embed["title"], "Test: Killed sample-user's stream");
        assert_eq!(
            embed["description"],
            "This is a test from streamwarden notify-test: nothing was killed."
        );
        assert_eq!(embed["footer"]["text"], "streamwarden · test");
        assert_eq!(bad.got().len(), 1, "notify-test tries once");
        bad.set_status(200);
        let o = run_env(
            dir.path(),
            "http://127.0.0.1:9",
            TOKEN,
            &["notify-test"],
            &env,
        );
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
        assert_no_secret(&o);
    }

    #[test]
    fn configuration_errors_exit_2_located_and_check_agrees() {
        let dir = tempfile::tempdir().unwrap();
        config(
            dir.path(),
            "[[notify]]\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/SECRET-topic\"\ntitle = \"{user} on {playr}\"\n",
        );
        for cmd in ["notify-test", "check"] {
            let o = run(dir.path(), "http://127.0.0.1:9", TOKEN, &[cmd]);
            assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
            assert!(
                stderr(&o).contains(
                    "streamwarden.toml:4:20: [[notify]] ntfy: title: unknown placeholder {playr}"
                ),
                "{cmd}: {}",
                stderr(&o)
            );
            assert_no_secret(&o);
        }
        // A URL that is not one: located, not shown.
        config(
            dir.path(),
            "[[notify]]\nkind = \"slack\"\nurl = \"hooks.slack.com/services/SECRET\"\n",
        );
        let o = run(dir.path(), "http://127.0.0.1:9", TOKEN, &["notify-test"]);
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stderr(&o).contains("streamwarden.toml:3:7: [[notify]] slack: url is not a URL"),
            "{}",
            stderr(&o)
        );
        assert_no_secret(&o);
        // No targets at all.
        config(dir.path(), "[enforce]\ndry_run = true\n");
        let o = run(dir.path(), "http://127.0.0.1:9", TOKEN, &["notify-test"]);
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stderr(&o).contains("no [[notify]] targets"),
            "{}",
            stderr(&o)
        );
    }
}

#[tokio::test]
async fn throttles_are_told_by_default_with_their_rate_and_a_lift_when_asked_for() {
    let r = Receiver::start(204, "");
    notify(
        &target("discord", &r.url("/d"), ""),
        // Told by default: throttle and throttle-failed; not the lift or a dry run's.
        &[
            record("throttle"),
            record("unthrottle"),
            record("would-throttle"),
        ],
    )
    .await;
    let embed = one(&r, "/d").json()["embeds"][0].clone();
    assert_eq!(embed["title"], "Throttled alice\\_b's stream");
    assert_eq!(
        embed["description"],
        "Rule no-4k-transcodes slowed Big Buck Bunny (2008) down to 5 Mbps."
    );
    assert_eq!(embed["color"], 0xE67E22);
    let r = Receiver::start(200, "{}");
    notify(
        &target("ntfy", &r.url("/t"), "on = [\"unthrottle\"]"),
        &[record("throttle"), record("unthrottle")],
    )
    .await;
    let got = one(&r, "/t");
    assert_eq!(
        got.headers["title"],
        "Lifted the throttle on alice_b's stream"
    );
    assert!(
        got.body
            .starts_with("Big Buck Bunny (2008) is no longer slowed down to 5 Mbps"),
        "{}",
        got.body
    );
    assert_eq!(got.headers["tags"], "arrow_forward,streamwarden");
}
