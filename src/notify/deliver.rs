//! Sending one payload: a timeout on each attempt, a bounded number of attempts with
//! backoff (Retry-After honoured, within bounds), and errors that never carry the URL.

use std::time::Duration;

use reqwest::StatusCode;

use super::Target;
use super::format::{Body, Outgoing};

/// How a notification is sent: how long one attempt may take, how many attempts, and the
/// wait before the second (doubled for each next one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub timeout: Duration,
    pub attempts: u32,
    pub backoff: Duration,
}

impl Delivery {
    /// The daemon: nothing waits on it.
    pub const DAEMON: Delivery = Delivery {
        timeout: Duration::from_secs(5),
        attempts: 3,
        backoff: Duration::from_secs(1),
    };
    /// The hook: it must end well inside Tautulli's 30-second script timeout.
    pub const HOOK: Delivery = Delivery {
        timeout: Duration::from_secs(3),
        attempts: 2,
        backoff: Duration::from_millis(500),
    };
    /// `notify-test`: one attempt, so what the owner sees is what happened.
    pub const TEST: Delivery = Delivery {
        timeout: Duration::from_secs(5),
        attempts: 1,
        backoff: Duration::ZERO,
    };
}

/// The longest a Retry-After is waited for.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// The HTTP client notifications go through: no redirects (a webhook's body must not follow
/// one to another place), a short connect timeout.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(3))
        .user_agent(concat!("streamwarden/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", innermost(&e)))
}

/// One attempt's failure.
struct Fail {
    message: String,
    /// Worth another attempt.
    again: bool,
    /// How long the service asked to be left alone.
    after: Option<Duration>,
}

/// Sends `out` to `target`; the error says why the last attempt failed, without the URL.
pub async fn send(
    client: &reqwest::Client,
    target: &Target,
    out: &Outgoing,
    d: Delivery,
) -> Result<(), String> {
    let mut wait = d.backoff;
    let mut last = String::from("not tried");
    for attempt in 1..=d.attempts.max(1) {
        match once(client, target, out, d.timeout).await {
            Ok(()) => return Ok(()),
            Err(f) => {
                last = f.message;
                if !f.again || attempt >= d.attempts {
                    break;
                }
                tracing::debug!(
                    notify = %target.name,
                    "notification attempt {attempt} failed ({}); trying again",
                    target.redact(&last)
                );
                tokio::time::sleep(f.after.unwrap_or(wait).min(MAX_WAIT)).await;
                wait = wait.saturating_mul(2);
            }
        }
    }
    Err(target.redact(&last))
}

async fn once(
    client: &reqwest::Client,
    target: &Target,
    out: &Outgoing,
    timeout: Duration,
) -> Result<(), Fail> {
    let mut req = client.post(target.url.clone()).timeout(timeout);
    for (k, v) in &out.headers {
        req = req.header(*k, v.as_str());
    }
    req = match &out.body {
        Body::Json(v) => req.body(serde_json::to_vec(v).map_err(|e| Fail {
            message: format!("cannot encode the payload: {e}"),
            again: false,
            after: None,
        })?),
        Body::Text(t) => req.body(t.clone()),
    };
    let resp = req.send().await.map_err(|e| Fail {
        message: describe(&e, timeout),
        again: true,
        after: None,
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok());
    let text = tokio::time::timeout(Duration::from_secs(2), resp.text())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let said = super::format::clip(crate::enforce::escape(text.trim()).as_ref(), 200);
    let mut message = format!("HTTP {}", status.as_u16());
    if let Some(r) = status.canonical_reason() {
        message.push(' ');
        message.push_str(r);
    }
    if status.is_redirection() {
        message.push_str(" (a redirect: give the URL it leads to, https:// perhaps)");
    } else if !said.is_empty() {
        message.push_str(&format!(": {said}"));
    }
    Err(Fail {
        message,
        again: status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT,
        after,
    })
}

/// A request error in words, without the URL reqwest puts in its own.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", timeout.as_secs_f64());
    }
    let cause = innermost(e);
    if e.is_connect() {
        format!("cannot connect: {cause}")
    } else {
        format!("the request failed: {cause}")
    }
}

/// The deepest cause of an error (reqwest's own message names the URL).
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    if std::ptr::addr_eq(cur, e) {
        return "unknown error".into();
    }
    cur.to_string()
}
