//! The daemon: a packet feed meters continuously, a poller reads Plex's sessions, and once
//! a second the engine joins the two, advances sustain and acts. `run` plugs in the live
//! capture and the real Plex; `demo` a simulated feed and an in-process simulated Plex.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::signal::unix::SignalKind;

use crate::capture::{CaptureStats, DecodeStats};
use crate::config::EnforceConfig;
use crate::enforce::{Applied, AuditLog, Decision, Enforcer};
use crate::engine::{self, Metering, Outcome, RuleState, Sustain, stream_identity};
use crate::http::{self, Metrics, RuleLabels, StreamLabels};
use crate::plex::{PlexClient, Session};
use crate::rules::{Action, RuleSet};

/// How the daemon shows what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// A live table on the terminal, refreshed every second.
    Terminal,
    /// Log lines only.
    Logs,
}

impl View {
    /// The terminal view when stdout is a terminal, logs otherwise.
    pub fn detect() -> Self {
        if std::io::stdout().is_terminal() {
            View::Terminal
        } else {
            View::Logs
        }
    }
}

/// What a packet feed reports about itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct FeedStats {
    pub capture: Option<CaptureStats>,
    pub decode: DecodeStats,
}

/// Everything the daemon is given.
pub struct Setup {
    pub rules: RuleSet,
    pub plex: Arc<PlexClient>,
    pub enforce: EnforceConfig,
    pub audit: AuditLog,
    pub ports: Vec<u16>,
    pub poll_interval: Duration,
    pub metering: Arc<Mutex<Metering>>,
    pub feed_stats: Arc<Mutex<FeedStats>>,
    pub view: View,
    /// Stop after this long (the demo); `None` runs until a signal.
    pub duration: Option<Duration>,
    pub http: Option<std::net::SocketAddr>,
    /// Set when the daemon stops, for the feed to see.
    pub stop: Arc<AtomicBool>,
    /// Re-reads the configuration on SIGHUP: new rules and enforcement settings, or why
    /// not (the running ones stay).
    pub reload: Option<Reload>,
}

/// How the daemon re-reads its configuration.
pub type Reload = Box<dyn Fn() -> Result<(RuleSet, EnforceConfig), String> + Send>;

/// What the daemon did, for the caller's summary.
#[derive(Debug, Default)]
pub struct Summary {
    /// What happened, one line each, newest last (shown under the terminal view).
    pub events: Vec<String>,
    pub kills: Vec<Decision>,
    pub would_kills: Vec<Decision>,
    pub failures: Vec<(Decision, String)>,
}

#[derive(Default)]
struct Poll {
    sessions: Vec<Session>,
    fetched: Option<Instant>,
    generation: u64,
    error: Option<String>,
}

/// A kill waiting to be confirmed by the next poll.
struct Pending {
    decision: Decision,
    generation: u64,
    transcode_stopped: bool,
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Runs until SIGINT/SIGTERM (or `duration`); returns what was done.
pub async fn run(setup: Setup) -> Summary {
    let Setup {
        rules,
        plex,
        enforce,
        audit,
        ports,
        poll_interval,
        metering,
        feed_stats,
        view,
        duration,
        http: listen,
        stop,
        reload,
    } = setup;
    let mut rules = rules;
    let metrics = Arc::new(Metrics::default());
    let streams_json: http::Streams = Arc::new(RwLock::new(json!([])));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = listen {
        let mut rx = stop_rx.clone();
        let stopped = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        match http::serve(addr, metrics.clone(), streams_json.clone(), stopped).await {
            Ok(bound) => tracing::info!(%bound, "serving /metrics and /api/streams"),
            Err(e) => tracing::error!(%addr, error = %e, "cannot serve the HTTP endpoint"),
        }
    }
    let poll = Arc::new(Mutex::new(Poll::default()));
    let poller = tokio::spawn(poll_loop(
        plex.clone(),
        poll.clone(),
        poll_interval,
        metrics.clone(),
        stop_rx.clone(),
    ));

    let mut enforcer = Enforcer::new(plex.clone(), &enforce, audit);
    let mut sustain = Sustain::default();
    let mut paused_since: HashMap<String, Instant> = HashMap::new();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut summary = Summary::default();
    let mut stale_warned = false;
    let mut last_feed = FeedStats::default();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = signal_stream(SignalKind::terminate());
    let mut hup = signal_stream(SignalKind::hangup());
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted: stopping"); break; }
            _ = recv_signal(&mut term) => { tracing::info!("terminated: stopping"); break; }
            _ = recv_signal(&mut hup) => {
                match reload.as_ref().map(|r| r()) {
                    Some(Ok((new_rules, new_enforce))) => {
                        tracing::info!(rules = new_rules.rules.len(), dry_run = new_enforce.dry_run, "configuration reloaded");
                        // Holds of rules that changed start again; kills and the budget carry on.
                        sustain = Sustain::default();
                        rules = new_rules;
                        enforcer.reconfigure(&new_enforce);
                    }
                    Some(Err(e)) => tracing::error!("reload failed, keeping the running configuration: {e}"),
                    None => tracing::warn!("SIGHUP: nothing to reload"),
                }
                continue;
            }
        }
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        ticks += 1;
        let now = now_micros();
        let (mut sessions, fetched, generation, plex_error) = {
            let p = lock(&poll);
            (p.sessions.clone(), p.fetched, p.generation, p.error.clone())
        };
        let fresh = fetched.is_some_and(|f| f.elapsed() <= poll_interval * 2);
        // Paused time as observed.
        let mut seen = std::collections::HashSet::new();
        for s in &mut sessions {
            let id = stream_identity(s);
            if s.state.as_deref() == Some("paused") {
                let since = *paused_since.entry(id.clone()).or_insert_with(Instant::now);
                s.paused_for_secs = Some(since.elapsed().as_secs_f64().floor());
            } else {
                paused_since.remove(&id);
                s.paused_for_secs = Some(0.0);
            }
            seen.insert(id);
        }
        paused_since.retain(|k, _| seen.contains(k));

        // Confirm earlier kills against a newer poll.
        confirm(&mut pending, &sessions, generation, &plex, &mut enforcer).await;

        let tick = {
            let m = lock(&metering);
            engine::tick(&rules, &sessions, &m.meter, &ports, now, &mut sustain)
        };
        metrics
            .rule_evaluations
            .inc_by((tick.streams.len() * rules.rules.len()) as u64);
        if fresh {
            stale_warned = false;
            for d in &tick.due {
                sustain.acted(d);
                act(
                    d,
                    &rules,
                    &plex,
                    &metering,
                    &ports,
                    &mut enforcer,
                    &mut pending,
                    generation,
                    &metrics,
                    &mut summary,
                )
                .await;
            }
        } else if !tick.due.is_empty() && !stale_warned {
            stale_warned = true;
            let age = fetched.map_or_else(
                || "never read".to_string(),
                |f| format!("{} s old", f.elapsed().as_secs()),
            );
            tracing::warn!(
                "not acting: Plex's session data is {age} (more than two poll intervals)"
            );
        }

        // Publish.
        let feed = *lock(&feed_stats);
        update_metrics(&metrics, &tick, &feed, &mut last_feed, &pending);
        let rows = rows(&tick, &pending);
        if let Ok(mut w) = streams_json.write() {
            *w = json!(rows);
        }
        if view == View::Terminal {
            render(
                &rows,
                plex_error.as_deref(),
                fresh,
                &feed,
                &rules,
                started.elapsed(),
                &summary.events,
            );
        } else if ticks % 60 == 1 {
            tracing::info!(
                streams = rows.len(),
                plex_ok = plex_error.is_none() && fetched.is_some(),
                packets = feed.decode.read,
                "running"
            );
        }
        if ticks.is_multiple_of(60) {
            let idle = crate::meter::DEFAULT_IDLE;
            lock(&metering).meter.expire(now, idle);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    poller.abort();
    summary
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Term = Option<tokio::signal::unix::Signal>;

fn signal_stream(kind: SignalKind) -> Term {
    tokio::signal::unix::signal(kind).ok()
}

async fn recv_signal(t: &mut Term) {
    match t {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

async fn poll_loop(
    plex: Arc<PlexClient>,
    poll: Arc<Mutex<Poll>>,
    interval: Duration,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut delay = interval;
    let mut last_error: Option<String> = None;
    loop {
        match plex.sessions_with_sources().await {
            Ok(sessions) => {
                if last_error.take().is_some() {
                    tracing::info!("Plex answers again: resuming");
                }
                let mut p = lock(&poll);
                p.sessions = sessions;
                p.fetched = Some(Instant::now());
                p.generation += 1;
                p.error = None;
                delay = interval;
            }
            Err(e) => {
                metrics.poll_errors.inc();
                let msg = e.to_string();
                if last_error.as_deref() != Some(msg.as_str()) {
                    tracing::error!("{msg}; still measuring, retrying with backoff");
                }
                lock(&poll).error = Some(msg.clone());
                last_error = Some(msg);
                delay = (delay * 2).min(Duration::from_secs(60)).max(interval);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Acts on a due decision. A kill re-reads the session from Plex and re-evaluates it
/// first: no kill on stale data.
#[allow(clippy::too_many_arguments)]
async fn act(
    d: &Decision,
    rules: &RuleSet,
    plex: &Arc<PlexClient>,
    metering: &Arc<Mutex<Metering>>,
    ports: &[u16],
    enforcer: &mut Enforcer<Arc<PlexClient>>,
    pending: &mut HashMap<String, Pending>,
    generation: u64,
    metrics: &Metrics,
    summary: &mut Summary,
) {
    let labels = RuleLabels {
        rule: d.rule.clone(),
    };
    let d = if d.action == Action::Kill && !enforcer.dry_run() {
        match recheck(d, rules, plex, metering, ports).await {
            Some(fresh) => fresh,
            None => return,
        }
    } else {
        d.clone()
    };
    let applied = enforcer.apply(&d).await;
    let who = format!(
        "{} ({})",
        d.session.user.as_deref().unwrap_or("?"),
        d.session.display_title()
    );
    let event = match &applied {
        Applied::Killed => Some(format!("killed {who} [{}]: {}", d.rule, d.message)),
        Applied::WouldKill => Some(format!(
            "would kill {who} [{}] (dry run): {}",
            d.rule, d.message
        )),
        Applied::Logged => Some(format!("{who} [{}]: {}", d.rule, d.message)),
        Applied::Failed(r) => Some(format!("could not kill {who} [{}]: {r}", d.rule)),
        Applied::Skipped(r) => Some(format!("not killing {who} [{}]: {r}", d.rule)),
        Applied::AlreadyKilled => None,
    };
    if let Some(e) = event {
        let ts = time::OffsetDateTime::now_utc();
        summary.events.push(format!(
            "{:02}:{:02}:{:02} {e}",
            ts.hour(),
            ts.minute(),
            ts.second()
        ));
    }
    match &applied {
        Applied::Killed => {
            metrics.kills.get_or_create(&labels).inc();
            if let Some(id) = &d.session.session_id {
                pending.insert(
                    id.clone(),
                    Pending {
                        decision: d.clone(),
                        generation,
                        transcode_stopped: false,
                    },
                );
            }
            summary.kills.push(d);
        }
        Applied::WouldKill => {
            metrics.would_kills.get_or_create(&labels).inc();
            summary.would_kills.push(d);
        }
        Applied::Failed(r) => {
            metrics.kill_failures.get_or_create(&labels).inc();
            summary.failures.push((d.clone(), r.clone()));
        }
        _ => {}
    }
}

/// Re-reads the sessions and re-evaluates `d`'s rule for its stream; the fresh decision
/// when it still holds.
async fn recheck(
    d: &Decision,
    rules: &RuleSet,
    plex: &Arc<PlexClient>,
    metering: &Arc<Mutex<Metering>>,
    ports: &[u16],
) -> Option<Decision> {
    let mut sessions = match plex.sessions_with_sources().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(rule = %d.rule, "not killing: cannot re-read the session before the kill: {e}");
            return None;
        }
    };
    let id = stream_identity(&d.session);
    let Some(i) = sessions.iter().position(|s| stream_identity(s) == id) else {
        tracing::info!(rule = %d.rule, session = d.session.session_id.as_deref().unwrap_or("-"), "the stream ended before the kill");
        return None;
    };
    sessions[i].paused_for_secs = d.session.paused_for_secs;
    let attributed = {
        let m = lock(metering);
        crate::attribute::attribute(&m.meter, &sessions, ports, now_micros())
    };
    let eval = engine::evaluate_one(
        rules,
        &sessions,
        i,
        attributed[i].as_ref().map(|a| &a.measured),
    );
    let still = eval
        .evaluations
        .iter()
        .any(|e| e.rule.name == d.rule && e.outcome == Outcome::Match);
    if !still {
        tracing::info!(rule = %d.rule, session = d.session.session_id.as_deref().unwrap_or("-"), "no longer holds on fresh data: not killing");
        return None;
    }
    eval.decisions().into_iter().find(|x| x.rule == d.rule)
}

/// Checks earlier kills against a newer poll: gone is confirmed; a survivor that is a
/// transcode gets its transcode stopped; one that survives both is a zombie.
async fn confirm(
    pending: &mut HashMap<String, Pending>,
    sessions: &[Session],
    generation: u64,
    plex: &Arc<PlexClient>,
    enforcer: &mut Enforcer<Arc<PlexClient>>,
) {
    let ids: Vec<String> = pending.keys().cloned().collect();
    for id in ids {
        let Some(p) = pending.get_mut(&id) else {
            continue;
        };
        if generation <= p.generation {
            continue;
        }
        let alive = sessions
            .iter()
            .find(|s| s.session_id.as_deref() == Some(id.as_str()));
        match alive {
            None => {
                tracing::info!(session = %id, "kill confirmed: the stream is gone");
                pending.remove(&id);
            }
            Some(s) if !p.transcode_stopped && s.transcode_key.is_some() => {
                let key = s.transcode_key.clone().unwrap_or_default();
                let result = plex.stop_transcode(&key).await;
                let reason = match &result {
                    Ok(()) => format!("still listed after the kill; stopped its transcode {key}"),
                    Err(e) => format!(
                        "still listed after the kill; stopping its transcode {key} failed: {e}"
                    ),
                };
                enforcer.note(&p.decision, "transcode-stopped", Some(reason));
                p.transcode_stopped = true;
                p.generation = generation;
            }
            Some(_) => {
                let d = p.decision.clone();
                enforcer.note(
                    &d,
                    "zombie",
                    Some(
                        "the stream is still listed after the kill (the player ignored it)".into(),
                    ),
                );
                tracing::warn!(session = %id, "zombie: the stream survived the kill");
                pending.remove(&id);
            }
        }
    }
}

/// One row per stream, as `/api/streams` serves it and the terminal shows it.
fn rows(tick: &engine::Tick<'_>, pending: &HashMap<String, Pending>) -> Vec<serde_json::Value> {
    tick.streams
        .iter()
        .zip(&tick.attributed)
        .zip(&tick.states)
        .map(|((e, a), states)| {
            let s = &e.session;
            let m = a.map(|a| a.measured);
            let rules: Vec<serde_json::Value> = e
                .evaluations
                .iter()
                .zip(states)
                .map(|(ev, st)| {
                    let (state, held) = match st {
                        RuleState::Ok => ("ok", None),
                        RuleState::Sustaining { held, .. } => ("sustaining", Some(held.as_secs())),
                        RuleState::Due { held } => ("due", Some(held.as_secs())),
                        RuleState::Acted => ("acted", None),
                    };
                    json!({"rule": ev.rule.name, "state": state, "held_s": held, "sustain_s": ev.rule.sustain.as_secs()})
                })
                .collect();
            let killed = s.session_id.as_ref().is_some_and(|id| pending.contains_key(id));
            json!({
                "session_id": s.session_id,
                "session_key": s.session_key,
                "user": s.user,
                "player": s.player,
                "address": s.address,
                "state": s.state,
                "title": s.display_title(),
                "transcode_decision": s.transcode_decision,
                "stream_bitrate_kbps": s.stream_bitrate_kbps,
                "bandwidth_kbps": s.bandwidth_kbps,
                "measured_kbps_10s": m.map(|m| m.kbps_10s),
                "measured_kbps_1m": m.map(|m| m.kbps_1m),
                "measured_kbps_5m": m.map(|m| m.kbps_5m),
                "measured_kbps_10m": m.map(|m| m.kbps_10m),
                "estimated": m.is_some_and(|m| m.estimated),
                "killed": killed,
                "rules": rules,
            })
        })
        .collect()
}

fn update_metrics(
    metrics: &Metrics,
    tick: &engine::Tick<'_>,
    feed: &FeedStats,
    last: &mut FeedStats,
    _pending: &HashMap<String, Pending>,
) {
    metrics.measured_kbps.clear();
    for (e, a) in tick.streams.iter().zip(&tick.attributed) {
        let Some(a) = a else { continue };
        let s = &e.session;
        let m = a.measured;
        for (window, v) in [
            ("10s", m.kbps_10s),
            ("1m", m.kbps_1m),
            ("5m", m.kbps_5m),
            ("10m", m.kbps_10m),
        ] {
            metrics
                .measured_kbps
                .get_or_create(&StreamLabels {
                    session: stream_identity(s),
                    user: s.user.clone().unwrap_or_default(),
                    player: s.player.clone().unwrap_or_default(),
                    decision: s.transcode_decision.clone().unwrap_or_default(),
                    window: window.to_string(),
                })
                .set(v);
        }
    }
    metrics.streams.set(tick.streams.len() as i64);
    if let Some(c) = feed.capture {
        let before = last.capture.unwrap_or_default();
        metrics
            .capture_packets
            .inc_by(u64::from(c.received.saturating_sub(before.received)));
        metrics
            .capture_drops
            .inc_by(u64::from(c.dropped.saturating_sub(before.dropped)));
    } else {
        metrics
            .capture_packets
            .inc_by(feed.decode.read.saturating_sub(last.decode.read));
    }
    metrics
        .decode_skipped
        .inc_by(feed.decode.skipped.saturating_sub(last.decode.skipped));
    *last = *feed;
}

/// The terminal view: one line per stream with its rule state.
fn render(
    rows: &[serde_json::Value],
    plex_error: Option<&str>,
    fresh: bool,
    feed: &FeedStats,
    rules: &RuleSet,
    up: Duration,
    events: &[String],
) {
    let mut out = String::from("\x1b[H\x1b[2J");
    let plex = match plex_error {
        Some(e) => format!("Plex: {e}"),
        None if fresh => "Plex: ok".to_string(),
        None => "Plex: waiting for the first read".to_string(),
    };
    let drops = feed.capture.map_or_else(String::new, |c| {
        format!(", {} dropped by the kernel", c.dropped)
    });
    out.push_str(&format!(
        "streamwarden  up {}s  {} rules  {plex}  packets {}{drops}\n\n",
        up.as_secs(),
        rules.rules.len(),
        feed.decode.read
    ));
    if rows.is_empty() {
        out.push_str("no streams\n");
    }
    let mbps = |v: &serde_json::Value| {
        v.as_f64()
            .map_or_else(|| "-".to_string(), |k| format!("{:.2}", k / 1000.0))
    };
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    for r in rows {
        let state = if r["killed"] == true {
            "killed".to_string()
        } else {
            let mut parts = Vec::new();
            for rule in r["rules"].as_array().into_iter().flatten() {
                match rule["state"].as_str() {
                    Some("sustaining") => parts.push(format!(
                        "{} sustaining {}/{} s",
                        text(&rule["rule"]),
                        rule["held_s"].as_u64().unwrap_or(0),
                        rule["sustain_s"].as_u64().unwrap_or(0)
                    )),
                    Some("due") | Some("acted") => {
                        parts.push(format!("{} matched", text(&rule["rule"])))
                    }
                    _ => {}
                }
            }
            if parts.is_empty() {
                "ok".to_string()
            } else {
                parts.join(", ")
            }
        };
        let est = if r["estimated"] == true { " est." } else { "" };
        out.push_str(&format!(
            "[{}] [{}] [{}] [{}, {}, {} Mbps{est}] [{}]  {state}\n",
            text(&r["address"]),
            text(&r["transcode_decision"]),
            text(&r["user"]),
            mbps(&r["measured_kbps_1m"]),
            mbps(&r["measured_kbps_5m"]),
            mbps(&r["measured_kbps_10m"]),
            text(&r["title"]),
        ));
    }
    if !events.is_empty() {
        out.push_str("\nrecent:\n");
        for e in events.iter().rev().take(6).rev() {
            out.push_str("  ");
            out.push_str(e);
            out.push('\n');
        }
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}
