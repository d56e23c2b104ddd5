//! Writing real capture files for tests: etherparse builds the frames, the pcap crate's
//! savefile writes them.

use std::path::Path;

use etherparse::PacketBuilder;
use pcap::{Capture, Linktype, Packet, PacketHeader};

pub const SERVER: [u8; 4] = [10, 0, 0, 1];
pub const T0: i64 = 1_700_000_000;

/// Frames with their timestamps (microseconds since the epoch).
#[derive(Default)]
pub struct Cap {
    pub recs: Vec<(i64, Vec<u8>)>,
}

/// An Ethernet/IPv4/TCP frame with `payload`: its IP length is payload + 40.
pub fn eth_tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 65535)
        .ack(1);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

impl Cap {
    /// `per_sec` packets of `ip_len` IP bytes a second from `src` to `dst`, for the
    /// seconds [from, to) after T0, spread evenly inside each second.
    #[allow(clippy::too_many_arguments)]
    pub fn stream(
        &mut self,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        from: i64,
        to: i64,
        per_sec: i64,
        ip_len: usize,
    ) {
        let payload = vec![0x55u8; ip_len - 40];
        let frame = eth_tcp(src, sport, dst, dport, &payload);
        for s in from..to {
            for k in 0..per_sec {
                self.recs.push((
                    (T0 + s) * 1_000_000 + k * (1_000_000 / per_sec),
                    frame.clone(),
                ));
            }
        }
    }

    pub fn packet(&mut self, at_micros_after_t0: i64, frame: Vec<u8>) {
        self.recs.push((T0 * 1_000_000 + at_micros_after_t0, frame));
    }

    /// Writes the frames in time order.
    pub fn write(&mut self, path: &Path) {
        self.recs.sort_by_key(|r| r.0);
        let dead = Capture::dead(Linktype::ETHERNET).unwrap();
        let mut out = dead.savefile(path).unwrap();
        for (ts, data) in &self.recs {
            // SAFETY: PacketHeader is plain integers; all-zero is a valid value.
            let mut h: PacketHeader = unsafe { std::mem::zeroed() };
            h.ts.tv_sec = ts.div_euclid(1_000_000) as _;
            h.ts.tv_usec = ts.rem_euclid(1_000_000) as _;
            h.caplen = data.len() as u32;
            h.len = data.len() as u32;
            out.write(&Packet::new(&h, data));
        }
        out.flush().unwrap();
    }
}
