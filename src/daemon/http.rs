//! The daemon's local HTTP endpoint: `/metrics` (Prometheus text), `/api/streams` (JSON),
//! and the owner's page at `/` with its APIs (`page`). Off unless `[http] listen` is set.
//!
//! Connections are served here with hyper rather than by `axum::serve`, which has no limits,
//! so that no client can hold the endpoint: a request's headers must arrive within
//! [`HEADER_READ_TIMEOUT`] (from the connection's start, or from the end of the previous
//! response on a kept-alive one), a connection with no byte moving either way for
//! [`IDLE_TIMEOUT`] is closed, and at most [`MAX_CONNECTIONS`] are open at once; past that,
//! the open connection idle longest is closed to make room for the newcomer, so idle or slow
//! clients can never starve a scrape (nor use up the process's file descriptors).

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::config::Secret;
use crate::lock;

use super::Metrics;
pub use super::api::{ApiError, ApiJson, Example, Hosts, cross_site};
use super::board::Board;

/// How long a client has to send a request's headers, counted from the connection's start
/// or, on a kept-alive connection, from the end of the previous response. A kept-alive
/// connection that sends nothing more is closed after this long too.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection with no byte read or written for this long is closed (a client that stops
/// reading its response, say).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request's body may take to arrive, after its headers.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// The largest request body read (Tautulli's JSON is a few hundred bytes).
pub const MAX_BODY: usize = 1 << 20;

/// Connections open at once, at most.
pub const MAX_CONNECTIONS: usize = 128;

/// How long a newcomer waits for room when every open connection is in a request.
const ROOM_WAIT: Duration = Duration::from_secs(1);

/// Everything a request is served with.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub board: Board,
    /// `POST /api/tautulli`, when served.
    pub hooks: Option<super::webhook::Hooks>,
    /// The token every request must carry, when set.
    pub token: Option<Secret>,
    /// The Host names this endpoint answers to.
    pub hosts: Hosts,
}

/// The endpoint's routes and their guard, with no socket: `serve` runs it on a listener,
/// the tests call it with `tower::ServiceExt::oneshot`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/api/streams", get(streams_handler))
        .route("/api/tautulli", axum::routing::post(tautulli_handler))
        .with_state(state.clone())
        .merge(super::page::routes(state.board.clone()))
        .layer(axum::middleware::from_fn_with_state(state, guard))
}

/// Serves `router(state)` on `listener` until `stop` turns true. With a token, every request
/// must carry it (see [`authorised`]); without one, the listener is loopback (the config
/// refuses anything else).
pub fn serve(listener: TcpListener, state: AppState, stop: watch::Receiver<bool>) {
    let metrics = state.metrics.clone();
    let app = router(state);
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(%bound, "serving the page at /, /metrics and /api/streams");
    }
    tokio::spawn(accept(listener, app, metrics, stop));
}

/// In front of every route: a Host this endpoint is not gets 421; a request without the
/// token 401 (with a Basic challenge, so a browser asks); a request that changes anything
/// must be JSON from this origin (a form or a page of another site gets 403), which keeps
/// Tautulli's Webhook agent (JSON, no Origin) working.
async fn guard(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default();
    if !state.hosts.allows(host) {
        return ApiError::new(
            axum::http::StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this endpoint answers to its own address, localhost and the names in [http] hosts, not {:?}: add the name to [http] hosts",
                crate::enforce::escape(host)
            ),
        )
        .into_response();
    }
    if let Some(t) = state.token.as_ref()
        && !authorised(headers, t)
    {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"streamwarden\"")],
            "401: send the [http] token as Authorization: Bearer TOKEN (or, in a browser, as the password)\n",
        )
            .into_response();
    }
    // The rule lab's POST only tries a condition: it changes nothing, and another site
    // cannot read its answer.
    let changes = !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    ) && request.uri().path() != "/api/rules/try";
    if changes && let Some(refused) = cross_site(headers) {
        return ApiError::new(axum::http::StatusCode::FORBIDDEN, refused).into_response();
    }
    next.run(request).await
}

/// Whether the request carries the token: `Authorization: Bearer TOKEN`, or HTTP Basic
/// with any user name and the token as password. Compared in constant time.
pub fn authorised(headers: &axum::http::HeaderMap, token: &Secret) -> bool {
    use base64::Engine;
    use subtle::ConstantTimeEq;
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let given: Vec<u8> = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
            return false;
        };
        match decoded.iter().position(|b| *b == b':') {
            Some(i) => decoded[i + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    bool::from(given.ct_eq(token.expose().as_bytes()))
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
        s.metrics.encode(),
    )
}

async fn tautulli_handler(State(s): State<AppState>, body: axum::body::Bytes) -> impl IntoResponse {
    let (status, reply) = match s.hooks {
        Some(h) => super::webhook::handle(h, &body).await,
        None => (
            axum::http::StatusCode::NOT_FOUND,
            serde_json::json!({"error": "the Tautulli endpoint is off in this daemon"}),
        ),
    };
    (status, axum::Json(reply))
}

async fn streams_handler(State(s): State<AppState>) -> impl IntoResponse {
    axum::Json(s.board.rows())
}

/// One open connection, as the endpoint's limits see it.
struct Conn {
    id: u64,
    opened: Instant,
    /// Milliseconds from `opened` to the last byte read or written.
    last_io_ms: AtomicU64,
    /// Requests being handled now.
    busy: AtomicUsize,
    /// Told to close to make room for a newcomer.
    evict: Notify,
}

impl Conn {
    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_io_ms.store(ms, Ordering::Relaxed);
    }

    fn last_io(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_io_ms.load(Ordering::Relaxed))
    }

    /// Resolves once nothing has moved for [`IDLE_TIMEOUT`].
    async fn idle(&self) {
        loop {
            let deadline = self.last_io() + IDLE_TIMEOUT;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// The open connections by id (ids grow, so oldest first).
type Open = Arc<Mutex<BTreeMap<u64, Arc<Conn>>>>;

/// Accepts connections until `stop`, within the limits.
async fn accept(
    listener: TcpListener,
    app: Router,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let open: Open = Arc::default();
    let mut next_id: u64 = 0;
    let mut failing = false;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => {
                failing = false;
                tcp
            }
            Err(e) => {
                // Out of descriptors, or a connection gone before it was accepted: wait a
                // little and go on; said once until accepting works again.
                if !failing {
                    tracing::warn!("the HTTP endpoint cannot accept a connection: {e}");
                }
                failing = true;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(permit) = room(&slots, &open, &metrics).await else {
            metrics.dropped("refused");
            continue;
        };
        next_id += 1;
        let conn = Arc::new(Conn {
            id: next_id,
            opened: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            evict: Notify::new(),
        });
        lock(&open).insert(conn.id, conn.clone());
        metrics.http_connections.inc();
        let served = Served {
            conn: conn.clone(),
            open: open.clone(),
            metrics: metrics.clone(),
            _permit: permit,
        };
        tokio::spawn(connection(tcp, app.clone(), served, stop.clone()));
    }
}

/// A slot for one more connection: a free one, or one freed by closing the connection idle
/// longest; none when every connection is in a request for [`ROOM_WAIT`].
async fn room(
    slots: &Arc<Semaphore>,
    open: &Open,
    metrics: &Metrics,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = slots.clone().try_acquire_owned() {
        return Some(permit);
    }
    let victim = {
        let mut open = lock(open);
        let id = open
            .values()
            .filter(|c| c.busy.load(Ordering::Relaxed) == 0)
            .min_by_key(|c| (c.last_io(), c.id))
            .map(|c| c.id);
        id.and_then(|id| open.remove(&id))
    };
    if let Some(victim) = victim {
        metrics.dropped("evicted");
        victim.evict.notify_one();
    }
    tokio::time::timeout(ROOM_WAIT, slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// A connection's hold on the endpoint: its slot and its entry, given back when it ends.
struct Served {
    conn: Arc<Conn>,
    open: Open,
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Served {
    fn drop(&mut self) {
        lock(&self.open).remove(&self.conn.id);
        self.metrics.http_connections.dec();
    }
}

/// Counts a request in progress on its connection while it lives.
struct Busy(Arc<Conn>);

impl Busy {
    fn enter(conn: &Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        Busy(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one connection until it ends, or breaks a limit, or `stop`.
async fn connection(tcp: TcpStream, app: Router, served: Served, mut stop: watch::Receiver<bool>) {
    let conn = served.conn.clone();
    let io = TokioIo::new(Watched {
        io: tcp,
        conn: conn.clone(),
    });
    let app = TowerToHyperService::new(app);
    let on = conn.clone();
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let (app, on) = (app.clone(), on.clone());
        async move {
            // The whole body first, within its deadline and size, before the request counts
            // as in progress: a client that trickles it is evictable like an idle one, and
            // cut off after BODY_DEADLINE.
            let (parts, body) = req.into_parts();
            let body = axum::body::Body::new(body);
            let bytes =
                match tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, MAX_BODY))
                    .await
                {
                    Ok(Ok(b)) => b,
                    Ok(Err(_)) => {
                        return Ok(ApiError::new(
                            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                            format!("the body is over {} KiB, or broken", MAX_BODY >> 10),
                        )
                        .into_response());
                    }
                    Err(_) => {
                        return Ok(ApiError::new(
                            axum::http::StatusCode::REQUEST_TIMEOUT,
                            format!(
                                "the body did not arrive within {} s",
                                BODY_DEADLINE.as_secs()
                            ),
                        )
                        .into_response());
                    }
                };
            let busy = Busy::enter(&on);
            let req = hyper::Request::from_parts(parts, axum::body::Body::from(bytes));
            let response = app.call(req).await;
            drop(busy);
            response
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let http = builder.serve_connection(io, service);
    tokio::pin!(http);
    let mut stopping = false;
    loop {
        tokio::select! {
            done = http.as_mut() => {
                if let Err(e) = done {
                    if e.is_timeout() {
                        served.metrics.dropped("header-timeout");
                    }
                    tracing::debug!("HTTP connection closed: {e}");
                }
                return;
            }
            () = conn.idle() => {
                served.metrics.dropped("idle");
                return;
            }
            () = conn.evict.notified() => {
                if conn.busy.load(Ordering::Relaxed) == 0 {
                    return;
                }
                // In a request after all: it ends once its response is sent.
                http.as_mut().graceful_shutdown();
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                http.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A connection's socket that notes when bytes last moved.
struct Watched {
    io: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
