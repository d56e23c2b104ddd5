//! The HTTP endpoint's guard, tested on the router itself with no socket (`router(state)` and
//! `tower::ServiceExt::oneshot`, as in axum's testing example): a Host that is not this
//! endpoint gets 421 (DNS rebinding), a request without the token 401, and a request that
//! changes anything must be JSON from this origin (a form or another site's page: 403), while
//! Tautulli's Webhook agent (JSON, no Origin) still gets through.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use streamwarden::config::Secret;
use streamwarden::daemon::Metrics;
use streamwarden::daemon::board::{AuditSource, Board};
use streamwarden::daemon::http::{AppState, Hosts, router};

const TOKEN: &str = "surface-SECRET-31d";

fn state(listen: &str, names: &[&str], token: Option<&str>) -> AppState {
    AppState {
        metrics: Arc::new(Metrics::default()),
        board: Board::new(AuditSource::Memory(Default::default()), None),
        hooks: None,
        token: token.map(Secret::new),
        hosts: Hosts::new(
            Some(listen.parse().unwrap()),
            &names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        ),
    }
}

async fn status(state: AppState, req: Request<Body>) -> StatusCode {
    router(state).oneshot(req).await.unwrap().status()
}

fn get(host: &str, path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", host)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn only_the_names_of_this_endpoint_are_served() {
    let s = || state("127.0.0.1:8686", &["nas.local"], Some(TOKEN));
    for host in [
        "127.0.0.1:8686",
        "localhost:8686",
        "LOCALHOST",
        "nas.local:8686",
        "[::1]:8686",
    ] {
        assert_eq!(
            status(s(), get(host, "/api/streams")).await,
            StatusCode::OK,
            "{host}"
        );
    }
    for host in [
        "rebind.evil.example",
        "rebind.evil.example:8686",
        "10.0.0.9:8686",
        "127.0.0.1.evil.example",
        "",
    ] {
        assert_eq!(
            status(s(), get(host, "/api/streams")).await,
            StatusCode::MISDIRECTED_REQUEST,
            "{host}"
        );
    }
    // Listening on every address: any address of this host, still no other name.
    let any = || state("0.0.0.0:8686", &[], Some(TOKEN));
    assert_eq!(
        status(any(), get("192.168.1.20:8686", "/metrics")).await,
        StatusCode::OK
    );
    assert_eq!(
        status(any(), get("rebind.evil.example:8686", "/metrics")).await,
        StatusCode::MISDIRECTED_REQUEST
    );
}

fn post(content_type: &str, extra: &[(&str, &str)]) -> Request<Body> {
    let mut r = Request::post("/api/tautulli")
        .header("host", "127.0.0.1:8686")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", content_type);
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.body(Body::from(r#"{"jbop": "stream", "sessionId": "s1"}"#))
        .unwrap()
}

#[tokio::test]
async fn a_page_of_another_site_cannot_post_and_tautulli_can() {
    let s = || state("127.0.0.1:8686", &[], Some(TOKEN));
    // A plain form, or a no-cors fetch: not JSON.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        assert_eq!(
            status(s(), post(ct, &[])).await,
            StatusCode::FORBIDDEN,
            "{ct}"
        );
    }
    // JSON from another site, as a browser labels it.
    for extra in [
        [("origin", "https://evil.example")],
        [("origin", "null")],
        [("sec-fetch-site", "cross-site")],
        [("sec-fetch-site", "same-site")],
    ] {
        assert_eq!(
            status(s(), post("application/json", &extra)).await,
            StatusCode::FORBIDDEN,
            "{extra:?}"
        );
    }
    // Tautulli's Webhook agent: JSON, no Origin. It passes the guard (this router serves no
    // webhook, so the handler answers 404).
    assert_eq!(
        status(s(), post("application/json", &[])).await,
        StatusCode::NOT_FOUND
    );
    // The page itself: JSON from its own origin.
    assert_eq!(
        status(
            s(),
            post(
                "application/json; charset=utf-8",
                &[
                    ("origin", "http://127.0.0.1:8686"),
                    ("sec-fetch-site", "same-origin")
                ]
            )
        )
        .await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn without_the_token_nothing_is_served_and_errors_are_json() {
    let s = || state("127.0.0.1:8686", &[], Some(TOKEN));
    let req = Request::get("/api/streams")
        .header("host", "127.0.0.1:8686")
        .body(Body::empty())
        .unwrap();
    let resp = router(s()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    let resp = router(s()).oneshot(post("text/plain", &[])).await.unwrap();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("application/json"),
        "{v}"
    );
}
