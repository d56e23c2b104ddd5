//! One task per target: records arrive on its own queue (so a dead target delays no other),
//! go out one by one within the target's rate, and a burst past the rate is folded into one
//! summary sent as soon as the rate allows.

use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use tokio::sync::{mpsc, watch};

use super::deliver::{self, Delivery};
use super::{Stats, Target, format};
use crate::enforce::Record;

/// What a target's task works with.
pub(super) struct Lane {
    pub target: Arc<Target>,
    pub rx: mpsc::Receiver<Record>,
    pub stats: Arc<Stats>,
    pub client: reqwest::Client,
    pub delivery: Delivery,
    /// Turns true when the notifier finishes: send what is queued, then end.
    pub closing: watch::Receiver<bool>,
}

pub(super) async fn run(mut lane: Lane) {
    let limiter = RateLimiter::direct(quota(lane.target.per_minute));
    let clock = DefaultClock::default();
    let mut pending: Vec<Record> = Vec::new();
    let mut closing = *lane.closing.borrow();
    loop {
        if closing {
            while let Ok(r) = lane.rx.try_recv() {
                pending.push(r);
            }
            if !pending.is_empty() {
                deliver(&lane, std::mem::take(&mut pending)).await;
            }
            return;
        }
        if pending.is_empty() {
            tokio::select! {
                r = lane.rx.recv() => match r {
                    Some(r) => pending.push(r),
                    None => closing = true,
                },
                _ = lane.closing.changed() => closing = true,
            }
            continue;
        }
        match limiter.check() {
            Ok(()) => deliver(&lane, std::mem::take(&mut pending)).await,
            Err(not_until) => {
                let wait = not_until.wait_time_from(clock.now());
                tokio::select! {
                    r = lane.rx.recv() => match r {
                        Some(r) => pending.push(r),
                        None => closing = true,
                    },
                    _ = lane.closing.changed() => closing = true,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// `per_minute` messages a minute, evenly; up to three of them at once.
fn quota(per_minute: u32) -> Quota {
    let n = per_minute.max(1);
    let burst = std::num::NonZeroU32::new(n.min(3)).unwrap_or(std::num::NonZeroU32::MIN);
    Quota::with_period(std::time::Duration::from_secs(60) / n)
        .unwrap_or_else(|| Quota::per_minute(burst))
        .allow_burst(burst)
}

/// Sends one record as itself, or several as one summary; counts and logs the outcome.
async fn deliver(lane: &Lane, batch: Vec<Record>) {
    let t = &lane.target;
    let out = match batch.as_slice() {
        [one] => format::single(t, one),
        many => format::folded(t, many),
    };
    match deliver::send(&lane.client, t, &out, lane.delivery).await {
        Ok(()) => {
            tracing::debug!(notify = %t.name, events = batch.len(), "notified");
            lane.stats.sent(&t.name);
        }
        Err(e) => {
            tracing::warn!(
                notify = %t.name,
                kind = t.kind.as_str(),
                events = batch.len(),
                "notification not sent: {e}"
            );
            lane.stats.failed(&t.name, e);
        }
    }
}
