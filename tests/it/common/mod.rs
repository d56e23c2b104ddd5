//! A fake Plex Media Server for tests: a real HTTP server on 127.0.0.1:0 serving the real
//! responses from tests/fixtures/plex and recording every terminate.

pub mod capture;
pub mod logs;
pub mod need;
pub mod netns;
pub mod receiver;
pub mod tshark;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};

use axum::Router;

pub const TOKEN: &str = "tok-SECRET-4f9a1c";

/// A real Plex response kept in `tests/fixtures/plex` (SOURCES.md says where each came from).
pub fn fixture(name: &str) -> String {
    let path = fixtures_dir("plex").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `tests/fixtures/<kind>` of this repository.
pub fn fixtures_dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

/// Every capture file (`.pcap`, `.pcapng`) in `tests/fixtures/pcap`, sorted.
pub fn pcap_fixtures() -> Vec<PathBuf> {
    let dir = fixtures_dir("pcap");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    files
}

pub use streamwarden::fakeplex::{FakePlex, PlexState, remove_session};

/// Starting the library's fake Plex with the test token, failing the test if it cannot.
pub trait StartFake {
    fn start(sessions_body: &str) -> Self;
}

impl StartFake for FakePlex {
    fn start(sessions_body: &str) -> Self {
        FakePlex::spawn(sessions_body, TOKEN).expect("start the fake Plex")
    }
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
    run_env(dir, url, token, args, &[])
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

/// A plain HTTP/1.1 request over a std socket, for tests outside an async runtime:
/// (status, body); (0, "") when nothing answers.
pub fn http(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let _ = s.write_all(req.as_bytes());
    let mut all = String::new();
    let _ = s.read_to_string(&mut all);
    let status = all
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = all
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The body of a GET.
pub fn http_get(addr: &str, path: &str) -> String {
    http("GET", addr, path, &[], "").1
}

/// As `run`, with more environment variables (TAUTULLI_URL and the like).
pub fn run_env(
    dir: &std::path::Path,
    url: &str,
    token: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("STATE_DIRECTORY", dir)
        .env("PLEX_URL", url)
        .env("PLEX_TOKEN", token)
        .envs(env.iter().copied())
        .output()
        .expect("run streamwarden")
}

/// The static binary scripts/build-static made, named by STREAMWARDEN_STATIC (.ci/run
/// builds it first); under CI it must be there.
pub fn static_binary() -> Option<std::path::PathBuf> {
    match std::env::var_os("STREAMWARDEN_STATIC") {
        Some(p) => Some(p.into()),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must build the static binary first: STREAMWARDEN_STATIC=$(scripts/build-static | tail -n 1)"
            );
            eprintln!("skipping: set STREAMWARDEN_STATIC to scripts/build-static's output");
            None
        }
    }
}
