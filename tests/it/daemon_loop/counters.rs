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

/// Issue 13, part 3, through the real loop: two viewers behind one address whose
/// connections are TLS (nothing to read in them), `[measure] source = "both"`, told apart
/// by matching each connection's per-second bytes to each device's series from Plex.
mod one_address {
    use super::*;

    use std::collections::BTreeMap;

    const CLIENT: [u8; 4] = [1, 2, 3, 11];
    const A: &str = "viewer-a";
    const B: &str = "viewer-b";
    const A_DEVICE: &str = "1234567890123456-com-plexapp-android";
    const B_DEVICE: &str = "b7c4e0a1-9d3f-4e2b-8a6c-shield-two";
    /// The bytes of a frame the fake's Plex counts: its TCP payload (packets count the IP
    /// bytes, 40 more).
    const IP_LEN: usize = 1500;

    /// ha_session_base twice at its Player address 1.2.3.11: user 7 on its SHIELD, and
    /// user 8 on another device, each with its own Session id (both report 6000 kbps).
    fn two_viewers() -> String {
        let base = fixture("ha_session_base.xml");
        let item = |user: &str, id: &str, key: &str, device: &str| {
            let body = base
                .replace("{user_id}", user)
                .replace("id=\"session_id_1\"", &format!("id=\"{id}\""))
                .replace("sessionKey=\"1\"", &format!("sessionKey=\"{key}\""))
                .replace(A_DEVICE, device);
            let start = body.find("<Video ").unwrap();
            let end = body.rfind("</MediaContainer>").unwrap();
            body[start..end].to_string()
        };
        format!(
            "<MediaContainer size=\"2\">{}{}</MediaContainer>",
            item("7", A, "1", A_DEVICE),
            item("8", B, "2", B_DEVICE)
        )
    }

    /// A connection from Plex's port to `CLIENT`: the viewer it carries, its device, and its
    /// rate in kbps in each unix second.
    struct Conn {
        port: u16,
        session: &'static str,
        device: &'static str,
        kbps: fn(i64) -> u64,
    }

    /// 8000 and 2000 kbps in turn: 5000 kbps over any 10 s.
    fn seesaw(s: i64) -> u64 {
        if s % 2 == 0 { 8000 } else { 2000 }
    }
    /// 6000 kbps one second in five, 1000 the others: 2000 kbps over any 10 s.
    fn pulse(s: i64) -> u64 {
        if s % 5 == 0 { 6000 } else { 1000 }
    }

    /// Pushes each connection's traffic into the daemon's feed in real time, at its rate of
    /// the current second, and writes the same bytes (payload only, as Plex counts) into
    /// the fake Plex's per-second series of the connection's device. A connection stops
    /// when the fake no longer lists its session, as a killed player's does.
    struct Patterned {
        stop: Arc<AtomicBool>,
    }

    impl Patterned {
        fn start(feed: Feed, plex: Arc<Mutex<PlexState>>, conns: Vec<Conn>) -> Self {
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            std::thread::spawn(move || {
                let frames: Vec<Vec<u8>> = conns
                    .iter()
                    .map(|c| eth_tcp([10, 0, 0, 1], 32400, CLIENT, c.port, &[0u8; IP_LEN - 40]))
                    .collect();
                let mut owed = vec![0.0f64; conns.len()];
                let mut last = Instant::now();
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                    let dt = last.elapsed().as_secs_f64();
                    last = Instant::now();
                    let ts = SystemClock.now().0;
                    let sec = ts.div_euclid(1_000_000);
                    let mut st = plex.lock().unwrap();
                    for ((c, frame), o) in conns.iter().zip(&frames).zip(&mut owed) {
                        if !st.sessions_body.contains(&format!("id=\"{}\"", c.session)) {
                            continue;
                        }
                        *o += (c.kbps)(sec) as f64 * 125.0 * dt;
                        let mut sent = 0u64;
                        while *o >= IP_LEN as f64 {
                            *o -= IP_LEN as f64;
                            feed.ingest(&Packet {
                                ts_micros: ts,
                                orig_len: frame.len() as u32,
                                data: frame,
                            });
                            sent += (IP_LEN - 40) as u64;
                        }
                        let series: &mut BTreeMap<i64, u64> =
                            st.bandwidth_series.entry(c.device.into()).or_default();
                        *series.entry(sec).or_default() += sent;
                    }
                }
            });
            Self { stop }
        }
    }

    impl Drop for Patterned {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Over 3000 kbps for 3 s: over both halves of the address's bitrate estimate (3500 kbps
    /// each while the viewers cannot be told apart), over seesaw's 5000, under pulse's 2000.
    const HEAVY: &str = "[enforce]\nact_on_estimates = false\n\n[[rules]]\nname = \"heavy\"\nwhen = 'measured_kbps_10s > 3000'\nsustain = \"3s\"\n";

    async fn daemon(a: fn(i64) -> u64, b: fn(i64) -> u64) -> (Daemon, Patterned) {
        let plex = FakePlex::start(&two_viewers());
        let state = plex.state.clone();
        let opts = Options {
            measure: MeasureSource::Both,
            http: true,
            ..Default::default()
        };
        let d = start(plex, HEAVY, opts).await;
        let traffic = Patterned::start(
            d.feed.clone(),
            state,
            vec![
                Conn {
                    port: 50_000,
                    session: A,
                    device: A_DEVICE,
                    kbps: a,
                },
                Conn {
                    port: 50_001,
                    session: B,
                    device: B_DEVICE,
                    kbps: b,
                },
            ],
        );
        (d, traffic)
    }

    fn row<'a>(table: &'a [StreamRow], id: &str) -> Option<&'a StreamRow> {
        table.iter().find(|r| r.session_id.as_deref() == Some(id))
    }

    #[tokio::test]
    async fn distinct_series_make_each_viewer_exact_and_the_rule_kills_only_the_heavy_one() {
        let (d, _traffic) = daemon(seesaw, pulse).await;
        let addr = d.http.unwrap();
        let t0 = Instant::now();
        // Estimates first: the address's 7000 kbps halved by the reported bitrates.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let early = rows(addr).await;
        for id in [A, B] {
            let r = row(&early, id).unwrap();
            assert!(r.estimated, "{id} before Plex's seconds cover 10 s: {r:?}");
        }
        // Plex's seconds count 5 s after the read that brought them, and the match needs 10
        // of them: some 15 s after the traffic starts, both viewers are exact.
        let mut both = None;
        let deadline = Instant::now() + Duration::from_secs(18);
        while both.is_none() && Instant::now() < deadline && d.plex.terminates().is_empty() {
            let table = rows(addr).await;
            if let (Some(a), Some(b)) = (row(&table, A), row(&table, B))
                && !a.estimated
                && !b.estimated
            {
                both = Some((a.clone(), b.clone()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (a, b) = both.unwrap_or_else(|| {
            panic!(
                "both viewers exact within 18 s (terminates {:?}, audit {:?})",
                d.plex.terminates(),
                d.audit()
            )
        });
        let exact_at = t0.elapsed();
        for (r, want) in [(&a, 5000.0), (&b, 2000.0)] {
            let kbps = r.measured_kbps_10s.unwrap();
            assert!(
                (kbps - want).abs() < want * 0.1,
                "{}: {kbps} kbps, not {want}",
                r.session_id.as_deref().unwrap_or("-")
            );
            assert_eq!(r.rate_source.as_deref(), Some("packets"), "{r:?}");
        }
        // The rule holds on the exact figure for its 3 s, then kills seesaw's viewer alone.
        d.until(Duration::from_secs(8), |d| !d.plex.terminates().is_empty())
            .await;
        let killed_after = t0.elapsed() - exact_at;
        let (summary, plex, audit) = d.stop().await;
        let terminates = plex.terminates();
        assert_eq!(terminates.len(), 1, "{terminates:?}\n{audit:?}");
        assert_eq!(terminates[0].0, A);
        assert!(
            killed_after >= Duration::from_secs(2),
            "killed {killed_after:?} after the figure became exact: on the estimate's hold"
        );
        assert_eq!(summary.kills.len(), 1);
        let kill = audit.iter().find(|l| l["action"] == "kill").unwrap();
        assert_eq!(kill["estimated"], false, "{kill}");
        assert!(kill["values"]["measured_kbps_10s"].as_f64().unwrap() > 4000.0);
        assert!(
            audit
                .iter()
                .all(|l| l["session_id"] != B || l["action"] != "kill")
        );
    }

    /// Once seesaw's viewer is killed and Plex no longer lists it, pulse's viewer is alone at
    /// the address; the killed one's connection (and its last 10 s of bytes) stays the killed
    /// one's and counts for nobody, so pulse's viewer is not killed in turn. (Before
    /// `attribute::Owners`, both were terminated within 10 s of the first kill.)
    #[tokio::test]
    async fn the_viewer_left_at_the_address_does_not_inherit_the_killed_ones_bytes() {
        let (d, _traffic) = daemon(seesaw, pulse).await;
        d.until(Duration::from_secs(25), |d| !d.plex.terminates().is_empty())
            .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (_, plex, audit) = d.stop().await;
        let killed: Vec<String> = plex.terminates().into_iter().map(|t| t.0).collect();
        assert_eq!(killed, [A], "{audit:?}");
    }

    #[tokio::test]
    async fn identical_series_stay_estimated_and_nothing_is_killed() {
        let (d, _traffic) = daemon(seesaw, seesaw).await;
        let addr = d.http.unwrap();
        // Long enough for the distinct case to have become exact (and its rule to hold).
        tokio::time::sleep(Duration::from_secs(20)).await;
        let table = rows(addr).await;
        let (summary, plex, audit) = d.stop().await;
        for id in [A, B] {
            let r = row(&table, id).unwrap();
            assert!(r.estimated, "{id}: {r:?}");
            let kbps = r.measured_kbps_10s.unwrap();
            assert!((kbps - 5000.0).abs() < 500.0, "{id}: {kbps}");
        }
        assert!(plex.terminates().is_empty(), "{:?}", plex.terminates());
        assert!(summary.kills.is_empty());
        // The rule did match, on estimates, and said why it did not act.
        for id in [A, B] {
            assert!(
                audit.iter().any(|l| l["action"] == "kill-skipped"
                    && l["session_id"] == id
                    && l["estimated"] == true),
                "{id}: the estimate's hold is audited as skipped: {audit:?}"
            );
        }
        // Plex's series were read and cover both devices: not a test that never matched.
        let asked = plex.state.lock().unwrap().requests.clone();
        assert!(
            asked
                .iter()
                .filter(|r| r.starts_with("/statistics/bandwidth?"))
                .count()
                >= 10,
            "{asked:?}"
        );
    }
}
