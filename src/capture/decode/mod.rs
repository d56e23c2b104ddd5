//! Link-layer, IP and TCP decoding of captured frames.
//!
//! [`decode`] turns one captured frame into a [`TcpSegment`] or a [`Skip`] reason. It never
//! panics and never allocates. The link layer (a handful of fixed-size headers) is peeled off
//! by hand; the IP layer is sliced with etherparse's lax slicer ([`etherparse::LaxIpSlice`]),
//! which accepts packets cut short by the capture's snaplen; the TCP ports, flags and data
//! offset are read straight from the IP payload so that a TCP header truncated after its
//! ports still yields a segment.
//!
//! Sizes come from the IP header's length fields (IPv4 total length, IPv6 payload length
//! plus 40), never from the captured length, so a small snaplen still gives true sizes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    EtherType, Ethernet2HeaderSlice, IpNumber, Ipv4HeaderSlice, LaxIpSlice, TcpHeaderSlice,
    err::ip::LaxHeaderSliceError, err::ipv6_exts,
};

use super::CaptureError;

mod lax;
mod tunnel;
use lax::lax;
use tunnel::Inner;
pub use tunnel::MAX_DEPTH;

/// `LINKTYPE_NULL`: BSD loopback, a 4-byte address family in the capturing host's byte order.
pub const LINKTYPE_NULL: i32 = 0;
/// `LINKTYPE_ETHERNET`: Ethernet II, optionally with 802.1Q / 802.1ad VLAN tags.
pub const LINKTYPE_ETHERNET: i32 = 1;
/// `DLT_RAW` as libpcap reports it on Linux and most BSDs: raw IPv4 or IPv6.
pub const DLT_RAW: i32 = 12;
/// `LINKTYPE_PPP`: PPP, with or without HDLC-like framing (address 0xff, control 0x03).
pub const LINKTYPE_PPP: i32 = 9;
/// `LINKTYPE_PPP_HDLC`: PPP in HDLC-like framing (PPP over serial).
pub const LINKTYPE_PPP_HDLC: i32 = 50;
/// `LINKTYPE_PPP_ETHER`: PPPoE session frames without their Ethernet header.
pub const LINKTYPE_PPP_ETHER: i32 = 51;
/// `LINKTYPE_C_HDLC`: Cisco HDLC (address, control, then an EtherType).
pub const LINKTYPE_C_HDLC: i32 = 104;
/// `LINKTYPE_PPP_WITH_DIR`: a direction byte, then PPP.
pub const LINKTYPE_PPP_WITH_DIR: i32 = 204;
/// `LINKTYPE_C_HDLC_WITH_DIR`: a direction byte, then Cisco HDLC.
pub const LINKTYPE_C_HDLC_WITH_DIR: i32 = 205;
/// `LINKTYPE_ARCNET_LINUX`: ARCNET with Linux's header (RFC 1201 or RFC 1051 framing).
pub const LINKTYPE_ARCNET_LINUX: i32 = 129;
/// `LINKTYPE_IPOIB`: IP over InfiniBand (a 44-byte header ending in an EtherType).
pub const LINKTYPE_IPOIB: i32 = 242;
/// `LINKTYPE_RAW`: raw IPv4 or IPv6 (the value stored in savefiles).
pub const LINKTYPE_RAW: i32 = 101;
/// `LINKTYPE_LOOP`: OpenBSD loopback, a 4-byte address family in network byte order.
pub const LINKTYPE_LOOP: i32 = 108;
/// `LINKTYPE_LINUX_SLL`: Linux cooked capture v1 (16-byte header).
pub const LINKTYPE_LINUX_SLL: i32 = 113;
/// `LINKTYPE_IPV4`: raw IPv4.
pub const LINKTYPE_IPV4: i32 = 228;
/// `LINKTYPE_IPV6`: raw IPv6.
pub const LINKTYPE_IPV6: i32 = 229;
/// `LINKTYPE_LINUX_SLL2`: Linux cooked capture v2 (20-byte header).
pub const LINKTYPE_LINUX_SLL2: i32 = 276;

/// Every link type [`decode`] understands.
pub const SUPPORTED_LINKTYPES: [i32; 17] = [
    LINKTYPE_NULL,
    LINKTYPE_ARCNET_LINUX,
    LINKTYPE_IPOIB,
    LINKTYPE_ETHERNET,
    LINKTYPE_PPP,
    LINKTYPE_PPP_HDLC,
    LINKTYPE_PPP_ETHER,
    LINKTYPE_C_HDLC,
    LINKTYPE_PPP_WITH_DIR,
    LINKTYPE_C_HDLC_WITH_DIR,
    DLT_RAW,
    LINKTYPE_RAW,
    LINKTYPE_LOOP,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL2,
];

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// The most VLAN tags peeled off one frame before giving up.
const MAX_VLAN_TAGS: usize = 4;

/// One decoded TCP segment, borrowing its payload from the captured frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// IP source address.
    pub src: IpAddr,
    /// IP destination address.
    pub dst: IpAddr,
    /// TCP source port.
    pub sport: u16,
    /// TCP destination port.
    pub dport: u16,
    /// The IP packet's true length from the IP header (IPv4 total length; IPv6 payload length
    /// plus 40), whatever the snaplen. Falls back to the captured IP bytes when the header
    /// gives no usable length (IPv4 total length 0 from segmentation offload, IPv6 jumbograms).
    pub ip_len: u32,
    /// The TCP payload's true length: `ip_len` minus the IP, extension and TCP headers
    /// (saturating at 0).
    pub payload_len: u32,
    /// The TCP payload bytes that were captured: possibly truncated by the snaplen, or empty.
    pub payload: &'a [u8],
    /// SYN flag (false when the flags byte was not captured).
    pub syn: bool,
    /// FIN flag (false when the flags byte was not captured).
    pub fin: bool,
    /// RST flag (false when the flags byte was not captured).
    pub rst: bool,
}

/// Why a frame yielded no TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Skip {
    /// Not an IP packet (ARP, LLDP, other EtherTypes or address families).
    NotIp,
    /// IP, but not carrying TCP (UDP, ICMP, ...).
    NotTcp,
    /// An IP fragment after the first: only reassembly could attribute it to a connection
    /// (the first fragment, which carries the ports, is metered).
    Fragment,
    /// The capture ends before the TCP ports (snaplen, or a short frame).
    Truncated,
    /// Headers that contradict themselves (bad IP version or header length, bad extension).
    Malformed,
}

impl Skip {
    /// A short lowercase label, for logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NotIp => "not_ip",
            Skip::NotTcp => "not_tcp",
            Skip::Fragment => "fragment",
            Skip::Truncated => "truncated",
            Skip::Malformed => "malformed",
        }
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether [`decode`] understands `linktype`.
pub fn is_supported_linktype(linktype: i32) -> bool {
    SUPPORTED_LINKTYPES.contains(&linktype)
}

/// Checks that [`decode`] understands `linktype`; the error names the link type otherwise.
pub fn check_linktype(linktype: i32) -> Result<(), CaptureError> {
    if is_supported_linktype(linktype) {
        Ok(())
    } else {
        Err(CaptureError::UnsupportedLinkType {
            linktype,
            name: linktype_name(linktype),
        })
    }
}

/// libpcap's name for a link type (`EN10MB`, `IEEE802_11_RADIO`, ...), or `UNKNOWN`.
#[cfg(feature = "capture")]
pub fn linktype_name(linktype: i32) -> String {
    pcap::Linktype(linktype)
        .get_name()
        .unwrap_or_else(|_| "UNKNOWN".to_owned())
}

/// A link type's name, without libpcap to ask.
#[cfg(not(feature = "capture"))]
pub fn linktype_name(linktype: i32) -> String {
    format!("LINKTYPE_{linktype}")
}

/// Decodes one captured frame of the given link type into a TCP segment.
///
/// Never panics, whatever the bytes. Link types outside [`SUPPORTED_LINKTYPES`] give
/// [`Skip::NotIp`] (callers check the link type once with [`check_linktype`]).
#[inline(always)]
pub fn decode(linktype: i32, frame: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    let fast = if linktype == LINKTYPE_ETHERNET {
        ethernet_ipv4_tcp(frame)
    } else {
        None
    };
    // Both paths meet as plain integers, not as a `TcpSegment` in memory: an `IpAddr::V4`
    // written as a tag byte and 4 address bytes, then copied as a whole, stalls the store
    // forwarding of every packet.
    let parts = match fast {
        Some(parts) => parts,
        None => Parts::of(&decode_link(linktype, frame)?),
    };
    Ok(parts.segment())
}

/// A [`TcpSegment`] as plain integers.
#[derive(Clone, Copy)]
struct Parts<'a> {
    src: Addr,
    dst: Addr,
    sport: u16,
    dport: u16,
    ip_len: u32,
    payload_len: u32,
    payload: &'a [u8],
    syn: bool,
    fin: bool,
    rst: bool,
}

/// An [`IpAddr`] as plain integers.
#[derive(Clone, Copy)]
struct Addr {
    v6: bool,
    bits: u128,
}

impl Addr {
    #[inline(always)]
    fn of(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => Addr {
                v6: false,
                bits: u128::from(a.to_bits()),
            },
            IpAddr::V6(a) => Addr {
                v6: true,
                bits: a.to_bits(),
            },
        }
    }

    #[inline(always)]
    fn ip(self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from_bits(self.bits))
        } else {
            IpAddr::V4(Ipv4Addr::from_bits(self.bits as u32))
        }
    }
}

impl<'a> Parts<'a> {
    #[inline(always)]
    fn of(s: &TcpSegment<'a>) -> Self {
        Parts {
            src: Addr::of(s.src),
            dst: Addr::of(s.dst),
            sport: s.sport,
            dport: s.dport,
            ip_len: s.ip_len,
            payload_len: s.payload_len,
            payload: s.payload,
            syn: s.syn,
            fin: s.fin,
            rst: s.rst,
        }
    }

    #[inline(always)]
    fn segment(self) -> TcpSegment<'a> {
        TcpSegment {
            src: self.src.ip(),
            dst: self.dst.ip(),
            sport: self.sport,
            dport: self.dport,
            ip_len: self.ip_len,
            payload_len: self.payload_len,
            payload: self.payload,
            syn: self.syn,
            fin: self.fin,
            rst: self.rst,
        }
    }
}

/// The common case of [`decode`]: an untagged Ethernet frame carrying an unfragmented IPv4
/// packet whose whole TCP header was captured. `None` sends the frame down the general path.
#[inline(always)]
fn ethernet_ipv4_tcp(frame: &[u8]) -> Option<Parts<'_>> {
    let ether = Ethernet2HeaderSlice::from_slice(frame).ok()?;
    if ether.ether_type() != EtherType::IPV4 {
        return None;
    }
    ipv4_tcp(&frame[ether.slice().len()..])
}

/// The general path of [`decode`]: every link type, VLAN tags, and [`decode_ip`].
#[inline(never)]
fn decode_link(linktype: i32, frame: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    let ip = match linktype {
        LINKTYPE_ETHERNET => {
            let ether_type = be16(frame, 12).ok_or(Skip::Truncated)?;
            ether_payload(ether_type, frame.get(14..).ok_or(Skip::Truncated)?)?
        }
        LINKTYPE_LINUX_SLL => {
            // packet type(2) ARPHRD(2) address length(2) address(8) protocol(2)
            let protocol = be16(frame, 14).ok_or(Skip::Truncated)?;
            ether_payload(protocol, frame.get(16..).ok_or(Skip::Truncated)?)?
        }
        LINKTYPE_LINUX_SLL2 => {
            // protocol(2) reserved(2) ifindex(4) ARPHRD(2) packet type(1) addr len(1) addr(8)
            let protocol = be16(frame, 0).ok_or(Skip::Truncated)?;
            ether_payload(protocol, frame.get(20..).ok_or(Skip::Truncated)?)?
        }
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let family: [u8; 4] = frame
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(Skip::Truncated)?;
            // The family is in the capturing host's byte order for NULL and in network byte
            // order for LOOP; accept either, as writers get this wrong.
            let family = match u32::from_ne_bytes(family) {
                f if f < 0x1_0000 => f,
                _ => u32::from_ne_bytes(family).swap_bytes(),
            };
            match family {
                2 | 24 | 28 | 30 => frame.get(4..).ok_or(Skip::Truncated)?,
                _ => return Err(Skip::NotIp),
            }
        }
        DLT_RAW | LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => frame,
        LINKTYPE_PPP | LINKTYPE_PPP_HDLC => tunnel::ppp_maybe_hdlc(frame)?,
        LINKTYPE_PPP_WITH_DIR => tunnel::ppp_maybe_hdlc(frame.get(1..).ok_or(Skip::Truncated)?)?,
        LINKTYPE_PPP_ETHER => tunnel::pppoe(frame)?,
        LINKTYPE_IPOIB => {
            // destination(20) source(20) type(2) reserved(2)
            let protocol = be16(frame, 40).ok_or(Skip::Truncated)?;
            ether_payload(protocol, frame.get(44..).ok_or(Skip::Truncated)?)?
        }
        LINKTYPE_ARCNET_LINUX => {
            // source(1) destination(1) offset(2) protocol(1), then for RFC 1201 framing a
            // split flag(1) and sequence(2) (and 4 more bytes in an exception packet).
            match frame.get(4).ok_or(Skip::Truncated)? {
                // IPv4 (RFC 1201), IPv6 (RFC 2497)
                0xd4 | 0xc4 => {
                    let start = if *frame.get(5).ok_or(Skip::Truncated)? == 0xff {
                        12
                    } else {
                        8
                    };
                    frame.get(start..).ok_or(Skip::Truncated)?
                }
                0xf0 => frame.get(5..).ok_or(Skip::Truncated)?,
                _ => return Err(Skip::NotIp),
            }
        }
        LINKTYPE_C_HDLC | LINKTYPE_C_HDLC_WITH_DIR => {
            let at = usize::from(linktype == LINKTYPE_C_HDLC_WITH_DIR);
            // address(1) control(1) protocol(2, an EtherType)
            let protocol = be16(frame, at + 2).ok_or(Skip::Truncated)?;
            ether_payload(protocol, frame.get(at + 4..).ok_or(Skip::Truncated)?)?
        }
        _ => return Err(Skip::NotIp),
    };
    decode_ip(ip)
}

/// Decodes a frame starting at the IP header (raw IP link types, or after the link header),
/// through any tunnels, to the innermost TCP segment.
#[inline]
pub fn decode_ip(ip: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    decode_ip_at(ip, 0)
}

/// [`decode_ip`] `depth` encapsulations deep.
#[inline]
fn decode_ip_at(ip: &[u8], depth: u8) -> Result<TcpSegment<'_>, Skip> {
    match ipv4_tcp(ip) {
        Some(parts) => Ok(parts.segment()),
        None => lax(ip, depth),
    }
}

/// What a tunnel carries, decoded one level deeper.
fn inner(i: Inner<'_>, depth: u8) -> Result<TcpSegment<'_>, Skip> {
    if depth > MAX_DEPTH {
        return Err(Skip::Malformed);
    }
    let ip = match i {
        Inner::Ip(ip) => ip,
        Inner::Ethernet(frame) => {
            let ether_type = be16(frame, 12).ok_or(Skip::Truncated)?;
            ether_payload(ether_type, frame.get(14..).ok_or(Skip::Truncated)?)?
        }
        Inner::EtherType(ether_type, rest) => ether_payload(ether_type, rest)?,
    };
    decode_ip_at(ip, depth)
}

/// The common case of [`decode_ip`], with etherparse's strict header slices: an unfragmented
/// IPv4 packet carrying TCP whose whole TCP header (options included) was captured. Gives the
/// same segment as [`decode_ip_lax`] would; `None` for anything else (IPv6, options cut by
/// the snaplen, bad lengths, other protocols), which the lax path then decodes or classifies.
#[inline(always)]
fn ipv4_tcp(ip: &[u8]) -> Option<Parts<'_>> {
    let h = Ipv4HeaderSlice::from_slice(ip).ok()?;
    if h.protocol() != IpNumber::TCP || h.is_fragmenting_payload() {
        return None;
    }
    let header_len = h.slice().len();
    let total = usize::from(h.total_len());
    // As the lax slicer: the IP payload ends at the total length, or at the end of the capture
    // when it is shorter or the total length is smaller than the header.
    let (ip_len, end) = if total >= header_len {
        (total, total.min(ip.len()))
    } else {
        (ip.len(), ip.len())
    };
    let ip_payload = ip.get(header_len..end)?;
    let tcp = TcpHeaderSlice::from_slice(ip_payload).ok()?;
    let tcp_header_len = tcp.slice().len();
    let payload_len = ip_len.saturating_sub(header_len + tcp_header_len);
    Some(Parts {
        src: Addr {
            v6: false,
            bits: u128::from(h.source_addr().to_bits()),
        },
        dst: Addr {
            v6: false,
            bits: u128::from(h.destination_addr().to_bits()),
        },
        sport: tcp.source_port(),
        dport: tcp.destination_port(),
        ip_len: u32::try_from(ip_len).unwrap_or(u32::MAX),
        payload_len: u32::try_from(payload_len).unwrap_or(u32::MAX),
        payload: &ip_payload[tcp_header_len..],
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
    })
}

/// [`decode_ip`] without its fast path: etherparse's lax slicer, which takes every IP
/// packet, truncated or not. [`decode_ip`] gives the same result for any bytes (the fuzz
/// target `decode` checks that); use [`decode_ip`].
#[inline(never)]
pub fn decode_ip_lax(ip: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    lax(ip, 0)
}

/// Follows an EtherType to the start of the IP header, peeling off VLAN tags, 802.1BR
/// E-tags, Cisco FabricPath, PPPoE sessions and MPLS label stacks (with an Ethernet
/// pseudowire behind them), each bounded.
#[inline]
fn ether_payload(mut ether_type: u16, mut rest: &[u8]) -> Result<&[u8], Skip> {
    let mut tags = 0;
    for _ in 0..=MAX_VLAN_TAGS + usize::from(MAX_DEPTH) {
        match ether_type {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => {
                let version = rest.first().ok_or(Skip::Truncated)? >> 4;
                return match (ether_type, version) {
                    (ETHERTYPE_IPV4, 4) | (ETHERTYPE_IPV6, 6) => Ok(rest),
                    _ => Err(Skip::Malformed),
                };
            }
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                tags += 1;
                if tags > MAX_VLAN_TAGS {
                    return Err(Skip::Malformed);
                }
                // tag control information(2) then the inner EtherType(2)
                ether_type = be16(rest, 2).ok_or(Skip::Truncated)?;
                rest = rest.get(4..).ok_or(Skip::Truncated)?;
            }
            tunnel::ETHERTYPE_ETAG => {
                // E-TCI(6) then the inner EtherType(2)
                ether_type = be16(rest, 6).ok_or(Skip::Truncated)?;
                rest = rest.get(8..).ok_or(Skip::Truncated)?;
            }
            tunnel::ETHERTYPE_FABRICPATH => {
                // FTag/TTL(2), then the original Ethernet frame.
                ether_type = be16(rest, 2 + 12).ok_or(Skip::Truncated)?;
                rest = rest.get(2 + 14..).ok_or(Skip::Truncated)?;
            }
            tunnel::ETHERTYPE_PPPOE_SESSION => return tunnel::pppoe(rest),
            tunnel::ETHERTYPE_MPLS | tunnel::ETHERTYPE_MPLS_MULTICAST => {
                match tunnel::mpls(rest)? {
                    Inner::Ip(ip) => return Ok(ip),
                    Inner::Ethernet(frame) => {
                        ether_type = be16(frame, 12).ok_or(Skip::Truncated)?;
                        rest = frame.get(14..).ok_or(Skip::Truncated)?;
                    }
                    Inner::EtherType(t, r) => {
                        ether_type = t;
                        rest = r;
                    }
                }
            }
            _ => return Err(Skip::NotIp),
        }
    }
    Err(Skip::Malformed)
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    let bytes = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

#[cfg(test)]
mod tests;
