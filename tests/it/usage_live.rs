//! Usage from real traffic: in network namespaces made for the test, "Plex" sends a paced
//! 20 Mbit/s stream to bob and 10 Mbit/s to carol across a veth pair while `streamwarden run`
//! captures; what `usage --json` and `sqlite3` then read must agree with what the kernel
//! sent; a quota rule acts on bob and never on carol; a restart carries the totals on; and
//! `backtest` names bob, not carol, for `measured_kbps_1m > 15000`.
//!
//! Needs root (namespaces, capture). Outside CI it is skipped without; under `CI` it fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::need::{Need, have};
use crate::common::netns::{Lab, stop, tx_ip_bytes};
use crate::common::*;

/// Stops the daemon; it must exit 0. What it logged.
fn stopped(daemon: std::process::Child) -> String {
    let out = stop(daemon);
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn usage_json(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let o = run(dir, "", "", &["usage", "--json", "--config", "c.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

fn bytes_of(rows: &[serde_json::Value], user: &str) -> i64 {
    rows.iter()
        .find(|r| r["user"] == user)
        .and_then(|r| r["bytes"].as_i64())
        .unwrap_or(0)
}

#[test]
fn usage_of_real_traffic_matches_the_kernel_and_quotas_and_backtests_use_it() {
    if !have(
        "the live usage test",
        &[
            Need::Netns,
            Need::NetAdmin,
            Need::NetRaw,
            Need::Tool("sqlite3"),
        ],
    ) {
        return;
    }
    // bob is ha_session_base's user 7 at 10.67.0.2; carol homarr's example_usr at 10.67.0.3.
    let lab = Lab::new('u', "10.67.0");
    let (plex_ns, dev) = (&lab.plex_ns, lab.dev.clone());
    let plex = lab.fake_plex();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[plex]\npoll_interval = \"1s\"\n[capture]\ninterface = \"{dev}\"\n\n[[rules]]\nname = \"quota\"\naction = \"log\"\nwhen = 'user_gb_today > 0.1'\nmessage = \"{{user}} over 0.1 GB today\"\n"
        ),
    )
    .unwrap();
    let daemon = lab.daemon(dir.path(), &plex);
    thread::sleep(Duration::from_secs(2));
    let tx_before = tx_ip_bytes(plex_ns, &dev);
    let stop = Arc::new(AtomicBool::new(false));
    let server = lab.serve([20_000_000, 10_000_000], stop.clone());
    let (counts, clients) = lab.viewers(&stop);
    // About 40 s for bob to pass 0.1 GB at 20 Mbit/s; 55 s in all.
    let started = Instant::now();
    let mut acted_after = None;
    while started.elapsed() < Duration::from_secs(55) {
        thread::sleep(Duration::from_millis(500));
        if acted_after.is_none() {
            let o = run(
                dir.path(),
                "",
                "",
                &["history", "--json", "--config", "c.toml", "--action", "log"],
            );
            if stdout(&o).contains("\"rule\": \"quota\"") {
                acted_after = Some(started.elapsed());
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let _ = server.join();
    thread::sleep(Duration::from_millis(500));
    let sent = tx_ip_bytes(plex_ns, &dev) - tx_before;
    let log = stopped(daemon);

    let rows = usage_json(dir.path());
    let (bob, carol) = (bytes_of(&rows, "User 7"), bytes_of(&rows, "example_usr"));
    let all: i64 = rows.iter().filter_map(|r| r["bytes"].as_i64()).sum();
    let received = [
        counts[0].load(Ordering::Relaxed) as i64,
        counts[1].load(Ordering::Relaxed) as i64,
    ];
    eprintln!(
        "kernel sent {sent} IP bytes; usage: bob {bob}, carol {carol}, all {all}; payload received {received:?}; quota acted after {acted_after:?}"
    );
    // Everything the kernel sent (the streams, their handshakes, ARP aside) is in the usage.
    let ratio = all as f64 / sent as f64;
    assert!(
        (0.99..=1.01).contains(&ratio),
        "usage {all} vs kernel {sent}\n{log}"
    );
    // Each user's IP bytes: their payload plus 2 to 5 % of headers.
    for (user, bytes, payload) in [("bob", bob, received[0]), ("carol", carol, received[1])] {
        let r = bytes as f64 / payload as f64;
        assert!(
            (1.0..1.06).contains(&r),
            "{user}: {bytes} IP bytes for {payload} of payload"
        );
    }
    // sqlite3 on the state file reads the same.
    let out = std::process::Command::new("sqlite3")
        .arg(dir.path().join("state.db"))
        .arg("SELECT sum(bytes) FROM usage WHERE user = 'User 7'")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), bob.to_string());
    // The quota acted on bob after about 40 s, never on carol.
    let acted = acted_after.expect("the quota rule acted on bob");
    assert!(
        (Duration::from_secs(30)..Duration::from_secs(52)).contains(&acted),
        "{acted:?}"
    );
    let o = run(
        dir.path(),
        "",
        "",
        &["history", "--json", "--config", "c.toml", "--action", "log"],
    );
    let h: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let users: Vec<&str> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["user"].as_str())
        .collect();
    assert!(
        users.contains(&"User 7") && !users.contains(&"example_usr"),
        "{h}"
    );

    // A backtest over the recorded minutes names bob, not carol.
    std::fs::write(
        dir.path().join("bt.toml"),
        "[[rules]]\nname = \"heavy\"\nwhen = 'measured_kbps_1m > 15000'\n",
    )
    .unwrap();
    let o = run(
        dir.path(),
        "",
        "",
        &["backtest", "--json", "--config", "bt.toml", "--since", "1h"],
    );
    let b: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let named: Vec<&str> = b["rules"][0]["would"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["user"].as_str())
        .collect();
    assert!(
        !named.is_empty() && named.iter().all(|u| *u == "User 7"),
        "{b}"
    );

    // A restart carries the totals on.
    let daemon = lab.daemon(dir.path(), &plex);
    thread::sleep(Duration::from_secs(2));
    stopped(daemon);
    assert_eq!(bytes_of(&usage_json(dir.path()), "User 7"), bob);
}
