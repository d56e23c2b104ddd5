//! Encapsulations peeled off on the way to the innermost IP/TCP, as tshark dissects them (with
//! reassembly off): VXLAN (UDP 4789), Geneve (UDP 6081), GTP-U (UDP 2152), GRE (with
//! checksum, key and sequence fields; IP, transparent Ethernet, ERSPAN I/II/III, WCCP, MPLS
//! inside),
//! IP in IP (IPv4/IPv6 in IPv4/IPv6), MPLS label stacks (IPv4, IPv6, or an Ethernet
//! pseudowire behind a control word), PPPoE sessions, 802.1BR E-tags and Cisco FabricPath.
//!
//! Every step is bounded: at most [`MAX_DEPTH`] encapsulations, [`MAX_LABELS`] MPLS labels,
//! [`MAX_GTP_EXTENSIONS`] GTP extension headers; a header cut short is `Skip::Truncated`.

use super::{Skip, be16};

/// The most encapsulations (tunnels, each counted once) peeled off one frame.
pub const MAX_DEPTH: u8 = 8;
/// The most MPLS labels read before giving up.
const MAX_LABELS: usize = 16;
/// The most GTP-U extension headers read before giving up.
const MAX_GTP_EXTENSIONS: usize = 8;

pub(super) const ETHERTYPE_TEB: u16 = 0x6558;
pub(super) const ETHERTYPE_MPLS: u16 = 0x8847;
pub(super) const ETHERTYPE_MPLS_MULTICAST: u16 = 0x8848;
pub(super) const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
pub(super) const ETHERTYPE_ETAG: u16 = 0x893F;
pub(super) const ETHERTYPE_FABRICPATH: u16 = 0x8903;
const ETHERTYPE_ERSPAN_2: u16 = 0x88BE;
const ETHERTYPE_ERSPAN_3: u16 = 0x22EB;
/// WCCP's redirection of web traffic over GRE.
const ETHERTYPE_WCCP: u16 = 0x883E;

pub(super) const UDP_VXLAN: u16 = 4789;
pub(super) const UDP_GENEVE: u16 = 6081;
pub(super) const UDP_GTP_U: u16 = 2152;

/// PPP protocol numbers.
pub(super) const PPP_IPV4: u16 = 0x0021;
pub(super) const PPP_IPV6: u16 = 0x0057;
pub(super) const PPP_MPLS: u16 = 0x0281;
pub(super) const PPP_MPLS_MULTICAST: u16 = 0x0283;

/// What a tunnel carries next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inner<'a> {
    /// An Ethernet frame (its header included).
    Ethernet(&'a [u8]),
    /// An IP packet.
    Ip(&'a [u8]),
    /// What follows an EtherType (VLAN tags, MPLS, IP...).
    EtherType(u16, &'a [u8]),
}

/// The payload of a UDP datagram to or from a tunnel port, when it is one.
pub(super) fn udp(udp: &[u8]) -> Result<Option<Inner<'_>>, Skip> {
    let sport = be16(udp, 0).ok_or(Skip::Truncated)?;
    let dport = be16(udp, 2).ok_or(Skip::Truncated)?;
    let len = be16(udp, 4).ok_or(Skip::Truncated)?;
    let body = udp.get(8..).ok_or(Skip::Truncated)?;
    let is = |port: u16| sport == port || dport == port;
    if !(is(UDP_VXLAN) || is(UDP_GENEVE) || is(UDP_GTP_U)) {
        return Ok(None);
    }
    if len < 8 {
        // A UDP length shorter than its header (0 in BIG TCP's giant offloaded packets):
        // tshark calls it malformed and dissects nothing inside.
        return Err(Skip::Malformed);
    }
    if is(UDP_VXLAN) {
        // flags(1) reserved(3) VNI(3) reserved(1), then Ethernet.
        return Ok(Some(Inner::Ethernet(body.get(8..).ok_or(Skip::Truncated)?)));
    }
    if is(UDP_GENEVE) {
        // version(2 bits) option length(6 bits, 4-byte words) flags(1) protocol(2) VNI(3)
        // reserved(1), options.
        let first = *body.first().ok_or(Skip::Truncated)?;
        if first >> 6 != 0 {
            return Err(Skip::Malformed);
        }
        let protocol = be16(body, 2).ok_or(Skip::Truncated)?;
        let start = 8 + usize::from(first & 0x3f) * 4;
        let rest = body.get(start..).ok_or(Skip::Truncated)?;
        return Ok(Some(match protocol {
            ETHERTYPE_TEB => Inner::Ethernet(rest),
            other => Inner::EtherType(other, rest),
        }));
    }
    if is(UDP_GTP_U) {
        return gtp_u(body).map(|ip| ip.map(Inner::Ip));
    }
    Ok(None)
}

/// A GTP-U message's user payload (a G-PDU's IP packet); `None` for signalling messages.
fn gtp_u(gtp: &[u8]) -> Result<Option<&[u8]>, Skip> {
    // flags(1: version 3 bits, PT, reserved, E, S, PN) type(1) length(2) TEID(4)
    let flags = *gtp.first().ok_or(Skip::Truncated)?;
    let kind = *gtp.get(1).ok_or(Skip::Truncated)?;
    if flags >> 5 != 1 || flags & 0x10 == 0 {
        return Err(Skip::Malformed);
    }
    if kind != 0xff {
        return Ok(None);
    }
    let mut at = 8;
    if flags & 0x07 != 0 {
        // sequence number(2) N-PDU number(1) next extension header type(1)
        let mut next = *gtp.get(at + 3).ok_or(Skip::Truncated)?;
        at += 4;
        let mut seen = 0;
        while next != 0 {
            seen += 1;
            if seen > MAX_GTP_EXTENSIONS {
                return Err(Skip::Malformed);
            }
            // length(1, in 4-byte units, the whole extension) ... next type(1)
            let words = usize::from(*gtp.get(at).ok_or(Skip::Truncated)?);
            if words == 0 {
                return Err(Skip::Malformed);
            }
            let end = at + words * 4;
            next = *gtp.get(end - 1).ok_or(Skip::Truncated)?;
            at = end;
        }
    }
    gtp.get(at..).map(Some).ok_or(Skip::Truncated)
}

/// A GRE packet's payload.
pub(super) fn gre(gre: &[u8]) -> Result<Inner<'_>, Skip> {
    // C R K S s recur(3) A flags(4) version(3), protocol(2)
    let flags = be16(gre, 0).ok_or(Skip::Truncated)?;
    let protocol = be16(gre, 2).ok_or(Skip::Truncated)?;
    let version = flags & 0x7;
    if version != 0 {
        // Version 1 is PPTP's enhanced GRE (PPP inside, usually compressed or encrypted).
        return Err(Skip::NotTcp);
    }
    let mut at = 4;
    for bit in [0x8000u16, 0x2000, 0x1000] {
        // checksum + reserved; key; sequence number
        if flags & bit != 0 {
            at += 4;
        }
    }
    let rest = gre.get(at..).ok_or(Skip::Truncated)?;
    Ok(match protocol {
        ETHERTYPE_TEB => Inner::Ethernet(rest),
        ETHERTYPE_ERSPAN_2 if flags & 0x1000 == 0 => {
            // ERSPAN type I: no header of its own.
            Inner::Ethernet(rest)
        }
        ETHERTYPE_ERSPAN_2 => Inner::Ethernet(rest.get(8..).ok_or(Skip::Truncated)?),
        ETHERTYPE_ERSPAN_3 => {
            // version/VLAN(2) COS/BSO/T/session(2) timestamp(4) SGT(2) P/FT/HW/D/Gra/O(2),
            // then an 8-byte platform-specific subheader when O is set.
            let last = be16(rest, 10).ok_or(Skip::Truncated)?;
            let len = if last & 0x1 != 0 { 20 } else { 12 };
            Inner::Ethernet(rest.get(len..).ok_or(Skip::Truncated)?)
        }
        ETHERTYPE_WCCP => {
            // WCCPv2 puts a 4-byte redirect header before the IP packet; version 1 does not.
            if rest.first().ok_or(Skip::Truncated)? >> 4 == 4 {
                Inner::Ip(rest)
            } else {
                Inner::Ip(rest.get(4..).ok_or(Skip::Truncated)?)
            }
        }
        other => Inner::EtherType(other, rest),
    })
}

/// What follows an MPLS label stack: IPv4, IPv6, or an Ethernet pseudowire behind its
/// control word.
pub(super) fn mpls(stack: &[u8]) -> Result<Inner<'_>, Skip> {
    let mut at = 0;
    for _ in 0..MAX_LABELS {
        let bottom = stack.get(at + 2).ok_or(Skip::Truncated)? & 0x01 != 0;
        at += 4;
        if bottom {
            let rest = stack.get(at..).ok_or(Skip::Truncated)?;
            return match rest.first().ok_or(Skip::Truncated)? >> 4 {
                4 | 6 => Ok(Inner::Ip(rest)),
                // An Ethernet pseudowire, with or without a control word (4 bytes, first
                // nibble 0): whichever reading finds an EtherType that leads somewhere, the
                // one without first (as tshark's heuristic prefers plain Ethernet).
                _ => {
                    let leads = |frame: &[u8]| {
                        be16(frame, 12).is_some_and(|t| {
                            matches!(
                                t,
                                0x0800
                                    | 0x86dd
                                    | 0x8100
                                    | 0x88a8
                                    | ETHERTYPE_MPLS
                                    | ETHERTYPE_PPPOE_SESSION
                            )
                        })
                    };
                    if leads(rest) {
                        Ok(Inner::Ethernet(rest))
                    } else if let Some(after) = rest.get(4..).filter(|f| leads(f)) {
                        Ok(Inner::Ethernet(after))
                    } else if rest.len() < 18 {
                        Err(Skip::Truncated)
                    } else {
                        Err(Skip::NotIp)
                    }
                }
            };
        }
    }
    Err(Skip::Malformed)
}

/// A PPP frame's network-layer payload, from its protocol field (2 bytes, or 1 when
/// compressed: odd first byte).
pub(super) fn ppp(frame: &[u8]) -> Result<&[u8], Skip> {
    let first = *frame.first().ok_or(Skip::Truncated)?;
    let (protocol, at) = if first & 0x01 != 0 {
        (u16::from(first), 1)
    } else {
        (be16(frame, 0).ok_or(Skip::Truncated)?, 2)
    };
    let rest = frame.get(at..).ok_or(Skip::Truncated)?;
    match protocol {
        PPP_IPV4 | PPP_IPV6 => Ok(rest),
        PPP_MPLS | PPP_MPLS_MULTICAST => super::ether_payload(ETHERTYPE_MPLS, rest),
        _ => Err(Skip::NotIp),
    }
}

/// A PPPoE session frame's PPP payload: version/type(1) code(1) session(2) length(2).
pub(super) fn pppoe(frame: &[u8]) -> Result<&[u8], Skip> {
    if *frame.first().ok_or(Skip::Truncated)? != 0x11 {
        return Err(Skip::Malformed);
    }
    ppp(frame.get(6..).ok_or(Skip::Truncated)?)
}

/// PPP in HDLC-like framing (address 0xff, control 0x03), or bare PPP.
pub(super) fn ppp_maybe_hdlc(frame: &[u8]) -> Result<&[u8], Skip> {
    match frame {
        [0xff, 0x03, rest @ ..] => ppp(rest),
        // The address byte of HDLC-like framing, cut before its control byte.
        [0xff] => Err(Skip::Truncated),
        _ => ppp(frame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_never_out_of_range() {
        // An MPLS stack that never ends.
        assert_eq!(mpls(&[0u8; 4 * 40]), Err(Skip::Malformed));
        assert_eq!(mpls(&[0, 0, 1]), Err(Skip::Truncated));
        // GTP-U extension headers that go on forever or claim zero length.
        let mut g = vec![0x34, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x85];
        for _ in 0..20 {
            g.extend_from_slice(&[1, 0, 0, 0x85]);
        }
        assert_eq!(gtp_u(&g), Err(Skip::Malformed));
        assert_eq!(
            gtp_u(&[0x34, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x85, 0]),
            Err(Skip::Malformed)
        );
        // A GTP-U echo request is not user data.
        assert_eq!(gtp_u(&[0x32, 0x01, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0]), Ok(None));
        // GRE version 1 (PPTP) and every optional field.
        assert_eq!(gre(&[0x30, 0x01, 0x88, 0x0b]), Err(Skip::NotTcp));
        let g = [0xb0, 0, 0x08, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 9, 0x45];
        assert_eq!(gre(&g), Ok(Inner::EtherType(0x0800, &[0x45][..])));
        assert_eq!(ppp(&[0x21, 0x45]), Ok(&[0x45][..]));
        assert_eq!(ppp(&[0x00, 0x57, 0x60]), Ok(&[0x60][..]));
        assert_eq!(ppp(&[0xc0, 0x21, 1]), Err(Skip::NotIp));
    }
}
