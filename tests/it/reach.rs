//! Reaching every Tautulli: the daemon without capture (no privileges at all), deployment.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn the_daemon_runs_without_capture_and_without_any_privilege() {
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[plex]\npoll_interval = \"1s\"\n[capture]\nenabled = false\n[http]\nlisten = \"127.0.0.1:{port}\"\n[enforce]\naudit_log = \"audit.jsonl\"\n\n[[rules]]\nname = \"owner-only\"\nwhen = 'user_id == 7'\nsustain = \"1s\"\n\n[[rules]]\nname = \"fast\"\nwhen = 'measured_kbps_1m > 1'\n"
        ),
    )
    .unwrap();
    // A copy anyone can run, started as nobody when we are root: not a capability in sight.
    let exe = dir.path().join("streamwarden");
    std::fs::copy(bin(), &exe).unwrap();
    let mut cmd = Command::new(&exe);
    cmd.args(["run", "--config", "c.toml"])
        .current_dir(dir.path())
        .env_clear()
        .env("PLEX_URL", &plex.url)
        .env("PLEX_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if nix::unistd::Uid::effective().is_root() {
        use std::os::unix::process::CommandExt;
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        cmd.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
    }
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while plex.terminates().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let rows = http_get(&format!("127.0.0.1:{port}"), "/api/streams");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("capture off"), "{err}");
    assert_eq!(plex.terminates().len(), 1, "{err}");
    assert_eq!(plex.terminates()[0].0, "session_id_1");
    // Measured variables are unknown, so the measured rule never matched.
    let rows: serde_json::Value = serde_json::from_str(&rows).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["measured_kbps_1m"].is_null()),
        "{rows}"
    );
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(!audit.contains("\"fast\""), "{audit}");
}
