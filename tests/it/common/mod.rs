//! A fake Plex Media Server for tests: a real HTTP server on 127.0.0.1:0 serving the real
//! responses from ../shared/fixtures/plex and recording every terminate.

pub mod capture;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

pub const TOKEN: &str = "tok-SECRET-4f9a1c";

pub fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../shared/fixtures/plex/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What the fake server answers and what it saw.
#[derive(Default)]
pub struct PlexState {
    pub sessions_body: String,
    pub plex_pass: bool,
    /// Answer /status/sessions with this status and body instead.
    pub sessions_failure: Option<(u16, String)>,
    /// (sessionId, reason) of every terminate received.
    pub terminates: Vec<(String, String)>,
    pub deleted_transcodes: Vec<String>,
    /// Every request path with its query.
    pub requests: Vec<String>,
    /// Every X-Plex-Client-Identifier seen.
    pub client_ids: Vec<String>,
    /// Metadata bodies by ratingKey.
    pub metadata: HashMap<String, String>,
    /// Remove a session from the listing once it is terminated.
    pub remove_on_kill: bool,
    /// Answer a terminate only after this long (it still takes effect at once).
    pub terminate_delay: Option<std::time::Duration>,
    /// Answer /status/sessions only after this long.
    pub sessions_delay: Option<std::time::Duration>,
    /// When each terminate arrived.
    pub terminate_times: Vec<std::time::Instant>,
}

pub struct FakePlex {
    pub url: String,
    pub state: Arc<Mutex<PlexState>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl FakePlex {
    pub fn start(sessions_body: &str) -> Self {
        let state = Arc::new(Mutex::new(PlexState {
            sessions_body: sessions_body.to_string(),
            plex_pass: true,
            remove_on_kill: true,
            ..Default::default()
        }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = Router::new()
                    .route("/", get(root))
                    .route("/status/sessions", get(sessions))
                    .route("/status/sessions/terminate", get(terminate))
                    .route("/library/metadata/{key}", get(metadata))
                    .route(
                        "/transcode/sessions/{key}",
                        axum::routing::delete(delete_transcode),
                    )
                    .with_state(st);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        Self {
            url: format!("http://{addr}"),
            state,
            _shutdown: tx,
        }
    }

    pub fn terminates(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().terminates.clone()
    }

    pub fn set(&self, f: impl FnOnce(&mut PlexState)) {
        f(&mut self.state.lock().unwrap());
    }
}

type St = State<Arc<Mutex<PlexState>>>;

fn authorised(
    st: &St,
    headers: &HeaderMap,
    path: &str,
    query: &HashMap<String, String>,
) -> Result<(), Box<Response>> {
    let mut s = st.lock().unwrap();
    let mut line = path.to_string();
    if !query.is_empty() {
        let mut q: Vec<_> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        q.sort();
        line.push('?');
        line.push_str(&q.join("&"));
    }
    s.requests.push(line);
    if let Some(id) = headers
        .get("X-Plex-Client-Identifier")
        .and_then(|v| v.to_str().ok())
    {
        s.client_ids.push(id.to_string());
    }
    let token = headers.get("X-Plex-Token").and_then(|v| v.to_str().ok());
    if token != Some(TOKEN) {
        return Err((
            StatusCode::UNAUTHORIZED,
            Html("<html><head><title>Unauthorized</title></head><body><h1>401 Unauthorized</h1></body></html>"),
        )
            .into_response()
            .into());
    }
    Ok(())
}

async fn root(st: St, headers: HeaderMap) -> Response {
    if let Err(r) = authorised(&st, &headers, "/", &HashMap::new()) {
        return *r;
    }
    let pass = st.lock().unwrap().plex_pass;
    let features = if pass {
        "webhooks,session_kick,camera_upload"
    } else {
        "camera_upload"
    };
    let sub = if pass { "1" } else { "0" };
    format!(r#"<?xml version="1.0" encoding="UTF-8"?><MediaContainer size="0" friendlyName="fake" myPlexSubscription="{sub}" ownerFeatures="{features}" version="1.40.0"></MediaContainer>"#).into_response()
}

async fn sessions(st: St, headers: HeaderMap) -> Response {
    if let Err(r) = authorised(&st, &headers, "/status/sessions", &HashMap::new()) {
        return *r;
    }
    let (failure, body, delay) = {
        let s = st.lock().unwrap();
        (
            s.sessions_failure.clone(),
            s.sessions_body.clone(),
            s.sessions_delay,
        )
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if let Some((code, body)) = failure {
        return (StatusCode::from_u16(code).unwrap(), body).into_response();
    }
    body.into_response()
}

async fn terminate(
    st: St,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorised(&st, &headers, "/status/sessions/terminate", &q) {
        return *r;
    }
    let outcome = record_terminate(&st, &q);
    match outcome {
        Ok(delay) => {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            StatusCode::OK.into_response()
        }
        Err(StatusCode::UNAUTHORIZED) => (
            StatusCode::UNAUTHORIZED,
            Html("<html><body>401</body></html>"),
        )
            .into_response(),
        Err(code) => code.into_response(),
    }
}

fn record_terminate(
    st: &St,
    q: &HashMap<String, String>,
) -> Result<Option<std::time::Duration>, StatusCode> {
    let mut s = st.lock().unwrap();
    if !s.plex_pass {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let id = q.get("sessionId").cloned().unwrap_or_default();
    let reason = q.get("reason").cloned().unwrap_or_default();
    if id.is_empty() {
        return Err(StatusCode::BAD_REQUEST);
    }
    let needle = format!("id=\"{id}\"");
    if !s.sessions_body.contains(&needle) {
        return Err(StatusCode::NOT_FOUND);
    }
    s.terminates.push((id.clone(), reason));
    s.terminate_times.push(std::time::Instant::now());
    if s.remove_on_kill {
        s.sessions_body = remove_session(&s.sessions_body, &id);
    }
    Ok(s.terminate_delay)
}

/// Removes the item holding `<Session id="ID">` from a sessions body.
pub fn remove_session(body: &str, id: &str) -> String {
    let needle = format!("id=\"{id}\"");
    let Some(at) = body.find(&needle) else {
        return body.to_string();
    };
    let starts = ["<Video ", "<Track ", "<Photo "];
    let start = starts
        .iter()
        .filter_map(|t| body[..at].rfind(t))
        .max()
        .unwrap_or(0);
    let ends = ["</Video>", "</Track>", "</Photo>"];
    let end = ends
        .iter()
        .filter_map(|t| body[at..].find(t).map(|p| at + p + t.len()))
        .min()
        .unwrap_or(body.len());
    format!("{}{}", &body[..start], &body[end..])
}

async fn metadata(st: St, headers: HeaderMap, Path(key): Path<String>) -> Response {
    if let Err(r) = authorised(
        &st,
        &headers,
        &format!("/library/metadata/{key}"),
        &HashMap::new(),
    ) {
        return *r;
    }
    match st.lock().unwrap().metadata.get(&key) {
        Some(b) => b.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn delete_transcode(st: St, headers: HeaderMap, Path(key): Path<String>) -> Response {
    if let Err(r) = authorised(
        &st,
        &headers,
        &format!("/transcode/sessions/{key}"),
        &HashMap::new(),
    ) {
        return *r;
    }
    st.lock().unwrap().deleted_transcodes.push(key);
    StatusCode::OK.into_response()
}

/// A sessions body from the fixtures holding several killable streams:
/// ha_session_base (user 7, 720p video copy / audio transcode, 6000 kbps, Session
/// session_id_1), homarr (user 1, 1080p, 20231 kbps), plexopedia (user 1, FLAC direct
/// play) and go_plex_client (no Session elements: not killable).
pub fn mixed_sessions() -> String {
    let items = |body: String| -> String {
        let start = body.find('>').map(|i| i + 1).unwrap_or(0);
        let start = if body.trim_start().starts_with("<?xml") {
            let after = body.find("<MediaContainer").unwrap();
            body[after..].find('>').unwrap() + after + 1
        } else {
            start
        };
        let end = body.rfind("</MediaContainer>").unwrap();
        body[start..end].to_string()
    };
    let mut all = String::from("<MediaContainer size=\"5\">");
    all.push_str(&items(
        fixture("ha_session_base.xml").replace("{user_id}", "7"),
    ));
    all.push_str(&items(fixture("homarr_sessions_transcode_audio_only.xml")));
    all.push_str(&items(fixture("plexopedia_sessions_track_directplay.xml")));
    all.push_str(&items(fixture(
        "go_plex_client_sessions_track_and_transcode.xml",
    )));
    all.push_str("</MediaContainer>");
    all
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_streamwarden"))
}

/// Runs the binary with PLEX_URL/PLEX_TOKEN and a clean environment, in `dir`.
pub fn run(dir: &std::path::Path, url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("PLEX_URL", url)
        .env("PLEX_TOKEN", token)
        .output()
        .expect("run streamwarden")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the token appears in neither stream of the output.
pub fn assert_no_token(o: &Output) {
    let all = format!("{}{}", stdout(o), stderr(o));
    assert!(!all.contains(TOKEN), "the token leaked into output:\n{all}");
}

/// A real HTTP server on 127.0.0.1:0 running any router, on its own thread; it stops
/// when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub url: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// Starts `app` on 127.0.0.1:0 and returns once it accepts connections.
pub fn serve(app: Router) -> TestServer {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
    });
    let addr = addr_rx.recv().unwrap();
    TestServer {
        addr,
        url: format!("http://{addr}"),
        _shutdown: tx,
    }
}
