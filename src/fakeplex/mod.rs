//! A stand-in Plex Media Server: a real HTTP server on 127.0.0.1 with Plex's routes, serving
//! the session list it is given and recording what it is asked. `demo` runs against it, and
//! so do the tests, with the real responses from Plex servers as its bodies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get};

use crate::lock;

/// What the fake server answers and what it saw.
#[derive(Debug, Default)]
pub struct PlexState {
    /// The `/status/sessions` body; a terminated session is removed from it when
    /// `remove_on_kill`.
    pub sessions_body: String,
    pub plex_pass: bool,
    /// Answer /status/sessions with this status and body instead.
    pub sessions_failure: Option<(u16, String)>,
    /// (sessionId, reason) of every terminate received.
    pub terminates: Vec<(String, String)>,
    /// When each terminate arrived.
    pub terminate_times: Vec<Instant>,
    pub deleted_transcodes: Vec<String>,
    /// Every request path with its query (sorted), in order.
    pub requests: Vec<String>,
    /// Every X-Plex-Client-Identifier seen.
    pub client_ids: Vec<String>,
    /// `/library/metadata/{ratingKey}` bodies.
    pub metadata: HashMap<String, String>,
    /// Remove a session from the listing once it is terminated.
    pub remove_on_kill: bool,
    /// Answer this many terminates with a 500 (they take no effect).
    pub terminate_failures: u32,
    /// Answer a terminate only after this long (it still takes effect at once).
    pub terminate_delay: Option<Duration>,
    /// Answer /status/sessions only after this long.
    pub sessions_delay: Option<Duration>,
    /// Print each terminate as the viewer would see it (the demo).
    pub announce: bool,
    /// `/statistics/bandwidth`: bytes a second sent to each device (by Player
    /// `machineIdentifier`) while a session of it is listed.
    pub bandwidth_rates: HashMap<String, u64>,
    /// `/statistics/bandwidth`: each device's bytes in given seconds (unix seconds), served
    /// instead of its rate while a session of it is listed.
    pub bandwidth_series: HashMap<String, std::collections::BTreeMap<i64, u64>>,
    /// Answer /statistics/bandwidth with this status instead (401, 403, 404: no Plex Pass).
    pub bandwidth_failure: Option<u16>,
    /// The newest second served is this many seconds before now (Plex's rows come late).
    pub bandwidth_lag_secs: i64,
    /// Refuse the event stream (`/:/websockets/notifications` answers 404), as an older
    /// Plex or a proxy without WebSockets does.
    pub events_refused: bool,
    /// The device ids handed out, by client identifier.
    device_ids: HashMap<String, i64>,
}

/// A running fake server; it stops when dropped.
pub struct FakePlex {
    pub url: String,
    pub token: String,
    pub state: Arc<Mutex<PlexState>>,
    /// The event stream's messages, to every open WebSocket.
    events: tokio::sync::broadcast::Sender<String>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

#[derive(Clone)]
struct Shared {
    token: String,
    state: Arc<Mutex<PlexState>>,
    events: tokio::sync::broadcast::Sender<String>,
}

/// The message that makes the fake close every open event stream (never sent to clients).
const CLOSE: &str = "\u{0}close";

/// A `playing` notification, as Plex sends it on its event stream when a play session
/// changes state ("playing", "paused", "buffering", "stopped").
pub fn playing(session_key: &str, state: &str) -> String {
    serde_json::json!({
        "NotificationContainer": {
            "type": "playing",
            "size": 1,
            "PlaySessionStateNotification": [{
                "sessionKey": session_key,
                "clientIdentifier": "fake-client",
                "guid": "",
                "ratingKey": "1",
                "url": "",
                "key": "/library/metadata/1",
                "viewOffset": 0,
                "playQueueItemID": 1,
                "state": state,
            }],
        }
    })
    .to_string()
}

impl FakePlex {
    /// Starts a server listing `sessions_body`, with a Plex Pass, that accepts `token`. It
    /// runs on a thread of its own, so it serves synchronous tests and async callers alike.
    pub fn spawn(sessions_body: &str, token: &str) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(PlexState {
            sessions_body: sessions_body.to_string(),
            plex_pass: true,
            remove_on_kill: true,
            bandwidth_lag_secs: 2,
            ..Default::default()
        }));
        let (events, _) = tokio::sync::broadcast::channel(256);
        let shared = Shared {
            token: token.to_string(),
            state: state.clone(),
            events: events.clone(),
        };
        // Plex's own path has a segment starting with ':', which axum reads as a capture
        // unless told otherwise.
        let app = Router::new()
            .without_v07_checks()
            .route("/", get(root))
            .route("/status/sessions", get(sessions))
            .route("/status/sessions/terminate", get(terminate))
            .route("/library/metadata/{key}", get(metadata))
            .route("/statistics/bandwidth", get(bandwidth))
            .route("/transcode/sessions/{key}", delete(delete_transcode))
            .route("/:/websockets/notifications", get(notifications))
            .with_state(shared);
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("fake-plex".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                });
            })?;
        Ok(Self {
            url: format!("http://{addr}"),
            token: token.to_string(),
            state,
            events,
            _shutdown: tx,
        })
    }

    /// Sends a message on the event stream to every client listening; how many listen.
    pub fn announce(&self, message: &str) -> usize {
        self.events.send(message.to_string()).unwrap_or(0)
    }

    /// How many clients listen to the event stream.
    pub fn event_listeners(&self) -> usize {
        self.events.receiver_count()
    }

    /// Closes every open event stream (clients see it drop).
    pub fn drop_event_streams(&self) {
        let _ = self.events.send(CLOSE.to_string());
    }

    /// (sessionId, reason) of every terminate so far.
    pub fn terminates(&self) -> Vec<(String, String)> {
        lock(&self.state).terminates.clone()
    }

    /// Changes what the server answers.
    pub fn set(&self, f: impl FnOnce(&mut PlexState)) {
        f(&mut lock(&self.state));
    }

    /// Whether the session list still holds this Session id.
    pub fn lists(&self, session_id: &str) -> bool {
        lock(&self.state)
            .sessions_body
            .contains(&format!("id=\"{session_id}\""))
    }
}

/// Records the request; whether it carries the right token.
fn authorised(
    s: &Shared,
    headers: &HeaderMap,
    path: &str,
    query: &HashMap<String, String>,
) -> bool {
    let mut st = lock(&s.state);
    let mut line = path.to_string();
    if !query.is_empty() {
        let mut q: Vec<_> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        q.sort();
        line.push('?');
        line.push_str(&q.join("&"));
    }
    st.requests.push(line);
    if let Some(id) = headers
        .get("X-Plex-Client-Identifier")
        .and_then(|v| v.to_str().ok())
    {
        st.client_ids.push(id.to_string());
    }
    headers.get("X-Plex-Token").and_then(|v| v.to_str().ok()) == Some(s.token.as_str())
}

fn unauthorised() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Html("<html><head><title>Unauthorized</title></head><body><h1>401 Unauthorized</h1></body></html>"),
    )
        .into_response()
}

/// `/:/websockets/notifications`: Plex's event stream, fed by [`FakePlex::announce`].
async fn notifications(
    State(s): State<Shared>,
    headers: HeaderMap,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    if !authorised(&s, &headers, "/:/websockets/notifications", &HashMap::new()) {
        return unauthorised();
    }
    if lock(&s.state).events_refused {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut rx = s.events.subscribe();
    ws.on_upgrade(|mut socket| async move {
        use axum::extract::ws::Message;
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Ok(text) if text == CLOSE => break,
                    Ok(text) => {
                        if socket.send(Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
                m = socket.recv() => if !matches!(m, Some(Ok(_))) {
                    break;
                },
            }
        }
        let _ = socket.send(Message::Close(None)).await;
    })
}

async fn root(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if !authorised(&s, &headers, "/", &HashMap::new()) {
        return unauthorised();
    }
    let pass = lock(&s.state).plex_pass;
    let (features, sub) = if pass {
        ("webhooks,session_kick,camera_upload", "1")
    } else {
        ("camera_upload", "0")
    };
    format!(r#"<?xml version="1.0" encoding="UTF-8"?><MediaContainer size="0" friendlyName="fake" myPlexSubscription="{sub}" ownerFeatures="{features}" version="1.40.0"></MediaContainer>"#).into_response()
}

async fn sessions(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if !authorised(&s, &headers, "/status/sessions", &HashMap::new()) {
        return unauthorised();
    }
    let (failure, body, delay) = {
        let st = lock(&s.state);
        (
            st.sessions_failure.clone(),
            st.sessions_body.clone(),
            st.sessions_delay,
        )
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if let Some((code, body)) = failure {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (code, body).into_response();
    }
    body.into_response()
}

async fn terminate(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorised(&s, &headers, "/status/sessions/terminate", &q) {
        return unauthorised();
    }
    match record_terminate(&s, &q) {
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
    s: &Shared,
    q: &HashMap<String, String>,
) -> Result<Option<Duration>, StatusCode> {
    let mut st = lock(&s.state);
    if !st.plex_pass {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let id = q.get("sessionId").cloned().unwrap_or_default();
    let reason = q.get("reason").cloned().unwrap_or_default();
    if id.is_empty() {
        return Err(StatusCode::BAD_REQUEST);
    }
    if !st.sessions_body.contains(&format!("id=\"{id}\"")) {
        return Err(StatusCode::NOT_FOUND);
    }
    if st.terminate_failures > 0 {
        st.terminate_failures -= 1;
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    if st.announce {
        let user = crate::plex::session::parse_sessions(&st.sessions_body)
            .ok()
            .and_then(|all| {
                all.into_iter()
                    .find(|x| x.session_id.as_deref() == Some(id.as_str()))
            })
            .and_then(|x| x.user)
            .unwrap_or_else(|| "?".into());
        println!("simulated Plex: stopped {user}'s stream; the player shows: \"{reason}\"");
    }
    st.terminates.push((id.clone(), reason));
    st.terminate_times.push(Instant::now());
    if st.remove_on_kill {
        // Plex announces the stop on its event stream.
        let key = crate::plex::session::parse_sessions(&st.sessions_body)
            .ok()
            .and_then(|all| {
                all.into_iter()
                    .find(|x| x.session_id.as_deref() == Some(id.as_str()))
            })
            .and_then(|x| x.session_key);
        st.sessions_body = remove_session(&st.sessions_body, &id);
        if let Some(key) = key {
            let _ = s.events.send(playing(&key, "stopped"));
        }
    }
    Ok(st.terminate_delay)
}

/// Removes the item holding `<Session id="ID">` from a sessions body.
pub fn remove_session(body: &str, id: &str) -> String {
    let needle = format!("id=\"{id}\"");
    let Some(at) = body.find(&needle) else {
        return body.to_string();
    };
    let start = ["<Video ", "<Track ", "<Photo "]
        .iter()
        .filter_map(|t| body[..at].rfind(t))
        .max()
        .unwrap_or(0);
    let end = ["</Video>", "</Track>", "</Photo>"]
        .iter()
        .filter_map(|t| body[at..].find(t).map(|p| at + p + t.len()))
        .min()
        .unwrap_or(body.len());
    format!("{}{}", &body[..start], &body[end..])
}

async fn metadata(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let path = format!("/library/metadata/{key}");
    if !authorised(&s, &headers, &path, &HashMap::new()) {
        return unauthorised();
    }
    match lock(&s.state).metadata.get(&key) {
        Some(b) => b.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn delete_transcode(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let path = format!("/transcode/sessions/{key}");
    if !authorised(&s, &headers, &path, &HashMap::new()) {
        return unauthorised();
    }
    lock(&s.state).deleted_transcodes.push(key);
    StatusCode::OK.into_response()
}

/// The newest rows the fake serves go back this far.
const BANDWIDTH_SPAN_SECS: i64 = 120;

fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `/statistics/bandwidth?timespan=6[&at>=SINCE]`, consistent with the listed sessions:
/// for each listed session's device (account, device, LAN or not) its series or rate, per
/// second, up to `bandwidth_lag_secs` before now. Several sessions of one device are summed,
/// as Plex counts them.
async fn bandwidth(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorised(&s, &headers, "/statistics/bandwidth", &q) {
        return unauthorised();
    }
    if q.get("timespan").map(String::as_str) != Some("6") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let since = q.get("at>").and_then(|v| v.parse::<i64>().ok());
    let mut st = lock(&s.state);
    if let Some(code) = st.bandwidth_failure {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (code, Html("<html><body>no</body></html>")).into_response();
    }
    if !st.plex_pass {
        return unauthorised();
    }
    let sessions = crate::plex::session::parse_sessions(&st.sessions_body).unwrap_or_default();
    let newest = now - st.bandwidth_lag_secs;
    let oldest = since.unwrap_or(i64::MIN).max(now - BANDWIDTH_SPAN_SECS);
    type Key = (i64, i64, bool);
    let mut rows: std::collections::BTreeMap<Key, std::collections::BTreeMap<i64, u64>> =
        Default::default();
    let mut devices: Vec<(i64, &crate::plex::Session)> = Vec::new();
    let mut accounts: Vec<(i64, String)> = Vec::new();
    let mut from_series: std::collections::HashSet<Key> = Default::default();
    for x in &sessions {
        let (Some(machine), Some(account)) = (&x.machine_identifier, x.user_id) else {
            continue;
        };
        let next = 100 + st.device_ids.len() as i64;
        let device = *st.device_ids.entry(machine.clone()).or_insert(next);
        if !devices.iter().any(|(d, _)| *d == device) {
            devices.push((device, x));
        }
        if !accounts.iter().any(|(a, _)| *a == account) {
            accounts.push((account, x.user.clone().unwrap_or_default()));
        }
        let key = (account, device, x.location.as_deref() != Some("wan"));
        if let Some(series) = st.bandwidth_series.get(machine) {
            if from_series.insert(key) {
                let out = rows.entry(key).or_default();
                for (at, b) in series.range(oldest..=newest) {
                    out.insert(*at, *b);
                }
            }
        } else if let Some(rate) = st.bandwidth_rates.get(machine) {
            let out = rows.entry(key).or_default();
            for at in oldest..=newest {
                *out.entry(at).or_default() += rate;
            }
        }
    }
    let mut body = String::from(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let size: usize = rows.values().map(|r| r.len()).sum();
    body.push_str(&format!(r#"<MediaContainer size="{size}">"#));
    for (id, x) in &devices {
        body.push_str(&format!(
            r#"<Device id="{id}" name="{}" platform="{}" clientIdentifier="{}" createdAt="1700000000" />"#,
            xml_attr(x.player.as_deref().unwrap_or("")),
            xml_attr(x.platform.as_deref().unwrap_or("")),
            xml_attr(x.machine_identifier.as_deref().unwrap_or("")),
        ));
    }
    for (id, name) in &accounts {
        body.push_str(&format!(
            r#"<Account id="{id}" key="/accounts/{id}" name="{}" defaultAudioLanguage="en" autoSelectAudio="1" defaultSubtitleLanguage="en" subtitleMode="0" thumb="" />"#,
            xml_attr(name)
        ));
    }
    for ((account, device, lan), series) in &rows {
        for (at, bytes) in series {
            body.push_str(&format!(
                r#"<StatisticsBandwidth accountID="{account}" deviceID="{device}" timespan="6" at="{at}" lan="{}" bytes="{bytes}" />"#,
                u8::from(*lan)
            ));
        }
    }
    body.push_str("</MediaContainer>");
    body.into_response()
}
