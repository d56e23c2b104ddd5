//! `streamwarden run` throttling for real, in network namespaces made for the test: a "Plex"
//! namespace sends 40 Mbps to one client and 10 Mbps to another across a veth pair; a
//! throttle rule slows the first to 5 Mbps in the kernel while the second keeps its rate; no
//! terminate is sent; and once the daemon stops, the interface's queueing is byte for byte
//! what it was.
//!
//! Needs root (namespaces, CAP_NET_ADMIN). Outside CI it is skipped without; under `CI` it
//! fails.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::need::{Need, have};
use crate::common::netns::{Lab, Netns, rate, stop as stop_daemon};
use crate::common::*;

fn qdiscs(ns: &Netns, dev: &str) -> String {
    let out = ns
        .cmd("tc")
        .args(["qdisc", "show", "dev", dev])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn run_throttles_one_stream_in_the_kernel_and_leaves_the_interface_as_it_found_it() {
    if !have(
        "the live throttle test",
        &[Need::Netns, Need::NetAdmin, Need::NetRaw, Need::Tool("tc")],
    ) {
        return;
    }
    let lab = Lab::new('t', "10.66.0");
    let (plex_ns, dev) = (&lab.plex_ns, &lab.dev);
    let before = qdiscs(plex_ns, dev);

    // Plex's streams: 40 Mbps to 10.66.0.2, 10 Mbps to 10.66.0.3; the fake Plex lists the
    // two streams at those addresses.
    let stop = Arc::new(AtomicBool::new(false));
    let server = lab.serve([40_000_000, 10_000_000], stop.clone());
    let plex = lab.fake_plex();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[plex]\npoll_interval = \"1s\"\n[capture]\ninterface = \"{dev}\"\n[enforce]\naudit_log = \"audit.jsonl\"\n\n[[rules]]\nname = \"too-fast\"\nwhen = 'measured_kbps_10s > 20000'\nsustain = \"2s\"\naction = \"throttle\"\nrate = \"5 Mbps\"\n"
        ),
    )
    .unwrap();
    let daemon = lab.daemon(dir.path(), &plex);
    thread::sleep(Duration::from_secs(1));
    let (counts, clients) = lab.viewers(&stop);

    let audit = dir.path().join("audit.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&audit)
        .unwrap_or_default()
        .contains("\"throttle\"")
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(200));
    }
    let throttled = std::fs::read_to_string(&audit).unwrap_or_default();
    let during = qdiscs(plex_ns, dev);
    // Settle, then measure both over the same 3 s.
    thread::sleep(Duration::from_secs(4));
    let (a, b) = thread::scope(|s| {
        let a = s.spawn(|| rate(&counts[0], 3.0));
        let b = s.spawn(|| rate(&counts[1], 3.0));
        (a.join().unwrap(), b.join().unwrap())
    });

    let out = stop_daemon(daemon);
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let after = qdiscs(plex_ns, dev);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let _ = server.join();

    eprintln!(
        "throttled stream {:.2} Mbps (cap 5), other {:.2} Mbps (sends 10)",
        a / 1e6,
        b / 1e6
    );
    assert!(
        throttled.contains("\"action\":\"throttle\""),
        "no throttle:\n{throttled}\n{log}"
    );
    assert!(throttled.contains("\"rate\":\"5 Mbps\""), "{throttled}");
    assert!(during.contains("htb"), "while throttled: {during}\n{log}");
    assert!(
        (4_250_000.0..=5_750_000.0).contains(&a),
        "the throttled stream receives {:.2} Mbps, not 5 Mbps ± 15 %\n{log}",
        a / 1e6
    );
    assert!(
        (8_500_000.0..=11_500_000.0).contains(&b),
        "the other stream receives {:.2} Mbps, not its 10 Mbps\n{log}",
        b / 1e6
    );
    assert!(
        plex.terminates().is_empty(),
        "a throttle sends no terminate"
    );
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(
        before, after,
        "the interface's queueing after the run\n{log}"
    );
    let audit = std::fs::read_to_string(&audit).unwrap();
    assert!(audit.contains("\"action\":\"unthrottle\""), "{audit}");
}

#[test]
fn run_and_check_say_plainly_when_cap_net_admin_is_missing() {
    if !have(
        "the missing-CAP_NET_ADMIN test (it hands out exactly CAP_NET_RAW)",
        &[Need::SwitchUser, Need::NetRaw, Need::Tool("setpriv")],
    ) {
        return;
    }
    let plex = FakePlex::start(&mixed_sessions());
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[capture]\ninterface = \"lo\"\n\n[[rules]]\nname = \"slow-down\"\nwhen = 'measured_kbps_10s > 20000'\naction = \"throttle\"\nrate = \"5 Mbps\"\n",
    )
    .unwrap();
    // As the systemd unit would run it without CAP_NET_ADMIN: capture allowed, throttles not.
    let as_unit = |args: &[&str]| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=+net_raw",
                "--ambient-caps=+net_raw",
                "--",
            ])
            .arg(bin())
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("STATE_DIRECTORY", dir.path())
            .env("PLEX_URL", &plex.url)
            .env("PLEX_TOKEN", TOKEN)
            .output()
            .unwrap()
    };
    let o = as_unit(&["run", "--config", "c.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("lo: throttling needs CAP_NET_ADMIN")
            && err.contains("AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN")
            && err.contains("--cap-add NET_ADMIN"),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "{err}");
    let o = as_unit(&["check", "--config", "c.toml"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("throttle rules need CAP_NET_ADMIN when `run` starts"),
        "{out}"
    );
    // In a dry run nothing is touched, so nothing more is needed: it runs until stopped.
    let mut child = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+net_raw",
            "--ambient-caps=+net_raw",
            "--",
        ])
        .arg(bin())
        .args(["run", "--config", "c.toml", "--dry-run"])
        .current_dir(dir.path())
        .env_clear()
        .env("STATE_DIRECTORY", dir.path())
        .env("PLEX_URL", &plex.url)
        .env("PLEX_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the dry run stopped by itself"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("CAP_NET_ADMIN"), "{err}");
}
