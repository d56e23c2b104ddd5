//! Polling Plex's sessions on an interval, with backoff while it fails and one log line per
//! change of state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::lock;
use crate::plex::{Session, SessionSource};

use super::{Clock, Metrics};

/// The latest poll, shared with the loop.
#[derive(Debug, Default, Clone)]
pub(super) struct Polled(Arc<Mutex<Snapshot>>);

#[derive(Debug, Default, Clone)]
pub(super) struct Snapshot {
    pub sessions: Vec<Session>,
    /// When the sessions were read (the clock's microseconds).
    pub fetched: Option<i64>,
    /// Counts successful reads: a kill is confirmed only by a later one.
    pub generation: u64,
    pub error: Option<String>,
}

impl Polled {
    pub fn snapshot(&self) -> Snapshot {
        lock(&self.0).clone()
    }
}

/// Reads the sessions every `interval` until `stop`; after a failure waits twice as long
/// each time, up to a minute.
pub(super) async fn run<P: SessionSource>(
    plex: Arc<P>,
    polled: Polled,
    interval: Duration,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut delay = interval;
    let mut last_error: Option<String> = None;
    loop {
        match plex.sessions().await {
            Ok(sessions) => {
                if last_error.take().is_some() {
                    tracing::info!("Plex answers again: resuming");
                }
                let mut p = lock(&polled.0);
                p.sessions = sessions;
                p.fetched = Some(clock.now_micros());
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
                lock(&polled.0).error = Some(msg.clone());
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
