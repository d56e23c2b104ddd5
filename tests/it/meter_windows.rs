//! The meter's totals and windows against a brute-force model, its flow cap, expiry, clamped
//! time and request hints, through the public API.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use proptest::prelude::*;
use streamwarden::capture::TcpSegment;
use streamwarden::meter::{FlowKey, MAX_BUCKETS, Meter, WINDOWS_SECS};

fn seg(flow: u16, ip_len: u32, payload: &[u8]) -> TcpSegment<'_> {
    TcpSegment {
        src: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)),
        dst: IpAddr::V4(Ipv4Addr::new(10, 0, (flow >> 8) as u8, flow as u8)),
        sport: 32400,
        dport: flow,
        ip_len,
        payload_len: ip_len.saturating_sub(40),
        payload,
        syn: false,
        fin: false,
        rst: false,
    }
}

fn key(flow: u16) -> FlowKey {
    FlowKey::of(&seg(flow, 0, &[]))
}

/// Brute-force rate of the documented definition: bytes of the complete seconds
/// `[now_sec - W, now_sec - 1]`, divided by `min(W, now_sec - first_sec)`.
fn model_kbps(events: &[(i64, u32)], now_micros: i64) -> [f64; 4] {
    let now_sec = now_micros.div_euclid(1_000_000);
    let first_sec = events[0].0.div_euclid(1_000_000);
    WINDOWS_SECS.map(|w| {
        let bytes: u64 = events
            .iter()
            .filter(|(ts, _)| {
                let s = ts.div_euclid(1_000_000);
                s >= now_sec - w && s < now_sec
            })
            .map(|(_, b)| u64::from(*b))
            .sum();
        let secs = w.min(now_sec - first_sec);
        if secs > 0 {
            bytes as f64 * 8.0 / secs as f64 / 1000.0
        } else {
            0.0
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random traffic over several flows, with gaps and out-of-order timestamps: totals and
    /// every window equal the brute-force model at many query times.
    #[test]
    fn windows_match_the_model(
        steps in prop::collection::vec((0u16..4, 0i64..3_000_000, 40u32..65_535, any::<bool>()), 1..400),
    ) {
        let mut meter = Meter::new();
        let mut model: HashMap<u16, Vec<(i64, u32)>> = HashMap::new();
        let mut t = 1_700_000_000_000_000i64;
        let mut latest = i64::MIN;
        for (flow, dt, ip_len, backwards) in steps {
            // sometimes a timestamp from the past: the meter clamps it to the latest seen
            let ts = if backwards { t - dt } else { t += dt * 3; t };
            meter.record(ts, &seg(flow, ip_len, &[]));
            latest = latest.max(ts);
            model.entry(flow).or_default().push((latest, ip_len));
        }
        prop_assert_eq!(meter.len(), model.len());
        for (flow, events) in &model {
            let f = meter.get(&key(*flow)).unwrap();
            prop_assert_eq!(f.packets, events.len() as u64);
            prop_assert_eq!(f.bytes, events.iter().map(|e| u64::from(e.1)).sum::<u64>());
            prop_assert_eq!(f.first_seen_micros, events[0].0);
            prop_assert_eq!(f.last_seen_micros, events[events.len() - 1].0);
            for later in [0, 1, 999_999, 1_000_000, 7_500_000, 61_000_000, 400_000_000, 700_000_000] {
                let now = latest + later;
                let r = f.rates(now);
                let m = model_kbps(events, now);
                let got = [r.kbps_10s, r.kbps_1m, r.kbps_5m, r.kbps_10m];
                for i in 0..4 {
                    prop_assert!((got[i] - m[i]).abs() < 1e-9, "now {} window {}: {} vs {}", now, i, got[i], m[i]);
                }
            }
        }
    }
}

#[test]
fn long_running_stream_rolls_its_windows() {
    // 100 kB/s for 30 minutes, then 50 kB/s for 10 minutes: the ring wraps many times.
    let mut meter = Meter::new();
    let t0 = 1_700_000_000 * 1_000_000i64;
    let mut mid = None;
    for s in 0..2400i64 {
        let per_sec = if s < 1800 { 100_000 } else { 50_000 };
        for i in 0..10 {
            meter.record(t0 + s * 1_000_000 + i * 100_000, &seg(1, per_sec / 10, &[]));
        }
        if s == 2099 {
            mid = meter.rates(&key(1), t0 + 2100 * 1_000_000);
        }
    }
    // 5 minutes into the slower part: 10 min window = 300 s at 800 + 300 s at 400 kbps
    let r = mid.unwrap();
    assert_eq!(r.kbps_10m, 600.0);
    assert_eq!(r.kbps_5m, 400.0);
    let r = meter.rates(&key(1), t0 + 2400 * 1_000_000).unwrap();
    assert_eq!(r.kbps_10s, 400.0);
    assert_eq!(r.kbps_1m, 400.0);
    assert_eq!(r.kbps_5m, 400.0);
    assert_eq!(r.kbps_10m, 400.0);
    let f = meter.get(&key(1)).unwrap();
    assert_eq!(f.bytes, 1800 * 100_000 + 600 * 50_000);
    assert!(f.windows().heap_bytes() <= MAX_BUCKETS * 4);
}

#[test]
fn flow_cap_bounds_memory() {
    let mut meter = Meter::with_max_flows(1000);
    let t0 = 1_700_000_000 * 1_000_000i64;
    for i in 0..50_000u32 {
        let flow = i as u16;
        meter.record(t0 + i64::from(i), &seg(flow, 100, &[]));
        assert!(meter.len() <= 1000);
    }
    assert!(meter.evicted() >= 49_000);
    // the newest flows survive, the oldest were evicted
    assert!(meter.get(&key(49_999u32 as u16)).is_some());
    assert!(meter.get(&key(40_000)).is_none());
    for (k, f) in meter.flows() {
        assert_eq!(meter.get(k).unwrap().packets, f.packets);
    }
}

#[test]
fn expire_drops_idle_flows_only() {
    let mut meter = Meter::new();
    let t0 = 1_700_000_000 * 1_000_000i64;
    meter.record(t0, &seg(1, 100, &[]));
    meter.record(t0 + 10 * 60 * 1_000_000, &seg(2, 100, &[]));
    meter.record(t0 + 16 * 60 * 1_000_000, &seg(3, 100, &[]));
    let dropped = meter.expire(t0 + 16 * 60 * 1_000_000, Duration::from_secs(15 * 60));
    assert_eq!(dropped, 1);
    assert!(meter.get(&key(1)).is_none());
    assert!(meter.get(&key(2)).is_some() && meter.get(&key(3)).is_some());
    // a clock behind the meter's latest time expires nothing more
    assert_eq!(meter.expire(t0, Duration::from_secs(60)), 1);
    assert!(meter.get(&key(3)).is_some());
}

#[test]
fn request_hints_keep_the_latest_of_each_kind() {
    let mut meter = Meter::new();
    let t0 = 1_700_000_000 * 1_000_000i64;
    let r1 = b"GET /library/parts/11/1/file.mkv?X-Plex-Session-Identifier=a1 HTTP/1.1\r\n\r\n";
    let r2 = b"GET /library/parts/12/1/file.mkv HTTP/1.1\r\nHost: x\r\n\r\n";
    let other = b"PUT /library/parts/99/1/file.mkv HTTP/1.1\r\n\r\n";
    meter.record(t0, &seg(1, 200, r1));
    meter.record(t0 + 1, &seg(1, 200, r2));
    meter.record(t0 + 2, &seg(1, 200, other));
    meter.record(t0 + 3, &seg(1, 200, b"\x17\x03\x03 TLS data"));
    let f = meter.get(&key(1)).unwrap();
    assert_eq!(f.hints.part_id.as_deref(), Some("12"));
    assert_eq!(f.hints.session_identifier.as_deref(), Some("a1"));
    assert_eq!(f.hints.transcode_session, None);
    assert_eq!(f.hinted_requests, 2);
    assert_eq!(f.packets, 4);
}
