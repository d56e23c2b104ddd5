//! Plex's TCP inside every encapsulation the decoder peels off, in capture files written
//! here (etherparse builds the innermost IP/TCP; the tunnel headers are laid out by hand
//! from their specifications): the segment is the innermost one with its own IP length, and
//! tshark (reassembly off) agrees packet for packet and byte for byte. Also the first
//! fragment of a fragmented segment, and the PPP and Cisco HDLC link types.

use std::net::IpAddr;
use std::path::Path;

use etherparse::PacketBuilder;
use streamwarden::capture::decode::{
    LINKTYPE_C_HDLC, LINKTYPE_ETHERNET, LINKTYPE_PPP, LINKTYPE_PPP_HDLC, decode,
};
use streamwarden::capture::{DecodeStats, Skip};

use crate::common::capture::{RawPcap, T0};
use crate::common::tshark::{read_ours, read_tshark};

const PLEX: [u8; 4] = [10, 1, 0, 5];
const VIEWER: [u8; 4] = [10, 2, 0, 9];
const PLEX6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
const VIEWER6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
const OUTER_A: [u8; 4] = [192, 168, 7, 1];
const OUTER_B: [u8; 4] = [192, 168, 7, 2];
const OUTER6_A: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const OUTER6_B: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const PAYLOAD: usize = 1000;

/// Plex (port 32400) → the viewer (port 50123): IPv4/TCP with `PAYLOAD` bytes.
fn inner_v4() -> Vec<u8> {
    let b = PacketBuilder::ipv4(PLEX, VIEWER, 64)
        .tcp(32400, 50123, 7, 65535)
        .ack(1);
    let mut out = Vec::new();
    b.write(&mut out, &[0x5a; PAYLOAD]).unwrap();
    out
}

fn inner_v6() -> Vec<u8> {
    let b = PacketBuilder::ipv6(PLEX6, VIEWER6, 64)
        .tcp(32400, 50123, 7, 65535)
        .ack(1);
    let mut out = Vec::new();
    b.write(&mut out, &[0x5a; PAYLOAD]).unwrap();
    out
}

fn eth(ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 header (no options) of `protocol` around `payload`.
fn ipv4(protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, protocol, 0, 0];
    h[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&OUTER_A);
    h.extend_from_slice(&OUTER_B);
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&OUTER6_A);
    h.extend_from_slice(&OUTER6_B);
    h.extend_from_slice(payload);
    h
}

fn checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// UDP (checksum 0: none) from port 49152 to `dport` around `payload`.
fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = 49152u16.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Every encapsulation, by name, as an Ethernet frame; the expected innermost segment is
/// Plex → viewer with the inner IP length.
fn cases() -> Vec<(&'static str, Vec<u8>, bool)> {
    let v4 = inner_v4();
    let v6 = inner_v6();
    let inner_eth = eth(0x0800, &v4);
    let mpls_label = |bottom: bool| [0x00, 0x01, u8::from(bottom), 64];
    vec![
        (
            "vxlan",
            eth(
                0x0800,
                &ipv4(
                    17,
                    &udp(4789, &cat(&[&[8, 0, 0, 0, 0, 0, 42, 0], &inner_eth])),
                ),
            ),
            false,
        ),
        (
            "geneve",
            eth(
                0x0800,
                &ipv4(
                    17,
                    &udp(
                        6081,
                        // version 0, 1 word of options; protocol: Ethernet; VNI; an option
                        &cat(&[
                            &[1, 0, 0x65, 0x58, 0, 0, 7, 0, 0x01, 0x02, 0x80, 0],
                            &inner_eth,
                        ]),
                    ),
                ),
            ),
            false,
        ),
        (
            "gtp-u",
            eth(
                0x0800,
                &ipv4(
                    17,
                    &udp(
                        2152,
                        &cat(&[
                            &[0x30, 0xff],
                            &(v4.len() as u16).to_be_bytes(),
                            &[0, 0, 0, 1],
                            &v4,
                        ]),
                    ),
                ),
            ),
            false,
        ),
        (
            "gtp-u with a sequence number and an extension header",
            eth(
                0x0800,
                &ipv4(
                    17,
                    &udp(
                        2152,
                        &cat(&[
                            &[0x36, 0xff],
                            &((v4.len() + 8) as u16).to_be_bytes(),
                            &[0, 0, 0, 1],
                            // sequence, N-PDU, next extension: PDU session container
                            &[0, 9, 0, 0x85],
                            &[1, 0x10, 0x01, 0],
                            &v4,
                        ]),
                    ),
                ),
            ),
            false,
        ),
        (
            "gre",
            eth(0x0800, &ipv4(47, &cat(&[&[0, 0, 0x08, 0x00], &v4]))),
            false,
        ),
        (
            "gre with checksum, key and sequence",
            eth(
                0x0800,
                &ipv4(
                    47,
                    &cat(&[
                        &[0xb0, 0, 0x08, 0x00],
                        &[0, 0, 0, 0],
                        &[0, 0, 0, 5],
                        &[0, 0, 0, 1],
                        &v4,
                    ]),
                ),
            ),
            false,
        ),
        (
            "gre transparent ethernet bridging",
            eth(
                0x0800,
                &ipv4(47, &cat(&[&[0x20, 0, 0x65, 0x58, 0, 0, 0, 3], &inner_eth])),
            ),
            false,
        ),
        (
            "erspan type II",
            eth(
                0x0800,
                &ipv4(
                    47,
                    &cat(&[
                        &[0x10, 0, 0x88, 0xbe, 0, 0, 0, 1],
                        &[0x10, 0x01, 0x00, 0x05, 0, 0, 0, 0],
                        &inner_eth,
                    ]),
                ),
            ),
            false,
        ),
        (
            "erspan type III",
            eth(
                0x0800,
                &ipv4(
                    47,
                    &cat(&[
                        &[0x10, 0, 0x22, 0xeb, 0, 0, 0, 1],
                        &[0x20, 0x01, 0x00, 0x05, 0, 0, 0, 1, 0, 0, 0, 0],
                        &inner_eth,
                    ]),
                ),
            ),
            false,
        ),
        ("ipip", eth(0x0800, &ipv4(4, &v4)), false),
        ("6in4", eth(0x0800, &ipv4(41, &v6)), true),
        ("4in6", eth(0x86dd, &ipv6(4, &v4)), false),
        ("6in6", eth(0x86dd, &ipv6(41, &v6)), true),
        (
            "mpls",
            eth(0x8847, &cat(&[&mpls_label(false), &mpls_label(true), &v4])),
            false,
        ),
        (
            // Without a control word; the inner MACs are Intel's, as tshark's heuristic wants
            // to see to read plain Ethernet.
            "mpls ethernet pseudowire",
            eth(
                0x8847,
                &cat(&[
                    &mpls_label(true),
                    &[
                        0x00, 0x1b, 0x21, 0, 0, 1, 0x00, 0x1b, 0x21, 0, 0, 2, 0x08, 0x00,
                    ],
                    &v4,
                ]),
            ),
            false,
        ),
        (
            "pppoe",
            eth(
                0x8864,
                &cat(&[
                    &[0x11, 0, 0x12, 0x34],
                    &((v4.len() + 2) as u16).to_be_bytes(),
                    &[0x00, 0x21],
                    &v4,
                ]),
            ),
            false,
        ),
        (
            "pppoe ipv6",
            eth(
                0x8864,
                &cat(&[
                    &[0x11, 0, 0x12, 0x34],
                    &((v6.len() + 2) as u16).to_be_bytes(),
                    &[0x00, 0x57],
                    &v6,
                ]),
            ),
            true,
        ),
        (
            "802.1BR e-tag",
            eth(0x893f, &cat(&[&[0, 0, 0, 0x12, 0, 0], &[0x08, 0x00], &v4])),
            false,
        ),
        (
            "cisco fabricpath",
            eth(0x8903, &cat(&[&[0x00, 0x3f], &inner_eth])),
            false,
        ),
        (
            "vxlan in a vlan, gre inside",
            eth(
                0x8100,
                &cat(&[
                    &[0, 7, 0x08, 0x00],
                    &ipv4(
                        17,
                        &udp(
                            4789,
                            &cat(&[
                                &[8, 0, 0, 0, 0, 0, 42, 0],
                                &eth(0x0800, &ipv4(47, &cat(&[&[0, 0, 0x08, 0x00], &v4]))),
                            ]),
                        ),
                    ),
                ]),
            ),
            false,
        ),
    ]
}

fn write(path: &Path, linktype: u32, frames: &[Vec<u8>]) {
    let recs: Vec<(i64, Vec<u8>)> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| ((T0 + i as i64) * 1_000_000, f.clone()))
        .collect();
    let file = RawPcap {
        big_endian: false,
        nanos: false,
        snaplen: 65535,
        linktype,
    };
    std::fs::write(path, file.bytes(&recs)).unwrap();
}

/// tshark's per-connection packets and IP bytes equal ours; `None` when tshark is missing.
fn agree_with_tshark(path: &Path, name: &str) {
    let ours = read_ours(path).unwrap();
    match read_tshark(path) {
        Some(Ok((counts, bytes))) => {
            assert_eq!(ours.counts, counts, "{name}: packets");
            assert_eq!(ours.bytes, bytes, "{name}: IP bytes");
        }
        Some(Err(e)) => panic!("{name}: tshark: {e}"),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "tshark is not installed and CI is set"
            );
            println!("skipping the tshark comparison: tshark is not installed");
        }
    }
}

#[test]
fn the_innermost_tcp_of_every_encapsulation_is_decoded_as_tshark_does() {
    let dir = tempfile::tempdir().unwrap();
    for (name, frame, v6) in cases() {
        let seg = decode(LINKTYPE_ETHERNET, &frame).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (src, dst): (IpAddr, IpAddr) = if v6 {
            (PLEX6.into(), VIEWER6.into())
        } else {
            (PLEX.into(), VIEWER.into())
        };
        assert_eq!(
            (seg.src, seg.sport, seg.dst, seg.dport),
            (src, 32400, dst, 50123),
            "{name}"
        );
        let ip_len = if v6 {
            40 + 20 + PAYLOAD
        } else {
            20 + 20 + PAYLOAD
        };
        assert_eq!(seg.ip_len as usize, ip_len, "{name}: the inner IP length");
        assert_eq!(seg.payload_len as usize, PAYLOAD, "{name}");
        assert_eq!(seg.payload, &[0x5a; PAYLOAD][..], "{name}");
        // Cut anywhere, it is never a panic, and before the inner ports it is no segment.
        for cut in 0..frame.len() {
            if let Ok(s) = decode(LINKTYPE_ETHERNET, &frame[..cut]) {
                assert_eq!((s.sport, s.dport), (32400, 50123), "{name} cut at {cut}");
            }
        }
        let path = dir.path().join(format!("{}.pcap", name.replace(' ', "_")));
        write(&path, 1, &[frame]);
        agree_with_tshark(&path, name);
    }
    // All of them in one file, as a capture on a busy host would mix them.
    let path = dir.path().join("all.pcap");
    let frames: Vec<Vec<u8>> = cases().into_iter().map(|(_, f, _)| f).collect();
    write(&path, 1, &frames);
    agree_with_tshark(&path, "all");
}

#[test]
fn tunnels_nested_past_the_depth_limit_are_malformed_not_a_crash() {
    // IPIP in IPIP ... deeper than MAX_DEPTH.
    let mut ip = inner_v4();
    for _ in 0..=streamwarden::capture::decode::MAX_DEPTH {
        ip = ipv4(4, &ip);
    }
    assert_eq!(
        decode(LINKTYPE_ETHERNET, &eth(0x0800, &ip)),
        Err(Skip::Malformed)
    );
    // Just within it, decoded.
    let mut ip = inner_v4();
    for _ in 0..streamwarden::capture::decode::MAX_DEPTH {
        ip = ipv4(4, &ip);
    }
    assert!(decode(LINKTYPE_ETHERNET, &eth(0x0800, &ip)).is_ok());
}

#[test]
fn the_first_fragment_is_counted_and_the_rest_are_not() {
    let whole = inner_v4();
    // Split after 8 bytes of TCP payload beyond the TCP header: 20 + 20 + 8 = 48 bytes.
    let (head, tail) = whole[20..].split_at(28);
    let fragment = |offset_words: u16, more: bool, data: &[u8]| {
        let mut h = whole[..20].to_vec();
        h[2..4].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
        let flags = if more { 0x2000 } else { 0 } | offset_words;
        h[6..8].copy_from_slice(&flags.to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum(&h);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        eth(0x0800, &cat(&[&h, data]))
    };
    let first = fragment(0, true, head);
    let second = fragment(28 / 8 + 1, false, &tail[4..]);
    let seg = decode(LINKTYPE_ETHERNET, &first).unwrap();
    assert_eq!((seg.sport, seg.dport), (32400, 50123));
    assert_eq!(seg.ip_len, 48, "the first fragment's own length");
    assert_eq!(decode(LINKTYPE_ETHERNET, &second), Err(Skip::Fragment));
    // IPv6: a fragment header (offset 0, more fragments) before TCP.
    let v6 = inner_v6();
    let tcp = &v6[40..];
    let mut frag = vec![6, 0, 0x00, 0x01, 0, 0, 0, 7];
    frag.extend_from_slice(&tcp[..28]);
    let first6 = eth(0x86dd, &{
        let mut h = v6[..40].to_vec();
        h[4..6].copy_from_slice(&(frag.len() as u16).to_be_bytes());
        h[6] = 44;
        cat(&[&h, &frag])
    });
    let seg = decode(LINKTYPE_ETHERNET, &first6).unwrap();
    assert_eq!((seg.sport, seg.dport, seg.ip_len), (32400, 50123, 40 + 36));
    let mut later = vec![6, 0, 0x00, 0x20, 0, 0, 0, 7];
    later.extend_from_slice(&tcp[28..60]);
    let second6 = eth(0x86dd, &{
        let mut h = v6[..40].to_vec();
        h[4..6].copy_from_slice(&(later.len() as u16).to_be_bytes());
        h[6] = 44;
        cat(&[&h, &later])
    });
    assert_eq!(decode(LINKTYPE_ETHERNET, &second6), Err(Skip::Fragment));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fragments.pcap");
    write(&path, 1, &[first, second, first6, second6]);
    let ours = read_ours(&path).unwrap();
    assert_eq!(ours.stats.decoded, 2);
    assert_eq!(
        ours.stats,
        DecodeStats {
            read: 4,
            decoded: 2,
            skipped: 2,
            fragment: 2,
            ..DecodeStats::default()
        }
    );
    agree_with_tshark(&path, "fragments");
}

#[test]
fn ppp_and_cisco_hdlc_link_types() {
    let v4 = inner_v4();
    let v6 = inner_v6();
    let dir = tempfile::tempdir().unwrap();
    for (linktype, frames) in [
        (
            LINKTYPE_PPP,
            vec![
                cat(&[&[0xff, 0x03, 0x00, 0x21], &v4]),
                // without HDLC framing, and with a compressed protocol field
                cat(&[&[0x00, 0x57], &v6]),
                cat(&[&[0x21], &v4]),
            ],
        ),
        (
            LINKTYPE_PPP_HDLC,
            vec![cat(&[&[0xff, 0x03, 0x00, 0x21], &v4])],
        ),
        (
            LINKTYPE_C_HDLC,
            vec![
                cat(&[&[0x0f, 0x00, 0x08, 0x00], &v4]),
                cat(&[&[0x8f, 0x00, 0x86, 0xdd], &v6]),
            ],
        ),
    ] {
        for f in &frames {
            let seg = decode(linktype, f).unwrap_or_else(|e| panic!("{linktype}: {e}"));
            assert_eq!((seg.sport, seg.dport), (32400, 50123), "{linktype}");
        }
        let path = dir.path().join(format!("lt{linktype}.pcap"));
        write(&path, linktype as u32, &frames);
        let ours = read_ours(&path).unwrap();
        assert_eq!(ours.stats.decoded, frames.len() as u64, "{linktype}");
        agree_with_tshark(&path, &format!("link type {linktype}"));
    }
}

/// Public captures of tunnels from tcpdump's test suite (tests/fixtures/pcap, see its
/// SOURCES.md): packets and IP bytes of every connection's innermost TCP as tshark has them.
/// The tunnel and link-type captures of tests/fixtures/pcap (the first table of its SOURCES.md);
/// `capture_fixtures` reads every capture there, these included.
const TUNNEL_CAPTURES: &[&str] = &[
    "HDLC.pcap",
    "bgp_vpn_attrset.pcap",
    "bigtcp-ipv6-hbh.pcap",
    "bigtcp-ipv6-vxlan-ipv4.pcap",
    "erspan-type-i-4.pcap",
    "erspan-type-ii-2.pcap",
    "erspan-type-iii-ft-0.pcap",
    "geneve-gcp.pcap",
    "gso-ipv4-geneve-ipv4.pcap",
    "gso-ipv4-geneve-ipv6.pcap",
    "gso-ipv4-vxlan-ipv4.pcap",
    "gso-ipv4-vxlan-ipv6.pcap",
    "gso-ipv6-geneve-ipv4.pcap",
    "gso-ipv6-geneve-ipv6.pcap",
    "gso-ipv6-vxlan-ipv4.pcap",
    "gso-ipv6-vxlan-ipv6.pcap",
    "lspping-fec-ldp.pcap",
    "pppoe.pcap",
    "pppoes.pcap",
    "various_gre.pcap",
    "vxlan.pcap",
    "wccp_redirect_gre.pcap",
];

#[test]
fn public_tunnel_captures_agree_with_tshark() {
    let dir = crate::common::fixtures_dir("pcap");
    let files: Vec<_> = TUNNEL_CAPTURES.iter().map(|n| dir.join(n)).collect();
    let mut with_tcp = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let ours = read_ours(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        if !ours.counts.is_empty() {
            with_tcp += 1;
        }
        agree_with_tshark(path, &name);
    }
    // Most carry TCP inside their tunnels; the rest check that nothing is invented.
    assert!(with_tcp >= 10, "only {with_tcp} files with TCP");
}

/// Agreement with tshark over a whole directory of captures, for measuring against a corpus
/// (`STREAMWARDEN_CORPUS=/path/to/captures cargo test --test it corpus -- --nocapture`):
/// prints each file that differs and the share of files with TCP that agree exactly.
#[test]
fn corpus_agreement_with_tshark() {
    let Some(dir) = std::env::var_os("STREAMWARDEN_CORPUS") else {
        println!("set STREAMWARDEN_CORPUS to a directory of captures to measure agreement");
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let (mut with_tcp, mut agree) = (0, 0);
    for path in &files {
        let Some(Ok((counts, bytes))) = read_tshark(path) else {
            continue;
        };
        if counts.is_empty() {
            continue;
        }
        with_tcp += 1;
        match read_ours(path) {
            Ok(ours) if ours.counts == counts && ours.bytes == bytes => agree += 1,
            Ok(ours) if ours.counts == counts => println!("{}: IP bytes differ", path.display()),
            Ok(_) => println!("{}: packets differ", path.display()),
            Err(e) => println!("{}: {e}", path.display()),
        }
    }
    println!(
        "{agree} of {with_tcp} captures with TCP agree exactly ({:.1} %)",
        100.0 * agree as f64 / with_tcp.max(1) as f64
    );
}
