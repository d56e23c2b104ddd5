//! The daemon: a packet feed meters continuously, a poller reads Plex's sessions, and once
//! a second the engine joins the two, advances sustain and acts.
//!
//! Everything it touches from outside is handed in, as in mini-redis's
//! `server::run(listener, shutdown)`: the control channel (stop, reload), the clock, the
//! session source and terminator (one `P`), the packet feed and the HTTP listener. `run`
//! plugs in signals, the wall clock, the Plex client and the live capture; `demo` a fake
//! Plex and generated traffic; the tests whatever they need, without privileges.

pub mod api;
pub mod board;
pub mod control;
mod core;
pub mod events;
pub mod feed;
pub mod http;
mod kill;
pub use kill::KILL_RETRIES;
pub mod live;
pub mod manual;
pub mod metrics;
pub mod page;
mod poll;
mod throttling;
pub mod view;
pub mod webhook;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::EnforceConfig;
use crate::enforce::{AuditLog, Enforcer, Terminator};

use crate::notify::Notifier;
use crate::plex::SessionSource;
use crate::rules::{Decision, RuleSet};
use crate::state::State;

pub use crate::engine::{Clock, SystemClock};
pub use control::{Control, signals};
pub use feed::{Feed, FeedStats};
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
    /// How often sessions are read while Plex's event stream is live (or always, without it).
    pub poll_interval: Duration,
    /// Listen to Plex's event stream (`[plex] events`); while it is down, sessions are read
    /// every `fallback_interval` (when shorter than `poll_interval`).
    pub events: bool,
    pub fallback_interval: Duration,
    /// How long usage is kept (`[usage]`).
    pub usage: crate::config::UsageConfig,
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

/// How long a stop lets the work under way finish (a terminate whose answer is on its way,
/// so that its outcome is audited), within the second a signal must be answered in.
const STOP_GRACE: Duration = Duration::from_millis(700);

/// Runs `work` to its end unless a stop comes first; then it gets `STOP_GRACE` to finish
/// and is dropped where it waits (a kill whose intent is recorded counts as sent, never
/// twice). True when stopped.
async fn until_stopped(
    work: impl std::future::Future<Output = ()>,
    control: &mut tokio::sync::mpsc::Receiver<Control>,
    reload_asked: &mut bool,
) -> bool {
    tokio::pin!(work);
    loop {
        tokio::select! {
            () = &mut work => return false,
            c = control.recv() => match c {
                Some(Control::Reload) => *reload_asked = true,
                Some(Control::Stop) | None => {
                    let _ = tokio::time::timeout(STOP_GRACE, &mut work).await;
                    return true;
                }
            },
        }
    }
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
        events: listen_to_events,
        fallback_interval,
        usage,
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
    let rules = Arc::new(rules);
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
    )
    .with_usage(usage.clone());
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
    let events = events::Events::default();
    let listener_task = listen_to_events.then(|| {
        tokio::spawn(events::listen(
            plex.clone(),
            events.clone(),
            fallback_interval,
            clock.clone(),
            metrics.clone(),
            stop_rx.clone(),
        ))
    });
    let poller = tokio::spawn(poll::run(
        plex.clone(),
        polled.clone(),
        poll::Cadence {
            interval: poll_interval,
            fallback: fallback_interval,
            events: events.clone(),
        },
        metrics.clone(),
        clock.clone(),
        stop_rx.clone(),
    ));
    let counters = feed.source().plex().then(|| {
        tokio::spawn(poll::bandwidth(
            plex.clone(),
            feed.counters.clone(),
            poll_interval.min(fallback_interval),
            clock.clone(),
            stop_rx,
        ))
    });
    let kills = kill::Kills::new(
        Enforcer::new(plex.clone(), &enforce, state, audit),
        crate::enforce::throttles::Throttles::new(shaper),
    );
    let mut daemon = core::Daemon::new(core::Parts {
        rules,
        current,
        kills,
        board,
        metrics,
        plex,
        polled,
        feed,
        ports,
        clock,
        poll_interval,
        events: events.clone(),
        usage_keep: usage,
        notify,
        view,
        reload,
    });
    let evaluate = events.evaluate.clone();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reload_asked = false;
    loop {
        // A round or a request may wait on Plex (a slow terminate): a stop still ends it at
        // once, and a reload asked meanwhile is taken right after.
        let stop = tokio::select! {
            _ = ticker.tick() => {
                until_stopped(daemon.on_tick(), &mut control, &mut reload_asked).await
            }
            c = control.recv() => match c {
                Some(Control::Reload) => {
                    reload_asked = true;
                    false
                }
                Some(Control::Stop) | None => true,
            },
            Some(req) = kill_rx.recv() => {
                until_stopped(daemon.on_request(req), &mut control, &mut reload_asked).await
            }
            () = evaluate.notified() => {
                until_stopped(daemon.on_event(), &mut control, &mut reload_asked).await
            }
        };
        if stop {
            break;
        }
        if std::mem::take(&mut reload_asked) {
            daemon.on_reload();
        }
    }
    let _ = stop_tx.send(true);
    drop(kill_tx);
    poller.abort();
    if let Some(l) = listener_task {
        l.abort();
    }
    if let Some(c) = counters {
        c.abort();
    }
    daemon.finish(NOTIFY_AT_STOP).await
}
