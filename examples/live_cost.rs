//! What metering live traffic costs: captures on an interface for some seconds through the
//! same path as `streamwarden run` (PacketSource → decode → meter), then reports the CPU
//! time this process used, what it metered, and libpcap's own statistics (kernel drops).
//!
//! ```text
//! cargo run --release --example live_cost -- IFACE SECONDS [PORT]
//! ```
//! `scripts/bench-live.sh` drives it with a 1 Gbps stream between two network namespaces.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use streamwarden::capture::{CaptureConfig, Next, PacketSource};
use streamwarden::meter::Metering;

fn cpu_seconds() -> f64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF);
    match usage {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => f64::NAN,
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(iface), Some(secs)) = (args.get(1), args.get(2).and_then(|s| s.parse::<u64>().ok()))
    else {
        eprintln!("usage: live_cost IFACE SECONDS [PORT]");
        return ExitCode::from(2);
    };
    let port = args.get(3).and_then(|p| p.parse().ok()).unwrap_or(32400);
    let config = CaptureConfig {
        interface: Some(iface.clone()),
        ports: vec![port],
        immediate: std::env::var("IMMEDIATE")
            .map_or(CaptureConfig::default().immediate, |v| v != "0"),
        ..CaptureConfig::default()
    };
    let mut source = match PacketSource::open_live(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut metering = Metering::new(source.linktype(), Some(vec![port]));
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut n: u32 = 0;
    loop {
        // The clock is read every 4096 packets and on every idle wake-up, not per packet.
        n = n.wrapping_add(1);
        if n.is_multiple_of(4096) && start.elapsed() >= Duration::from_secs(secs) {
            break;
        }
        match source.next_packet() {
            Ok(Next::Packet(p)) => metering.ingest(&p),
            Ok(Next::Idle) => {
                if start.elapsed() >= Duration::from_secs(secs) {
                    break;
                }
            }
            Ok(Next::Eof) => break,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let bytes: u64 = metering.meter.flows().map(|(_, f)| f.bytes).sum();
    let stats = source.stats().unwrap_or_default();
    println!(
        "{:.1} s: {} packets, {:.1} Mbit/s metered; CPU {:.3} s = {:.2} % of one core; pcap received {}, dropped {}, interface dropped {}",
        wall,
        metering.stats.decoded,
        bytes as f64 * 8.0 / wall / 1e6,
        cpu,
        cpu / wall * 100.0,
        stats.received,
        stats.dropped,
        stats.if_dropped
    );
    ExitCode::SUCCESS
}
