//! Writes a synthetic Ethernet/IPv4/TCP savefile for whole-process timing.
//!
//! ```text
//! cargo run --release --example gen_capture -- /tmp/2m.pcap 2000000
//! ```
//!
//! Packets belong to 300 server-to-client flows from port 32400, arrive every 5 µs in runs of
//! 1 to 16 per flow, and are stored with a 66-byte snaplen while their IP headers claim
//! 1500 bytes. Every 1000th packet is a client request `GET /library/parts/<flow>/...`,
//! captured whole.

#[path = "../benches/support/flow_runs.rs"]
mod flow_runs;

use std::process::ExitCode;

use flow_runs::FlowRuns;

use etherparse::PacketBuilder;
use pcap::{Capture, Linktype, Packet, PacketHeader};

const FLOWS: u32 = 300;
const SNAP: usize = 66;

fn frame(flow: u32, request: bool) -> Vec<u8> {
    let server = [192, 168, 1, 10];
    let client = [10, (flow >> 8) as u8, flow as u8, 7];
    let port = 40000 + flow as u16;
    let mut v = Vec::new();
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let result = if request {
        let get = format!("GET /library/parts/{flow}/1/file.mkv HTTP/1.1\r\nHost: x\r\n\r\n");
        eth.ipv4(client, server, 64)
            .tcp(port, 32400, 1, 65535)
            .write(&mut v, get.as_bytes())
    } else {
        eth.ipv4(server, client, 64)
            .tcp(32400, port, 1, 65535)
            .write(&mut v, &[0x17; 1460])
    };
    if let Err(e) = result {
        eprintln!("cannot build a frame: {e}");
    }
    v
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(path), count) = (args.next(), args.next()) else {
        eprintln!("usage: gen_capture PATH [PACKETS (default 2000000)]");
        return ExitCode::from(2);
    };
    let count: u64 = match count.map(|c| c.parse()) {
        None => 2_000_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("bad packet count: {e}");
            return ExitCode::from(2);
        }
    };
    let dead = match Capture::dead(Linktype::ETHERNET) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = match dead.savefile(&path) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let data: Vec<Vec<u8>> = (0..FLOWS).map(|f| frame(f, false)).collect();
    let start: i64 = 1_700_000_000_000_000;
    for (i, flow) in FlowRuns::new(FLOWS as usize)
        .take(count as usize)
        .enumerate()
    {
        let request;
        let full: &[u8] = if i % 1000 == 999 {
            request = frame(flow as u32, true);
            &request
        } else {
            &data[flow]
        };
        let ts = start + i as i64 * 5;
        // SAFETY: PacketHeader is plain integers; all-zero is a valid value.
        let mut header: PacketHeader = unsafe { std::mem::zeroed() };
        header.ts.tv_sec = ts.div_euclid(1_000_000) as _;
        header.ts.tv_usec = ts.rem_euclid(1_000_000) as _;
        // requests are captured whole (as with the default snaplen of 256), data cut at SNAP
        let captured = if i % 1000 == 999 {
            full
        } else {
            &full[..full.len().min(SNAP)]
        };
        header.caplen = captured.len() as u32;
        header.len = full.len() as u32;
        out.write(&Packet::new(&header, captured));
    }
    if let Err(e) = out.flush() {
        eprintln!("cannot write {path}: {e}");
        return ExitCode::FAILURE;
    }
    println!("wrote {count} packets to {path}");
    ExitCode::SUCCESS
}
