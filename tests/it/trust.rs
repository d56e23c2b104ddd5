//! Regressions from the outside audit: each test fails on the defect it names.

use crate::common::*;

const HOMARR: &str = "2894294r2jf2038fj3098jgf3gt"; // user example_usr, id 1: the owner
const HA: &str = "session_id_1"; // user 7

fn write_config(dir: &std::path::Path, text: &str) {
    std::fs::write(dir.join("streamwarden.toml"), text).unwrap();
}

#[test]
fn the_owner_entry_exempts_the_server_owner_whatever_the_account_is_called() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "[enforce]\nexempt_users = [\"owner\"]\n");
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "stream", "--sessionId", HOMARR],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("exempt"), "{}", stdout(&o));
    assert!(plex.terminates().is_empty());
    // Anyone else is still killed.
    let o = run(
        dir.path(),
        &plex.url,
        TOKEN,
        &["hook", "--jbop", "stream", "--sessionId", HA],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(plex.terminates().len(), 1);
}

#[test]
fn the_example_config_exempts_the_owner() {
    let text =
        std::fs::read_to_string(format!("{}/rules.example.toml", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
    let config = streamwarden::config::Config::parse(&text, None).unwrap();
    assert!(
        config
            .enforce
            .exempt_users
            .iter()
            .any(|u| u == streamwarden::enforce::OWNER),
        "{:?}",
        config.enforce.exempt_users
    );
}
