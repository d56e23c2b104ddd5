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

mod engine_holds {
    use std::net::{IpAddr, Ipv4Addr};

    use streamwarden::capture::TcpSegment;
    use streamwarden::config::Config;
    use streamwarden::engine::{self, RuleState, Tracker};
    use streamwarden::meter::Meter;
    use streamwarden::micros::Micros;
    use streamwarden::plex::Session;
    use streamwarden::rules::RuleSet;

    const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

    fn rules(text: &str) -> RuleSet {
        RuleSet::compile(&Config::parse(text, None).unwrap()).unwrap()
    }

    /// `kbps` on one TLS connection (no request to tell whose it is) for `secs` seconds.
    fn meter(kbps: u32, secs: i64) -> Meter {
        let mut m = Meter::new();
        let per_sec = 100i64;
        let ip_len = kbps * 1000 / 8 / per_sec as u32;
        for s in 0..secs {
            for k in 0..per_sec {
                let seg = TcpSegment {
                    src: SERVER,
                    dst: CLIENT,
                    sport: 32400,
                    dport: 50000,
                    ip_len,
                    payload_len: ip_len - 40,
                    payload: &[],
                    syn: false,
                    fin: false,
                    rst: false,
                };
                m.record(s * 1_000_000 + k * 10_000, &seg);
            }
        }
        m
    }

    fn viewer(id: &str, bitrate: Option<i64>) -> Session {
        Session {
            session_id: Some(id.into()),
            user_id: Some(7),
            address: Some(CLIENT.to_string()),
            stream_bitrate_kbps: bitrate,
            ..Default::default()
        }
    }

    #[test]
    fn a_viewer_whose_bitrate_plex_does_not_report_makes_the_split_unknown_not_zero() {
        let m = meter(10_000, 30);
        let both = [viewer("a", Some(8000)), viewer("b", None)];
        let got = streamwarden::attribute::attribute(&m, &both, &[32400], 30_000_000);
        assert_eq!(got[0], None, "a's share is unknown: {:?}", got[0]);
        assert_eq!(got[1], None, "b's share is unknown, not 0: {:?}", got[1]);
        // With both bitrates known the split is an estimate by bitrate.
        let known = [viewer("a", Some(8000)), viewer("b", Some(2000))];
        let got = streamwarden::attribute::attribute(&m, &known, &[32400], 30_000_000);
        let a = got[0].as_ref().unwrap().measured;
        assert!(a.estimated);
        assert!((a.kbps_1m - 8000.0).abs() < 1.0, "{a:?}");
    }

    #[test]
    fn a_hold_on_an_estimate_starts_again_when_the_figure_becomes_exact() {
        let rules = rules(
            "[[rules]]\nname = \"fast\"\nwhen = 'measured_kbps_1m > 5000'\nsustain = \"10s\"\n",
        );
        let m = meter(10_000, 60);
        let both = [viewer("a", Some(8000)), viewer("b", Some(2000))];
        let alone = [viewer("a", Some(8000))];
        let mut t = Tracker::default();
        // 20 s as an estimate (a shares the address with b): the hold builds up.
        for s in 20..=40 {
            engine::tick(
                &rules,
                &both,
                &m,
                &[32400],
                Micros(s * 1_000_000),
                true,
                &mut t,
            );
        }
        // b leaves: a's figure is now exact. The hold starts again rather than killing.
        let tick = engine::tick(
            &rules,
            &alone,
            &m,
            &[32400],
            Micros(41_000_000),
            true,
            &mut t,
        );
        assert!(tick.due.is_empty(), "{:?}", tick.states);
        assert!(
            matches!(tick.states[0][0], RuleState::Sustaining { .. }),
            "{:?}",
            tick.states
        );
        // Ten seconds of exact figures later, it is due, and not estimated.
        let tick = engine::tick(
            &rules,
            &alone,
            &m,
            &[32400],
            Micros(51_000_000),
            true,
            &mut t,
        );
        assert_eq!(tick.due.len(), 1, "{:?}", tick.states);
        assert!(!tick.due[0].estimated);
    }

    #[test]
    fn holds_count_only_time_covered_by_fresh_session_data() {
        let rules = rules("[[rules]]\nname = \"any\"\nwhen = 'user_id == 7'\nsustain = \"5s\"\n");
        let s = [viewer("a", Some(8000))];
        let m = Meter::new();
        let mut t = Tracker::default();
        engine::tick(&rules, &s, &m, &[32400], Micros(0), true, &mut t);
        // Plex is down for 35 s: the loop still ticks on its last (stale) sessions.
        for sec in 1..=35 {
            let tick = engine::tick(
                &rules,
                &s,
                &m,
                &[32400],
                Micros(sec * 1_000_000),
                false,
                &mut t,
            );
            assert!(tick.due.is_empty());
        }
        // Back: one second of fresh data is one second held, not 36.
        let tick = engine::tick(&rules, &s, &m, &[32400], Micros(36_000_000), true, &mut t);
        assert!(tick.due.is_empty(), "{:?}", tick.states);
        assert_eq!(
            tick.states[0][0],
            RuleState::Sustaining {
                held: std::time::Duration::from_secs(1),
                sustain: std::time::Duration::from_secs(5)
            }
        );
        for sec in 37..=40 {
            engine::tick(
                &rules,
                &s,
                &m,
                &[32400],
                Micros(sec * 1_000_000),
                true,
                &mut t,
            );
        }
        let tick = engine::tick(&rules, &s, &m, &[32400], Micros(41_000_000), true, &mut t);
        assert_eq!(tick.due.len(), 1);
    }
}

#[test]
fn a_reload_names_the_settings_that_need_a_restart() {
    use streamwarden::config::Config;
    let a = Config::parse("[plex]\npoll_interval = \"10s\"\n", None).unwrap();
    let b = Config::parse(
        "[plex]\npoll_interval = \"5s\"\n[http]\nlisten = \"127.0.0.1:9\"\n",
        None,
    )
    .unwrap();
    assert_eq!(a.restart_needed(&b), vec!["[plex]", "[http]"]);
    assert!(a.restart_needed(&a.clone()).is_empty());
}

mod config_gaps {
    use crate::common::*;

    /// `check` on `text` (bytes), as c.toml: its exit code and what it said.
    fn check(text: &[u8]) -> (Option<i32>, String) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.toml"), text).unwrap();
        let o = run(dir.path(), "", "", &["check", "--config", "c.toml"]);
        (o.status.code(), format!("{}{}", stdout(&o), stderr(&o)))
    }

    #[test]
    fn a_file_that_is_not_utf8_is_located() {
        let (code, out) = check(b"[plex]\npoll_interval = \"10s\"\n# caf\xe9\n");
        assert_eq!(code, Some(2), "{out}");
        assert!(out.contains("c.toml:3:6: not UTF-8"), "{out}");
    }

    #[test]
    fn a_bad_plex_url_is_located() {
        let (code, out) = check(b"[plex]\nurl = \"htp:/x\"\n");
        assert_eq!(code, Some(2), "{out}");
        assert!(
            out.contains("c.toml:2:7: [plex] url must start with http://"),
            "{out}"
        );
    }

    #[test]
    fn an_audit_log_that_is_a_directory_or_in_a_missing_one_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let (code, out) = check(format!("[enforce]\naudit_log = \"{d}\"\n").as_bytes());
        assert_eq!(code, Some(2), "{out}");
        assert!(out.contains("c.toml:2:13: audit_log"), "{out}");
        assert!(out.contains("is a directory"), "{out}");
        let (code, out) =
            check(format!("[enforce]\naudit_log = \"{d}/missing/a.jsonl\"\n").as_bytes());
        assert_eq!(code, Some(2), "{out}");
        assert!(
            out.contains("c.toml:2:13: audit_log: the directory"),
            "{out}"
        );
        assert!(
            !dir.path().join("missing").exists(),
            "created as a side effect"
        );
    }

    #[test]
    fn capture_settings_that_cannot_work_are_refused_where_they_stand() {
        for (text, at, what) in [
            (
                "[capture]\nsnaplen = 0\n",
                "c.toml:2:11",
                "snaplen: at least",
            ),
            (
                "[capture]\nbuffer_size = 0\n",
                "c.toml:2:15",
                "buffer_size: at least",
            ),
            ("[capture]\nports = []\n", "c.toml:2:9", "ports: empty"),
        ] {
            let (code, out) = check(text.as_bytes());
            assert_eq!(code, Some(2), "{text}: {out}");
            assert!(out.contains(&format!("{at}: {what}")), "{text}: {out}");
        }
        // No ports with all_tcp is fine.
        let (code, out) = check(b"[capture]\nports = []\nall_tcp = true\n");
        assert_eq!(code, Some(0), "{out}");
    }

    #[test]
    fn tls_verify_false_on_plain_http_is_pointed_out() {
        let (code, out) = check(b"[plex]\nurl = \"http://127.0.0.1:32400\"\ntls_verify = false\n");
        assert_eq!(code, Some(0), "{out}");
        assert!(
            out.contains("tls_verify = false (line 3, column 14) has no effect"),
            "{out}"
        );
    }

    #[test]
    fn an_http_port_in_use_is_a_configuration_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let plex = FakePlex::start("<MediaContainer size=\"0\"></MediaContainer>");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("c.toml"),
            format!("[http]\nlisten = \"{addr}\"\n[capture]\ninterface = \"lo\"\n"),
        )
        .unwrap();
        let o = run(dir.path(), &plex.url, TOKEN, &["run", "--config", "c.toml"]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(&format!("cannot listen on [http] listen = \"{addr}\"")));
    }
}

mod replay_source_facts {
    use crate::common::capture::*;
    use crate::common::*;

    const CLIENT: [u8; 4] = [198, 51, 100, 7];

    /// One stream to the HA session (ratingKey 1, Media 2637) for 20 s, its sessions file
    /// and a rule on the source file's bitrate.
    fn setup(dir: &std::path::Path) -> (String, String) {
        let mut cap = Cap::default();
        cap.stream(SERVER, 32400, CLIENT, 50000, 0, 20, 100, 1250);
        let file = dir.join("one.pcap");
        cap.write(&file);
        let body = fixture("ha_session_base.xml")
            .replace("{user_id}", "7")
            .replace("address=\"1.2.3.11\"", "address=\"198.51.100.7\"");
        std::fs::write(dir.join("sessions.xml"), body).unwrap();
        std::fs::write(
            dir.join("streamwarden.toml"),
            "[[rules]]\nname = \"big-source\"\nwhen = 'source_bitrate > 10000'\n",
        )
        .unwrap();
        (
            file.display().to_string(),
            dir.join("sessions.xml").display().to_string(),
        )
    }

    #[test]
    fn replay_says_which_rules_it_could_not_judge_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let (file, xml) = setup(dir.path());
        let o = run(dir.path(), "", "", &["replay", &file, "--sessions", &xml]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains("rule \"big-source\" could not be evaluated for session session_id_1: unknown source_bitrate"),
            "{out}"
        );
        assert!(out.contains("--metadata"), "{out}");
        let o = run(
            dir.path(),
            "",
            "",
            &["replay", &file, "--sessions", &xml, "--json"],
        );
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["unevaluated"][0]["rule"], "big-source");
        assert_eq!(v["unevaluated"][0]["missing"][0], "source_bitrate");
    }

    #[test]
    fn replay_reads_source_facts_from_saved_library_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let (file, xml) = setup(dir.path());
        let meta = dir.path().join("metadata");
        std::fs::create_dir(&meta).unwrap();
        std::fs::write(
            meta.join("1.xml"),
            r#"<MediaContainer size="1"><Video ratingKey="1"><Media id="2637" bitrate="40000" videoResolution="4k"/></Video></MediaContainer>"#,
        )
        .unwrap();
        let args = [
            "replay",
            &file,
            "--sessions",
            &xml,
            "--metadata",
            meta.to_str().unwrap(),
            "--json",
        ];
        let o = run(dir.path(), "", "", &args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["unevaluated"], serde_json::json!([]), "{v}");
        assert_eq!(v["decisions"][0]["rule"], "big-source", "{v}");
        assert_eq!(v["decisions"][0]["action"], "would-kill", "{v}");
        // A file that is not a metadata response is refused by name.
        std::fs::write(meta.join("2.xml"), "<html>").unwrap();
        let o = run(dir.path(), "", "", &args);
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stderr(&o).contains("2.xml is not a saved /library/metadata response"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn replay_notes_a_stream_plex_cannot_stop_without_an_error() {
    use crate::common::capture::*;
    let dir = tempfile::tempdir().unwrap();
    let mut cap = Cap::default();
    cap.stream(SERVER, 32400, [198, 51, 100, 7], 50000, 0, 5, 10, 1250);
    let file = dir.path().join("c.pcap");
    cap.write(&file);
    // go_plex_client's items have no Session element: Plex cannot stop them.
    let xml = dir.path().join("s.xml");
    std::fs::write(&xml, mixed_sessions()).unwrap();
    std::fs::write(
        dir.path().join("streamwarden.toml"),
        "[[rules]]\nname = \"any\"\nwhen = 'server_streams > 0'\n",
    )
    .unwrap();
    let o = run(
        dir.path(),
        "",
        "",
        &[
            "replay",
            file.to_str().unwrap(),
            "--sessions",
            xml.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("ERROR"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("kill failed"), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("kill-skipped [any] session -"), "{out}");
    assert!(out.contains("cannot be stopped"), "{out}");
    assert!(!out.contains("kill-failed"), "{out}");
}

mod http_token_config {
    use crate::common::*;

    fn check(dir: &std::path::Path, text: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
        std::fs::write(dir.join("c.toml"), text).unwrap();
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["check", "--config", "c.toml"])
            .current_dir(dir)
            .env_clear()
            .env("STATE_DIRECTORY", dir)
            .env("HOME", dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        (o.status.code(), format!("{}{}", stdout(&o), stderr(&o)))
    }

    #[test]
    fn listening_beyond_loopback_needs_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let (code, out) = check(dir.path(), "[http]\nlisten = \"0.0.0.0:9090\"\n", &[]);
        assert_eq!(code, Some(2), "{out}");
        assert!(out.contains("c.toml:2:10: [http] listen = \"0.0.0.0:9090\" is reachable from other hosts, so it needs a token"), "{out}");
        let (code, out) = check(
            dir.path(),
            "[http]\nlisten = \"0.0.0.0:9090\"\ntoken = \"s3cret-token\"\n",
            &[],
        );
        assert_eq!(code, Some(0), "{out}");
        assert!(!out.contains("s3cret-token"), "{out}");
        // From the environment, or a file.
        let (code, out) = check(
            dir.path(),
            "[http]\nlisten = \"0.0.0.0:9090\"\n",
            &[("STREAMWARDEN_HTTP_TOKEN", "from-env")],
        );
        assert_eq!(code, Some(0), "{out}");
        std::fs::write(dir.path().join("tok"), "from-file\n").unwrap();
        let (code, out) = check(
            dir.path(),
            "[http]\nlisten = \"0.0.0.0:9090\"\ntoken_file = \"tok\"\n",
            &[],
        );
        assert_eq!(code, Some(0), "{out}");
        let (code, out) = check(
            dir.path(),
            "[http]\nlisten = \"0.0.0.0:9090\"\ntoken_file = \"missing\"\n",
            &[],
        );
        assert_eq!(code, Some(2), "{out}");
        assert!(
            out.contains("c.toml:3:14: token_file: cannot read missing"),
            "{out}"
        );
    }
}
