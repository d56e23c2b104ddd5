//! Decode + meter throughput over an in-memory capture.
//!
//! `cargo bench --bench meter -- --warm-up-time 1 --measurement-time 3`
//!
//! For a whole-process timing on a real savefile, build one with the example:
//! `cargo run --release --example gen_capture -- /tmp/2m.pcap 2000000`

#[path = "support/flow_runs.rs"]
mod flow_runs;

use std::hint::black_box;

use flow_runs::FlowRuns;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use streamwarden::capture::decode;
use streamwarden::capture::decode::LINKTYPE_ETHERNET;
use streamwarden::meter::Meter;

const PACKETS: usize = 1_000_000;
const FLOWS: u32 = 300;
/// Bytes captured per frame (Ethernet + IPv4 + TCP + 12 payload bytes), as with a small
/// snaplen; every IP header claims 1500 bytes.
const SNAP: usize = 66;

/// `PACKETS` frames of `FLOWS` server-to-client flows, in runs of 1 to 16 packets per flow,
/// one every microsecond, laid out back to back like a capture buffer.
fn synthesize() -> (Vec<u8>, Vec<i64>) {
    let mut frames = Vec::with_capacity(PACKETS * SNAP);
    let mut timestamps = Vec::with_capacity(PACKETS);
    let templates: Vec<Vec<u8>> = (0..FLOWS)
        .map(|f| {
            let mut v = Vec::new();
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4([192, 168, 1, 10], [10, (f >> 8) as u8, f as u8, 7], 64)
                .tcp(32400, 40000 + f as u16, 1, 65535)
                .write(&mut v, &[0x17; 1460])
                .unwrap();
            v.truncate(SNAP);
            v
        })
        .collect();
    for (i, flow) in FlowRuns::new(FLOWS as usize).take(PACKETS).enumerate() {
        frames.extend_from_slice(&templates[flow]);
        timestamps.push(1_700_000_000_000_000 + i as i64);
    }
    (frames, timestamps)
}

fn bench(c: &mut Criterion) {
    let (frames, timestamps) = synthesize();
    let mut group = c.benchmark_group("meter");
    group.throughput(Throughput::Elements(PACKETS as u64));
    group.sample_size(10);
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut bytes = 0u64;
            for frame in frames.chunks_exact(SNAP) {
                if let Ok(seg) = decode(LINKTYPE_ETHERNET, black_box(frame)) {
                    bytes += u64::from(seg.ip_len);
                }
            }
            bytes
        })
    });
    group.bench_function("decode_and_meter", |b| {
        b.iter(|| {
            let mut meter = Meter::new();
            for (frame, &ts) in frames.chunks_exact(SNAP).zip(&timestamps) {
                if let Ok(seg) = decode(LINKTYPE_ETHERNET, black_box(frame)) {
                    meter.record(ts, &seg);
                }
            }
            assert_eq!(meter.len(), FLOWS as usize);
            meter
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
