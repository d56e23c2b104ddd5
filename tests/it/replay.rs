//! `streamwarden replay` over captures written by the tests, with exact known bytes and
//! timing, and over the real captures in tests/fixtures/pcap.

use crate::common::capture::*;
use crate::common::*;
use serde_json::Value;
use std::path::Path;

const CLIENT: [u8; 4] = [198, 51, 100, 7];

fn replay(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    run(dir, "", "", &all)
}

fn json_of(o: &std::process::Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// ha_session_base (Session session_id_1, Part 4631, 6000 kbps) and homarr (Session
/// 2894294r…, transcode key example-session, 20231 kbps), both at CLIENT.
fn two_sessions_xml(dir: &Path) -> String {
    let body = mixed_sessions()
        .replace("address=\"1.2.3.11\"", "address=\"198.51.100.7\"")
        .replace("address=\"0.0.0.0\"", "address=\"::ffff:198.51.100.7\"");
    let p = dir.join("sessions.xml");
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

/// Two TLS connections from Plex to CLIENT for 30 s (100 and 200 packets of 1250 bytes a
/// second: 3000 kbps in all), nothing readable in them.
fn tls_capture(dir: &Path) -> std::path::PathBuf {
    let mut cap = Cap::default();
    // A TLS ClientHello-like start: nothing to read.
    cap.packet(
        0,
        eth_tcp(
            CLIENT,
            50001,
            SERVER,
            32400,
            &[0x16, 3, 1, 0, 200, 1, 0, 0, 196],
        ),
    );
    cap.stream(SERVER, 32400, CLIENT, 50001, 0, 30, 100, 1250);
    cap.stream(SERVER, 32400, CLIENT, 50002, 0, 30, 200, 1250);
    cap.packet(30_000_000, eth_tcp(CLIENT, 50001, SERVER, 32400, &[]));
    let file = dir.join("tls.pcap");
    cap.write(&file);
    file
}

fn session<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == id)
        .unwrap()
}

#[test]
fn exact_windows_for_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut cap = Cap::default();
    // 2000 kbps for 40 s, then 1000 kbps for 30 s; the client's ACKs the other way.
    cap.stream(SERVER, 32400, CLIENT, 50000, 0, 40, 200, 1250);
    cap.stream(SERVER, 32400, CLIENT, 50000, 40, 70, 100, 1250);
    cap.stream(CLIENT, 50000, SERVER, 32400, 0, 70, 10, 52);
    // One packet in second 70 makes "now" the start of second 70.
    cap.packet(70_000_000, eth_tcp(CLIENT, 50000, SERVER, 32400, &[]));
    let file = dir.path().join("one.pcap");
    cap.write(&file);
    let xml = two_sessions_xml(dir.path());
    // Only the first session is at CLIENT in this run.
    let xml_one = std::fs::read_to_string(&xml)
        .unwrap()
        .replace("::ffff:198.51.100.7", "203.0.113.9");
    std::fs::write(&xml, xml_one).unwrap();
    let v = json_of(&replay(
        dir.path(),
        &[
            file.to_str().unwrap(),
            "--sessions",
            &xml,
            "--json",
            "--flows",
        ],
    ));
    let s = session(&v, "session_id_1");
    assert_eq!(s["measured_kbps_10s"], 1000.0);
    // Seconds 10..69: 30 s at 250 000 B/s and 30 s at 125 000 B/s over 60 s.
    assert_eq!(s["measured_kbps_1m"], 1500.0);
    // Seconds 0..69 over the stream's 70 s.
    assert_eq!(s["measured_kbps_5m"], 1571.429);
    assert_eq!(s["measured_kbps_10m"], 1571.429);
    assert_eq!(s["estimated"], false);
    // The other session has no traffic: unknown, not zero.
    let other = session(&v, "2894294r2jf2038fj3098jgf3gt");
    assert_eq!(other["measured_kbps_1m"], Value::Null);
    // Flows: one record per direction, bytes = sum of IP total lengths.
    let flows = v["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 2);
    let down = flows.iter().find(|f| f["sport"] == 32400).unwrap();
    assert_eq!(down["packets"], 40 * 200 + 30 * 100);
    assert_eq!(down["bytes"], (40 * 200 + 30 * 100) * 1250);
    let up = flows.iter().find(|f| f["dport"] == 32400).unwrap();
    assert_eq!(up["packets"], 70 * 10 + 1);
    assert_eq!(up["bytes"], 70 * 10 * 52 + 40);
    assert_eq!(v["packets"]["read"], 40 * 200 + 30 * 100 + 700 + 1);
    assert_eq!(v["packets"]["skipped"], 0);
}

fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: plex\r\nX-Plex-Product: Plex Web\r\n\r\n").into_bytes()
}

#[test]
fn two_sessions_behind_one_address_are_told_apart_by_their_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut cap = Cap::default();
    cap.packet(
        0,
        eth_tcp(
            CLIENT,
            50001,
            SERVER,
            32400,
            &request("/library/parts/4631/1590245989/file.mp4"),
        ),
    );
    cap.packet(
        1000,
        eth_tcp(
            CLIENT,
            50002,
            SERVER,
            32400,
            &request("/video/:/transcode/universal/session/example-session/base/00001.m4s"),
        ),
    );
    cap.stream(SERVER, 32400, CLIENT, 50001, 0, 30, 100, 1250); // 1000 kbps
    cap.stream(SERVER, 32400, CLIENT, 50002, 0, 30, 200, 1250); // 2000 kbps
    cap.packet(30_000_000, eth_tcp(CLIENT, 50001, SERVER, 32400, &[]));
    let file = dir.path().join("two.pcap");
    cap.write(&file);
    let xml = two_sessions_xml(dir.path());
    let v = json_of(&replay(
        dir.path(),
        &[file.to_str().unwrap(), "--sessions", &xml, "--json"],
    ));
    let a = session(&v, "session_id_1");
    let b = session(&v, "2894294r2jf2038fj3098jgf3gt");
    assert_eq!(a["measured_kbps_10s"], 1000.0);
    assert_eq!(b["measured_kbps_10s"], 2000.0);
    assert_eq!(a["estimated"], false);
    assert_eq!(b["estimated"], false);
}

#[test]
fn two_sessions_over_tls_are_split_by_plex_bitrates_and_marked_estimated() {
    let dir = tempfile::tempdir().unwrap();
    let file = tls_capture(dir.path());
    let xml = two_sessions_xml(dir.path());
    let v = json_of(&replay(
        dir.path(),
        &[file.to_str().unwrap(), "--sessions", &xml, "--json"],
    ));
    let a = session(&v, "session_id_1");
    let b = session(&v, "2894294r2jf2038fj3098jgf3gt");
    // 3000 kbps in all, split 6000 : 20231.
    let total = 3000.0;
    let want_a = total * 6000.0 / 26231.0;
    assert!(
        (a["measured_kbps_10s"].as_f64().unwrap() - want_a).abs() < 0.01,
        "{a}"
    );
    assert!(
        (b["measured_kbps_10s"].as_f64().unwrap() - (total - want_a)).abs() < 0.01,
        "{b}"
    );
    assert_eq!(a["estimated"], true);
    assert_eq!(b["estimated"], true);
}

#[test]
fn rules_on_measured_figures_say_what_would_have_been_killed_and_when() {
    let dir = tempfile::tempdir().unwrap();
    let mut cap = Cap::default();
    cap.stream(SERVER, 32400, CLIENT, 50000, 0, 40, 250, 1250); // 2500 kbps
    cap.packet(40_000_000, eth_tcp(CLIENT, 50000, SERVER, 32400, &[]));
    let file = dir.path().join("r.pcap");
    cap.write(&file);
    let xml = two_sessions_xml(dir.path());
    let xml_one = std::fs::read_to_string(&xml)
        .unwrap()
        .replace("::ffff:198.51.100.7", "203.0.113.9");
    std::fs::write(&xml, xml_one).unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[[rules]]\nname = \"heavy\"\nwhen = 'measured_kbps_10s > 2000'\nsustain = \"5s\"\nmessage = \"{user} {measured_kbps_10s_mbps} Mbps\"\n",
    )
    .unwrap();
    let v = json_of(&replay(
        dir.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            file.to_str().unwrap(),
            "--sessions",
            &xml,
            "--json",
        ],
    ));
    let d = v["decisions"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{v}");
    assert_eq!(d[0]["rule"], "heavy");
    assert_eq!(d[0]["action"], "would-kill");
    assert_eq!(d[0]["session_id"], "session_id_1");
    assert_eq!(d[0]["message"], "User 7 2.5 Mbps");
    // First matched at T0+1 (the first complete second), due 5 s later.
    let due = time::OffsetDateTime::from_unix_timestamp(T0 + 6).unwrap();
    assert_eq!(
        d[0]["ts"],
        due.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    // Text output says the same.
    let o = replay(
        dir.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            file.to_str().unwrap(),
            "--sessions",
            &xml,
        ],
    );
    assert!(
        stdout(&o).contains("would-kill [heavy] session session_id_1"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o)
            .contains("[198.51.100.7] [transcode] [User 7] [2.50, 2.50, 2.50 Mbps] [Movie 1]"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn estimated_figures_do_not_kill_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cap = Cap::default();
    cap.stream(SERVER, 32400, CLIENT, 50001, 0, 20, 400, 1250);
    cap.stream(SERVER, 32400, CLIENT, 50002, 0, 20, 400, 1250);
    cap.packet(20_000_000, eth_tcp(CLIENT, 50001, SERVER, 32400, &[]));
    let file = dir.path().join("e.pcap");
    cap.write(&file);
    let xml = two_sessions_xml(dir.path());
    let rule = "[[rules]]\nname = \"heavy\"\nwhen = 'measured_kbps_10s > 1000'\n";
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, rule).unwrap();
    let v = json_of(&replay(
        dir.path(),
        &[
            "-c",
            cfg.to_str().unwrap(),
            file.to_str().unwrap(),
            "--sessions",
            &xml,
            "--json",
        ],
    ));
    let d = v["decisions"].as_array().unwrap();
    assert!(!d.is_empty());
    assert!(
        d.iter()
            .all(|d| d["action"] == "kill-skipped" && d["estimated"] == true),
        "{v}"
    );
    std::fs::write(&cfg, format!("[enforce]\nact_on_estimates = true\n{rule}")).unwrap();
    let v = json_of(&replay(
        dir.path(),
        &[
            "-c",
            cfg.to_str().unwrap(),
            file.to_str().unwrap(),
            "--sessions",
            &xml,
            "--json",
        ],
    ));
    let d = v["decisions"].as_array().unwrap();
    assert_eq!(
        d.iter().filter(|d| d["action"] == "would-kill").count(),
        2,
        "{v}"
    );
}

#[test]
fn without_sessions_lines_are_per_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut cap = Cap::default();
    cap.stream(SERVER, 32400, CLIENT, 50001, 0, 20, 100, 1250);
    cap.stream(SERVER, 443, [192, 0, 2, 1], 50001, 0, 20, 100, 1250);
    cap.packet(20_000_000, eth_tcp(CLIENT, 50001, SERVER, 32400, &[]));
    let file = dir.path().join("a.pcap");
    cap.write(&file);
    let o = replay(dir.path(), &[file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("[198.51.100.7] [-] [-] [1.00, 1.00, 1.00 Mbps] [-]"),
        "{out}"
    );
    assert!(
        !out.contains("192.0.2.1"),
        "port 443 is not Plex's by default: {out}"
    );
    // --all-tcp meters every connection.
    let v = json_of(&replay(
        dir.path(),
        &[file.to_str().unwrap(), "--all-tcp", "--flows", "--json"],
    ));
    assert_eq!(v["flows"].as_array().unwrap().len(), 3);
    // A config can add a reverse proxy's port.
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[capture]\nports = [32400, 443]\n").unwrap();
    let o = replay(
        dir.path(),
        &["-c", cfg.to_str().unwrap(), file.to_str().unwrap()],
    );
    assert!(stdout(&o).contains("[192.0.2.1]"), "{}", stdout(&o));
}

#[test]
fn bad_inputs_are_clear_errors_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let radiotap = crate::common::fixtures_dir("pcap").join("radiotap-heapoverflow.pcap");
    let o = replay(dir.path(), &[radiotap.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("127"), "{}", stderr(&o));
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "this is not a capture\n").unwrap();
    let o = replay(dir.path(), &[text.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("notes.txt"), "{}", stderr(&o));
    let o = replay(dir.path(), &["missing.pcap"]);
    assert_eq!(o.status.code(), Some(2));
    let mut cap = Cap::default();
    cap.stream(SERVER, 32400, CLIENT, 50001, 0, 2, 10, 100);
    let file = dir.path().join("ok.pcap");
    cap.write(&file);
    let o = replay(
        dir.path(),
        &[file.to_str().unwrap(), "--sessions", text.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not a saved /status/sessions response"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn every_real_capture_replays_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let files = crate::common::pcap_fixtures();
    assert!(files.len() >= 40, "expected the captures, found {files:?}");
    for path in files {
        let o = replay(
            dir.path(),
            &[path.to_str().unwrap(), "--all-tcp", "--flows", "--json"],
        );
        let code = o.status.code();
        assert!(
            code == Some(0) || code == Some(2),
            "{}: {:?} {}",
            path.display(),
            code,
            stderr(&o)
        );
        assert!(
            !stderr(&o).contains("panicked"),
            "{}: {}",
            path.display(),
            stderr(&o)
        );
    }
}

#[test]
fn output_piped_into_a_reader_that_stops_early_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let mut cap = Cap::default();
    // Many flows, so the --flows listing is longer than a pipe buffer.
    for port in 0..2000u16 {
        cap.packet(
            i64::from(port),
            eth_tcp(SERVER, 32400, CLIENT, 10000 + port, &[1]),
        );
    }
    let file = dir.path().join("many.pcap");
    cap.write(&file);
    let mut child = std::process::Command::new(bin())
        .args(["replay", file.to_str().unwrap(), "--flows"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Read;
        let mut first = [0u8; 16];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
    }
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_ne!(o.status.code(), Some(101));
}

#[test]
fn a_capture_without_plex_traffic_says_how_to_see_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let ssh = crate::common::fixtures_dir("pcap").join("ssh.pcap");
    let ssh = ssh.to_str().unwrap();
    let o = replay(dir.path(), &[ssh]);
    assert!(
        stdout(&o).contains("no TCP packets on port 32400 in this capture (--all-tcp"),
        "{}",
        stdout(&o)
    );
    let v = json_of(&replay(dir.path(), &[ssh, "--json"]));
    assert_eq!(v["as_of"], Value::Null);
}

#[test]
fn a_throttle_rule_and_its_escalation_play_out_in_packet_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut cap = Cap::default();
    cap.stream(SERVER, 32400, CLIENT, 50000, 0, 40, 250, 1250); // 2500 kbps
    cap.packet(40_000_000, eth_tcp(CLIENT, 50000, SERVER, 32400, &[]));
    let file = dir.path().join("r.pcap");
    cap.write(&file);
    let xml = two_sessions_xml(dir.path());
    let xml_one = std::fs::read_to_string(&xml)
        .unwrap()
        .replace("::ffff:198.51.100.7", "203.0.113.9");
    std::fs::write(&xml, xml_one).unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[[rules]]\nname = \"heavy\"\nwhen = 'measured_kbps_10s > 2000'\nsustain = \"5s\"\naction = \"throttle\"\nrate = \"1 Mbps\"\nescalate = { after = \"10s\" }\n",
    )
    .unwrap();
    let v = json_of(&replay(
        dir.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            file.to_str().unwrap(),
            "--sessions",
            &xml,
            "--json",
        ],
    ));
    let d = v["decisions"].as_array().unwrap();
    let at = |secs: i64| {
        time::OffsetDateTime::from_unix_timestamp(T0 + secs)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    assert_eq!(d.len(), 2, "{v}");
    assert_eq!(
        (&d[0]["rule"], &d[0]["action"], &d[0]["ts"]),
        (&"heavy".into(), &"would-throttle".into(), &at(6).into())
    );
    // The traffic is not really slowed in a replay: it still offends 10 s into the
    // escalation's hold, which starts with the first round under the throttle (T0 + 7).
    assert_eq!(
        (&d[1]["rule"], &d[1]["action"], &d[1]["ts"]),
        (
            &"heavy/escalate".into(),
            &"would-kill".into(),
            &at(17).into()
        )
    );
}

/// Two sessions at one address over TLS, one with no reported bitrate: the shares cannot be
/// told, so neither gets a figure, but each says what flows to the address and with whom.
#[test]
fn an_unknown_share_shows_the_address_total_and_who_shares_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = tls_capture(dir.path());
    let xml = two_sessions_xml(dir.path());
    let body = std::fs::read_to_string(&xml).unwrap();
    assert!(body.contains("bitrate=\"6000\""));
    std::fs::write(
        &xml,
        body.replace("bitrate=\"6000\"", "bitrate=\"0\"")
            .replace("bandwidth=\"", "x-bandwidth=\""),
    )
    .unwrap();
    let v = json_of(&replay(
        dir.path(),
        &[file.to_str().unwrap(), "--sessions", &xml, "--json"],
    ));
    let a = session(&v, "session_id_1");
    let b = session(&v, "2894294r2jf2038fj3098jgf3gt");
    for (s, other) in [(a, b), (b, a)] {
        assert!(s["measured_kbps_1m"].is_null(), "{s}");
        // 3000 kbps to the address in all (30 s of 100 + 200 packets of 1250 bytes a second).
        assert!(
            (s["address_kbps_10s"].as_f64().unwrap() - 3000.0).abs() < 0.01,
            "{s}"
        );
        assert!((s["address_kbps_1m"].as_f64().unwrap() - 3000.0).abs() < 0.01);
        assert_eq!(s["shared_with"], serde_json::json!([other["user"]]), "{s}");
    }
    let o = replay(dir.path(), &[file.to_str().unwrap(), "--sessions", &xml]);
    let text = stdout(&o);
    let line = |user: &Value| {
        text.lines()
            .find(|l| l.contains(&format!("] [{}] [", user.as_str().unwrap())))
            .unwrap_or_else(|| panic!("{text}"))
            .to_string()
    };
    assert!(
        line(&a["user"]).contains(&format!(
            "[3.00 Mbps at this address, shared with {}, share unknown]",
            b["user"].as_str().unwrap()
        )),
        "{text}"
    );
    assert!(!line(&b["user"]).contains("no traffic seen"), "{text}");
}
