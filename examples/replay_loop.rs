//! The packet path of `streamwarden replay --all-tcp --flows --json FILE`, for whole-process
//! timing against `pcap_loop`: `PacketSource::open_file` + `next_packet`, the per-second tick
//! check, and `Metering::ingest` (`DecodeStats::count(decode(..))`, port filter,
//! `Meter::record`).
//!
//! ```text
//! cargo run --release --example replay_loop -- /tmp/2m.pcap
//! hyperfine -w 1 -r 10 'target/release/examples/pcap_loop /tmp/2m.pcap' \
//!     'target/release/examples/replay_loop /tmp/2m.pcap'
//! ```

use std::hint::black_box;
use std::process::ExitCode;

use streamwarden::capture::{DecodeStats, Next, Packet, PacketSource, decode};
use streamwarden::meter::Meter;

/// A copy of the engine's `Metering` (the crate's binary part is not in this library).
struct Metering {
    meter: Meter,
    stats: DecodeStats,
    linktype: i32,
    ports: Option<Vec<u16>>,
}

impl Metering {
    #[inline]
    fn ingest(&mut self, p: &Packet<'_>) {
        if let Ok(seg) = self.stats.count(decode(self.linktype, p.data)) {
            let wanted = match &self.ports {
                None => true,
                Some(ports) => ports.contains(&seg.sport) || ports.contains(&seg.dport),
            };
            if wanted {
                self.meter.record(p.ts_micros, &seg);
            }
        }
    }
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: replay_loop FILE");
        return ExitCode::from(2);
    };
    let mut source = match PacketSource::open_file(&path, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // --all-tcp: no port filter
    let mut metering = Metering {
        meter: Meter::new(),
        stats: DecodeStats::default(),
        linktype: source.linktype(),
        ports: None,
    };
    let evaluate = black_box(false);
    let mut first_ts: Option<i64> = None;
    let mut last_tick_sec: Option<i64> = None;
    let mut ticks = 0u64;
    loop {
        let packet = match source.next_packet() {
            Ok(Next::Packet(p)) => p,
            Ok(Next::Eof) => break,
            Ok(Next::Idle) => continue,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let ts = packet.ts_micros;
        let _first = *first_ts.get_or_insert(ts);
        let sec = ts.div_euclid(1_000_000);
        if evaluate && last_tick_sec.is_some_and(|l| sec > l) {
            ticks += 1;
        }
        if last_tick_sec.is_none_or(|l| sec > l) {
            last_tick_sec = Some(sec);
        }
        metering.ingest(&packet);
    }
    let (flows, packets, bytes) = metering
        .meter
        .flows()
        .fold((0usize, 0u64, 0u64), |(n, p, b), (_, f)| {
            (n + 1, p + f.packets, b + f.bytes)
        });
    let s = &metering.stats;
    println!(
        "{flows} flows, {packets} packets, {bytes} bytes; read {} decoded {} skipped {}; ticks {ticks}",
        s.read, s.decoded, s.skipped
    );
    ExitCode::SUCCESS
}
