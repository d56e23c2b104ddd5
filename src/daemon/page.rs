//! The owner's page at `/`, and the APIs it reads: `/api/status`, `/api/history`,
//! `POST /api/rules/try` and `POST /api/streams/kill` (`/api/streams` is the endpoint's
//! own). The page is three files
//! written by hand and compiled in: nothing is read from disk or fetched from elsewhere,
//! and its Content-Security-Policy lets it load and connect to nothing but this daemon.

use std::collections::HashMap;

use super::http::{ApiJson, Example};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;

use crate::enforce::history;
use crate::lock;
use crate::rules::lab::{Condition, Trial};

use super::board::{AuditSource, Board};

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/app.css");

/// The page may load its own script and style and connect to this daemon; nothing else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's routes, over the board the loop publishes to.
pub fn routes(board: Board) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/api/status", get(status))
        .route("/api/history", get(history_handler))
        .route("/api/usage", get(usage_handler))
        .route("/api/rules/try", post(try_rule))
        .route("/api/streams/kill", post(kill_now))
        .route("/api/streams/throttle", post(throttle_now))
        .with_state(board)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    super::http::ApiError::new(status, message).into_response()
}

async fn status(State(board): State<Board>) -> Response {
    axum::Json(board.status()).into_response()
}

/// `GET /api/history?user=&rule=&since=&action=&limit=`: the audit log's kills, would-kills,
/// failures and zombies, newest first, with per-user counts.
/// The Usage view: each user's today, week and month, 30 days by day, and the quota rule
/// they are closest to, from the state database.
async fn usage_handler(State(board): State<Board>) -> Response {
    let AuditSource::State(path, _) = board.audit().clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "no state database: usage is recorded only with one",
        );
    };
    let cfg = board.usage_config().clone();
    let rules = board.rule_conditions();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let read = move || {
        let state = crate::state::State::open_read_only(&path)?;
        crate::engine::usage::report(&state, &cfg, &rules, now)
    };
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(r)) => axum::Json(r).into_response(),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the usage: {e}"),
        ),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the usage failed",
        ),
    }
}

async fn history_handler(
    State(board): State<Board>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let given = |k: &str| {
        params
            .get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let since = match given("since") {
        Some(s) => match history::parse_since(&s, time::OffsetDateTime::now_utc()) {
            Ok(t) => Some(t),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        },
        None => None,
    };
    let limit = match given("limit").map(|l| l.parse::<usize>()) {
        Some(Ok(n)) => Some(n.min(5000)),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "limit: not a whole number"),
        None => None,
    };
    let query = history::Query {
        user: given("user"),
        rule: given("rule"),
        since,
        actions: given("action")
            .map(|a| a.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default(),
        limit,
    };
    let report = match board.audit().clone() {
        AuditSource::State(path, _) => {
            let read = move || {
                let state = crate::state::State::open_read_only(&path)?;
                history::from_state(&state, &query)
            };
            match tokio::task::spawn_blocking(read).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot read the audit records: {e}"),
                    );
                }
                Err(_) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "reading the audit records failed",
                    );
                }
            }
        }
        AuditSource::Memory(recent) => {
            let entries: Vec<history::Entry> = lock(&recent).iter().cloned().collect();
            history::collect(entries, &query)
        }
    };
    axum::Json(report).into_response()
}

/// One live stream tried against the lab's condition.
#[derive(Serialize)]
struct Tried {
    session_id: Option<String>,
    user: Option<String>,
    title: String,
    #[serde(flatten)]
    trial: Trial,
}

#[derive(serde::Deserialize)]
struct TryBody {
    when: String,
    /// Also backtest it over the last 7 days of recorded usage (the page asks when the
    /// condition changes, not on each refresh of the live streams).
    #[serde(default)]
    past: bool,
}

impl Example for TryBody {
    const EXAMPLE: &'static str = r#"{"when": "user == \"bob\"", "past": true}"#;
}

/// `POST /api/rules/try` with `{"when": "..."}`: the condition compiled as a config's rule
/// and tried on every live stream; 400 with the error and its position when it does not
/// compile. Nothing is acted on.
async fn try_rule(
    State(board): State<Board>,
    ApiJson(TryBody { when, past }): ApiJson<TryBody>,
) -> Response {
    let streams = board.lab();
    let state = match board.audit() {
        AuditSource::State(path, _) if past => Some(path.clone()),
        _ => None,
    };
    let usage = board.usage_config().clone();
    // Compiling parses on a thread of its own (see rules::limits): off the async workers.
    let done = tokio::task::spawn_blocking(move || {
        let condition = Condition::compile(&when)?;
        let past = state.and_then(|p| past_week(&p, &condition, &usage));
        let tried: Vec<Tried> = streams
            .into_iter()
            .map(|s| Tried {
                trial: condition.try_on(&s.vars),
                session_id: s.session_id,
                user: s.user,
                title: s.title,
            })
            .collect();
        Ok::<_, crate::rules::lab::ConditionError>(
            json!({ "reads": condition.reads(), "streams": tried, "past": past }),
        )
    })
    .await;
    match done {
        Ok(Ok(answer)) => axum::Json(answer).into_response(),
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, axum::Json(e)).into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "trying the condition failed",
        ),
    }
}

/// What the condition would have matched over the last 7 days of recorded usage.
fn past_week(
    path: &std::path::Path,
    condition: &Condition,
    usage: &crate::config::UsageConfig,
) -> Option<serde_json::Value> {
    let state = crate::state::State::open_read_only(path).ok()?;
    let since = time::OffsetDateTime::now_utc().unix_timestamp() - 7 * 86_400;
    let rows = state.usage_rows(since).ok()?;
    let b = crate::engine::backtest::run(condition.rules(), &rows, usage, &[]);
    let r = b.rules.first()?;
    Some(json!({
        "days": 7,
        "periods": b.rounds,
        "streams": r.streams,
        "users": r.users,
        "unknown_periods": r.unknown_rounds,
        "unknown": r.unknown,
    }))
}

#[derive(serde::Deserialize)]
struct KillBody {
    session_id: String,
    message: Option<String>,
}

impl Example for KillBody {
    const EXAMPLE: &'static str = r#"{"session_id": "...", "message": "..."}"#;
}

/// `POST /api/streams/kill` with `{"session_id": "...", "message": "..."}`: the owner stops a
/// stream. Only with an HTTP token (the middleware has checked it), only as JSON and only
/// from this origin (so no other site can make the owner's browser post it), and through the
/// loop's enforcer: exemptions, the budget, never twice, dry run and the audit apply.
async fn kill_now(State(board): State<Board>, ApiJson(req): ApiJson<KillBody>) -> Response {
    let Some(kills) = board.kills().cloned() else {
        return error(
            StatusCode::FORBIDDEN,
            "killing from the page needs [http] token: set it, restart, and sign in with it",
        );
    };
    ask(
        kills,
        super::manual::KillRequest {
            session_id: req.session_id,
            message: req.message,
            throttle_rule: None,
            reply: tokio::sync::oneshot::channel().0,
        },
    )
    .await
}

#[derive(serde::Deserialize)]
struct ThrottleBody {
    session_id: String,
    rule: String,
}

impl Example for ThrottleBody {
    const EXAMPLE: &'static str = r#"{"session_id": "...", "rule": "..."}"#;
}

/// `POST /api/streams/throttle` `{"session_id": "...", "rule": "..."}`: the hook's rules
/// mode asks the daemon, which keeps throttles, to put a throttle rule's throttle on. The
/// daemon evaluates the rule on its own figures first.
async fn throttle_now(State(board): State<Board>, ApiJson(req): ApiJson<ThrottleBody>) -> Response {
    let Some(kills) = board.kills().cloned() else {
        return error(
            StatusCode::FORBIDDEN,
            "throttling on request needs [http] token: set it, restart, and send it",
        );
    };
    ask(
        kills,
        super::manual::KillRequest {
            session_id: req.session_id,
            message: None,
            throttle_rule: Some(req.rule),
            reply: tokio::sync::oneshot::channel().0,
        },
    )
    .await
}

/// Hands a request to the loop and answers with what became of it.
async fn ask(kills: super::manual::Requests, mut request: super::manual::KillRequest) -> Response {
    let (reply, answer) = tokio::sync::oneshot::channel();
    request.reply = reply;
    let sent = kills.send(super::manual::Request::Kill(request)).await;
    if sent.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    let answer = match tokio::time::timeout(std::time::Duration::from_secs(30), answer).await {
        Ok(Ok(a)) => a,
        _ => {
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                "no answer from the daemon's loop",
            );
        }
    };
    let status = answer.outcome.status();
    (status, axum::Json(answer)).into_response()
}
