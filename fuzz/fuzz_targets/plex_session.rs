//! The Plex XML parsers: `/status/sessions` and `/library/metadata/{ratingKey}` bodies.
//! Any text must give a value or an error, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use streamwarden::plex::session::{parse_sessions, parse_source_facts};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_sessions(&text);
    let _ = parse_source_facts(&text, None);
    let _ = parse_source_facts(&text, Some("1"));
});
