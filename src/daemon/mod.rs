//! The daemon: a packet feed meters continuously, a poller reads Plex's sessions, and once
//! a second the engine joins the two, advances sustain and acts.
//!
//! Everything it touches from outside is handed in, as in mini-redis's
//! `server::run(listener, shutdown)`: the control channel (stop, reload), the clock, the
//! session source and terminator (one `P`), the packet feed and the HTTP listener. `run`
//! plugs in signals, the wall clock, the Plex client and the live capture; `demo` a fake
//! Plex and generated traffic; the tests whatever they need, without privileges.

pub mod board;
pub mod feed;
pub mod http;
pub mod io;
mod kill;
pub use kill::KILL_RETRIES;
pub mod live;
pub mod manual;
pub mod metrics;
pub mod page;
mod poll;
mod throttle;
pub mod view;
pub mod webhook;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::EnforceConfig;
use crate::enforce::{AuditLog, Enforcer, Terminator};
use crate::engine::{self, Tracker, row::StreamRow};
use crate::lock;
use crate::notify::Notifier;
use crate::plex::SessionSource;
use crate::rules::{Decision, RuleSet};
use crate::state::State;

pub use crate::engine::{Clock, SystemClock};
pub use feed::{Feed, FeedStats};
pub use io::{Control, signals};
pub use metrics::Metrics;
pub use view::View;

/// How long a stopping daemon waits for notifications still being sent.
const NOTIFY_AT_STOP: Duration = Duration::from_secs(2);

/// Everything the daemon is given.
pub struct Setup<P> {
    pub rules: RuleSet,
    pub enforce: EnforceConfig,
    /// Where sessions come from and what kills: the Plex client, or a stand-in.
    pub plex: Arc<P>,
    /// The durable state: what was killed, the budget's window, the audit records, the
    /// throttles in force. The one enforcer owns it.
    pub state: State,
    /// The JSONL export of the audit records, for those who tail it (optional).
    pub audit: AuditLog,
    /// Where kills, failed kills and zombies are told (`[[notify]]`), when anywhere.
    pub notify: Option<Notifier>,
    /// Plex's ports: traffic from them to a client is a stream.
    pub ports: Vec<u16>,
    pub poll_interval: Duration,
    /// The packets: a capture thread, generated traffic, or a test, fills it.
    pub feed: Feed,
    pub clock: Arc<dyn Clock>,
    pub view: View,
    /// Serves /metrics and /api/streams when given.
    pub http: Option<tokio::net::TcpListener>,
    /// The token every HTTP request must carry, when set.
    pub http_token: Option<crate::config::Secret>,
    /// Names the HTTP endpoint answers to besides its address and localhost (`[http] hosts`).
    pub http_hosts: Vec<String>,
    /// Serves `POST /api/tautulli` (Tautulli's Webhook agent) when given.
    pub webhook: Option<webhook::Webhook>,
    /// Re-reads the configuration on [`Control::Reload`].
    pub reload: Option<Reload>,
    /// How often the engine evaluates (1 s).
    pub tick: Duration,
    /// What puts `throttle` rules' throttles on (Linux traffic control), or why nothing
    /// can here (each throttle decision then fails with that reason).
    pub shaper: Result<Arc<dyn crate::enforce::shape::Shaper>, String>,
}

/// How the daemon re-reads its configuration: new rules and enforcement settings, or why
/// not (the running ones stay).
pub type Reload = Box<dyn Fn() -> Result<Reloaded, String> + Send>;

/// A configuration re-read on a reload.
pub struct Reloaded {
    pub rules: RuleSet,
    pub enforce: EnforceConfig,
    /// Changed settings a reload cannot apply (named as in the file): they wait for a
    /// restart.
    pub restart_needed: Vec<&'static str>,
}

/// What the daemon did, for the caller's summary.
#[derive(Debug, Default)]
pub struct Summary {
    /// What happened, one line each, newest last (shown under the terminal view).
    pub events: Vec<String>,
    pub kills: Vec<Decision>,
    pub would_kills: Vec<Decision>,
    pub failures: Vec<(Decision, String)>,
}

/// Runs until [`Control::Stop`] (or the control channel closes); returns what was done.
pub async fn run<P>(setup: Setup<P>, mut control: tokio::sync::mpsc::Receiver<Control>) -> Summary
where
    P: SessionSource + Terminator + 'static,
{
    let Setup {
        rules,
        enforce,
        plex,
        state,
        audit,
        notify,
        ports,
        poll_interval,
        feed,
        clock,
        view,
        http: listener,
        http_token,
        http_hosts,
        webhook,
        reload,
        tick: every,
        shaper,
    } = setup;
    let mut rules = Arc::new(rules);
    let current: webhook::Current = Arc::new(Mutex::new((rules.clone(), enforce.clone())));
    let metrics = Arc::new(Metrics::default());
    let sink = notify.as_ref().map(Notifier::sink).or_else(|| audit.sink());
    let audit = audit.with_sink(sink);
    // Everything that acts from outside the loop (Kill now, throttles asked for, the
    // webhook's hook) is a request to the loop's one enforcer. Kills from the page only with
    // a token (a page without one could be made to post by any site the owner visits).
    let (kill_tx, mut kill_rx) = tokio::sync::mpsc::channel::<manual::Request>(64);
    let board = board::Board::new(
        board::AuditSource::of(state.path(), audit.recent()),
        http_token.is_some().then(|| kill_tx.clone()),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(listener) = listener {
        let hooks = webhook.map(|w| webhook::Hooks {
            setup: Arc::new(w),
            current: current.clone(),
            daemon: listener.local_addr().ok(),
            token: http_token.clone(),
            requests: kill_tx.clone(),
        });
        let state = http::AppState {
            hosts: http::Hosts::new(listener.local_addr().ok(), &http_hosts),
            metrics: metrics.clone(),
            board: board.clone(),
            hooks,
            token: http_token.clone(),
        };
        http::serve(listener, state, stop_rx.clone());
    }
    let polled = poll::Polled::default();
    let poller = tokio::spawn(poll::run(
        plex.clone(),
        polled.clone(),
        poll_interval,
        metrics.clone(),
        clock.clone(),
        stop_rx.clone(),
    ));
    let counters = feed.source().plex().then(|| {
        tokio::spawn(poll::bandwidth(
            plex.clone(),
            feed.counters.clone(),
            poll_interval,
            clock.clone(),
            stop_rx,
        ))
    });
    let mut kills = kill::Kills::new(
        Enforcer::new(plex.clone(), &enforce, state, audit),
        crate::enforce::throttle::Throttles::new(shaper),
    );
    let mut tracker = Tracker::default();
    let mut stale_warned = false;
    let mut last_feed = FeedStats::default();
    let started = clock.now_micros();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    let mut last_reload: Option<view::LastReload> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            c = control.recv() => match c {
                Some(Control::Reload) => {
                    let result = reload.as_ref().map(|r| r());
                    last_reload = result
                        .as_ref()
                        .map(|r| view::LastReload::of(r, clock.now_micros()));
                    match result {
                        Some(Ok(new)) => {
                            tracing::info!(rules = new.rules.rules.len(), dry_run = new.enforce.dry_run, "configuration reloaded");
                            if !new.restart_needed.is_empty() {
                                tracing::warn!(
                                    "reload: {} changed and take effect only after a restart; the running settings stay",
                                    new.restart_needed.join(", ")
                                );
                            }
                            // Holds of unchanged rules go on; those of rules that changed or
                            // went away start again. Kills and the budget carry on.
                            let (old, fresh) = (&rules, &new.rules);
                            tracker.sustain.retain_rules(|name| {
                                matches!((old.get(name), fresh.get(name)), (Some(a), Some(b)) if a.same_condition(b))
                            });
                            rules = Arc::new(new.rules);
                            let dry_changed = kills.enforcer.dry_run() != new.enforce.dry_run;
                            kills.enforcer.reconfigure(&new.enforce);
                            kills.reload_throttles(&rules, dry_changed, &mut tracker.throttled, &metrics);
                            *lock(&current) = (rules.clone(), new.enforce);
                        }
                        Some(Err(e)) => tracing::error!("reload failed, keeping the running configuration: {e}"),
                        None => tracing::warn!("SIGHUP: nothing to reload"),
                    }
                    continue;
                }
                Some(Control::Stop) | None => break,
            },
            Some(req) = kill_rx.recv() => {
                let snap = polled.snapshot();
                match req {
                    manual::Request::Kill(req) => match req.throttle_rule.clone() {
                        Some(rule) => {
                            let at = throttle::Asked {
                                rules: &rules,
                                sessions: &snap.sessions,
                                feed: &feed,
                                ports: &ports,
                                now: clock.now_micros(),
                            };
                            kills.throttle_asked(req, &rule, &at, &mut tracker, &metrics);
                        }
                        None => {
                            manual::handle(req, &mut kills, &snap.sessions, clock.as_ref(), &metrics)
                                .await;
                        }
                    },
                    manual::Request::Apply { decision, dry_run, reply } => {
                        let applied = kills.by_hand(&decision, dry_run, clock.as_ref(), &metrics).await;
                        let _ = reply.send(applied);
                    }
                    manual::Request::Note { decision, action, reason, reply } => {
                        kills.enforcer.note(&decision, action, reason);
                        let _ = reply.send(());
                    }
                }
                metrics.state_failures(kills.enforcer.state_failures());
                continue;
            }
        }
        ticks += 1;
        let now = clock.now_micros();
        let snap = polled.snapshot();
        let window = i64::try_from((poll_interval * 2).as_micros()).unwrap_or(i64::MAX);
        let fresh = snap
            .fetched
            .is_some_and(|f| now.saturating_sub(f) <= window);

        // Confirm earlier kills against a newer poll.
        kills
            .confirm(&snap.sessions, snap.sent, clock.as_ref())
            .await;

        let attributed = feed.measure(&snap.sessions, &ports, now);
        let tick =
            engine::tick_measured(&rules, &snap.sessions, attributed, now, fresh, &mut tracker);
        metrics
            .rule_evaluations
            .inc_by((tick.streams.len() * rules.rules.len()) as u64);
        if fresh {
            stale_warned = false;
            let world = kill::World {
                rules: &rules,
                plex: &plex,
                feed: &feed,
                ports: &ports,
                clock: clock.as_ref(),
                tracker: &tracker,
                metrics: &metrics,
            };
            kills.retry_due(&world).await;
            let conns = throttle::conns_by_stream(&tick);
            let listed: std::collections::HashSet<String> =
                snap.sessions.iter().map(|s| s.identity()).collect();
            let mut throttled = tracker.throttled.clone();
            kills.keep_throttles(&listed, &conns, now, &mut throttled, &metrics);
            for d in &tick.due {
                if d.action == crate::rules::Action::Throttle {
                    let _ = kills.throttle(d, &conns, now, &mut throttled, &metrics);
                } else {
                    kills.act(d, &world).await;
                }
            }
            tracker.throttled = throttled;
            for d in &tick.due {
                tracker.sustain.acted(d);
            }
        } else if !tick.due.is_empty() && !stale_warned {
            stale_warned = true;
            let age = snap.fetched.map_or_else(
                || "never read".to_string(),
                |f| format!("{} s old", now.saturating_sub(f) / 1_000_000),
            );
            tracing::warn!(
                "not acting: Plex's session data is {age} (more than two poll intervals)"
            );
        }

        // Publish.
        let stats = feed.stats();
        metrics.update(&tick, &stats, &last_feed);
        metrics.state_failures(kills.enforcer.state_failures());
        if let Some(n) = &notify {
            metrics.notify(&n.counts());
        }
        last_feed = stats;
        let table: Vec<StreamRow> = engine::row::rows(
            &tick,
            |id| kills.is_pending(id),
            |identity| throttle::row(&kills.throttles, identity, now),
        );
        let acted = view::Acted::of(&table, &kills.summary, |id| {
            kills.enforcer.already_killed(id)
        });
        board.publish(
            &tick,
            &table,
            &board::Facts {
                now,
                started,
                plex_error: snap.error.as_deref(),
                fetched: snap.fetched,
                fresh,
                feed: &stats,
                dry_run: kills.enforcer.dry_run(),
                budget: kills.enforcer.budget_left(),
                reload: last_reload.as_ref(),
                rules: &rules,
                exempt: &|s| kills.enforcer.is_exempt(s),
                acted: &acted,
            },
        );
        if view == View::Terminal {
            let up = Duration::from_micros(now.saturating_sub(started).max(0) as u64);
            let status = view::Status {
                plex_error: snap.error.as_deref(),
                fresh,
                feed: &stats,
                rules: rules.rules.len(),
                up,
                dry_run: kills.enforcer.dry_run(),
                reload: last_reload.as_ref(),
                acted: &acted,
            };
            view::render(&table, &status, &kills.summary.events);
        } else if ticks % 60 == 1 {
            tracing::info!(
                streams = table.len(),
                plex_ok = snap.error.is_none() && snap.fetched.is_some(),
                packets = stats.decode.read,
                "running"
            );
        }
        if ticks.is_multiple_of(60) {
            lock(&feed.metering)
                .meter
                .expire(now, crate::meter::DEFAULT_IDLE);
        }
    }
    kills.lift_all("streamwarden stopped", &mut tracker.throttled, &metrics);
    let _ = stop_tx.send(true);
    drop(kill_tx);
    poller.abort();
    if let Some(c) = counters {
        c.abort();
    }
    if let Some(n) = notify {
        for p in n.finish(NOTIFY_AT_STOP).await.problems() {
            tracing::warn!("{p}");
        }
    }
    kills.summary
}
