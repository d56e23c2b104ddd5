//! tshark as the oracle: per-connection packet counts and IP bytes of the innermost IP/TCP
//! (reassembly off), and the same read through streamwarden's capture and decoder.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use streamwarden::capture::{CaptureError, DecodeStats, Next, PacketSource, decode};
use streamwarden::meter::Meter;

/// (source, source port, destination, destination port) → packets.
pub type Counts = BTreeMap<(IpAddr, u16, IpAddr, u16), u64>;
/// The same → IP bytes (the innermost IP header's length fields).
pub type Bytes = BTreeMap<(IpAddr, u16, IpAddr, u16), u64>;

pub struct Read {
    pub counts: Counts,
    pub bytes: Bytes,
    pub stats: DecodeStats,
    pub meter: Meter,
    /// An error after the last whole packet (a savefile cut off mid-record).
    pub tail_error: Option<CaptureError>,
}

/// A capture read as streamwarden reads it.
pub fn read_ours(path: &Path) -> Result<Read, CaptureError> {
    let mut source = PacketSource::open_file(path, None)?;
    let linktype = source.linktype();
    let mut counts = Counts::new();
    let mut bytes = Bytes::new();
    let mut stats = DecodeStats::default();
    let mut meter = Meter::new();
    let tail_error = loop {
        match source.next_packet() {
            Ok(Next::Packet(p)) => {
                if let Ok(seg) = stats.count(decode(linktype, p.data)) {
                    let key = (seg.src, seg.sport, seg.dst, seg.dport);
                    *counts.entry(key).or_default() += 1;
                    *bytes.entry(key).or_default() += u64::from(seg.ip_len);
                    meter.record(p.ts_micros, &seg);
                }
            }
            Ok(Next::Eof) => break None,
            Ok(Next::Idle) => panic!("a savefile never idles"),
            Err(e) => break Some(e),
        }
    };
    Ok(Read {
        counts,
        bytes,
        stats,
        meter,
        tail_error,
    })
}

/// Per-connection packet counts and IP bytes of the innermost IP/TCP as tshark dissects them
/// (IP reassembly off), or `None` when tshark is not installed.
pub fn read_tshark(path: &Path) -> Option<Result<(Counts, Bytes), String>> {
    let output = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"])
        .args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"])
        .args(["-e", "frame.protocols"])
        .args(["-e", "ip.src", "-e", "ip.dst", "-e", "ip.len"])
        .args(["-e", "ipv6.src", "-e", "ipv6.dst", "-e", "ipv6.plen"])
        .args([
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "ipv6.opt.jumbo",
        ])
        .args(["-Y", "tcp"])
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(e.to_string())),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let mut counts = Counts::new();
    let mut bytes = Bytes::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        match innermost(line) {
            Ok(Some((key, len))) => {
                *counts.entry(key).or_default() += 1;
                *bytes.entry(key).or_default() += len;
            }
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok((counts, bytes)))
}

/// The innermost IP/TCP of one tshark line: the first TCP layer in frame.protocols (TCP
/// carries no tunnel: a later one is a packet quoted by an application, such as OpenFlow),
/// and the last IP layer before it, read from that occurrence of its family's fields. `None`
/// for an ICMP error quoting a TCP header (not a TCP packet).
#[allow(clippy::type_complexity)]
fn innermost(line: &str) -> Result<Option<((IpAddr, u16, IpAddr, u16), u64)>, String> {
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() != 10 {
        return Err(format!("unexpected tshark line {line:?}"));
    }
    let nth = |s: &str, n: usize| s.split('|').nth(n).unwrap_or("").to_string();
    let layers: Vec<&str> = f[0].split(':').collect();
    let tcp_at = layers
        .iter()
        .position(|l| *l == "tcp")
        .ok_or_else(|| format!("no tcp layer in {line:?}"))?;
    let before = &layers[..tcp_at];
    if before.iter().any(|l| *l == "icmp" || *l == "icmpv6") {
        return Ok(None);
    }
    let v4s = before.iter().filter(|l| **l == "ip").count();
    let v6s = before.iter().filter(|l| **l == "ipv6").count();
    let v6 = before
        .iter()
        .rev()
        .find(|l| **l == "ip" || **l == "ipv6")
        .is_some_and(|l| *l == "ipv6");
    let (src, dst, len) = if v6 {
        let plen: u64 = nth(f[6], v6s - 1)
            .parse()
            .map_err(|_| format!("ipv6.plen in {line:?}"))?;
        // A jumbogram says its length in a hop-by-hop option (payload length 0).
        let plen = match nth(f[9], 0).parse::<u64>() {
            Ok(jumbo) if plen == 0 => jumbo,
            _ => plen,
        };
        (nth(f[4], v6s - 1), nth(f[5], v6s - 1), plen + 40)
    } else {
        let k = v4s.saturating_sub(1);
        let len: u64 = nth(f[3], k)
            .parse()
            .map_err(|_| format!("ip.len in {line:?}"))?;
        (nth(f[1], k), nth(f[2], k), len)
    };
    let addr = |s: &str| -> Result<IpAddr, String> {
        s.parse().map_err(|_| format!("address {s:?} in {line:?}"))
    };
    let port = |s: &str| -> Result<u16, String> {
        s.parse().map_err(|_| format!("port {s:?} in {line:?}"))
    };
    Ok(Some((
        (
            addr(&src)?,
            port(&nth(f[7], 0))?,
            addr(&dst)?,
            port(&nth(f[8], 0))?,
        ),
        len,
    )))
}
