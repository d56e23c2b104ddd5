//! Stand-ins for the services notifications go to: real HTTP servers on 127.0.0.1:0 that
//! record every request and answer as told, and a "dead" one that accepts connections and
//! never answers.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::any;

use super::{TestServer, serve};

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

struct Shared {
    status: Mutex<u16>,
    /// Answered with, after the status line (a service's error text).
    reply: Mutex<String>,
    got: Mutex<Vec<Got>>,
}

/// A service that records what it is sent.
pub struct Receiver {
    pub server: TestServer,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Answers every request with `status` (and `reply` as the body).
    pub fn start(status: u16, reply: &str) -> Self {
        let shared = Arc::new(Shared {
            status: Mutex::new(status),
            reply: Mutex::new(reply.to_string()),
            got: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(any(take)).with_state(shared.clone());
        Receiver {
            server: serve(app),
            shared,
        }
    }

    /// The URL of `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url)
    }

    pub fn got(&self) -> Vec<Got> {
        self.shared.got.lock().unwrap().clone()
    }

    /// What came to `path`.
    pub fn at(&self, path: &str) -> Vec<Got> {
        self.got().into_iter().filter(|g| g.path == path).collect()
    }

    pub fn set_status(&self, status: u16) {
        *self.shared.status.lock().unwrap() = status;
    }
}

async fn take(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    s.got.lock().unwrap().push(Got {
        method,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let status = StatusCode::from_u16(*s.status.lock().unwrap()).unwrap();
    (status, s.reply.lock().unwrap().clone())
}

/// A port that accepts connections and never answers; stops accepting when dropped.
pub struct Dead {
    pub addr: SocketAddr,
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Dead {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = held.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                keep.lock().unwrap().push(s);
            }
        });
        Dead { addr, _held: held }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}
