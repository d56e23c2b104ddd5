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

/// Asks the daemon to put throttle rule `rule`'s throttle on session `session_id`: its
/// answer (the audit's name for what became of it, and a line for people), or why it could
/// not be asked.
pub async fn throttle(
    listen: SocketAddr,
    token: Option<&Secret>,
    session_id: &str,
    rule: &str,
) -> Result<(String, String), String> {
    let host = reachable(listen);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client
        .post(format!("http://{host}/api/streams/throttle"))
        .header("content-type", "application/json")
        .body(serde_json::json!({"session_id": session_id, "rule": rule}).to_string());
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
    let body: serde_json::Value = serde_json::from_str(&text)
        .map_err(|_| format!("the daemon at {host} answered HTTP {status} without JSON"))?;
    let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    match (text("outcome"), text("error")) {
        (outcome, _) if !outcome.is_empty() => Ok((outcome, text("said"))),
        (_, error) => Err(format!(
            "the daemon at {host} answered HTTP {status}: {error}"
        )),
    }
}
