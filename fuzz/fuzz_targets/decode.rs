//! The packet decoder: any bytes as a frame of any supported link type. The first input byte
//! picks the link type, the rest is the captured frame. `decode` promises never to panic and
//! to borrow its payload from the frame, and its fast path (untagged Ethernet, unfragmented
//! IPv4, whole TCP header) must agree with the general one (`decode_ip_lax`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use streamwarden::capture::decode::{LINKTYPE_ETHERNET, SUPPORTED_LINKTYPES};
use streamwarden::capture::{decode, decode_ip, decode_ip_lax};

/// Whether `inner` lies inside `outer`.
fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let linktype = SUPPORTED_LINKTYPES[usize::from(selector) % SUPPORTED_LINKTYPES.len()];
    if let Ok(segment) = decode(linktype, frame) {
        assert!(within(frame, segment.payload), "payload outside the frame");
        assert!(segment.ip_len >= segment.payload_len, "{segment:?}");
    }

    // The frame as an IP packet: fast path and general path agree.
    assert_eq!(
        decode_ip(frame),
        decode_ip_lax(frame),
        "decode_ip vs the lax path"
    );
    // The frame as untagged Ethernet carrying IPv4.
    if frame.get(12..14) == Some(&[0x08, 0x00])
        && let Some(ip) = frame.get(14..)
        && ip.first().is_some_and(|b| b >> 4 == 4)
    {
        assert_eq!(
            decode(LINKTYPE_ETHERNET, frame),
            decode_ip_lax(ip),
            "Ethernet fast path vs the lax path"
        );
    }
});
