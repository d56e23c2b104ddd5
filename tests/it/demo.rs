//! `streamwarden demo` as a newcomer runs it: no Plex, no privileges.

use crate::common::*;

#[test]
fn the_demo_applies_the_example_rules_and_shows_the_kills() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), "", "", &["demo", "--duration", "26"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    // The 4K transcode (sustain 15 s) and the transcode above its source (sustain 20 s).
    assert!(
        out.contains(
            "stopped bob's stream; the player shows: \"4K files cannot be transcoded here."
        ),
        "{out}"
    );
    assert!(out.contains("stopped dave's stream; the player shows: \"dave, this stream needs 3.0 Mbps, more than the 2.5 Mbps file."), "{out}");
    assert!(out.contains("demo over: 2 stream(s) stopped"), "{out}");
    for spared in ["alice's", "carol's", "erin's"] {
        assert!(!out.contains(&format!("stopped {spared}")), "{out}");
    }
    // bob's real bandwidth (12 Mbps) is logged by the log-only rule.
    assert!(stderr(&o).contains("bob pulls 1"), "{}", stderr(&o));
}
