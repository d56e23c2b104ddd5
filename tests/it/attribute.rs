//! Attribution through the engine's tick: traffic that starts before Plex lists the
//! session is attributed, with its history, once it appears.

use std::net::{IpAddr, Ipv4Addr};

use streamwarden::capture::TcpSegment;
use streamwarden::config::Config;
use streamwarden::engine::{self, RuleState, Tracker};
use streamwarden::meter::Meter;
use streamwarden::micros::Micros;
use streamwarden::plex::Session;
use streamwarden::rules::RuleSet;

const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

fn seg(ip_len: u32) -> TcpSegment<'static> {
    TcpSegment {
        src: SERVER,
        dst: CLIENT,
        sport: 32400,
        dport: 50000,
        ip_len,
        payload_len: ip_len - 40,
        payload: &[],
        syn: false,
        fin: false,
        rst: false,
    }
}

fn rules(text: &str) -> RuleSet {
    RuleSet::compile(&Config::parse(text, None).unwrap()).unwrap()
}

#[test]
fn traffic_before_the_session_appears_is_attributed_with_its_history() {
    let mut meter = Meter::new();
    // 30 s at 125 000 B/s (1000 kbps) before Plex lists anything.
    for s in 0..30i64 {
        for k in 0..100 {
            meter.record(s * 1_000_000 + k * 10_000, &seg(1250));
        }
    }
    let rules =
        rules("[[rules]]\nname = \"r\"\nwhen = 'measured_kbps_1m >= 1000'\nsustain = \"3s\"\n");
    let mut sustain = Tracker::default();
    let t = engine::tick(
        &rules,
        &[],
        &meter,
        &[32400],
        Micros(30_000_000),
        true,
        &mut sustain,
    );
    assert!(t.streams.is_empty());
    // The session appears at 30 s, its address as Plex writes it.
    let s = Session {
        session_id: Some("late".into()),
        address: Some("::ffff:198.51.100.7".into()),
        ..Default::default()
    };
    let s = Session {
        address: streamwarden::plex::session::clean_address(s.address.as_deref().unwrap()),
        ..s
    };
    let t = engine::tick(
        &rules,
        std::slice::from_ref(&s),
        &meter,
        &[32400],
        Micros(30_000_000),
        true,
        &mut sustain,
    );
    let m = t.attributed[0].as_ref().expect("attributed").measured;
    assert_eq!(m.kbps_1m, 1000.0, "the 30 s before it was listed count");
    assert_eq!(m.kbps_10s, 1000.0);
    assert!(!m.estimated);
    assert_eq!(
        t.states[0][0],
        RuleState::Sustaining {
            held: std::time::Duration::ZERO,
            sustain: std::time::Duration::from_secs(3)
        }
    );
    assert!(t.due.is_empty());
    // The stream goes on.
    for sec in 30..34i64 {
        for k in 0..100 {
            meter.record(sec * 1_000_000 + k * 10_000, &seg(1250));
        }
    }
    let t = engine::tick(
        &rules,
        std::slice::from_ref(&s),
        &meter,
        &[32400],
        Micros(33_000_000),
        true,
        &mut sustain,
    );
    assert!(matches!(t.states[0][0], RuleState::Due { .. }));
    assert_eq!(t.due.len(), 1);
    assert_eq!(t.due[0].rule, "r");
}

#[test]
fn sustain_resets_when_the_condition_stops_holding() {
    let mut meter = Meter::new();
    for s in 0..20i64 {
        meter.record(s * 1_000_000, &seg(1250));
    }
    let rules = rules("[[rules]]\nname = \"r\"\nwhen = 'state == \"playing\"'\nsustain = \"5s\"\n");
    let mut playing = Session {
        session_id: Some("a".into()),
        address: Some("198.51.100.7".into()),
        state: Some("playing".into()),
        ..Default::default()
    };
    let mut sustain = Tracker::default();
    engine::tick(
        &rules,
        std::slice::from_ref(&playing),
        &meter,
        &[32400],
        Micros(1_000_000),
        true,
        &mut sustain,
    );
    playing.state = Some("paused".into());
    engine::tick(
        &rules,
        std::slice::from_ref(&playing),
        &meter,
        &[32400],
        Micros(4_000_000),
        true,
        &mut sustain,
    );
    playing.state = Some("playing".into());
    let t = engine::tick(
        &rules,
        std::slice::from_ref(&playing),
        &meter,
        &[32400],
        Micros(7_000_000),
        true,
        &mut sustain,
    );
    assert!(t.due.is_empty(), "held only since 7 s");
    let t = engine::tick(
        &rules,
        std::slice::from_ref(&playing),
        &meter,
        &[32400],
        Micros(12_000_000),
        true,
        &mut sustain,
    );
    assert_eq!(t.due.len(), 1);
}
