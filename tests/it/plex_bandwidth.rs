//! Plex's own counters (`/statistics/bandwidth`): parsing a realistic answer, keeping the
//! per-second rows, mapping them to sessions (never to two sessions of one device), the
//! client against the fake server, and splitting several viewers behind one address by
//! matching each connection's byte series to each device's (issue 13, parts 2 and 3).

use std::net::{IpAddr, Ipv4Addr};

use streamwarden::capture::TcpSegment;
use streamwarden::config::MeasureSource;
use streamwarden::engine;
use streamwarden::meter::{Meter, RateSource};
use streamwarden::micros::Micros;
use streamwarden::plex::bandwidth::{self, Bandwidth, Counters, Device, LAG_SECS, Row};
use streamwarden::plex::{PlexClient, PlexError, PlexSettings, Session};

use crate::common::*;

fn fixture_xml() -> String {
    let path = format!(
        "{}/tests/fixtures/plex/statistics_bandwidth_seconds.xml",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const TV: &str = "5d1c0f2e7a9b4c61-com-plexapp-android";
const BROWSER: &str = "q8w3ne1vxk2l7p0r5t9y4u6i";

fn session(id: &str, user_id: i64, machine: &str, location: &str) -> Session {
    Session {
        session_id: Some(id.into()),
        session_key: Some(id.into()),
        user_id: Some(user_id),
        user: Some(format!("user {user_id}")),
        machine_identifier: Some(machine.into()),
        location: Some(location.into()),
        address: Some("10.0.0.9".into()),
        stream_bitrate_kbps: Some(4000),
        ..Default::default()
    }
}

#[test]
fn a_realistic_answer_parses_to_devices_and_per_second_rows() {
    let b = bandwidth::parse(&fixture_xml()).unwrap();
    assert_eq!(b.skipped, 0);
    assert_eq!(b.devices.len(), 3);
    assert_eq!(
        b.devices[0].client_identifier, None,
        "Plex's own device has none"
    );
    assert_eq!(b.devices[1].id, 57);
    assert_eq!(b.devices[1].client_identifier.as_deref(), Some(TV));
    assert_eq!(b.rows.len(), 9);
    assert_eq!(
        b.rows[0],
        Row {
            account_id: 1,
            device_id: 57,
            lan: true,
            at: 1_719_400_000,
            timespan: 6,
            bytes: 1_046_210,
        }
    );
    assert!(b.rows.iter().filter(|r| r.device_id == 212).all(|r| !r.lan));
    assert_eq!(b.rows[3].account_id, 48_213_377);
}

#[test]
fn malformed_rows_are_skipped_and_an_error_page_is_refused() {
    let body = r#"<MediaContainer size="3">
        <StatisticsBandwidth accountID="1" deviceID="5" timespan="6" at="100" lan="maybe" bytes="9" />
        <StatisticsBandwidth accountID="1" deviceID="5" timespan="6" at="101" lan="1" bytes="-22" />
        <StatisticsBandwidth accountID="1" deviceID="5" timespan="6" at="102" lan="true" bytes="7" />
        <Device name="no id" clientIdentifier="x" />
    </MediaContainer>"#;
    let b = bandwidth::parse(body).unwrap();
    assert_eq!(b.rows.len(), 1);
    assert_eq!(b.rows[0].bytes, 7);
    assert_eq!(b.skipped, 3);
    assert!(bandwidth::parse("<html><body>401</body></html>").is_err());
    assert!(bandwidth::parse("").is_err());
}

/// The fixture read at its last row's second plus the lag: every row is complete.
fn fixture_counters() -> (Counters, i64) {
    let b = bandwidth::parse(&fixture_xml()).unwrap();
    let read = 1_719_400_003 + LAG_SECS;
    let mut c = Counters::default();
    c.absorb(&b, 1_719_400_000, read);
    (c, read)
}

#[test]
fn a_stream_alone_on_its_device_gets_its_rows_and_rates() {
    let (c, now) = fixture_counters();
    assert_eq!(c.through(), Some(1_719_400_003));
    let sessions = [
        session("a", 1, TV, "lan"),
        session("b", 48_213_377, BROWSER, "wan"),
    ];
    let s = c.series(&sessions, 0, now).unwrap();
    assert_eq!(s.first, 1_719_400_000);
    assert_eq!(s.bytes, vec![1_046_210, 998_400, 1_101_122, 1_020_000]);
    let kbps = c.kbps(&sessions, 0, now).unwrap();
    let expected = (1_046_210 + 998_400 + 1_101_122 + 1_020_000) as f64 * 8.0 / 4.0 / 1000.0;
    assert!((kbps[0] - expected).abs() < 1e-6, "{kbps:?}");
    // A second with no bytes counts as 0, not as a gap.
    assert_eq!(
        c.series(&sessions, 1, now).unwrap().bytes,
        vec![362_144, 0, 375_020, 349_871]
    );
    // The WAN rows are not the LAN stream's.
    let lan_browser = [session("b", 48_213_377, BROWSER, "lan")];
    assert!(c.series(&lan_browser, 0, now).is_none());
}

#[test]
fn two_sessions_on_one_device_or_an_unknown_device_stay_unmeasured() {
    let (c, now) = fixture_counters();
    let two = [session("a", 1, TV, "lan"), session("a2", 1, TV, "lan")];
    assert!(c.series(&two, 0, now).is_none());
    assert!(c.kbps(&two, 1, now).is_none());
    let unknown = [session("c", 1, "not-a-device", "lan")];
    assert!(c.kbps(&unknown, 0, now).is_none());
    let no_user = [Session {
        user_id: None,
        ..session("d", 1, TV, "lan")
    }];
    assert!(c.kbps(&no_user, 0, now).is_none());
    // Stale: no read for longer than STALE_SECS.
    let one = [session("a", 1, TV, "lan")];
    assert!(c.kbps(&one, 0, now + bandwidth::STALE_SECS + 10).is_none());
    // And through the engine: unknown, not shared out.
    let m = engine::measure(
        &Meter::new(),
        &two,
        &[32400],
        Micros(now * 1_000_000),
        MeasureSource::Plex,
        Some(&c),
        None,
    );
    assert!(m.iter().all(Option::is_none), "{m:?}");
    let m = engine::measure(
        &Meter::new(),
        &one,
        &[32400],
        Micros(now * 1_000_000),
        MeasureSource::Plex,
        Some(&c),
        None,
    );
    let a = m[0].clone().expect("measured");
    assert_eq!(a.measured.source, RateSource::Plex);
    assert!(!a.measured.estimated);
}

#[test]
fn the_client_reads_the_fake_servers_counters_and_a_server_without_plex_pass_says_so() {
    let body = format!(
        r#"<MediaContainer size="1"><Video sessionKey="1" title="T" type="movie"><User id="7" title="bob"/><Player address="10.0.0.9" machineIdentifier="{TV}" state="playing" platform="Android"/><Session id="s1" location="lan"/></Video></MediaContainer>"#
    );
    let plex = FakePlex::start(&body);
    plex.set(|s| {
        s.bandwidth_rates.insert(TV.into(), 250_000);
    });
    let client = PlexClient::new(PlexSettings {
        url: plex.url.clone(),
        token: TOKEN.into(),
        client_identifier: "test".into(),
        timeout: std::time::Duration::from_secs(5),
        tls_verify: true,
        max_response: streamwarden::plex::DEFAULT_MAX_RESPONSE,
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let b = rt.block_on(client.bandwidth(now - 30)).unwrap();
    assert_eq!(b.devices.len(), 1);
    assert_eq!(b.devices[0].client_identifier.as_deref(), Some(TV));
    assert!(b.rows.len() >= 25, "{}", b.rows.len());
    assert!(
        b.rows
            .iter()
            .all(|r| r.account_id == 7 && r.lan && r.bytes == 250_000)
    );
    assert!(b.rows.iter().all(|r| r.at >= now - 30));
    let asked = plex.state.lock().unwrap().requests.clone();
    assert!(
        asked
            .iter()
            .any(|r| r.starts_with("/statistics/bandwidth?at>=") && r.ends_with("&timespan=6")),
        "{asked:?}"
    );
    for code in [401u16, 403, 404] {
        plex.set(|s| s.bandwidth_failure = Some(code));
        let e = rt.block_on(client.bandwidth(now)).unwrap_err();
        match (code, &e) {
            (401, PlexError::Unauthorized { .. }) => {}
            (_, PlexError::Status { status, .. }) if *status == code => {}
            _ => panic!("{code}: {e:?}"),
        }
        assert!(!e.to_string().contains(TOKEN));
    }
}

/// Part 3, through the engine directly: two TLS viewers behind one address, each on its
/// own connection, with Plex's per-device series consistent with the packets.
mod split {
    use super::*;

    const T: i64 = 1_800_000_000;
    const SECS: i64 = 60;
    const SERVER: [u8; 4] = [10, 0, 0, 1];
    const CLIENT: [u8; 4] = [10, 0, 0, 9];

    fn seg(dport: u16, ip_len: u32) -> TcpSegment<'static> {
        TcpSegment {
            src: IpAddr::V4(Ipv4Addr::from(SERVER)),
            dst: IpAddr::V4(Ipv4Addr::from(CLIENT)),
            sport: 32400,
            dport,
            ip_len,
            payload_len: ip_len - 40,
            payload: &[],
            syn: false,
            fin: false,
            rst: false,
        }
    }

    /// Meters `pattern(second)` bytes a second on each connection, and gives Plex's
    /// counters the same bytes for the device behind it.
    fn world(patterns: [fn(i64) -> u64; 2]) -> (Meter, Counters, Vec<Session>, i64) {
        let mut meter = Meter::new();
        let mut rows = Vec::new();
        for s in T..=T + SECS {
            for (j, pattern) in patterns.iter().enumerate() {
                let bytes = pattern(s);
                let mut left = bytes;
                let mut k = 0;
                while left > 0 {
                    let n = left.min(1500);
                    meter.record(s * 1_000_000 + k * 100, &seg(50_000 + j as u16, n as u32));
                    left -= n;
                    k += 1;
                }
                rows.push(Row {
                    account_id: 7 + j as i64,
                    device_id: 100 + j as i64,
                    lan: true,
                    at: s,
                    timespan: 6,
                    bytes,
                });
            }
        }
        let answer = Bandwidth {
            devices: (0..2)
                .map(|j| Device {
                    id: 100 + j,
                    client_identifier: Some(format!("device-{j}")),
                    name: None,
                    platform: None,
                })
                .collect(),
            rows,
            skipped: 0,
        };
        let mut c = Counters::default();
        c.absorb(&answer, T, T + SECS + LAG_SECS);
        let sessions = vec![
            session("viewer-0", 7, "device-0", "lan"),
            session("viewer-1", 8, "device-1", "lan"),
        ];
        (meter, c, sessions, (T + SECS + 1) * 1_000_000)
    }

    fn kbps_10s(pattern: fn(i64) -> u64) -> f64 {
        (T + SECS - 9..=T + SECS).map(pattern).sum::<u64>() as f64 * 8.0 / 10.0 / 1000.0
    }

    fn a(s: i64) -> u64 {
        400_000 + if s % 3 == 0 { 300_000 } else { 0 }
    }
    fn b(s: i64) -> u64 {
        500_000 + if s % 5 == 0 { 0 } else { 150_000 }
    }
    fn flat(_: i64) -> u64 {
        500_000
    }

    #[test]
    fn distinct_series_split_the_address_exactly() {
        let (meter, c, sessions, now) = world([a, b]);
        // Packets alone: the address is split by reported bitrates (4000 each): estimates.
        let alone = engine::measure(
            &meter,
            &sessions,
            &[32400],
            Micros(now),
            MeasureSource::Packets,
            None,
            None,
        );
        assert!(alone.iter().all(|m| m.as_ref().unwrap().measured.estimated));
        let both = engine::measure(
            &meter,
            &sessions,
            &[32400],
            Micros(now),
            MeasureSource::Both,
            Some(&c),
            None,
        );
        for (j, pattern) in [a as fn(i64) -> u64, b].into_iter().enumerate() {
            let got = both[j].as_ref().expect("measured");
            // Its own connection, exactly: what a throttle would limit.
            let ports: Vec<u16> = got.exact.iter().map(|k| k.dport).collect();
            assert_eq!(ports, [50_000 + j as u16], "viewer {j}");
            let m = got.measured;
            assert!(!m.estimated, "viewer {j}: {m:?}");
            assert_eq!(m.source, RateSource::Packets);
            let want = kbps_10s(pattern);
            assert!(
                (m.kbps_10s - want).abs() < 1e-6,
                "viewer {j}: {} vs {want}",
                m.kbps_10s
            );
        }
    }

    #[test]
    fn series_too_alike_to_split_stay_estimated() {
        let (meter, c, sessions, now) = world([flat, flat]);
        let both = engine::measure(
            &meter,
            &sessions,
            &[32400],
            Micros(now),
            MeasureSource::Both,
            Some(&c),
            None,
        );
        for m in &both {
            let m = m.as_ref().expect("measured").measured;
            assert!(m.estimated, "{m:?}");
        }
    }

    #[test]
    fn too_few_common_seconds_stay_estimated() {
        let (meter, _, sessions, now) = world([a, b]);
        // Plex's counters only know the last few seconds.
        let mut c = Counters::default();
        let rows: Vec<Row> = (T + SECS - 4..=T + SECS)
            .flat_map(|s| {
                [(7, 100, a(s)), (8, 101, b(s))].map(|(acc, dev, bytes)| Row {
                    account_id: acc,
                    device_id: dev,
                    lan: true,
                    at: s,
                    timespan: 6,
                    bytes,
                })
            })
            .collect();
        let answer = Bandwidth {
            devices: (0..2)
                .map(|j| Device {
                    id: 100 + j,
                    client_identifier: Some(format!("device-{j}")),
                    name: None,
                    platform: None,
                })
                .collect(),
            rows,
            skipped: 0,
        };
        c.absorb(&answer, T + SECS - 4, T + SECS + LAG_SECS);
        let both = engine::measure(
            &meter,
            &sessions,
            &[32400],
            Micros(now),
            MeasureSource::Both,
            Some(&c),
            None,
        );
        assert!(
            both.iter().all(|m| m.as_ref().unwrap().measured.estimated),
            "{both:?}"
        );
    }
}
