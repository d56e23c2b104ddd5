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
