//! `streamwarden hook --notify`: kill_stream.py's notifications, sent through a stand-in
//! Tautulli API v2 (a real HTTP server on 127.0.0.1) that records every call, while the
//! fake Plex takes the kills.

use std::collections::{BTreeMap, HashMap};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::routing::any;
use serde_json::{Value, json};

use crate::common::*;

const HOMARR: &str = "2894294r2jf2038fj3098jgf3gt";
const PLEXOPEDIA: &str = "rxiscwekkvkpukgi3pm9nklp";
const HA: &str = "session_id_1";
const APIKEY: &str = "tautulli-KEY-8c1e77d0";
const SUBJECT: &str = "Tautulli has killed a stream.";
const ICON: &str = "https://github.com/Tautulli/Tautulli/raw/master/data/interfaces/default/images/logo-circle.png";

/// How the stand-in Tautulli answers notify calls.
#[derive(Clone, Copy)]
enum Answer {
    Success,
    /// `{"response": {"result": "error", ...}}`, its message echoing the API key.
    ApiError,
    /// HTTP 500 with an HTML page.
    ServerError,
    /// No answer for a minute.
    Hang,
}

/// One call the stand-in received: its method and its query parameters.
#[derive(Debug, Clone)]
struct Call {
    method: Method,
    params: BTreeMap<String, String>,
    /// How many times a parameter appeared (each must appear once).
    repeats: usize,
}

struct Stand {
    answer: Answer,
    /// Tautulli's friendly names by user id.
    names: HashMap<String, String>,
    calls: Mutex<Vec<Call>>,
}

struct FakeTautulli {
    server: TestServer,
    stand: Arc<Stand>,
}

impl FakeTautulli {
    fn start(answer: Answer, names: &[(&str, &str)]) -> Self {
        let stand = Arc::new(Stand {
            answer,
            names: names
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            calls: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/api/v2", any(api))
            .with_state(stand.clone());
        FakeTautulli {
            server: serve(app),
            stand,
        }
    }

    fn calls(&self, cmd: &str) -> Vec<Call> {
        self.stand
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.params.get("cmd").map(String::as_str) == Some(cmd))
            .cloned()
            .collect()
    }

    fn all_calls(&self) -> usize {
        self.stand.calls.lock().unwrap().len()
    }

    /// The environment Tautulli gives its scripts, with TAUTULLI_URL ending in "/" as
    /// Tautulli writes it.
    fn env(&self, public_url: &str) -> Vec<(&'static str, String)> {
        vec![
            ("TAUTULLI_URL", format!("{}/", self.server.url)),
            ("TAUTULLI_APIKEY", APIKEY.to_string()),
            ("TAUTULLI_PUBLIC_URL", public_url.to_string()),
        ]
    }
}

async fn api(
    State(stand): State<Arc<Stand>>,
    method: Method,
    Query(pairs): Query<Vec<(String, String)>>,
) -> (StatusCode, String) {
    let params: BTreeMap<String, String> = pairs.iter().cloned().collect();
    stand.calls.lock().unwrap().push(Call {
        method,
        repeats: pairs.len() - params.len(),
        params: params.clone(),
    });
    let ok = |data: Value| {
        let body = json!({"response": {"result": "success", "message": null, "data": data}});
        (StatusCode::OK, body.to_string())
    };
    if params.get("apikey").map(String::as_str) != Some(APIKEY) {
        let body =
            json!({"response": {"result": "error", "message": "Invalid apikey", "data": {}}});
        return (StatusCode::UNAUTHORIZED, body.to_string());
    }
    match params.get("cmd").map(String::as_str) {
        Some("get_user") => {
            let id = params.get("user_id").cloned().unwrap_or_default();
            // Tautulli answers a stand-in "Local" user for an id it does not know.
            match stand.names.get(&id) {
                Some(name) => ok(
                    json!({"user_id": id.parse::<i64>().unwrap(), "username": "x", "friendly_name": name}),
                ),
                None => ok(json!({"user_id": 0, "username": "Local", "friendly_name": "Local"})),
            }
        }
        Some("notify") => match stand.answer {
            Answer::Success => ok(json!({"notification_id": 1})),
            Answer::ApiError => {
                let message = format!(
                    "Notification failed: invalid notifier_id provided {} (key {APIKEY}).",
                    params.get("notifier_id").cloned().unwrap_or_default()
                );
                let body = json!({"response": {"result": "error", "message": message, "data": {}}});
                (StatusCode::OK, body.to_string())
            }
            Answer::ServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "<html><body>500 Internal Server Error</body></html>".to_string(),
            ),
            Answer::Hang => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                ok(json!({}))
            }
        },
        _ => (StatusCode::BAD_REQUEST, "unknown cmd".to_string()),
    }
}

fn hook(plex: &FakePlex, env: &[(&str, String)], args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut all = vec!["hook"];
    all.extend_from_slice(args);
    let o = run_env(dir.path(), &plex.url, TOKEN, &all, &env);
    assert_no_secrets(&o);
    o
}

fn assert_no_secrets(o: &Output) {
    assert_no_token(o);
    let all = format!("{}{}", stdout(o), stderr(o));
    assert!(!all.contains(APIKEY), "the API key leaked:\n{all}");
}

/// Checks a notify call is kill_stream.py's: a GET, every parameter once, exactly these.
fn assert_notify(call: &Call, notifier: &str, subject: Option<&str>, body: &str) {
    assert_eq!(call.method, Method::GET);
    assert_eq!(call.repeats, 0, "a parameter was repeated: {call:?}");
    let mut want = BTreeMap::from([
        ("apikey".to_string(), APIKEY.to_string()),
        ("cmd".to_string(), "notify".to_string()),
        ("notifier_id".to_string(), notifier.to_string()),
        ("body".to_string(), body.to_string()),
    ]);
    if let Some(s) = subject {
        want.insert("subject".to_string(), s.to_string());
    }
    assert_eq!(call.params, want);
}

fn killed(plex: &FakePlex) -> Vec<String> {
    let mut ids: Vec<String> = plex.terminates().into_iter().map(|t| t.0).collect();
    ids.sort();
    ids
}

/// A rich body: parsed, after checking it is written as Python's `json.dumps(...,
/// sort_keys=True, separators=(',', ': '))` writes it.
fn rich_body(call: &Call, top: &str) -> Value {
    let raw = &call.params["body"];
    assert!(
        raw.starts_with(&format!("{{\"{top}\": [{{\"")),
        "not kill_stream.py's layout: {raw}"
    );
    // "," between items, ": " after keys, keys sorted.
    let between = if top == "embeds" {
        "\"},{\"inline\": "
    } else {
        "\"},{\"short\": "
    };
    assert!(
        raw.contains(between),
        "not kill_stream.py's separators: {raw}"
    );
    assert!(raw.is_ascii(), "json.dumps escapes non-ASCII: {raw}");
    serde_json::from_str(raw).unwrap()
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Takes out `key` and returns it, so the rest can be compared whole.
fn take(v: &mut Value, pointer: &str, key: &str) -> Value {
    v.pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .and_then(|o| o.remove(key))
        .unwrap_or_else(|| panic!("no {pointer}/{key}"))
}

/// Discord's timestamp is Python's `datetime.utcnow().isoformat()`: UTC, no offset.
fn assert_recent_iso(ts: &Value) {
    let ts = ts.as_str().unwrap();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
    );
    let t = time::PrimitiveDateTime::parse(ts, &fmt)
        .unwrap_or_else(|e| panic!("{ts}: {e}"))
        .assume_utc();
    let age = now_secs() - t.unix_timestamp() as f64;
    assert!((-5.0..60.0).contains(&age), "timestamp {ts} is {age}s old");
}

#[test]
fn plain_notification_names_the_user_given_by_username() {
    let plex = FakePlex::start(&mixed_sessions());
    let t = FakeTautulli::start(Answer::Success, &[]);
    let o = hook(
        &plex,
        &t.env("/"),
        &[
            "--jbop",
            "stream",
            "--username",
            "example_usr",
            "--sessionId",
            HOMARR,
            "--notify",
            "1",
            "--killMessage",
            "Transcoding",
            "streams",
            "are",
            "not",
            "allowed.",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(killed(&plex), vec![HOMARR]);
    let calls = t.calls("notify");
    assert_eq!(calls.len(), 1);
    // kill_stream.py's text adds a full stop after the message, whatever it ends with.
    assert_notify(
        &calls[0],
        "1",
        Some(SUBJECT),
        "Killed example_usr's stream. Reason: Transcoding streams are not allowed..",
    );
    assert_eq!(t.all_calls(), 1, "a plain notification asks nothing else");
    assert!(
        stdout(&o).contains(&format!(
            "notified Tautulli notifier 1 of the kill of session {HOMARR}"
        )),
        "{}",
        stdout(&o)
    );
    assert!(!stderr(&o).contains("not implemented"), "{}", stderr(&o));
}

#[test]
fn plain_notification_without_username_names_the_session() {
    let plex = FakePlex::start(&mixed_sessions());
    let t = FakeTautulli::start(Answer::Success, &[]);
    let o = hook(
        &plex,
        &t.env("/"),
        &["--jbop", "stream", "--sessionId", HOMARR, "--notify", "4"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let calls = t.calls("notify");
    assert_eq!(calls.len(), 1);
    assert_notify(
        &calls[0],
        "4",
        Some(SUBJECT),
        &format!("Killed session ID '{HOMARR}'. Reason: The server owner has ended the stream."),
    );
}

#[test]
fn discord_embed_carries_every_field_of_kill_streams() {
    let plex = FakePlex::start(&mixed_sessions());
    // HA's stream is user 7's, whom Tautulli calls "Seven".
    let t = FakeTautulli::start(Answer::Success, &[("7", "Seven")]);
    let o = hook(
        &plex,
        &t.env("https://tautulli.example.com/"),
        &[
            "--jbop",
            "stream",
            "--username",
            "user7",
            "--sessionId",
            HA,
            "--notify",
            "2",
            "--richMessage",
            "discord",
            "--serverName",
            "Basement Plex",
            "--plexUrl",
            "https://app.plex.tv/desktop#!/server/abc/details?key=%2Flibrary%2Fmetadata%2F1",
            "--posterUrl",
            "https://images.example.com/poster.jpg",
            "--richColor",
            "#ff0000",
            "--killMessage",
            "No 4K transcodes, café.",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(killed(&plex), vec![HA]);
    let users = t.calls("get_user");
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].params["user_id"], "7");
    let calls = t.calls("notify");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, Method::GET);
    // kill_stream.py sends a rich message with no subject at all.
    let keys: Vec<&str> = calls[0].params.keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["apikey", "body", "cmd", "notifier_id"]);
    assert_eq!(calls[0].params["notifier_id"], "2");
    assert!(calls[0].params["body"].contains("caf\\u00e9"));
    let mut body = rich_body(&calls[0], "embeds");
    assert_recent_iso(&take(&mut body, "/embeds/0", "timestamp"));
    assert_eq!(
        body,
        json!({"embeds": [{
            "author": {"icon_url": ICON, "name": "Tautulli", "url": "https://tautulli.example.com"},
            "color": 0xff0000,
            "fields": [
                {"inline": true, "name": "User", "value": "Seven"},
                {"inline": true, "name": "Session Key", "value": "1"},
                {"inline": true, "name": "Watching", "value": "Movie 1"},
                {"inline": false, "name": "Message Sent", "value": "No 4K transcodes, café."},
            ],
            "thumbnail": {"url": "https://images.example.com/poster.jpg"},
            "title": "Killed Seven's stream.",
            "url": "https://app.plex.tv/desktop#!/server/abc/details?key=%2Flibrary%2Fmetadata%2F1",
            "footer": {"text": "Basement Plex | Kill Stream"},
        }]})
    );
}

#[test]
fn paused_discord_embed_takes_kill_streams_defaults() {
    // homarr's player is paused; its user is the server owner (Plex user 1), whose name
    // is Plex's.
    let plex = FakePlex::start(&mixed_sessions());
    let t = FakeTautulli::start(Answer::Success, &[]);
    let o = hook(
        &plex,
        &t.env("/"),
        &[
            "--jbop",
            "paused",
            "--interval",
            "1",
            "--limit",
            "1",
            "--sessionId",
            HOMARR,
            "--notify",
            "1",
            "--richMessage",
            "discord",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(killed(&plex), vec![HOMARR]);
    assert!(t.calls("get_user").is_empty());
    let calls = t.calls("notify");
    assert_eq!(calls.len(), 1);
    let mut body = rich_body(&calls[0], "embeds");
    assert_recent_iso(&take(&mut body, "/embeds/0", "timestamp"));
    assert_eq!(
        body,
        json!({"embeds": [{
            "author": {"icon_url": ICON, "name": "Tautulli", "url": t.server.url},
            "color": 15048717,
            "fields": [
                {"inline": true, "name": "User", "value": "example_usr"},
                {"inline": true, "name": "Session Key", "value": "1"},
                {"inline": true, "name": "Watching", "value": "A long title"},
                {"inline": false, "name": "Message Sent", "value": "The server owner has ended the stream."},
            ],
            "thumbnail": {"url": ICON},
            "title": "Killed example_usr's paused stream.",
            "url": "https://app.plex.tv",
            "footer": {"text": "Plex Server | Kill Paused"},
        }]})
    );
}

#[test]
fn slack_attachment_for_each_stream_allstreams_kills() {
    let plex = FakePlex::start(&mixed_sessions());
    let t = FakeTautulli::start(Answer::Success, &[]);
    let o = hook(
        &plex,
        &t.env("/"),
        &[
            "--jbop",
            "allStreams",
            "--userId",
            "1",
            "--notify",
            "3",
            "--richMessage",
            "slack",
            "--serverName",
            "Basement Plex",
            "--plexUrl",
            "https://app.plex.tv/desktop#!/x",
            "--posterUrl",
            "https://images.example.com/poster.jpg",
            "--richColor",
            "#00ff00",
            "--killMessage",
            "Hey Bob, we need to talk!",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(killed(&plex), vec![HOMARR, PLEXOPEDIA]);
    let calls = t.calls("notify");
    assert_eq!(calls.len(), 2, "one per killed stream");
    let mut bodies: Vec<Value> = calls
        .iter()
        .map(|c| {
            assert!(!c.params.contains_key("subject"));
            assert_eq!(c.params["notifier_id"], "3");
            let mut b = rich_body(c, "attachments");
            let ts = take(&mut b, "/attachments/0", "ts").as_f64().unwrap();
            assert!((now_secs() - ts).abs() < 60.0, "ts {ts}");
            b
        })
        .collect();
    bodies.sort_by_key(|b| b["attachments"][0]["fields"][1]["value"].to_string());
    // allStreams shows neither the triggering stream's poster nor its link.
    let attachment = |user: &str, key: &str, watching: &str| {
        json!({"attachments": [{
            "title": format!("Killed {user}'s stream."),
            "title_link": "https://app.plex.tv",
            "author_icon": ICON,
            "author_name": "Tautulli",
            "author_link": t.server.url,
            "color": "#00ff00",
            "fields": [
                {"title": "User", "value": user, "short": true},
                {"title": "Session Key", "value": key, "short": true},
                {"title": "Watching", "value": watching, "short": true},
                {"title": "Message Sent", "value": "Hey Bob, we need to talk!", "short": false},
            ],
            "thumb_url": ICON,
            "footer": "Basement Plex | Kill All Streams",
        }]})
    };
    assert_eq!(
        bodies,
        vec![
            attachment("example_usr", "1", "A long title"),
            attachment("APlexUser", "3", "Beautiful Day - U2"),
        ]
    );
}

#[test]
fn allstreams_notifies_each_killed_stream_by_its_session_id_to_every_notifier() {
    let plex = FakePlex::start(&mixed_sessions());
    let t = FakeTautulli::start(Answer::Success, &[]);
    let o = hook(
        &plex,
        &t.env("/"),
        &[
            "--jbop",
            "allStreams",
            "--userId",
            "1",
            "--notify",
            "1",
            "2",
            "--notify",
            "2",
            "--killMessage",
            "Hey Bob, we need to talk!",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(killed(&plex), vec![HOMARR, PLEXOPEDIA]);
    let calls = t.calls("notify");
    assert_eq!(calls.len(), 4, "two streams, notifiers 1 and 2 once each");
    let mut seen: Vec<(String, String)> = calls
        .iter()
        .map(|c| {
            assert_eq!(c.params["subject"], SUBJECT);
            assert_eq!(c.params.len(), 5);
            (c.params["notifier_id"].clone(), c.params["body"].clone())
        })
        .collect();
    seen.sort();
    let body = |id: &str| format!("Killed session ID '{id}'. Reason: Hey Bob, we need to talk!");
    assert_eq!(
        seen,
        vec![
            ("1".to_string(), body(HOMARR)),
            ("1".to_string(), body(PLEXOPEDIA)),
            ("2".to_string(), body(HOMARR)),
            ("2".to_string(), body(PLEXOPEDIA)),
        ]
    );
}

#[test]
fn a_bad_notifier_id_is_warned_about_and_the_rest_still_go() {
    let plex = FakePlex::start(&mixed_sessions());
    let t = FakeTautulli::start(Answer::Success, &[]);
    let o = hook(
        &plex,
        &t.env("/"),
        &[
            "--jbop",
            "stream",
            "--sessionId",
            HOMARR,
            "--notify",
            "{notifier_id}",
            "5",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not a Tautulli notifier id"),
        "{}",
        stderr(&o)
    );
    let calls = t.calls("notify");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].params["notifier_id"], "5");
}

#[test]
fn dry_run_notifies_nobody_and_says_so() {
    let plex = FakePlex::start(&mixed_sessions());
    let t = FakeTautulli::start(Answer::Success, &[]);
    let o = hook(
        &plex,
        &t.env("/"),
        &[
            "--dry-run",
            "--jbop",
            "stream",
            "--sessionId",
            HOMARR,
            "--notify",
            "1",
            "--richMessage",
            "discord",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(plex.terminates().is_empty());
    assert_eq!(t.all_calls(), 0, "a dry run calls Tautulli for nothing");
    assert!(
        stdout(&o).contains(&format!(
            "dry run: would notify Tautulli notifier 1 of the kill of session {HOMARR} (not sent)"
        )),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_failed_kill_notifies_nobody_and_keeps_its_exit_code() {
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.terminate_failures = 10);
    let t = FakeTautulli::start(Answer::Success, &[]);
    let o = hook(
        &plex,
        &t.env("/"),
        &["--jbop", "stream", "--sessionId", HOMARR, "--notify", "1"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(t.all_calls(), 0);
}

#[test]
fn tautulli_api_error_is_said_without_the_key_and_the_kill_stands() {
    let plex = FakePlex::start(&mixed_sessions());
    let t = FakeTautulli::start(Answer::ApiError, &[]);
    let o = hook(
        &plex,
        &t.env("/"),
        &["--jbop", "stream", "--sessionId", HOMARR, "--notify", "9"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(killed(&plex), vec![HOMARR]);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "error: could not notify Tautulli notifier 9 of the kill of session {HOMARR}: Tautulli answered with an error: Notification failed: invalid notifier_id provided 9 (key (apikey))."
        )),
        "{err}"
    );
    // assert_no_secrets (in `hook`) checked the echoed key was blanked.
}

#[test]
fn tautulli_http_500_is_said_and_the_kill_stands() {
    let plex = FakePlex::start(&mixed_sessions());
    let t = FakeTautulli::start(Answer::ServerError, &[]);
    let o = hook(
        &plex,
        &t.env("/"),
        &["--jbop", "stream", "--sessionId", HOMARR, "--notify", "1"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(killed(&plex), vec![HOMARR]);
    assert!(
        stderr(&o).contains("answered HTTP 500 without its API's JSON"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unreachable_tautulli_is_tried_once_and_every_kill_stands() {
    let plex = FakePlex::start(&mixed_sessions());
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = vec![
        ("TAUTULLI_URL", format!("http://127.0.0.1:{port}/")),
        ("TAUTULLI_APIKEY", APIKEY.to_string()),
        ("TAUTULLI_PUBLIC_URL", "/".to_string()),
    ];
    let o = hook(
        &plex,
        &env,
        &[
            "--jbop",
            "allStreams",
            "--userId",
            "1",
            "--notify",
            "1",
            "2",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(killed(&plex), vec![HOMARR, PLEXOPEDIA]);
    let err = stderr(&o);
    assert!(
        err.contains(&format!("Tautulli at 127.0.0.1:{port} did not answer")),
        "{err}"
    );
    assert_eq!(err.matches("could not notify").count(), 1, "{err}");
    assert!(
        err.contains("3 more Tautulli notifications not sent"),
        "{err}"
    );
}

#[test]
fn a_hanging_tautulli_cannot_hold_the_hook() {
    let plex = FakePlex::start(&mixed_sessions());
    let t = FakeTautulli::start(Answer::Hang, &[]);
    let started = Instant::now();
    let o = hook(
        &plex,
        &t.env("/"),
        &[
            "--jbop",
            "allStreams",
            "--userId",
            "1",
            "--notify",
            "1",
            "2",
        ],
    );
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(killed(&plex), vec![HOMARR, PLEXOPEDIA]);
    assert!(took < Duration::from_secs(12), "took {took:?}");
    assert_eq!(t.calls("notify").len(), 1, "tried once");
    assert!(stderr(&o).contains("no answer within 4s"), "{}", stderr(&o));
}

#[test]
fn without_tautullis_environment_the_kill_stands_and_it_is_said() {
    let plex = FakePlex::start(&mixed_sessions());
    let o = hook(
        &plex,
        &[],
        &["--jbop", "stream", "--sessionId", HOMARR, "--notify", "1"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(killed(&plex), vec![HOMARR]);
    assert!(
        stderr(&o).contains("1 Tautulli notification not sent: TAUTULLI_URL is not set"),
        "{}",
        stderr(&o)
    );
    let plex = FakePlex::start(&mixed_sessions());
    let env = vec![("TAUTULLI_URL", "http://127.0.0.1:9/".to_string())];
    let o = hook(
        &plex,
        &env,
        &["--jbop", "stream", "--sessionId", HOMARR, "--notify", "1"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(killed(&plex), vec![HOMARR]);
    assert!(
        stderr(&o).contains("TAUTULLI_APIKEY is not set"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_user_tautulli_does_not_know_keeps_plexs_name() {
    let plex = FakePlex::start(&mixed_sessions());
    let t = FakeTautulli::start(Answer::Success, &[]);
    let o = hook(
        &plex,
        &t.env("/"),
        &[
            "--jbop",
            "stream",
            "--sessionId",
            HA,
            "--notify",
            "1",
            "--richMessage",
            "slack",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(t.calls("get_user").len(), 1);
    let calls = t.calls("notify");
    let body = rich_body(&calls[0], "attachments");
    assert_eq!(body["attachments"][0]["fields"][0]["value"], "User 7");
    assert_eq!(body["attachments"][0]["title"], "Killed User 7's stream.");
}

#[test]
fn notify_targets_hear_of_the_kill_beside_tautulli_and_a_dead_one_cannot_hold_the_hook() {
    use crate::common::receiver::{Dead, Receiver};
    let plex = FakePlex::start(&mixed_sessions());
    let t = FakeTautulli::start(Answer::Success, &[]);
    let family = Receiver::start(204, "");
    let dead = Dead::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("streamwarden.toml"),
        format!(
            "[[notify]]\nkind = \"discord\"\nname = \"family\"\nurl_env = \"FAMILY_HOOK\"\n\n[[notify]]\nkind = \"webhook\"\nname = \"dead\"\nurl = \"{}\"\n",
            dead.url("/SECRET-dead")
        ),
    )
    .unwrap();
    let mut env = t.env("/");
    env.push(("FAMILY_HOOK", family.url("/api/webhooks/1/SECRET-family")));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let t0 = Instant::now();
    let o = run_env(
        dir.path(),
        &plex.url,
        TOKEN,
        &[
            "hook",
            "--jbop",
            "stream",
            "--sessionId",
            HOMARR,
            "--notify",
            "1",
            "--killMessage",
            "Transcodes off tonight.",
        ],
        &env,
    );
    let took = t0.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(killed(&plex), vec![HOMARR]);
    // Tautulli's own notifier and [[notify]], side by side.
    assert_eq!(t.calls("notify").len(), 1);
    let got = family.at("/api/webhooks/1/SECRET-family");
    assert_eq!(got.len(), 1, "{got:?}");
    let embed = got[0].json()["embeds"][0].clone();
    assert_eq!(embed["title"], "Killed example\\_usr's stream");
    assert_eq!(embed["fields"][5]["value"], "jbop:stream");
    assert_eq!(embed["fields"][6]["value"], "Transcodes off tonight.");
    // The dead target had until the hook's deadline, no more.
    assert!(took < Duration::from_secs(9), "the hook took {took:?}");
    assert!(
        stderr(&o).contains("[[notify]] dead: still sending after 4 s: given up"),
        "{}",
        stderr(&o)
    );
    assert_no_secrets(&o);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!all.contains("SECRET"), "a URL leaked:\n{all}");
    assert!(!got[0].body.contains(TOKEN) && !got[0].body.contains(APIKEY));
}
