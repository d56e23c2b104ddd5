//! `streamwarden demo`: the whole pipeline with nothing but this repository. A simulated
//! Plex server on loopback lists a handful of streams; simulated traffic, paced in real
//! time, goes through the same meter as captured packets; the example rules are applied and
//! kills land on the simulated server, which shows their messages.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use etherparse::PacketBuilder;

use crate::capture::Packet;
use crate::engine::Metering;

/// One simulated stream.
#[derive(Debug, Clone)]
pub struct SimStream {
    pub session_id: Option<&'static str>,
    pub user: &'static str,
    pub client: [u8; 4],
    pub client_port: u16,
    /// What the client sends at the start of its connection (plaintext HTTP), if anything.
    pub request: Option<&'static str>,
    pub kbps: u64,
    /// The `<Video>`/`<Track>` element Plex would list for it.
    pub xml: &'static str,
}

/// The simulated server's address of its own end of every connection.
pub const SERVER: [u8; 4] = [10, 0, 0, 2];

/// The demo's streams: a direct play, a 4K transcode, two viewers behind one address and a
/// music track without a Session element.
pub fn streams() -> Vec<SimStream> {
    vec![
        SimStream {
            session_id: Some("demo-alice"),
            user: "alice",
            client: [192, 168, 1, 20],
            client_port: 51000,
            request: Some(
                "GET /library/parts/101/1700000000/file.mkv HTTP/1.1\r\nHost: plex\r\n\r\n",
            ),
            kbps: 8_000,
            xml: r#"<Video sessionKey="11" ratingKey="101" type="movie" title="Big Buck Bunny" librarySectionTitle="Movies">
  <Media id="1101" bitrate="8000" videoResolution="1080" selected="1"><Part id="101" decision="directplay" selected="1"/></Media>
  <User id="2" title="alice"/>
  <Player address="192.168.1.20" title="Living Room TV" platform="Roku" product="Plex for Roku" state="playing" local="1" relayed="0"/>
  <Session id="demo-alice" bandwidth="8500" location="lan"/>
</Video>"#,
        },
        SimStream {
            session_id: Some("demo-bob"),
            user: "bob",
            client: [198, 51, 100, 20],
            client_port: 52000,
            request: None,
            kbps: 12_000,
            xml: r#"<Video sessionKey="12" ratingKey="102" type="movie" title="Planet Earth II" librarySectionTitle="4K Movies">
  <Media id="1102" bitrate="12000" videoResolution="1080" selected="1">
    <Part id="102" decision="transcode" selected="1"><Stream streamType="1" decision="transcode"/><Stream streamType="2" decision="copy"/></Part>
  </Media>
  <User id="3" title="bob"/>
  <Player address="198.51.100.20" title="Bob's Phone" platform="Android" product="Plex for Android (Mobile)" state="playing" local="0" relayed="0"/>
  <Session id="demo-bob" bandwidth="13000" location="wan"/>
  <TranscodeSession key="/transcode/sessions/demo-bob-tc" videoDecision="transcode" audioDecision="copy" throttled="0" speed="1.4"/>
</Video>"#,
        },
        SimStream {
            session_id: Some("demo-carol"),
            user: "carol",
            client: [203, 0, 113, 5],
            client_port: 53001,
            request: Some(
                "GET /library/parts/103/1700000000/file.mkv HTTP/1.1\r\nHost: plex\r\n\r\n",
            ),
            kbps: 4_000,
            xml: r#"<Video sessionKey="13" ratingKey="103" type="episode" title="Pilot" grandparentTitle="The Office" librarySectionTitle="TV Shows">
  <Media id="1103" bitrate="4000" videoResolution="1080" selected="1"><Part id="103" decision="directplay" selected="1"/></Media>
  <User id="4" title="carol"/>
  <Player address="203.0.113.5" title="Carol's Laptop" platform="Chrome" product="Plex Web" state="playing" local="0" relayed="0"/>
  <Session id="demo-carol" bandwidth="4500" location="wan"/>
</Video>"#,
        },
        SimStream {
            session_id: Some("demo-dave"),
            user: "dave",
            client: [203, 0, 113, 5],
            client_port: 53002,
            request: Some(
                "GET /video/:/transcode/universal/session/demo-dave-tc/base/00001.ts HTTP/1.1\r\nHost: plex\r\n\r\n",
            ),
            kbps: 3_000,
            xml: r#"<Video sessionKey="14" ratingKey="104" type="episode" title="Good News About Hell" grandparentTitle="Severance" librarySectionTitle="TV Shows">
  <Media id="1104" bitrate="3000" videoResolution="720" selected="1"><Part id="104" decision="transcode" selected="1"/></Media>
  <User id="5" title="dave"/>
  <Player address="203.0.113.5" title="Dave's Tablet" platform="iOS" product="Plex for iOS" state="playing" local="0" relayed="0"/>
  <Session id="demo-dave" bandwidth="3500" location="wan"/>
  <TranscodeSession key="/transcode/sessions/demo-dave-tc" videoDecision="transcode" audioDecision="transcode" throttled="0" speed="2.0"/>
</Video>"#,
        },
        SimStream {
            session_id: None,
            user: "erin",
            client: [192, 168, 1, 30],
            client_port: 54000,
            request: None,
            kbps: 320,
            xml: r#"<Track sessionKey="15" ratingKey="105" type="track" title="Clair de Lune" grandparentTitle="Debussy" librarySectionTitle="Music">
  <Media id="1105" bitrate="320" selected="1"><Part id="105" decision="directplay" selected="1"/></Media>
  <User id="6" title="erin"/>
  <Player address="192.168.1.30" title="Plexamp" platform="Linux" product="Plexamp" state="playing" local="1" relayed="0"/>
</Track>"#,
        },
    ]
}

/// The library's view of each item's source file.
fn metadata(rating_key: &str) -> Option<&'static str> {
    Some(match rating_key {
        "101" => {
            r#"<MediaContainer size="1"><Video ratingKey="101"><Media id="1101" bitrate="8000" videoResolution="1080"/></Video></MediaContainer>"#
        }
        "102" => {
            r#"<MediaContainer size="1"><Video ratingKey="102"><Media id="1102" bitrate="60000" videoResolution="4k"/></Video></MediaContainer>"#
        }
        "103" => {
            r#"<MediaContainer size="1"><Video ratingKey="103"><Media id="1103" bitrate="4000" videoResolution="1080"/></Video></MediaContainer>"#
        }
        "104" => {
            r#"<MediaContainer size="1"><Video ratingKey="104"><Media id="1104" bitrate="2500" videoResolution="1080"/></Video></MediaContainer>"#
        }
        "105" => {
            r#"<MediaContainer size="1"><Track ratingKey="105"><Media id="1105" bitrate="320"/></Track></MediaContainer>"#
        }
        _ => return None,
    })
}

/// A stream the simulated server was asked to stop.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub session_id: String,
    pub user: String,
    pub message: String,
}

/// The simulated Plex server.
pub struct SimPlex {
    pub url: String,
    pub token: String,
    alive: Arc<Mutex<Vec<SimStream>>>,
    stopped: Arc<Mutex<Vec<Stopped>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Clone)]
struct SimState {
    token: String,
    alive: Arc<Mutex<Vec<SimStream>>>,
    stopped: Arc<Mutex<Vec<Stopped>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimPlex {
    /// Starts the server on 127.0.0.1 (a free port).
    pub async fn start(streams: Vec<SimStream>) -> std::io::Result<Self> {
        let token = format!("demo-{}", uuid::Uuid::new_v4().simple());
        let state = SimState {
            token: token.clone(),
            alive: Arc::new(Mutex::new(streams)),
            stopped: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new()
            .route("/", get(root))
            .route("/status/sessions", get(sessions))
            .route("/status/sessions/terminate", get(terminate))
            .route("/library/metadata/{key}", get(library))
            .route("/transcode/sessions/{key}", delete(stop_transcode))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            url: format!("http://{addr}"),
            token,
            alive: state.alive,
            stopped: state.stopped,
            shutdown: Some(tx),
        })
    }

    /// The streams still playing (shared with the traffic generator).
    pub fn alive(&self) -> Arc<Mutex<Vec<SimStream>>> {
        self.alive.clone()
    }

    pub fn stopped(&self) -> Vec<Stopped> {
        lock(&self.stopped).clone()
    }
}

impl Drop for SimPlex {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn authorised(s: &SimState, headers: &HeaderMap) -> bool {
    headers.get("X-Plex-Token").and_then(|v| v.to_str().ok()) == Some(s.token.as_str())
}

fn unauthorised() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        "<html><body><h1>401 Unauthorized</h1></body></html>",
    )
        .into_response()
}

async fn root(State(s): State<SimState>, headers: HeaderMap) -> Response {
    if !authorised(&s, &headers) {
        return unauthorised();
    }
    r#"<MediaContainer size="0" friendlyName="streamwarden demo" myPlexSubscription="1" ownerFeatures="session_kick,webhooks" version="1.41.0"/>"#.into_response()
}

async fn sessions(State(s): State<SimState>, headers: HeaderMap) -> Response {
    if !authorised(&s, &headers) {
        return unauthorised();
    }
    let alive = lock(&s.alive);
    let mut body = format!("<MediaContainer size=\"{}\">\n", alive.len());
    for st in alive.iter() {
        body.push_str(st.xml);
        body.push('\n');
    }
    body.push_str("</MediaContainer>\n");
    body.into_response()
}

async fn terminate(
    State(s): State<SimState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorised(&s, &headers) {
        return unauthorised();
    }
    let id = q.get("sessionId").cloned().unwrap_or_default();
    let message = q.get("reason").cloned().unwrap_or_default();
    let mut alive = lock(&s.alive);
    let Some(pos) = alive
        .iter()
        .position(|st| st.session_id == Some(id.as_str()))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let st = alive.remove(pos);
    println!(
        "simulated Plex: stopped {}'s stream; the player shows: \"{message}\"",
        st.user
    );
    lock(&s.stopped).push(Stopped {
        session_id: id,
        user: st.user.to_string(),
        message,
    });
    StatusCode::OK.into_response()
}

async fn library(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    if !authorised(&s, &headers) {
        return unauthorised();
    }
    match metadata(&key) {
        Some(body) => body.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn stop_transcode(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path(_key): Path<String>,
) -> Response {
    if !authorised(&s, &headers) {
        return unauthorised();
    }
    StatusCode::OK.into_response()
}

fn frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 65535)
        .ack(1);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    // Writing into a Vec cannot fail.
    let _ = b.write(&mut out, payload);
    out
}

/// Generates every alive stream's traffic in real time into `metering` (Ethernet frames,
/// 1500-byte IP packets) until `stop`. A stream the server stopped sends nothing more.
pub fn traffic(
    alive: Arc<Mutex<Vec<SimStream>>>,
    metering: Arc<Mutex<Metering>>,
    stop: Arc<AtomicBool>,
) {
    const IP_LEN: usize = 1500;
    let data: HashMap<u16, Vec<u8>> = lock(&alive)
        .iter()
        .map(|s| {
            (
                s.client_port,
                frame(SERVER, 32400, s.client, s.client_port, &[0u8; IP_LEN - 40]),
            )
        })
        .collect();
    let mut owed: HashMap<u16, f64> = HashMap::new();
    let mut requested: HashMap<u16, Instant> = HashMap::new();
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
        let elapsed = last.elapsed().as_secs_f64();
        last = Instant::now();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let streams = lock(&alive).clone();
        let mut m = lock(&metering);
        for s in &streams {
            // The client's request, again every 10 s as a player fetches its next segments.
            if let Some(req) = s.request
                && requested
                    .get(&s.client_port)
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
            {
                requested.insert(s.client_port, Instant::now());
                let f = frame(s.client, s.client_port, SERVER, 32400, req.as_bytes());
                m.ingest(&Packet {
                    ts_micros: now,
                    orig_len: f.len() as u32,
                    data: &f,
                });
            }
            let o = owed.entry(s.client_port).or_insert(0.0);
            *o += s.kbps as f64 * 125.0 * elapsed;
            let Some(f) = data.get(&s.client_port) else {
                continue;
            };
            while *o >= IP_LEN as f64 {
                *o -= IP_LEN as f64;
                m.ingest(&Packet {
                    ts_micros: now,
                    orig_len: f.len() as u32,
                    data: f,
                });
            }
        }
    }
}
