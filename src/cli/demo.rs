//! `streamwarden demo`: the daemon against a simulated Plex server and simulated traffic.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::capture::decode::LINKTYPE_ETHERNET;
use crate::config::Config;
use crate::demo::{SimPlex, streams, traffic};
use crate::enforce::AuditLog;
use crate::engine::Metering;
use crate::engine::daemon::{self, FeedStats, Setup, View};
use crate::exit;
use crate::plex::{PlexClient, PlexSettings};
use crate::rules::RuleSet;

/// The rules the demo applies: the repository's example, compiled in.
const EXAMPLE: &str = include_str!("../../rules.example.toml");

pub async fn run(duration: Duration, view: View) -> i32 {
    let mut config = match Config::parse(EXAMPLE, Some("rules.example.toml".into())) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let rules = match RuleSet::compile(&config) {
        Ok(r) => r,
        Err(errors) => {
            super::report_config(&errors);
            return exit::USAGE;
        }
    };
    // Kills land on the simulated server: enforce, and keep no audit file.
    config.enforce.dry_run = false;
    config.enforce.audit_log = None;
    let sim = match SimPlex::start(streams()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the simulated Plex server: {e}");
            return exit::FAILED;
        }
    };
    let plex = match PlexClient::new(PlexSettings {
        url: sim.url.clone(),
        token: sim.token.clone(),
        client_identifier: "streamwarden-demo".into(),
        timeout: Duration::from_secs(5),
        tls_verify: true,
    }) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILED;
        }
    };
    println!(
        "streamwarden demo: a simulated Plex server at {} with {} streams, simulated traffic, the rules of rules.example.toml; {} s",
        sim.url,
        streams().len(),
        duration.as_secs()
    );
    let metering = Arc::new(Mutex::new(Metering::new(
        LINKTYPE_ETHERNET,
        Some(vec![32400]),
    )));
    let feed_stats = Arc::new(Mutex::new(FeedStats::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let generator = {
        let (alive, metering, stop) = (sim.alive(), metering.clone(), stop.clone());
        std::thread::spawn(move || traffic(alive, metering, stop))
    };
    let stats_task = {
        let (metering, feed_stats) = (metering.clone(), feed_stats.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let decode = metering.lock().map(|m| m.stats).unwrap_or_default();
                if let Ok(mut f) = feed_stats.lock() {
                    f.decode = decode;
                }
            }
        })
    };
    let summary = daemon::run(Setup {
        rules,
        plex,
        enforce: config.enforce.clone(),
        audit: AuditLog::none(),
        ports: vec![32400],
        poll_interval: Duration::from_secs(2),
        metering,
        feed_stats,
        view,
        duration: Some(duration),
        http: config.http.listen,
        stop,
        reload: None,
    })
    .await;
    stats_task.abort();
    let _ = generator.join();
    println!("\ndemo over: {} stream(s) stopped", sim.stopped().len());
    for s in sim.stopped() {
        println!("  {} ({}): \"{}\"", s.user, s.session_id, s.message);
    }
    for (d, reason) in &summary.failures {
        println!(
            "  could not stop {}: {reason}",
            d.session.user.as_deref().unwrap_or("?")
        );
    }
    println!(
        "Try your own rules: streamwarden check --config rules.example.toml, then streamwarden run --dry-run."
    );
    exit::OK
}
