//! The daemon's local HTTP endpoint: `/metrics` (Prometheus text) and `/api/streams` (JSON).
//! Off unless `[http] listen` is set.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a stream's measured rate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub session: String,
    pub user: String,
    pub player: String,
    pub decision: String,
    pub window: String,
}

/// Labels of a counted action.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

/// Every metric the daemon exports; names start with `streamwarden_`.
pub struct Metrics {
    registry: Registry,
    pub measured_kbps: Family<StreamLabels, Gauge<f64, AtomicU64>>,
    pub streams: Gauge,
    pub kills: Family<RuleLabels, Counter>,
    pub would_kills: Family<RuleLabels, Counter>,
    pub kill_failures: Family<RuleLabels, Counter>,
    pub rule_evaluations: Counter,
    pub capture_packets: Counter,
    pub capture_drops: Counter,
    pub decode_skipped: Counter,
    pub poll_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("streamwarden");
        let m = Metrics {
            measured_kbps: Family::default(),
            streams: Gauge::default(),
            kills: Family::default(),
            would_kills: Family::default(),
            kill_failures: Family::default(),
            rule_evaluations: Counter::default(),
            capture_packets: Counter::default(),
            capture_drops: Counter::default(),
            decode_skipped: Counter::default(),
            poll_errors: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "stream_measured_kbps",
            "What each stream really sends, measured from packets, per window (kbps)",
            m.measured_kbps.clone(),
        );
        registry.register("streams", "Streams Plex lists", m.streams.clone());
        registry.register("kills", "Streams killed", m.kills.clone());
        registry.register(
            "would_kills",
            "Kills a dry run decided but did not send",
            m.would_kills.clone(),
        );
        registry.register(
            "kill_failures",
            "Kills that failed",
            m.kill_failures.clone(),
        );
        registry.register(
            "rule_evaluations",
            "Rule evaluations",
            m.rule_evaluations.clone(),
        );
        registry.register(
            "capture_packets",
            "Packets the capture received (pcap statistics)",
            m.capture_packets.clone(),
        );
        registry.register(
            "capture_drops",
            "Packets the kernel dropped (pcap statistics)",
            m.capture_drops.clone(),
        );
        registry.register(
            "decode_skipped",
            "Packets skipped as not TCP/IP, truncated or malformed",
            m.decode_skipped.clone(),
        );
        registry.register(
            "plex_poll_errors",
            "Failed reads of /status/sessions",
            m.poll_errors.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// What `/api/streams` serves: the daemon's latest view, replaced every second.
pub type Streams = Arc<RwLock<serde_json::Value>>;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    streams: Streams,
}

/// Binds `addr` and serves until `stop` resolves. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    streams: Streams,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/api/streams", get(streams_handler))
        .with_state(AppState { metrics, streams });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "the HTTP endpoint stopped");
        }
    });
    Ok(bound)
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
    let v = s
        .streams
        .read()
        .map(|v| v.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    axum::Json(v)
}
