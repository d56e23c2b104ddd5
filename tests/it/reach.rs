//! Reaching every Tautulli: the daemon without capture (no privileges at all), deployment.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::need::{Need, have};
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
            "[plex]\npoll_interval = \"1s\"\n[capture]\nenabled = false\n[http]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"tok-http-1\"\n[enforce]\naudit_log = \"audit.jsonl\"\n\n[[rules]]\nname = \"owner-only\"\nwhen = 'user_id == 7'\nsustain = \"1s\"\n\n[[rules]]\nname = \"fast\"\nwhen = 'measured_kbps_1m > 1'\n"
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
        .env("STATE_DIRECTORY", dir.path())
        .env("PLEX_URL", &plex.url)
        .env("PLEX_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if nix::unistd::Uid::effective().is_root() && Need::SwitchUser.met() {
        use std::os::unix::process::CommandExt;
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        cmd.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
    }
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while plex.terminates().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let host = format!("127.0.0.1:{port}");
    let auth = [("Authorization", "Bearer tok-http-1")];
    let rows = http("GET", &host, "/api/streams", &auth, "").1;
    // Tautulli's Webhook agent, as its JSON Data template sends it.
    let (status, reply) = http(
        "POST",
        &host,
        "/api/tautulli",
        &auth,
        r#"{"jbop": "stream", "sessionId": "rxiscwekkvkpukgi3pm9nklp", "killMessage": "Bye from Tautulli", "userId": "1"}"#,
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("capture off"), "{err}");
    assert_eq!(status, 200, "{reply}\n{err}");
    assert!(reply.contains("\"outcome\":\"done\""), "{reply}");
    assert_eq!(plex.terminates().len(), 2, "{err}");
    assert_eq!(plex.terminates()[0].0, "session_id_1");
    assert_eq!(
        plex.terminates()[1],
        (
            "rxiscwekkvkpukgi3pm9nklp".to_string(),
            "Bye from Tautulli".to_string()
        )
    );
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

/// The syscalls a systemd syscall group (or a single name) stands for, nested groups
/// resolved, as systemd-analyze lists them.
fn syscalls_of(token: &str, out: &mut std::collections::BTreeSet<String>) {
    if !token.starts_with('@') {
        out.insert(token.to_string());
        return;
    }
    let o = Command::new("systemd-analyze")
        .args(["syscall-filter", token])
        .output()
        .expect("systemd-analyze (Debian's systemd package) is needed");
    assert!(o.status.success(), "systemd-analyze syscall-filter {token}");
    for line in String::from_utf8_lossy(&o.stdout).lines().skip(1) {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        syscalls_of(t, out);
    }
}

/// The unit's effective allow list, by systemd's rules: the first SystemCallFilter= line
/// sets an allow list, `~` lines take from it, later plain lines add to it.
fn unit_allowed(unit: &str) -> std::collections::BTreeSet<String> {
    let mut allowed = std::collections::BTreeSet::new();
    for line in unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("SystemCallFilter="))
    {
        let (deny, list) = match line.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let mut set = std::collections::BTreeSet::new();
        for token in list.split_whitespace() {
            syscalls_of(token, &mut set);
        }
        if deny {
            allowed.retain(|s| !set.contains(s));
        } else {
            allowed.extend(set);
        }
    }
    allowed
}

#[test]
fn the_systemd_units_syscall_filter_allows_everything_the_daemon_calls() {
    if !have(
        "the systemd unit's syscall filter test",
        &[
            Need::SwitchUser,
            Need::NetRaw,
            Need::NetAdmin,
            Need::Tool("strace"),
            Need::Tool("setpriv"),
            Need::Tool("systemd-analyze"),
        ],
    ) {
        return;
    }
    let unit = std::fs::read_to_string(format!(
        "{}/contrib/systemd/streamwarden.service",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let allowed = unit_allowed(&unit);
    assert!(
        allowed.contains("read") && !allowed.contains("reboot"),
        "{allowed:?}"
    );
    // Run the daemon as the unit does: an unprivileged user holding only CAP_NET_RAW and
    // CAP_NET_ADMIN (ambient), capturing, opening traffic control for a throttle rule,
    // serving HTTP, killing, then stopped by SIGTERM; every syscall it makes is recorded.
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
            "[plex]\npoll_interval = \"1s\"\n[capture]\ninterface = \"lo\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[enforce]\naudit_log = \"audit.jsonl\"\n\n[[rules]]\nname = \"owner-only\"\nwhen = 'user_id == 7'\nsustain = \"1s\"\n\n[[rules]]\nname = \"slow-down\"\nwhen = 'user_id == 7'\naction = \"throttle\"\nrate = \"5 Mbps\"\n"
        ),
    )
    .unwrap();
    let exe = dir.path().join("streamwarden");
    std::fs::copy(bin(), &exe).unwrap();
    let trace = dir.path().join("trace.txt");
    let child = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+net_raw,+net_admin",
            "--ambient-caps=+net_raw,+net_admin",
            "--",
        ])
        .arg(&exe)
        .args(["run", "--config", "c.toml", "--log-format", "json"])
        .current_dir(dir.path())
        .env_clear()
        .env("STATE_DIRECTORY", dir.path())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PLEX_URL", &plex.url)
        .env("PLEX_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace (Debian's strace package) is needed");
    let deadline = Instant::now() + Duration::from_secs(20);
    while plex.terminates().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = http_get(&format!("127.0.0.1:{port}"), "/metrics");
    // SIGTERM to the daemon itself (strace's child).
    let exec = format!("execve(\"{}\"", exe.display());
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let Some(pid) = text
        .lines()
        .find(|l| l.contains(&exec))
        .and_then(|l| l.split_whitespace().next()?.parse::<i32>().ok())
    else {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let out = child.wait_with_output().unwrap();
        panic!(
            "no execve of the daemon in the trace:\n{}\n{}",
            text.lines().take(20).collect::<Vec<_>>().join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(plex.terminates().len(), 1, "{err}");
    // Every syscall after the daemon's own execve.
    let text = std::fs::read_to_string(&trace).unwrap();
    let mut started = false;
    let mut used = std::collections::BTreeSet::new();
    for line in text.lines() {
        if !started {
            started = line.contains(&exec);
            continue;
        }
        let rest = line.split_once(' ').map_or("", |(_, r)| r.trim_start());
        if let Some(name) = rest.split('(').next()
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            used.insert(name.to_string());
        }
    }
    assert!(
        used.contains("capset"),
        "the privilege drop was not traced: {used:?}"
    );
    let denied: Vec<&String> = used.iter().filter(|s| !allowed.contains(*s)).collect();
    assert!(
        denied.is_empty(),
        "the unit's SystemCallFilter would kill the daemon (SIGSYS) on: {denied:?}"
    );
}

#[test]
fn the_static_binary_works_in_an_empty_chroot() {
    let Some(exe) = static_binary() else { return };
    if !have("the static binary in a chroot", &[Need::Chroot]) {
        return;
    }
    let plex = FakePlex::start(&mixed_sessions());
    // An empty root: no /etc, no libraries, no HOME; only the binary.
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(&exe, root.path().join("streamwarden")).unwrap();
    let in_chroot = |args: &[&str]| {
        Command::new("/usr/sbin/chroot")
            .arg(root.path())
            .arg("/streamwarden")
            .args(args)
            .env_clear()
            .env("PLEX_URL", &plex.url)
            .env("PLEX_TOKEN", TOKEN)
            .output()
            .expect("chroot")
    };
    let o = in_chroot(&["sessions"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("session_id_1"), "{}", stdout(&o));
    let o = in_chroot(&["hook", "--jbop", "stream", "--sessionId", "session_id_1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(plex.terminates().len(), 1);
    // Capture is in this build (libpcap linked in): `run` opens it, and libpcap's own answer
    // for an interface this host lacks comes back as a clear error.
    std::fs::write(
        root.path().join("c.toml"),
        "[capture]\ninterface = \"swnone0\"\n",
    )
    .unwrap();
    let o = in_chroot(&["run", "--config", "/c.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no such capture interface: swnone0"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("not in this build"), "{}", stderr(&o));
    // Names resolve without libc's NSS (and without /etc/hosts): localhost still works.
    let url = plex.url.replace("127.0.0.1", "localhost");
    let o = Command::new("/usr/sbin/chroot")
        .arg(root.path())
        .args(["/streamwarden", "sessions"])
        .env_clear()
        .env("PLEX_URL", &url)
        .env("PLEX_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let size = std::fs::metadata(&exe).unwrap().len();
    assert!(size <= 25 * 1024 * 1024, "{size} bytes");
}
