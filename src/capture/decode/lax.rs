//! The lax path: etherparse's lax slicer, which takes every IP packet, truncated or not
//! (`decode_ip`'s fallback and `decode_ip_lax`).

use super::*;

/// Whether a fragmented packet is the first fragment (offset 0), which carries the
/// transport header.
fn first_fragment(slice: &LaxIpSlice<'_>) -> bool {
    match slice {
        LaxIpSlice::Ipv4(v4) => v4.header().fragments_offset().value() == 0,
        LaxIpSlice::Ipv6(v6) => v6.extensions().clone().into_iter().all(|e| match e {
            etherparse::Ipv6ExtensionSlice::Fragment(f) => f.fragment_offset().value() == 0,
            _ => true,
        }),
    }
}

#[inline(never)]
pub(super) fn lax(ip: &[u8], depth: u8) -> Result<TcpSegment<'_>, Skip> {
    let (slice, ext_err) = LaxIpSlice::from_slice(ip).map_err(|e| match e {
        LaxHeaderSliceError::Len(_) => Skip::Truncated,
        LaxHeaderSliceError::Content(_) => Skip::Malformed,
    })?;
    if let Some((err, _layer)) = ext_err {
        return Err(match err {
            ipv6_exts::HeaderSliceError::Len(_) => Skip::Truncated,
            ipv6_exts::HeaderSliceError::Content(_) => Skip::Malformed,
        });
    }
    let (src, dst, ip_len) = match &slice {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            let header_len = h.slice().len();
            let total = usize::from(h.total_len());
            let ip_len = if total >= header_len {
                total
            } else {
                // total length 0 (segmentation offload) or nonsense: use what was captured
                ip.len()
            };
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                ip_len,
            )
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            let payload_len = usize::from(h.payload_length());
            let ip_len = if payload_len == 0 {
                // jumbogram or offload: use what was captured
                ip.len()
            } else {
                payload_len + 40
            };
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                ip_len,
            )
        }
    };
    let payload = slice.payload();
    // With reassembly off, tshark dissects a first fragment's transport header and counts
    // the fragment; later fragments carry no ports.
    if payload.fragmented && !first_fragment(&slice) {
        return Err(Skip::Fragment);
    }
    match payload.ip_number {
        IpNumber::TCP => {}
        IpNumber::UDP => {
            return match tunnel::udp(payload.payload)? {
                Some(i) => inner(i, depth + 1),
                None => Err(Skip::NotTcp),
            };
        }
        IpNumber::GRE => return inner(tunnel::gre(payload.payload)?, depth + 1),
        IpNumber::IPV4 | IpNumber::IPV6 => {
            return inner(Inner::Ip(payload.payload), depth + 1);
        }
        _ => return Err(Skip::NotTcp),
    }
    let tcp = payload.payload;
    let sport = be16(tcp, 0).ok_or(Skip::Truncated)?;
    let dport = be16(tcp, 2).ok_or(Skip::Truncated)?;
    let flags = tcp.get(13).copied().unwrap_or(0);
    // Offset of the TCP header within the IP packet (IP header plus extensions).
    let tcp_offset = (tcp.as_ptr() as usize).wrapping_sub(ip.as_ptr() as usize);
    let (tcp_header_len, captured_payload) = match tcp.get(12) {
        Some(&b) => {
            let data_offset = usize::from(b >> 4) * 4;
            if data_offset >= 20 {
                (data_offset, tcp.get(data_offset..).unwrap_or(&[]))
            } else {
                // bogus data offset: the ports and the IP length are still good, keep counting
                (20, &[][..])
            }
        }
        None => (20, &[][..]),
    };
    let payload_len = ip_len.saturating_sub(tcp_offset + tcp_header_len);
    Ok(TcpSegment {
        src,
        dst,
        sport,
        dport,
        ip_len: u32::try_from(ip_len).unwrap_or(u32::MAX),
        payload_len: u32::try_from(payload_len).unwrap_or(u32::MAX),
        payload: captured_payload,
        syn: flags & 0x02 != 0,
        fin: flags & 0x01 != 0,
        rst: flags & 0x04 != 0,
    })
}
