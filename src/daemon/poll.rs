//! Polling Plex's sessions on an interval, with backoff while it fails and one log line per
//! change of state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::lock;
use crate::plex::{Session, SessionSource};

use super::events::Events;
use super::{Clock, Metrics};
use crate::micros::Micros;

/// The latest poll, shared with the loop.
#[derive(Debug, Default, Clone)]
pub(super) struct Polled(Arc<Mutex<Snapshot>>);

#[derive(Debug, Default, Clone)]
pub(super) struct Snapshot {
    pub sessions: Vec<Session>,
    /// When the sessions were read.
    pub fetched: Option<Micros>,
    /// Counts successful reads.
    pub generation: u64,
    /// When the request of the latest successful read was sent:
    /// a kill is confirmed only by a read sent after its terminate was answered.
    pub sent: Option<Micros>,
    pub error: Option<String>,
}

impl Polled {
    pub fn snapshot(&self) -> Snapshot {
        lock(&self.0).clone()
    }
}

/// How often the sessions are read: `interval` while Plex's event stream is live,
/// `fallback` (when shorter) while it is not; at once when an event asks.
pub(super) struct Cadence {
    pub interval: Duration,
    pub fallback: Duration,
    pub events: Events,
}

impl Cadence {
    fn now(&self) -> Duration {
        if self.events.is_live() {
            self.interval
        } else {
            self.fallback.min(self.interval)
        }
    }
}

/// Reads the sessions at the cadence until `stop`; after a failure waits twice as long
/// each time, up to a minute. A read an event asked for rings `events.evaluate` once done.
pub(super) async fn run<P: SessionSource>(
    plex: Arc<P>,
    polled: Polled,
    cadence: Cadence,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut delay = cadence.now();
    let mut last_error: Option<String> = None;
    let mut asked = false;
    loop {
        let interval = cadence.now();
        let sent = clock.now();
        match plex.sessions().await {
            Ok(sessions) => {
                if last_error.take().is_some() {
                    tracing::info!("Plex answers again: resuming");
                }
                let mut p = lock(&polled.0);
                p.sessions = sessions;
                p.fetched = Some(clock.now());
                p.generation += 1;
                p.sent = Some(sent);
                p.error = None;
                drop(p);
                delay = interval;
                if std::mem::take(&mut asked) {
                    cadence.events.evaluate.notify_one();
                }
            }
            Err(e) => {
                metrics.poll_errors.inc();
                let msg = e.to_string();
                if last_error.as_deref() != Some(msg.as_str()) {
                    tracing::error!("{msg}; still measuring, retrying with backoff");
                }
                lock(&polled.0).error = Some(msg.clone());
                last_error = Some(msg);
                delay = (delay * 2).min(Duration::from_secs(60)).max(interval);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            // Plex announced a change: read now (events meanwhile coalesce into one more).
            _ = cadence.events.reread.notified(), if last_error.is_none() => asked = true,
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// How long to wait before asking again a server that has no bandwidth counters (no Plex
/// Pass): the answer rarely changes, and one warning says so.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(300);

/// Reads Plex's per-second bandwidth counters every `interval` into `counters` until
/// `stop`; says once per change of state what is wrong. A server without them (401, 403
/// or 404: no Plex Pass) gets one warning and is asked again only every five minutes.
pub(super) async fn bandwidth<P: SessionSource>(
    plex: Arc<P>,
    counters: Arc<Mutex<crate::plex::bandwidth::Counters>>,
    interval: Duration,
    clock: Arc<dyn Clock>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use crate::plex::PlexError;
    let mut delay = interval;
    let mut last_problem: Option<String> = None;
    let mut read_once = false;
    loop {
        let now_sec = clock.now().secs();
        let since = lock(&counters).next_since(now_sec);
        match plex.bandwidth(since).await {
            Ok(answer) => {
                if last_problem.take().is_some() {
                    tracing::info!("Plex's bandwidth counters answer again");
                } else if !read_once {
                    tracing::info!(
                        "reading Plex's bandwidth counters (/statistics/bandwidth, per second; the newest {} s are left until complete)",
                        crate::plex::bandwidth::LAG_SECS
                    );
                }
                read_once = true;
                if answer.skipped > 0 {
                    tracing::debug!(
                        skipped = answer.skipped,
                        "rows of /statistics/bandwidth without a usable value were skipped"
                    );
                }
                lock(&counters).absorb(&answer, since, now_sec);
                delay = interval;
            }
            Err(e) => {
                let unavailable = match &e {
                    PlexError::Unauthorized { .. } => Some(401),
                    PlexError::Status { status, .. } if matches!(status, 403 | 404) => {
                        Some(*status)
                    }
                    _ => None,
                };
                let msg = match unavailable {
                    Some(status) => {
                        delay = UNAVAILABLE_RETRY;
                        format!(
                            "Plex's bandwidth counters (/statistics/bandwidth) are not available on this server (HTTP {status}): they need the server owner's Plex Pass; streams stay unmeasured where packets do not measure them"
                        )
                    }
                    None => {
                        delay = (delay * 2).min(Duration::from_secs(60)).max(interval);
                        format!(
                            "cannot read Plex's bandwidth counters: {e}; their figures become unknown after {} s without a read",
                            crate::plex::bandwidth::STALE_SECS
                        )
                    }
                };
                if last_problem.as_deref() != Some(msg.as_str()) {
                    tracing::warn!("{msg}");
                }
                last_problem = Some(msg);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
