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

/// A classic pcap savefile written byte by byte, so a test can choose what libpcap's writer
/// would not: the byte order, the header's snaplen whatever the records hold, records over
/// that snaplen.
#[derive(Clone, Copy, Debug)]
pub struct RawPcap {
    /// Big-endian file (magic `a1 b2 c3 d4` / `a1 b2 3c 4d` as stored bytes).
    pub big_endian: bool,
    /// Nanosecond timestamps (magic 0xa1b23c4d) instead of microseconds (0xa1b2c3d4).
    pub nanos: bool,
    /// The file header's snaplen.
    pub snaplen: u32,
    /// The file header's link type.
    pub linktype: u32,
}

impl RawPcap {
    /// The whole file: header, then one record per `(timestamp in µs, frame)`, each with
    /// caplen = len = the frame's length.
    pub fn bytes(&self, recs: &[(i64, Vec<u8>)]) -> Vec<u8> {
        let u32b = |v: u32| {
            if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u16b = |v: u16| {
            if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut out = Vec::new();
        out.extend(u32b(if self.nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
        out.extend(u16b(2));
        out.extend(u16b(4));
        out.extend(u32b(0)); // thiszone
        out.extend(u32b(0)); // sigfigs
        out.extend(u32b(self.snaplen));
        out.extend(u32b(self.linktype));
        for (ts, data) in recs {
            let frac = ts.rem_euclid(1_000_000) as u32;
            out.extend(u32b(ts.div_euclid(1_000_000) as u32));
            out.extend(u32b(if self.nanos { frac * 1000 } else { frac }));
            out.extend(u32b(data.len() as u32));
            out.extend(u32b(data.len() as u32));
            out.extend_from_slice(data);
        }
        out
    }
}
