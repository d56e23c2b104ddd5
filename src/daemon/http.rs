//! The daemon's local HTTP endpoint: `/metrics` (Prometheus text) and `/api/streams`
//! (JSON). Off unless `[http] listen` is set.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::engine::row::StreamRow;

use super::Metrics;

/// What `/api/streams` serves: the daemon's latest rows, replaced every round.
pub type Rows = Arc<Mutex<Vec<StreamRow>>>;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    rows: Rows,
}

/// Serves on `listener` until `stop` turns true.
pub fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    rows: Rows,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/api/streams", get(streams_handler))
        .with_state(AppState { metrics, rows });
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(%bound, "serving /metrics and /api/streams");
    }
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %e, "the HTTP endpoint stopped");
        }
    });
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn streams_handler(State(s): State<AppState>) -> impl IntoResponse {
    let rows = crate::lock(&s.rows).clone();
    axum::Json(rows)
}
