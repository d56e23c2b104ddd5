//! What recording usage costs the daemon each round, with 10 streams of 3 connections each:
//! `Recorder::round` (once a second) and, once a minute, the closed minute's rows written
//! to a state database on disk.
//!
//! `cargo bench --bench usage`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use streamwarden::attribute;
use streamwarden::capture::Packet;
use streamwarden::capture::decode::LINKTYPE_ETHERNET;
use streamwarden::engine::usage::Recorder;
use streamwarden::meter::Metering;
use streamwarden::plex::{PlayState, Session};
use streamwarden::state::State;

const STREAMS: u8 = 10;
const CONNECTIONS: u16 = 3;

fn frame(client: u8, port: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 168, 1, 10], [10, 0, 0, client], 64)
        .tcp(32400, port, 1, 65535)
        .write(&mut v, &[0x17; 1460])
        .unwrap();
    v
}

fn bench(c: &mut Criterion) {
    let mut metering = Metering::new(LINKTYPE_ETHERNET, Some(vec![32400]));
    let sessions: Vec<Session> = (0..STREAMS)
        .map(|i| Session {
            session_id: Some(format!("s{i}")),
            user: Some(format!("user{i}")),
            address: Some(format!("10.0.0.{}", i + 1)),
            state: Some(PlayState::Playing),
            transcode_decision: Some("transcode".into()),
            ..Session::default()
        })
        .collect();
    let frames: Vec<Vec<u8>> = (0..STREAMS)
        .flat_map(|i| (0..CONNECTIONS).map(move |p| frame(i + 1, 50_000 + p)))
        .collect();
    let mut now = 1_800_000_000_000_000i64;
    let feed = |metering: &mut Metering, now: i64| {
        for f in &frames {
            metering.ingest(&Packet {
                ts_micros: now,
                orig_len: f.len() as u32,
                data: f,
            });
        }
    };
    feed(&mut metering, now);
    let mut recorder = Recorder::default();
    c.bench_function("usage round (10 streams, 30 connections)", |b| {
        b.iter(|| {
            now += 1_000_000;
            feed(&mut metering, now);
            let attributed = attribute::attribute(&metering.meter, &sessions, &[32400], now);
            let out = recorder.round(&metering.meter, &sessions, &attributed, &[32400], now);
            black_box(out)
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let mut state = State::open(&dir.path().join("state.db")).unwrap();
    let mut minute = 0i64;
    c.bench_function("usage minute written (10 rows, on disk)", |b| {
        b.iter(|| {
            minute += 60;
            let rows: Vec<_> = (0..STREAMS)
                .map(|i| streamwarden::state::usage::UsageRow {
                    start: minute,
                    span: 60,
                    user: format!("user{i}"),
                    stream: format!("id:s{i}"),
                    bytes: 75_000_000,
                    seconds: 60,
                    ..Default::default()
                })
                .collect();
            state.record_usage(black_box(&rows)).unwrap();
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
