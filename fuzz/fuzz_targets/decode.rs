//! The packet decoder: any bytes as a frame of any supported link type. The first input byte
//! picks the link type, the rest is the captured frame. `decode` promises never to panic and
//! to borrow its payload from the frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use streamwarden::capture::decode::SUPPORTED_LINKTYPES;
use streamwarden::capture::{decode, decode_ip};

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
    if let Ok(segment) = decode_ip(frame) {
        assert!(within(frame, segment.payload), "payload outside the frame");
    }
});
