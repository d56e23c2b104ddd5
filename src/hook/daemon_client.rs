//! Reading a running daemon's figures over its HTTP endpoint, as the typed rows it serves.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::config::Secret;
use crate::engine::row::StreamRow;
use crate::meter::Measured;

/// Where to reach a daemon listening on `listen` from this host.
fn reachable(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
    } else {
        listen
    }
}

/// The daemon's rows, or `None` when no daemon answers (or it refuses the token).
pub async fn streams(listen: SocketAddr, token: Option<&Secret>) -> Option<Vec<StreamRow>> {
    let host = reachable(listen);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let mut request = client.get(format!("http://{host}/api/streams"));
    if let Some(t) = token {
        request = request.bearer_auth(t.expose());
    }
    match request.send().await {
        Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
            tracing::warn!(
                "the daemon at {host} refused the [http] token: measured figures unknown"
            );
            None
        }
        Ok(r) => serde_json::from_str(&r.text().await.ok()?).ok(),
        Err(e) => {
            tracing::debug!("no daemon at {host}: {}", e.without_url());
            None
        }
    }
}

/// The daemon's measured figures for one session.
pub async fn measured(
    listen: SocketAddr,
    token: Option<&Secret>,
    session_id: &str,
) -> Option<Measured> {
    streams(listen, token)
        .await?
        .iter()
        .find(|r| r.session_id.as_deref() == Some(session_id))?
        .measured()
}

/// POSTs `body` as JSON to the daemon's `path`: where it was asked, the HTTP status and the
/// JSON answer, or why there is none.
async fn post_json(
    listen: SocketAddr,
    token: Option<&Secret>,
    path: &str,
    body: serde_json::Value,
    timeout: Duration,
) -> Result<(SocketAddr, reqwest::StatusCode, serde_json::Value), String> {
    let host = reachable(listen);
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client
        .post(format!("http://{host}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        request = request.bearer_auth(t.expose());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("the daemon at {host} did not answer: {}", e.without_url()))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| {
        format!(
            "the daemon at {host} answered HTTP {status}: {}",
            e.without_url()
        )
    })?;
    let body = serde_json::from_str(&text)
        .map_err(|_| format!("the daemon at {host} answered HTTP {status} without JSON"))?;
    Ok((host, status, body))
}

/// Asks the daemon to put throttle rule `rule`'s throttle on session `session_id`: its
/// answer (the audit's name for what became of it, and a line for people), or why it could
/// not be asked.
pub async fn throttle(
    listen: SocketAddr,
    token: Option<&Secret>,
    session_id: &str,
    rule: &str,
) -> Result<(String, String), String> {
    let (host, status, body) = post_json(
        listen,
        token,
        "/api/streams/throttle",
        serde_json::json!({"session_id": session_id, "rule": rule}),
        Duration::from_secs(10),
    )
    .await?;
    let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    match (text("outcome"), text("error")) {
        (outcome, _) if !outcome.is_empty() => Ok((outcome, text("said"))),
        (_, error) => Err(format!(
            "the daemon at {host} answered HTTP {status}: {error}"
        )),
    }
}

/// What a daemon said of a hook run handed to it (`POST /api/tautulli`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handed {
    /// "done", "kill-failed", or "accepted" (a delay or paused: done in the background).
    pub outcome: String,
    /// Its lines, as (level, text): "info", "warning" or "error".
    pub lines: Vec<(String, String)>,
}

/// The hook's arguments as the Webhook agent's JSON body (kill_stream.py's option names).
pub fn webhook_body(args: &super::HookArgs) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    if let Some(j) = args.jbop {
        let name = match j {
            super::Jbop::Stream => "stream",
            super::Jbop::AllStreams => "allStreams",
            super::Jbop::Paused => "paused",
        };
        put("jbop", json!(name));
        if let Some(id) = &args.session_id_jbop {
            put("sessionId", json!(id));
        }
        put("limit", json!(args.limit));
        put("interval", json!(args.interval));
    } else if let Some(id) = &args.session_id {
        put("sessionId", json!(id));
    }
    let opt = |v: &Option<String>| v.as_ref().map(|s| json!(s));
    for (k, v) in [
        ("userId", opt(&args.user_id)),
        ("username", opt(&args.username)),
        ("serverName", opt(&args.server_name)),
        ("plexUrl", opt(&args.plex_url)),
        ("posterUrl", opt(&args.poster_url)),
        ("richColor", opt(&args.rich_color)),
    ] {
        if let Some(v) = v {
            put(k, v);
        }
    }
    for (k, v) in [
        ("killMessage", &args.kill_message),
        ("notify", &args.notify),
        ("richMessage", &args.rich_message),
    ] {
        if !v.is_empty() {
            put(k, json!(v));
        }
    }
    if let Some(d) = args.delay {
        put("delay", json!(d));
    }
    if args.debug {
        put("debug", json!(true));
    }
    if args.dry_run {
        put("dryRun", json!(true));
    }
    Value::Object(m)
}

/// Hands a whole hook run to the daemon at `listen`, whose one enforcer then acts (its
/// never-twice and budget): what it said, or why it could not be asked.
pub async fn hand_over(
    listen: SocketAddr,
    token: Option<&Secret>,
    args: &super::HookArgs,
) -> Result<Handed, String> {
    let (host, status, body) = post_json(
        listen,
        token,
        "/api/tautulli",
        webhook_body(args),
        Duration::from_secs(25),
    )
    .await?;
    let lines = body["lines"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| {
                    let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
                    (s("level"), s("text"))
                })
                .collect()
        })
        .unwrap_or_default();
    if status == reqwest::StatusCode::ACCEPTED {
        return Ok(Handed {
            outcome: "accepted".into(),
            lines: vec![(
                "info".into(),
                body["note"].as_str().unwrap_or_default().to_string(),
            )],
        });
    }
    match body["outcome"].as_str() {
        Some(o) if status.is_success() => Ok(Handed {
            outcome: o.to_string(),
            lines,
        }),
        _ => Err(format!(
            "the daemon at {host} answered HTTP {status}: {}",
            body["error"].as_str().unwrap_or_default()
        )),
    }
}
