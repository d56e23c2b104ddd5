//! Plex's event stream: a stream Plex announces is read and judged at once, whatever the
//! poll interval; when the stream is refused or drops, polling carries on.

use super::*;

use serde_json::Value;

/// A 4K-to-1080 transcode rule without sustain: every stream of ha_session_base breaks it.
const TRANSCODE: &str =
    "[[rules]]\nname = \"no-transcode\"\nwhen = 'transcode_decision == \"transcode\"'\n";

const EMPTY: &str = "<MediaContainer size=\"0\"></MediaContainer>";

/// ha_session_base as Session `id` with session key `key`.
fn one_stream(id: &str, key: &str) -> String {
    fixture("ha_session_base.xml")
        .replace("{user_id}", "7")
        .replace("id=\"session_id_1\"", &format!("id=\"{id}\""))
        .replace("sessionKey=\"1\"", &format!("sessionKey=\"{key}\""))
}

async fn status(addr: std::net::SocketAddr) -> Value {
    let text = reqwest::get(format!("http://{addr}/api/status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn events_state(addr: std::net::SocketAddr) -> String {
    status(addr).await["events"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until the daemon says its event stream is `state`.
async fn until_events(addr: std::net::SocketAddr, state: &str, limit: Duration) {
    let t0 = Instant::now();
    while events_state(addr).await != state {
        assert!(
            t0.elapsed() < limit,
            "events never {state}: {}",
            status(addr).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Adds stream `i` and announces it; returns when the announcement went out.
fn start_stream(d: &Daemon, i: usize) -> (String, Instant) {
    let id = format!("ev-{i}");
    let key = format!("{}", 100 + i);
    d.plex.set(|s| s.sessions_body = one_stream(&id, &key));
    let at = Instant::now();
    assert_eq!(
        d.plex
            .announce(&streamwarden::fakeplex::playing(&key, "playing")),
        1,
        "one listener"
    );
    (id, at)
}

/// Waits for the terminate of `id`; how long after `since` it arrived.
async fn killed_after(d: &Daemon, id: &str, since: Instant, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        let found = {
            let st = d.plex.state.lock().unwrap();
            st.terminates
                .iter()
                .position(|(s, _)| s == id)
                .map(|i| st.terminate_times[i])
        };
        if let Some(at) = found {
            return Some(at.saturating_duration_since(since));
        }
        if t0.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A daemon polling a minute apart (even with its event stream down), its event stream
/// live, over a Plex with no stream yet.
async fn listening() -> Daemon {
    let opts = Options {
        http: true,
        poll_interval: Duration::from_secs(60),
        events: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let d = start(FakePlex::start(EMPTY), TRANSCODE, opts).await;
    until_events(d.http.unwrap(), "live", Duration::from_secs(10)).await;
    d
}

#[tokio::test]
async fn a_stream_plex_announces_is_killed_at_once_though_polling_is_a_minute_apart() {
    let d = listening().await;
    let addr = d.http.unwrap();
    // The Plex client's request timeout (2 s here) does not cut the open stream.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut latencies = Vec::new();
    for i in 0..8 {
        let (id, at) = start_stream(&d, i);
        // Polling, a minute apart, cannot explain a kill within seconds.
        let latency = killed_after(&d, &id, at, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("stream {i} was not killed: {:?}", d.plex.terminates()));
        latencies.push(latency);
    }
    latencies.sort();
    eprintln!("event → terminate: {latencies:?}");
    assert!(
        latencies[7] < Duration::from_secs(10),
        "{latencies:?}: slower than any event-driven read"
    );
    let st = status(addr).await;
    assert_eq!(st["events"]["state"], "live", "{st}");
    // Eight announcements and the fake's eight "stopped".
    assert!(st["events"]["received"].as_u64().unwrap() >= 8, "{st}");
    assert_eq!(st["events"]["reconnects"], 0, "{st}");
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("streamwarden_plex_events_up 1"),
        "{metrics}"
    );
    let received = sample(&metrics, "streamwarden_plex_events_total").unwrap_or(0.0);
    assert!(received >= 8.0, "{metrics}");
    // The token went only in a header, never in the path.
    let requests = d.plex.state.lock().unwrap().requests.clone();
    assert!(requests.iter().any(|r| r == "/:/websockets/notifications"));
    assert!(!requests.iter().any(|r| r.contains(TOKEN)));
    d.stop().await;
}

#[tokio::test]
async fn a_refused_event_stream_leaves_polling_at_the_fallback_interval() {
    let logs = Logs::default();
    let _guard = logs.subscriber();
    let plex = FakePlex::start(EMPTY);
    plex.set(|s| s.events_refused = true);
    let opts = Options {
        http: true,
        poll_interval: Duration::from_secs(60),
        events: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let d = start(plex, TRANSCODE, opts).await;
    let addr = d.http.unwrap();
    until_events(addr, "down", Duration::from_secs(10)).await;
    let st = status(addr).await;
    assert!(
        st["events"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("404"),
        "{st}"
    );
    // No announcement: the fallback's one-second polling finds the stream.
    d.plex.set(|s| s.sessions_body = one_stream("polled", "7"));
    let at = Instant::now();
    let latency = killed_after(&d, "polled", at, Duration::from_secs(15)).await;
    assert!(latency.is_some(), "{:?}", d.plex.terminates());
    d.stop().await;
    // Said once, however many times the daemon tried again meanwhile.
    let logs = logs.text();
    assert_eq!(
        logs.matches("Plex's event stream is down").count(),
        1,
        "{logs}"
    );
    assert!(logs.contains("reading sessions every 1 s"), "{logs}");
}

#[tokio::test]
async fn a_dropped_event_stream_is_reopened_and_events_count_again() {
    let logs = Logs::default();
    let _guard = logs.subscriber();
    let d = listening().await;
    let addr = d.http.unwrap();
    d.plex.drop_event_streams();
    // Down, then open again after the first backoff (1 s).
    let t0 = Instant::now();
    loop {
        let st = status(addr).await;
        if st["events"]["reconnects"].as_u64() >= Some(1) && st["events"]["state"] == "live" {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while d.plex.event_listeners() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (id, at) = start_stream(&d, 0);
    assert!(
        killed_after(&d, &id, at, Duration::from_secs(10))
            .await
            .is_some()
    );
    d.stop().await;
    let logs = logs.text();
    assert_eq!(
        logs.matches("Plex's event stream is down").count(),
        1,
        "said once: {logs}"
    );
    assert!(logs.contains("Plex's event stream is back"), "{logs}");
}
