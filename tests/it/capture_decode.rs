//! Captures written here with etherparse's `PacketBuilder` and `pcap::Capture::dead` +
//! `savefile`, with exact byte counts and timing, read back through `PacketSource::open_file`,
//! `decode` and `Meter`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use etherparse::{PacketBuilder, VlanId};
use pcap::{Capture, Linktype, Packet, PacketHeader, Precision};
use proptest::prelude::*;
use streamwarden::capture::decode::{
    DLT_RAW, LINKTYPE_ARCNET_LINUX, LINKTYPE_C_HDLC, LINKTYPE_C_HDLC_WITH_DIR, LINKTYPE_ETHERNET,
    LINKTYPE_IPOIB, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP, LINKTYPE_NULL, LINKTYPE_PPP, LINKTYPE_PPP_ETHER, LINKTYPE_PPP_HDLC,
    LINKTYPE_PPP_WITH_DIR, LINKTYPE_RAW, SUPPORTED_LINKTYPES,
};
use streamwarden::capture::{DecodeStats, Next, PacketSource, Skip, decode};
use streamwarden::meter::{FlowKey, Meter, RequestHints};

const SERVER: [u8; 4] = [10, 0, 0, 2];
const CLIENT: [u8; 4] = [10, 0, 0, 9];
const SERVER6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const CLIENT6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
/// 2024-01-01T00:00:00Z, a whole second.
const T0: i64 = 1_704_067_200 * 1_000_000;

/// One packet to write: timestamp (µs), captured bytes, length on the wire.
struct Rec {
    ts_micros: i64,
    data: Vec<u8>,
    orig_len: u32,
}

impl Rec {
    fn full(ts_micros: i64, data: Vec<u8>) -> Self {
        let orig_len = data.len() as u32;
        Rec {
            ts_micros,
            data,
            orig_len,
        }
    }

    /// The frame as captured with `snaplen`: `orig_len` stays the full length.
    fn snapped(ts_micros: i64, mut data: Vec<u8>, snaplen: usize) -> Self {
        let orig_len = data.len() as u32;
        data.truncate(snaplen);
        Rec {
            ts_micros,
            data,
            orig_len,
        }
    }
}

/// Writes `recs` to a savefile of link type `linktype` (nanosecond precision if `nanos`).
fn write_capture(path: &Path, linktype: i32, nanos: bool, recs: &[Rec]) {
    let precision = if nanos {
        Precision::Nano
    } else {
        Precision::Micro
    };
    let dead = Capture::dead_with_precision(Linktype(linktype), precision).unwrap();
    let mut out = dead.savefile(path).unwrap();
    for r in recs {
        // SAFETY: PacketHeader is plain integers; all-zero is a valid value.
        let mut header: PacketHeader = unsafe { std::mem::zeroed() };
        header.ts.tv_sec = r.ts_micros.div_euclid(1_000_000) as _;
        let micros = r.ts_micros.rem_euclid(1_000_000);
        header.ts.tv_usec = if nanos { micros * 1000 } else { micros } as _;
        header.caplen = r.data.len() as u32;
        header.len = r.orig_len;
        out.write(&Packet::new(&header, &r.data));
    }
    out.flush().unwrap();
}

/// Reads a savefile through the real pipeline.
fn read_capture(path: &Path) -> (Meter, DecodeStats, Vec<i64>) {
    let mut source = PacketSource::open_file(path, None).unwrap();
    let linktype = source.linktype();
    let mut meter = Meter::new();
    let mut stats = DecodeStats::default();
    let mut timestamps = Vec::new();
    loop {
        match source.next_packet().unwrap() {
            Next::Packet(p) => {
                timestamps.push(p.ts_micros);
                if let Ok(seg) = stats.count(decode(linktype, p.data)) {
                    meter.record(p.ts_micros, &seg);
                }
            }
            Next::Eof => break,
            Next::Idle => unreachable!("savefiles do not idle"),
        }
    }
    (meter, stats, timestamps)
}

fn key(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> FlowKey {
    FlowKey {
        src: IpAddr::V4(Ipv4Addr::from(src)),
        sport,
        dst: IpAddr::V4(Ipv4Addr::from(dst)),
        dport,
    }
}

fn key6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16) -> FlowKey {
    FlowKey {
        src: IpAddr::V6(Ipv6Addr::from(src)),
        sport,
        dst: IpAddr::V6(Ipv6Addr::from(dst)),
        dport,
    }
}

/// An IPv4/TCP packet (no link layer) with `payload_len` payload bytes: IP length is
/// `payload_len + 40`.
fn ipv4_tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 65535)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn ipv6_tcp(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv6(src, dst, 64)
        .tcp(sport, dport, 1, 65535)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn eth_ipv4_tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 65535)
        .write(&mut v, payload)
        .unwrap();
    v
}

/// Linux cooked v1 header (16 bytes) in front of an IP packet.
fn sll(protocol: u16, ip: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&4u16.to_be_bytes()); // packet type: outgoing
    v.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
    v.extend_from_slice(&6u16.to_be_bytes()); // address length
    v.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]); // address, padded to 8
    v.extend_from_slice(&protocol.to_be_bytes());
    v.extend_from_slice(ip);
    v
}

/// Linux cooked v2 header (20 bytes) in front of an IP packet.
fn sll2(protocol: u16, ip: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&protocol.to_be_bytes());
    v.extend_from_slice(&[0, 0]); // reserved
    v.extend_from_slice(&3u32.to_be_bytes()); // interface index
    v.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
    v.push(0); // packet type: to us
    v.push(6); // address length
    v.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0, 0]);
    v.extend_from_slice(ip);
    v
}

#[test]
fn ethernet_ipv4_totals_and_windows_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.pcap");
    // Server -> client: 125 000 IP bytes per second for 20 s (100 packets of 1250 bytes per
    // second, every 10 ms). Client -> server: one 40-byte ACK per 100 ms.
    let data = vec![0x5a; 1210];
    let mut recs = Vec::new();
    for i in 0..2000i64 {
        let ts = T0 + i * 10_000;
        recs.push(Rec::full(
            ts,
            eth_ipv4_tcp(SERVER, 32400, CLIENT, 50000, &data),
        ));
        if i % 10 == 5 {
            recs.push(Rec::full(
                ts + 1,
                eth_ipv4_tcp(CLIENT, 50000, SERVER, 32400, &[]),
            ));
        }
    }
    write_capture(&path, LINKTYPE_ETHERNET, false, &recs);

    let (meter, stats, timestamps) = read_capture(&path);
    assert_eq!(stats.read, 2200);
    assert_eq!(stats.decoded, 2200);
    assert_eq!(timestamps.first(), Some(&T0));
    assert_eq!(timestamps[6], T0 + 50_001);
    assert_eq!(timestamps.last(), Some(&(T0 + 1999 * 10_000)));
    assert_eq!(meter.len(), 2);

    let down = meter.get(&key(SERVER, 32400, CLIENT, 50000)).unwrap();
    assert_eq!(down.packets, 2000);
    assert_eq!(down.bytes, 2000 * 1250);
    assert_eq!(down.payload_bytes, 2000 * 1210);
    assert_eq!(down.first_seen_micros, T0);
    assert_eq!(down.last_seen_micros, T0 + 19_990_000);
    let up = meter.get(&key(CLIENT, 50000, SERVER, 32400)).unwrap();
    assert_eq!((up.packets, up.bytes), (200, 200 * 40));

    // At T0 + 20 s the 10 s window holds seconds 10..19 (1.25 MB), the others the flow's
    // 20 s of life (2.5 MB over 20 s): 1000 kbps everywhere.
    let r = down.rates(T0 + 20_000_000);
    assert_eq!(r.kbps_10s, 1000.0);
    assert_eq!(r.kbps_1m, 1000.0);
    assert_eq!(r.kbps_5m, 1000.0);
    assert_eq!(r.kbps_10m, 1000.0);
    // Mid-way through a second, the incomplete second is left out: same figures.
    assert_eq!(down.rates(T0 + 20_700_000), r);
    // 5 s after the stream stopped: 10 s window = seconds 15..24, 5 of them full
    // (625 000 B * 8 / 10 s = 500 kbps); 1 min window = 2.5 MB over 25 s = 800 kbps.
    let r = meter
        .rates(&key(SERVER, 32400, CLIENT, 50000), T0 + 25_000_000)
        .unwrap();
    assert_eq!(r.kbps_10s, 500.0);
    assert_eq!(r.kbps_1m, 800.0);
    // 10 s into the stream: seconds 0..9 = 10 full seconds.
    assert_eq!(down.window_bytes(T0 + 10_000_000), [1_250_000; 4]);
    // ACKs: 10 per second of 40 bytes = 3.2 kbps.
    assert_eq!(up.rates(T0 + 20_000_000).kbps_10s, 3.2);
}

#[test]
fn nanosecond_savefile_gives_the_same_figures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nano.pcap");
    let recs: Vec<Rec> = (0..30i64)
        .map(|i| {
            Rec::full(
                T0 + i * 333_333,
                eth_ipv4_tcp(SERVER, 32400, CLIENT, 50000, &[1; 100]),
            )
        })
        .collect();
    write_capture(&path, LINKTYPE_ETHERNET, true, &recs);
    let (meter, _, timestamps) = read_capture(&path);
    let expected: Vec<i64> = recs.iter().map(|r| r.ts_micros).collect();
    assert_eq!(timestamps, expected);
    let flow = meter.get(&key(SERVER, 32400, CLIENT, 50000)).unwrap();
    assert_eq!((flow.packets, flow.bytes), (30, 30 * 140));
    assert_eq!(flow.last_seen_micros, T0 + 29 * 333_333);
}

#[test]
fn ipv6_vlan_and_qinq_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vlan.pcap");
    let mut recs = Vec::new();
    for i in 0..7i64 {
        // IPv6 plain: 40 + 20 + 300
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(SERVER6, CLIENT6, 64)
            .tcp(32400, 40000, 1, 100)
            .write(&mut v, &[7; 300])
            .unwrap();
        recs.push(Rec::full(T0 + i, v));
        // IPv4 in an 802.1Q tag
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(VlanId::try_new(42).unwrap())
            .ipv4(SERVER, CLIENT, 64)
            .tcp(32400, 40001, 1, 100)
            .write(&mut v, &[7; 500])
            .unwrap();
        assert_eq!(&v[12..14], &[0x81, 0x00]);
        recs.push(Rec::full(T0 + i, v));
        // IPv6 in QinQ (802.1ad outer tag, 802.1Q inner)
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .double_vlan(VlanId::try_new(100).unwrap(), VlanId::try_new(200).unwrap())
            .ipv6(SERVER6, CLIENT6, 64)
            .tcp(32400, 40002, 1, 100)
            .write(&mut v, &[7; 700])
            .unwrap();
        assert_eq!(&v[12..14], &[0x88, 0xa8]);
        recs.push(Rec::full(T0 + i, v));
    }
    write_capture(&path, LINKTYPE_ETHERNET, false, &recs);
    let (meter, stats, _) = read_capture(&path);
    assert_eq!((stats.read, stats.decoded), (21, 21));
    let f = meter.get(&key6(SERVER6, 32400, CLIENT6, 40000)).unwrap();
    assert_eq!((f.packets, f.bytes), (7, 7 * 360));
    let f = meter.get(&key(SERVER, 32400, CLIENT, 40001)).unwrap();
    assert_eq!((f.packets, f.bytes), (7, 7 * 540));
    let f = meter.get(&key6(SERVER6, 32400, CLIENT6, 40002)).unwrap();
    assert_eq!((f.packets, f.bytes), (7, 7 * 760));
}

#[test]
fn linux_cooked_v1_and_v2() {
    let dir = tempfile::tempdir().unwrap();
    for (linktype, wrap) in [
        (LINKTYPE_LINUX_SLL, sll as fn(u16, &[u8]) -> Vec<u8>),
        (LINKTYPE_LINUX_SLL2, sll2),
    ] {
        let path = dir.path().join(format!("sll{linktype}.pcap"));
        let mut recs = Vec::new();
        for i in 0..5i64 {
            let v4 = ipv4_tcp(SERVER, 32400, CLIENT, 50000, &[1; 1000]);
            recs.push(Rec::full(T0 + i * 1000, wrap(0x0800, &v4)));
            let v6 = ipv6_tcp(CLIENT6, 50001, SERVER6, 32400, &[2; 10]);
            recs.push(Rec::full(T0 + i * 1000 + 1, wrap(0x86dd, &v6)));
        }
        // an ARP frame and an 802.2 LLC frame are skipped as not IP
        recs.push(Rec::full(T0 + 10_000, wrap(0x0806, &[0; 28])));
        recs.push(Rec::full(T0 + 10_001, wrap(0x0004, &[0; 28])));
        write_capture(&path, linktype, false, &recs);
        let (meter, stats, _) = read_capture(&path);
        assert_eq!(
            (stats.read, stats.decoded, stats.not_ip),
            (12, 10, 2),
            "{linktype}"
        );
        let f = meter.get(&key(SERVER, 32400, CLIENT, 50000)).unwrap();
        assert_eq!((f.packets, f.bytes), (5, 5 * 1040), "{linktype}");
        let f = meter.get(&key6(CLIENT6, 50001, SERVER6, 32400)).unwrap();
        assert_eq!((f.packets, f.bytes), (5, 5 * 70), "{linktype}");
    }
}

#[test]
fn bsd_null_loop_and_raw_ip() {
    let dir = tempfile::tempdir().unwrap();
    let v4 = ipv4_tcp(SERVER, 32400, CLIENT, 50000, &[3; 200]);
    let v6 = ipv6_tcp(SERVER6, 32400, CLIENT6, 50000, &[3; 200]);
    let null = |family: [u8; 4], ip: &[u8]| -> Vec<u8> {
        let mut v = family.to_vec();
        v.extend_from_slice(ip);
        v
    };
    let cases: Vec<(i32, Vec<Vec<u8>>)> = vec![
        (
            LINKTYPE_NULL,
            vec![
                null(2u32.to_le_bytes(), &v4),  // little-endian host
                null(2u32.to_be_bytes(), &v4),  // big-endian host
                null(30u32.to_le_bytes(), &v6), // Darwin AF_INET6
                null(28u32.to_be_bytes(), &v6), // FreeBSD AF_INET6
                null(24u32.to_le_bytes(), &v6), // NetBSD/OpenBSD AF_INET6
                null(7u32.to_le_bytes(), &v4),  // unknown family: skipped
            ],
        ),
        (
            LINKTYPE_LOOP,
            vec![
                null(2u32.to_be_bytes(), &v4),
                null(24u32.to_be_bytes(), &v6),
            ],
        ),
        // libpcap takes DLT_RAW (12) for a dead capture and stores it as LINKTYPE_RAW (101)
        (DLT_RAW, vec![v4.clone(), v6.clone()]),
        (LINKTYPE_IPV4, vec![v4.clone()]),
        (LINKTYPE_IPV6, vec![v6.clone()]),
    ];
    for (linktype, frames) in cases {
        let path = dir.path().join(format!("lt{linktype}.pcap"));
        let recs: Vec<Rec> = frames
            .into_iter()
            .enumerate()
            .map(|(i, f)| Rec::full(T0 + i as i64, f))
            .collect();
        let n = recs.len() as u64;
        write_capture(&path, linktype, false, &recs);
        let (meter, stats, _) = read_capture(&path);
        let skipped = u64::from(linktype == LINKTYPE_NULL);
        assert_eq!(stats.decoded, n - skipped, "link type {linktype}");
        assert_eq!(stats.not_ip, skipped, "link type {linktype}");
        let total: u64 = meter.flows().map(|(_, f)| f.bytes).sum();
        let v4_count = meter
            .get(&key(SERVER, 32400, CLIENT, 50000))
            .map_or(0, |f| f.packets);
        let v6_count = meter
            .get(&key6(SERVER6, 32400, CLIENT6, 50000))
            .map_or(0, |f| f.packets);
        assert_eq!(
            total,
            v4_count * 240 + v6_count * 260,
            "link type {linktype}"
        );
        assert_eq!(v4_count + v6_count, n - skipped, "link type {linktype}");
    }
    // LINKTYPE_RAW as stored in savefiles decodes the same way.
    assert_eq!(decode(LINKTYPE_RAW, &v6), decode(DLT_RAW, &v6));
    assert!(decode(LINKTYPE_RAW, &v4).is_ok());
}

#[test]
fn snaplen_truncated_packets_count_their_full_ip_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.pcap");
    let mut recs = Vec::new();
    for i in 0..50i64 {
        // 1514-byte frames captured with a 64-byte snaplen: caplen 64 < len 1514
        let frame = eth_ipv4_tcp(SERVER, 32400, CLIENT, 50000, &[9; 1460]);
        assert_eq!(frame.len(), 1514);
        recs.push(Rec::snapped(T0 + i * 20_000, frame, 64));
        // IPv6 cut right after the TCP ports (14 + 40 + 4 bytes)
        let mut v6 = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(SERVER6, CLIENT6, 64)
            .tcp(32400, 50000, 1, 1)
            .write(&mut v6, &[9; 1000])
            .unwrap();
        recs.push(Rec::snapped(T0 + i * 20_000 + 1, v6, 58));
    }
    // cut before the TCP ports: skipped as truncated
    let frame = eth_ipv4_tcp(SERVER, 32400, CLIENT, 50000, &[9; 1460]);
    recs.push(Rec::snapped(T0 + 2_000_000, frame, 14 + 20 + 3));
    write_capture(&path, LINKTYPE_ETHERNET, false, &recs);

    let mut source = PacketSource::open_file(&path, None).unwrap();
    let Next::Packet(first) = source.next_packet().unwrap() else {
        panic!("no packet")
    };
    assert_eq!((first.data.len(), first.orig_len), (64, 1514));
    let seg = decode(LINKTYPE_ETHERNET, first.data).unwrap();
    assert_eq!(seg.ip_len, 1500);
    assert_eq!(seg.payload_len, 1460);
    assert_eq!(seg.payload, &[9; 10][..]);

    let (meter, stats, _) = read_capture(&path);
    assert_eq!((stats.decoded, stats.truncated), (100, 1));
    let f = meter.get(&key(SERVER, 32400, CLIENT, 50000)).unwrap();
    assert_eq!(
        (f.packets, f.bytes, f.payload_bytes),
        (50, 50 * 1500, 50 * 1460)
    );
    let f = meter.get(&key6(SERVER6, 32400, CLIENT6, 50000)).unwrap();
    assert_eq!(
        (f.packets, f.bytes, f.payload_bytes),
        (50, 50 * 1060, 50 * 1000)
    );
    // 50 packets of 1500 bytes in the first second
    assert_eq!(
        meter
            .rates(&key(SERVER, 32400, CLIENT, 50000), T0 + 1_000_000)
            .unwrap()
            .kbps_10s,
        600.0
    );
}

#[test]
fn malformed_and_foreign_frames_are_counted_as_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.pcap");
    let good = eth_ipv4_tcp(SERVER, 32400, CLIENT, 50000, &[1; 10]);
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x43; // IHL 3 < 5
    let mut bad_version = good.clone();
    bad_version[14] = 0x75; // IP version 7
    let mut v6_in_v4 = good.clone();
    v6_in_v4[14] = 0x65; // EtherType IPv4, version nibble 6
    let mut udp = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(SERVER, CLIENT, 64)
        .udp(5353, 5353)
        .write(&mut udp, &[0; 20])
        .unwrap();
    let mut arp = good[..14].to_vec();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    let mut fragment = good.clone();
    fragment[14 + 6] = 0x00;
    fragment[14 + 7] = 0x10; // fragment offset 16 * 8 bytes
    let frames: Vec<Vec<u8>> = vec![
        good.clone(),
        vec![],
        vec![0xff; 5],
        good[..13].to_vec(),
        bad_ihl,
        bad_version,
        v6_in_v4,
        udp,
        arp,
        fragment,
        good[..14 + 19].to_vec(),
        good,
    ];
    let recs: Vec<Rec> = frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| Rec::full(T0 + i as i64, f))
        .collect();
    write_capture(&path, LINKTYPE_ETHERNET, false, &recs);
    let (meter, stats, _) = read_capture(&path);
    assert_eq!(stats.read, 12);
    assert_eq!(stats.decoded, 2);
    assert_eq!(stats.skipped, 10);
    assert_eq!(stats.truncated, 4, "{stats:?}"); // empty, 5 bytes, 13 bytes, IP header cut
    assert_eq!(stats.malformed, 3, "{stats:?}"); // IHL, version, version/EtherType mismatch
    assert_eq!(stats.not_tcp, 1, "{stats:?}");
    assert_eq!(stats.not_ip, 1, "{stats:?}");
    assert_eq!(stats.fragment, 1, "{stats:?}");
    let f = meter.get(&key(SERVER, 32400, CLIENT, 50000)).unwrap();
    assert_eq!((f.packets, f.bytes), (2, 100));
}

#[test]
fn request_hints_from_a_plaintext_get() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("http.pcap");
    let get = b"GET /library/parts/8812/1700000000/file.mkv?X-Plex-Session-Identifier=sess-1&X-Plex-Token=abc HTTP/1.1\r\nHost: 10.0.0.2:32400\r\nAccept: */*\r\n\r\n";
    let transcode = b"GET /video/:/transcode/universal/session/tc-77/base/00001.ts HTTP/1.1\r\nX-Plex-Session-Identifier: sess-2\r\nHost: x\r\n\r\n";
    let recs = vec![
        Rec::full(T0, eth_ipv4_tcp(CLIENT, 50000, SERVER, 32400, get)),
        Rec::full(
            T0 + 1000,
            eth_ipv4_tcp(
                SERVER,
                32400,
                CLIENT,
                50000,
                b"HTTP/1.1 206 Partial Content\r\n",
            ),
        ),
        // snaplen 256: the request is cut, but the path id is complete
        Rec::snapped(
            T0 + 2000,
            eth_ipv4_tcp(CLIENT, 50001, SERVER, 32400, transcode),
            54 + 60,
        ),
        Rec::full(
            T0 + 3000,
            eth_ipv4_tcp(CLIENT, 50002, SERVER, 32400, transcode),
        ),
    ];
    write_capture(&path, LINKTYPE_ETHERNET, false, &recs);
    let (meter, _, _) = read_capture(&path);
    let f = meter.get(&key(CLIENT, 50000, SERVER, 32400)).unwrap();
    assert_eq!(
        f.hints,
        RequestHints {
            part_id: Some("8812".into()),
            transcode_session: None,
            session_identifier: Some("sess-1".into()),
        }
    );
    assert_eq!(f.hinted_requests, 1);
    let reply = meter
        .get(&key(CLIENT, 50000, SERVER, 32400).reversed())
        .unwrap();
    assert!(reply.hints.is_empty());
    let f = meter.get(&key(CLIENT, 50001, SERVER, 32400)).unwrap();
    assert_eq!(f.hints.transcode_session.as_deref(), Some("tc-77"));
    assert_eq!(f.hints.session_identifier, None); // the header was not captured
    let f = meter.get(&key(CLIENT, 50002, SERVER, 32400)).unwrap();
    assert_eq!(f.hints.transcode_session.as_deref(), Some("tc-77"));
    assert_eq!(f.hints.session_identifier.as_deref(), Some("sess-2"));
}

/// Wraps an IP packet in the link layer of `linktype`.
fn wrap(linktype: i32, ip: &[u8]) -> Vec<u8> {
    let v6 = ip.first().is_some_and(|b| b >> 4 == 6);
    let ether_type: u16 = if v6 { 0x86dd } else { 0x0800 };
    match linktype {
        LINKTYPE_ETHERNET => {
            let mut v = [MAC_A, MAC_B].concat();
            v.extend_from_slice(&ether_type.to_be_bytes());
            v.extend_from_slice(ip);
            v
        }
        LINKTYPE_LINUX_SLL => sll(ether_type, ip),
        LINKTYPE_LINUX_SLL2 => sll2(ether_type, ip),
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let family: u32 = if v6 { 24 } else { 2 };
            let mut v = family.to_be_bytes().to_vec();
            v.extend_from_slice(ip);
            v
        }
        LINKTYPE_PPP | LINKTYPE_PPP_HDLC | LINKTYPE_PPP_WITH_DIR | LINKTYPE_PPP_ETHER => {
            let ppp: u16 = if v6 { 0x0057 } else { 0x0021 };
            let mut v = match linktype {
                LINKTYPE_PPP_WITH_DIR => vec![1, 0xff, 0x03],
                // PPPoE session: version/type, code, session 0x1234, length
                LINKTYPE_PPP_ETHER => {
                    let mut h = vec![0x11, 0, 0x12, 0x34];
                    h.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
                    h
                }
                _ => vec![0xff, 0x03],
            };
            v.extend_from_slice(&ppp.to_be_bytes());
            v.extend_from_slice(ip);
            v
        }
        LINKTYPE_IPOIB => {
            let mut v = vec![0u8; 40];
            v.extend_from_slice(&ether_type.to_be_bytes());
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(ip);
            v
        }
        LINKTYPE_ARCNET_LINUX => {
            // source, destination, offset, protocol (IPv4 or IPv6), split flag, sequence
            let mut v = vec![0x01, 0x02, 0, 0, if v6 { 0xc4 } else { 0xd4 }, 0, 0, 7];
            v.extend_from_slice(ip);
            v
        }
        LINKTYPE_C_HDLC | LINKTYPE_C_HDLC_WITH_DIR => {
            let mut v = if linktype == LINKTYPE_C_HDLC_WITH_DIR {
                vec![0, 0x0f, 0x00]
            } else {
                vec![0x0f, 0x00]
            };
            v.extend_from_slice(&ether_type.to_be_bytes());
            v.extend_from_slice(ip);
            v
        }
        _ => ip.to_vec(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes under every supported link type: no panic, and a decoded segment is
    /// self-consistent.
    #[test]
    fn decode_never_panics(
        lt in prop::sample::select(SUPPORTED_LINKTYPES.to_vec()),
        frame in prop::collection::vec(any::<u8>(), 0..200),
        prefix in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        // also try frames that start like a real header, to get past the first checks
        let mut seeded = wrap(lt, &[0x45]);
        seeded.pop();
        seeded.extend_from_slice(&prefix);
        seeded.extend_from_slice(&frame);
        for f in [&frame, &seeded] {
            if let Ok(seg) = decode(lt, f) {
                prop_assert!(seg.payload_len <= seg.ip_len);
                prop_assert!(seg.payload.len() as u32 <= seg.payload_len);
                let ip_min = if seg.src.is_ipv4() { 20 } else { 40 };
                prop_assert!(seg.ip_len >= ip_min);
                prop_assert_eq!(seg.src.is_ipv4(), seg.dst.is_ipv4());
                // the payload lies inside the frame
                let start = f.as_ptr() as usize;
                let p = seg.payload.as_ptr() as usize;
                prop_assert!(seg.payload.is_empty() || (p >= start && p + seg.payload.len() <= start + f.len()));
            }
        }
    }

    /// Well-formed packets under every link type, cut at any length: ports and sizes are
    /// decoded exactly once the ports are captured, and Truncated before that.
    #[test]
    fn decode_built_packets(
        lt in prop::sample::select(SUPPORTED_LINKTYPES.to_vec()),
        v6 in any::<bool>(),
        sport in any::<u16>(),
        dport in any::<u16>(),
        payload_len in 0usize..1500,
        cut in any::<prop::sample::Index>(),
    ) {
        let v6 = if lt == LINKTYPE_IPV4 { false } else if lt == LINKTYPE_IPV6 { true } else { v6 };
        let payload = vec![0xab; payload_len];
        let ip = if v6 {
            ipv6_tcp(SERVER6, sport, CLIENT6, dport, &payload)
        } else {
            ipv4_tcp(SERVER, sport, CLIENT, dport, &payload)
        };
        let frame = wrap(lt, &ip);
        let link_len = frame.len() - ip.len();
        let ip_header = if v6 { 40 } else { 20 };
        let caplen = cut.index(frame.len() + 1);
        let result = decode(lt, &frame[..caplen]);
        if caplen >= link_len + ip_header + 4 {
            let seg = result.unwrap();
            prop_assert_eq!((seg.sport, seg.dport), (sport, dport));
            prop_assert_eq!(seg.ip_len as usize, ip.len());
            prop_assert_eq!(seg.payload_len as usize, payload_len);
            let captured = caplen.saturating_sub(link_len + ip_header + 20);
            prop_assert_eq!(seg.payload.len(), captured);
        } else {
            prop_assert_eq!(result, Err(Skip::Truncated));
        }
    }
}
