//! `streamwarden run`: the daemon on the live capture and the real Plex.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::capture::{Next, PacketSource, privileges};
use crate::engine::Metering;
use crate::engine::daemon::{self, FeedStats, Setup, View};
use crate::exit;
use crate::rules::RuleSet;

pub async fn run(config_path: Option<&Path>, dry_run: bool, view: View) -> i32 {
    let mut config = match super::load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if dry_run {
        config.enforce.dry_run = true;
    }
    let rules = match RuleSet::compile(&config) {
        Ok(r) => r,
        Err(errors) => {
            super::report_config(&errors);
            return exit::USAGE;
        }
    };
    let plex = match super::hook::client(&config) {
        Ok(c) => Arc::new(c),
        Err(code) => return code,
    };
    let audit = match super::open_audit(&config) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut source = match PacketSource::open_live(&config.capture) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
    };
    match privileges::drop_privileges(config.capture.user.as_deref()) {
        Ok(done) => tracing::info!("capture open; {done}"),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    }
    if config.enforce.dry_run {
        tracing::info!("dry run: decisions are audited, nothing is killed");
    }
    let metering = Arc::new(Mutex::new(Metering::new(
        source.linktype(),
        (!config.capture.all_tcp).then(|| config.capture.ports.clone()),
    )));
    let feed_stats = Arc::new(Mutex::new(FeedStats::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (metering, feed_stats, stop) = (metering.clone(), feed_stats.clone(), stop.clone());
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                let mut last = Instant::now();
                let mut n: u32 = 0;
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_add(1);
                    match source.next_packet() {
                        Ok(Next::Packet(p)) => {
                            lock(&metering).ingest(&p);
                            // The clock is read every 1024 packets, not per packet.
                            if !n.is_multiple_of(1024) {
                                continue;
                            }
                        }
                        Ok(Next::Idle) => {}
                        Ok(Next::Eof) => break,
                        Err(e) => {
                            tracing::error!("capture stopped: {e}");
                            break;
                        }
                    }
                    if last.elapsed() >= Duration::from_millis(500) {
                        last = Instant::now();
                        let decode = lock(&metering).stats;
                        let capture = source.stats();
                        *lock(&feed_stats) = FeedStats { capture, decode };
                    }
                }
            })
    };
    let feeder = match feeder {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot start the capture thread: {e}");
            return exit::FAILED;
        }
    };
    let summary = daemon::run(Setup {
        rules,
        plex,
        enforce: config.enforce.clone(),
        audit,
        ports: config.capture.ports.clone(),
        poll_interval: config.plex.poll_interval,
        metering,
        feed_stats,
        view,
        duration: None,
        http: config.http.listen,
        stop: stop.clone(),
        reload: Some(reloader(config_path.map(Path::to_path_buf), dry_run)),
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let _ = feeder.join();
    tracing::info!(
        kills = summary.kills.len(),
        would_kills = summary.would_kills.len(),
        failures = summary.failures.len(),
        "stopped"
    );
    exit::OK
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Re-reads the same config file (and PLEX_URL/PLEX_TOKEN) on SIGHUP; `--dry-run` stays.
fn reloader(path: Option<std::path::PathBuf>, dry_run: bool) -> daemon::Reload {
    Box::new(move || {
        let mut config = crate::config::Config::load(path.as_deref()).map_err(|e| e.to_string())?;
        if dry_run {
            config.enforce.dry_run = true;
        }
        let rules = RuleSet::compile(&config).map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Ok((rules, config.enforce))
    })
}
