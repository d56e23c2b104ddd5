//! Listening to Plex's event stream: each notification about a stream makes the poller
//! re-read the sessions at once (a burst costs one read), and the loop evaluate right
//! after, so a kill lands within about a second of Plex announcing the stream. Polling
//! stays, as the safety net: at `poll_interval` while the stream is live, at the fallback
//! interval while it is down, with reconnects backing off.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use crate::lock;
use crate::micros::Micros;
use crate::plex::SessionSource;

use super::{Clock, Metrics};

/// Where the event stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// `[plex] events = false`: polling only.
    #[default]
    Off,
    /// Connecting (the first time, or again after a drop).
    Connecting,
    /// Notifications arrive.
    Live,
    /// Not connected: dropped or refused; polling at the fallback interval.
    Down,
}

impl Link {
    pub fn as_str(self) -> &'static str {
        match self {
            Link::Off => "off",
            Link::Connecting => "connecting",
            Link::Live => "live",
            Link::Down => "down",
        }
    }
}

/// What the page and `/api/status` say of the event stream.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventsStatus {
    pub state: Link,
    /// When it entered that state.
    #[serde(skip)]
    pub since: Option<Micros>,
    /// Notifications received since the start.
    pub received: u64,
    /// Times the stream dropped or could not be opened.
    pub reconnects: u64,
    /// Why it is down.
    pub error: Option<String>,
}

/// What the listener, the poller and the loop share.
#[derive(Debug, Clone, Default)]
pub struct Events {
    pub status: Arc<Mutex<EventsStatus>>,
    /// Rung by the listener: re-read the sessions now.
    pub(super) reread: Arc<Notify>,
    /// Rung by the poller after a read an event asked for: evaluate now.
    pub(super) evaluate: Arc<Notify>,
}

impl Events {
    pub fn is_live(&self) -> bool {
        lock(&self.status).state == Link::Live
    }

    fn set(&self, state: Link, now: Micros, error: Option<String>) {
        let mut s = lock(&self.status);
        if s.state != state {
            s.since = Some(now);
        }
        s.state = state;
        s.error = error;
    }
}

/// The longest wait between two attempts to open the stream.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Keeps Plex's event stream open until `stop`: rings `events.reread` on each notification
/// about a stream, says once when the stream drops or is refused, and reconnects with
/// backoff (1 s, doubling to a minute).
pub(super) async fn listen<P: SessionSource>(
    plex: Arc<P>,
    events: Events,
    fallback: Duration,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut said: Option<String> = None;
    let mut was_live = false;
    loop {
        events.set(Link::Connecting, clock.now(), None);
        let opened = tokio::select! {
            r = plex.events() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let reason = match opened {
            Ok(mut stream) => {
                events.set(Link::Live, clock.now(), None);
                metrics.events_up.set(1);
                if was_live || said.is_some() {
                    tracing::info!(
                        "Plex's event stream is back: streams are checked as Plex announces them"
                    );
                } else {
                    tracing::info!(
                        "listening to Plex's event stream: streams are checked as Plex announces them"
                    );
                }
                was_live = true;
                said = None;
                backoff = Duration::from_secs(1);
                // Whatever was missed while connecting.
                events.reread.notify_one();
                let reason = loop {
                    let next = tokio::select! {
                        n = stream.next() => n,
                        _ = stop.wait_for(|s| *s) => return,
                    };
                    match next {
                        Some(Ok(list)) => {
                            lock(&events.status).received += 1;
                            metrics.events.inc();
                            if list.iter().any(|e| e.concerns_streams()) {
                                tracing::debug!(?list, "Plex announced a change of streams");
                                events.reread.notify_one();
                            }
                        }
                        Some(Err(e)) => break e,
                        None => break "Plex closed the event stream".to_string(),
                    }
                };
                metrics.events_up.set(0);
                reason
            }
            Err(e) => e.to_string(),
        };
        lock(&events.status).reconnects += 1;
        metrics.event_reconnects.inc();
        events.set(Link::Down, clock.now(), Some(reason.clone()));
        // A change may have been missed: read now, and poll at the fallback meanwhile.
        events.reread.notify_one();
        if said.as_deref() != Some(reason.as_str()) {
            tracing::warn!(
                "Plex's event stream is down ({reason}): reading sessions every {} s until it is back; reconnecting",
                fallback.as_secs_f64()
            );
            said = Some(reason);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
