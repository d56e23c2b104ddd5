//! The baseline for `replay`'s whole-process timing: a bare libpcap read loop that touches
//! every packet and does nothing else.
//!
//! ```text
//! cargo run --release --example pcap_loop -- /tmp/2m.pcap
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: pcap_loop FILE");
        return ExitCode::from(2);
    };
    let mut cap = match pcap::Capture::from_file(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut packets, mut bytes) = (0u64, 0u64);
    while let Ok(p) = cap.next_packet() {
        packets += 1;
        bytes += u64::from(p.header.len);
    }
    println!("{packets} packets, {bytes} bytes");
    ExitCode::SUCCESS
}
