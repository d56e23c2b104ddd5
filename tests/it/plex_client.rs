//! The Plex client against the fake server: source facts cached per ratingKey, a 404
//! remembered, headers sent.

use crate::common::*;
use std::time::Duration;
use streamwarden::plex::{PlexClient, PlexSettings};

fn client(url: &str) -> PlexClient {
    PlexClient::new(PlexSettings {
        url: url.to_string(),
        token: TOKEN.to_string(),
        client_identifier: "test-client".into(),
        timeout: Duration::from_secs(2),
        tls_verify: true,
        max_response: streamwarden::plex::DEFAULT_MAX_RESPONSE,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_facts_are_read_once_per_rating_key_even_when_missing() {
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| {
        s.metadata.insert(
            "1".into(),
            r#"<MediaContainer size="1"><Video ratingKey="1"><Media id="2637" bitrate="5000" videoResolution="1080"/></Video></MediaContainer>"#.into(),
        );
    });
    let c = client(&plex.url);
    for _ in 0..3 {
        let sessions = c.sessions_with_sources().await.unwrap();
        assert_eq!(sessions[0].source_bitrate_kbps, Some(5000));
        assert_eq!(sessions[0].source_resolution.as_deref(), Some("1080"));
        // ratingKey 2 is not in the fake library: unknown, not an error.
        assert_eq!(sessions[1].source_bitrate_kbps, None);
    }
    let requests = plex.state.lock().unwrap().requests.clone();
    for key in ["/library/metadata/1", "/library/metadata/2"] {
        assert_eq!(
            requests.iter().filter(|r| *r == key).count(),
            1,
            "{key}: {requests:?}"
        );
    }
    assert_eq!(
        requests.iter().filter(|r| *r == "/status/sessions").count(),
        3
    );
    assert!(
        plex.state
            .lock()
            .unwrap()
            .client_ids
            .iter()
            .all(|i| i == "test-client")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_retried_but_a_terminate_is_sent_once() {
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| s.sessions_failure = Some((503, "busy".into())));
    let c = client(&plex.url);
    let e = c.sessions().await.unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");
    let polls = plex
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| *r == "/status/sessions")
        .count();
    assert_eq!(polls, 3, "bounded retries");
    plex.set(|s| s.plex_pass = false);
    assert!(c.terminate("session_id_1", "bye").await.is_err());
    let terminates = plex
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.starts_with("/status/sessions/terminate"))
        .count();
    assert_eq!(terminates, 1, "never retried blindly");
}

/// One request a test server saw: its Host header, path with query, and token.
#[derive(Clone, Debug)]
struct Seen {
    host: String,
    path: String,
    token: Option<String>,
}

type Log = std::sync::Arc<std::sync::Mutex<Vec<Seen>>>;

fn record(log: &Log, uri: &axum::http::Uri, headers: &axum::http::HeaderMap) -> Seen {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let seen = Seen {
        host: header("host").unwrap_or_default(),
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_string(), |p| p.to_string()),
        token: header("X-Plex-Token"),
    };
    log.lock().unwrap().push(seen.clone());
    seen
}

/// "Another host": answers anything with an empty container and records what it got.
fn other_origin(log: Log) -> TestServer {
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
            let log = log.clone();
            async move {
                record(&log, &uri, &headers);
                r#"<MediaContainer size="0"></MediaContainer>"#
            }
        },
    );
    serve(app)
}

/// A Plex that redirects: across origins (another port, another host name, https) and
/// within its own origin (a relative and an absolute Location).
fn redirecting_plex(log: Log, other: String) -> TestServer {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
            let log = log.clone();
            let other = other.clone();
            async move {
                let seen = record(&log, &uri, &headers);
                let port = seen.host.rsplit(':').next().unwrap_or_default().to_string();
                let to = |code: u16, location: String| {
                    (
                        StatusCode::from_u16(code).unwrap(),
                        [(header::LOCATION, location)],
                    )
                        .into_response()
                };
                if seen.token.as_deref() != Some(TOKEN) {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                match uri.path() {
                    "/status/sessions" => to(
                        302,
                        format!("{other}/status/sessions?X-Plex-Token={TOKEN}&from=plex"),
                    ),
                    "/status/sessions/terminate" => to(
                        307,
                        format!("http://localhost:{port}/status/sessions/terminate?again=1"),
                    ),
                    "/library/metadata/2" => {
                        to(308, format!("https://127.0.0.1:{port}/library/metadata/2"))
                    }
                    "/" => to(301, "/moved-root".to_string()),
                    "/moved-root" => r#"<MediaContainer size="0" myPlexSubscription="1" ownerFeatures="session_kick" friendlyName="moved"></MediaContainer>"#.into_response(),
                    "/library/metadata/1" => to(
                        302,
                        format!("http://{}/library/metadata/one", seen.host),
                    ),
                    "/library/metadata/one" => r#"<MediaContainer size="1"><Video ratingKey="1"><Media id="5" bitrate="4321" videoResolution="720"/></Video></MediaContainer>"#.into_response(),
                    _ => StatusCode::NOT_FOUND.into_response(),
                }
            }
        },
    );
    serve(app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_origin_is_refused_and_never_gets_the_token() {
    let other_log = Log::default();
    let other = other_origin(other_log.clone());
    let plex_log = Log::default();
    let plex = redirecting_plex(plex_log.clone(), other.url.clone());
    let port = plex.addr.port();
    let c = client(&plex.url);

    // Another port.
    let e = c.sessions().await.unwrap_err().to_string();
    let target = format!("{}/status/sessions", other.url);
    assert!(e.contains(&target), "names the target: {e}");
    assert!(e.contains("/status/sessions"), "names the endpoint: {e}");
    assert!(!e.contains("from=plex") && !e.contains(TOKEN), "{e}");
    // Another host name for the same address and port.
    let e = c.terminate("s1", "bye").await.unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "http://localhost:{port}/status/sessions/terminate"
        )),
        "{e}"
    );
    assert!(!e.contains("again=1") && !e.contains(TOKEN), "{e}");
    // Another scheme.
    let e = c.source_facts("2", None).await.unwrap_err().to_string();
    assert!(
        e.contains(&format!("https://127.0.0.1:{port}/library/metadata/2")),
        "{e}"
    );
    assert!(!e.contains(TOKEN), "{e}");

    let other_saw = other_log.lock().unwrap().clone();
    assert!(
        other_saw.is_empty(),
        "the other origin was contacted: {other_saw:?}"
    );
    let plex_saw = plex_log.lock().unwrap().clone();
    assert!(
        plex_saw
            .iter()
            .all(|s| s.host == format!("127.0.0.1:{port}")),
        "the token went to another host name: {plex_saw:?}"
    );
    assert_eq!(
        plex_saw
            .iter()
            .filter(|s| s.path == "/status/sessions")
            .count(),
        1,
        "a refused redirect is not retried: {plex_saw:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_within_the_same_origin_is_followed_with_the_token() {
    let plex_log = Log::default();
    let plex = redirecting_plex(plex_log.clone(), "http://unused.invalid".into());
    let c = client(&plex.url);
    // Relative Location.
    let caps = c.capabilities().await.unwrap();
    assert_eq!(caps.name.as_deref(), Some("moved"));
    assert!(caps.can_kill());
    // Absolute Location on the same scheme, host and port.
    let f = c.source_facts("1", None).await.unwrap();
    assert_eq!(f.bitrate_kbps, Some(4321));
    assert_eq!(f.resolution.as_deref(), Some("720"));
    let saw = plex_log.lock().unwrap().clone();
    for path in ["/moved-root", "/library/metadata/one"] {
        let hit = saw.iter().find(|s| s.path == path);
        assert_eq!(
            hit.and_then(|s| s.token.as_deref()),
            Some(TOKEN),
            "{path}: {saw:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_origin_redirect_loop_ends_in_an_error() {
    use axum::response::Redirect;
    let app = axum::Router::new().route(
        "/status/sessions",
        axum::routing::get(|| async { Redirect::temporary("/status/sessions?again") }),
    );
    let plex = serve(app);
    let c = client(&plex.url);
    let e = c.sessions().await.unwrap_err().to_string();
    assert!(e.contains("/status/sessions"), "{e}");
    assert!(e.contains("redirect"), "{e}");
    assert!(!e.contains(TOKEN), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tv_has_no_source_file_and_the_library_is_not_asked() {
    let body = r#"<MediaContainer size="2">
      <Video sessionKey="5" ratingKey="9" type="episode" title="Evening News" live="1">
        <Media id="900" bitrate="8000" videoResolution="1080" selected="1"><Part id="77" decision="transcode"/></Media>
        <User id="3" title="carol"/>
        <Player address="192.0.2.7" state="playing" local="0"/>
        <Session id="s-live" bandwidth="9000" location="wan"/>
      </Video>
      <Video sessionKey="6" ratingKey="1" type="movie" title="Film">
        <Media id="2637" bitrate="6000" videoResolution="720" selected="1"><Part id="78" decision="directplay"/></Media>
        <User id="4" title="dave"/>
        <Player address="192.0.2.8" state="playing" local="1"/>
        <Session id="s-film" bandwidth="7000" location="lan"/>
      </Video>
    </MediaContainer>"#;
    let plex = FakePlex::start(body);
    plex.set(|s| {
        // What Plex answers for a live item's ratingKey: the guide entry, not a file.
        s.metadata.insert(
            "9".into(),
            r#"<MediaContainer size="1"><Video ratingKey="9" live="1"><Media id="900" bitrate="20000" videoResolution="4k"/></Video></MediaContainer>"#.into(),
        );
        s.metadata.insert(
            "1".into(),
            r#"<MediaContainer size="1"><Video ratingKey="1"><Media id="2637" bitrate="6100" videoResolution="1080"/></Video></MediaContainer>"#.into(),
        );
    });
    let c = client(&plex.url);
    let sessions = c.sessions_with_sources().await.unwrap();
    let live = &sessions[0];
    assert!(live.live);
    assert_eq!(live.source_bitrate_kbps, None);
    assert_eq!(live.source_resolution, None);
    let film = &sessions[1];
    assert_eq!(film.source_bitrate_kbps, Some(6100));
    assert_eq!(film.source_resolution.as_deref(), Some("1080"));
    // The hook fills one session at a time.
    let mut one = live.clone();
    c.fill_source(&mut one).await;
    assert_eq!(one.source_bitrate_kbps, None);
    assert_eq!(one.source_resolution, None);

    let requests = plex.state.lock().unwrap().requests.clone();
    assert!(
        !requests.iter().any(|r| r == "/library/metadata/9"),
        "the guide item was read as a source file: {requests:?}"
    );
    assert!(requests.iter().any(|r| r == "/library/metadata/1"));
}
