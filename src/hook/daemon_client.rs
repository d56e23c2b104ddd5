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
