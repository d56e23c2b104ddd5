//! `[measure] source = "plex"`: the real loop measuring from the fake server's
//! `/statistics/bandwidth`, with no packets at all.

use super::*;

use streamwarden::config::MeasureSource;

/// ha_session_base's player (user 7, Session session_id_1, on the LAN).
const FAST_DEVICE: &str = "1234567890123456-com-plexapp-android";

/// Two sessions of one account on one device, and a third stream on its own device.
fn one_device_two_streams() -> String {
    let video = |id: &str, key: &str, machine: &str, user: &str| {
        format!(
            r#"<Video sessionKey="{key}" title="Movie {key}" type="movie"><User id="{user}" title="User {user}"/><Player address="10.0.0.9" machineIdentifier="{machine}" state="playing" platform="Android" title="TV"/><Session id="{id}" bandwidth="5000" location="lan"/></Video>"#
        )
    };
    format!(
        r#"<MediaContainer size="3">{}{}{}</MediaContainer>"#,
        video("twin-a", "1", "shared-tv", "9"),
        video("twin-b", "2", "shared-tv", "9"),
        video("alone", "3", "own-tv", "9"),
    )
}

async fn rows(addr: std::net::SocketAddr) -> Vec<StreamRow> {
    let body = reqwest::get(format!("http://{addr}/api/streams"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn plex_counters_alone_give_a_stream_its_rate_and_a_rule_on_it_fires() {
    let plex = FakePlex::start(&mixed_sessions());
    // 1.25 MB a second: 10000 kbps.
    plex.set(|s| {
        s.bandwidth_rates.insert(FAST_DEVICE.into(), 1_250_000);
    });
    let opts = Options {
        measure: MeasureSource::Plex,
        http: true,
        ..Default::default()
    };
    let d = start(plex, RULE, opts).await;
    let addr = d.http.unwrap();
    let mut seen = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.is_none() && Instant::now() < deadline {
        seen = rows(addr)
            .await
            .into_iter()
            .find(|r| r.session_id.as_deref() == Some(FAST) && r.measured_kbps_10s.is_some());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let row = seen.expect("the stream gets Plex's rate");
    assert_eq!(row.rate_source.as_deref(), Some("plex"));
    assert!(!row.estimated);
    let kbps = row.measured_kbps_10s.unwrap();
    assert!((kbps - 10_000.0).abs() < 1.0, "{kbps}");
    // The other streams have no counters: unmeasured, not 0.
    let others = rows(addr).await;
    let slow = others
        .iter()
        .find(|r| r.session_id.as_deref() == Some(SLOW))
        .unwrap();
    assert_eq!(slow.measured_kbps_10s, None);
    assert_eq!(slow.rate_source, None);
    d.until(Duration::from_secs(15), |d| !d.plex.terminates().is_empty())
        .await;
    let (_, plex, audit) = d.stop().await;
    assert_eq!(plex.terminates().len(), 1);
    assert_eq!(plex.terminates()[0].0, FAST);
    let kill = audit
        .iter()
        .find(|l| l["action"] == "kill")
        .expect("a kill");
    assert_eq!(kill["values"]["rate_source"], "plex", "{kill}");
    assert!(kill["values"]["measured_kbps_10s"].as_f64().unwrap() > 8000.0);
    assert_eq!(kill["estimated"], false);
    let asked = plex.state.lock().unwrap().requests.clone();
    assert!(
        asked
            .iter()
            .any(|r| r.starts_with("/statistics/bandwidth?")),
        "{asked:?}"
    );
}

#[tokio::test]
async fn two_streams_on_one_device_stay_unmeasured_and_nothing_fires() {
    let plex = FakePlex::start(&one_device_two_streams());
    plex.set(|s| {
        s.bandwidth_rates.insert("shared-tv".into(), 1_250_000);
        s.bandwidth_rates.insert("own-tv".into(), 125_000);
    });
    let opts = Options {
        measure: MeasureSource::Plex,
        http: true,
        ..Default::default()
    };
    let d = start(plex, RULE, opts).await;
    let addr = d.http.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut table = Vec::new();
    while Instant::now() < deadline {
        table = rows(addr).await;
        if table.iter().any(|r| r.measured_kbps_10s.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let by = |id: &str| {
        table
            .iter()
            .find(|r| r.session_id.as_deref() == Some(id))
            .unwrap()
    };
    let alone = by("alone")
        .measured_kbps_10s
        .expect("the stream alone on its device");
    assert!((alone - 1000.0).abs() < 1.0, "{alone}");
    // The device's 10000 kbps cannot be told apart between its two streams.
    for twin in ["twin-a", "twin-b"] {
        assert_eq!(by(twin).measured_kbps_10s, None, "{twin}");
        assert_eq!(by(twin).rate_source, None, "{twin}");
    }
    // Past the rule's sustain: nothing fired on a guess.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (summary, plex, _) = d.stop().await;
    assert!(plex.terminates().is_empty(), "{:?}", plex.terminates());
    assert!(summary.kills.is_empty());
}

#[tokio::test]
async fn a_server_without_plex_pass_is_said_once_and_streams_stay_unmeasured() {
    let logs = Logs::default();
    let _guard = logs.subscriber();
    let plex = FakePlex::start(&mixed_sessions());
    plex.set(|s| {
        s.bandwidth_rates.insert(FAST_DEVICE.into(), 1_250_000);
        s.bandwidth_failure = Some(404);
    });
    let opts = Options {
        measure: MeasureSource::Plex,
        http: true,
        ..Default::default()
    };
    let d = start(plex, RULE, opts).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let table = rows(d.http.unwrap()).await;
    assert!(!table.is_empty());
    assert!(
        table.iter().all(|r| r.measured_kbps_10s.is_none()),
        "{table:?}"
    );
    let (_, plex, _) = d.stop().await;
    assert!(plex.terminates().is_empty());
    let log = logs.text();
    let warning = "bandwidth counters (/statistics/bandwidth) are not available";
    assert_eq!(log.matches(warning).count(), 1, "{log}");
    assert!(log.contains("HTTP 404"), "{log}");
    assert!(log.contains("Plex Pass"), "{log}");
    assert!(!log.contains(TOKEN));
}
