//! The loop's state, owned in one place: the rules, the one enforcer with its kills and
//! throttles (`Kills`), the engine's memory (`Tracker`), what the page reads (`Board`), and
//! the round's own bookkeeping. One method per input: `on_tick` (a round), `on_reload`
//! (SIGHUP), `on_request` (the page, the webhook, a throttle asked for); `run` is the
//! `select!` that calls them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::enforce::Terminator;
use crate::engine::{self, Tick, Tracker, row::StreamRow};
use crate::lock;
use crate::micros::Micros;
use crate::notify::Notifier;
use crate::plex::SessionSource;
use crate::rules::{Action, RuleSet};

use super::board::{self, Board};
use super::kill::{Kills, World};
use super::poll::{Polled, Snapshot};
use super::{Clock, Feed, FeedStats, Metrics, Reload, View, manual, throttling, view, webhook};

/// A round's bookkeeping beyond the engine's.
#[derive(Default)]
struct Round {
    /// Rounds so far.
    ticks: u64,
    /// "Not acting: stale data" was said for the current stale spell.
    stale_warned: bool,
    /// The feed's statistics at the last round (for the metrics' increments).
    last_feed: FeedStats,
    /// When the daemon started.
    started: Micros,
    last_reload: Option<view::LastReload>,
}

/// What the loop owns: its parts, the engine's memory and the round's bookkeeping.
pub(super) struct Daemon<P: SessionSource + Terminator> {
    p: Parts<P>,
    pub tracker: Tracker,
    round: Round,
    /// What each stream sent and played this minute, for the state.
    usage: crate::engine::usage::Recorder,
    /// What the state held of each user's usage at the start of this minute (the minute it
    /// was read), since each of `UsageConfig::period_starts`.
    usage_base: (i64, Vec<(String, Vec<crate::state::usage::Since>)>),
}

/// The parts a `Daemon` is made of.
pub(super) struct Parts<P: SessionSource + Terminator> {
    pub rules: Arc<RuleSet>,
    pub current: webhook::Current,
    pub kills: Kills<P>,
    pub board: Board,
    pub metrics: Arc<Metrics>,
    pub plex: Arc<P>,
    pub polled: Polled,
    pub feed: Feed,
    pub ports: Vec<u16>,
    pub clock: Arc<dyn Clock>,
    pub poll_interval: Duration,
    /// Plex's event stream: where it stands (the listener keeps it).
    pub events: super::events::Events,
    pub notify: Option<Notifier>,
    /// How long usage is kept by the minute, and at all.
    pub usage_keep: crate::config::UsageConfig,
    pub view: View,
    pub reload: Option<Reload>,
}

impl<P: SessionSource + Terminator> Daemon<P> {
    pub fn new(p: Parts<P>) -> Self {
        let started = p.clock.now();
        Self {
            p,
            tracker: Tracker::default(),
            usage: Default::default(),
            usage_base: (i64::MIN, Vec::new()),
            round: Round {
                started,
                ..Round::default()
            },
        }
    }

    /// Plex announced a change of streams and the sessions were read again: a round now,
    /// rather than at the next tick.
    pub async fn on_event(&mut self) {
        self.on_tick().await;
    }

    /// One round: confirm earlier kills, measure and evaluate, act on fresh data, publish.
    pub async fn on_tick(&mut self) {
        self.round.ticks += 1;
        let now = self.p.clock.now();
        let snap = self.p.polled.snapshot();
        let fresh = snap
            .fetched
            .is_some_and(|f| now.duration_since(f) <= self.p.poll_interval * 2);
        self.p
            .kills
            .confirm(&snap.sessions, snap.sent, self.p.clock.as_ref())
            .await;
        let rules = self.p.rules.clone();
        let attributed = self.p.feed.measure(&snap.sessions, &self.p.ports, now);
        self.record_usage(&snap.sessions, &attributed, now);
        let addresses = self
            .p
            .feed
            .address_totals(&snap.sessions, &self.p.ports, now, &attributed);
        let mut tick = engine::tick_measured(
            &rules,
            &snap.sessions,
            attributed,
            now,
            fresh,
            &mut self.tracker,
        );
        tick.addresses = addresses;
        self.p
            .metrics
            .rule_evaluations
            .inc_by((tick.streams.len() * rules.rules.len()) as u64);
        if fresh {
            self.round.stale_warned = false;
            self.act(&tick, &snap, now).await;
        } else if !tick.due.is_empty() && !self.round.stale_warned {
            self.round.stale_warned = true;
            let age = snap.fetched.map_or_else(
                || "never read".to_string(),
                |f| format!("{} s old", now.whole_secs_since(f)),
            );
            tracing::warn!(
                "not acting: Plex's session data is {age} (more than two poll intervals)"
            );
        }
        self.publish(&tick, &snap, now, fresh);
        if self.round.ticks.is_multiple_of(60) {
            lock(&self.p.feed.metering)
                .meter
                .expire(now.0, crate::meter::DEFAULT_IDLE);
        }
    }

    /// Retries due kills, keeps throttles up to date, and acts on what became due.
    async fn act(&mut self, tick: &Tick<'_>, snap: &Snapshot, now: Micros) {
        // Throttles first: they change only the tracker's record of what is throttled,
        // which the kills' recheck then reads as it is now.
        let conns = throttling::conns_by_stream(tick);
        let listed: HashSet<String> = snap.sessions.iter().map(|s| s.identity()).collect();
        let throttled = &mut self.tracker.throttled;
        let kills = &mut self.p.kills;
        kills.keep_throttles(&listed, &conns, now, throttled, &self.p.metrics);
        for d in tick.due.iter().filter(|d| d.action == Action::Throttle) {
            let _ = kills.throttle(d, &conns, now, throttled, &self.p.metrics);
        }
        let world = World {
            rules: &self.p.rules,
            plex: &self.p.plex,
            feed: &self.p.feed,
            ports: &self.p.ports,
            clock: self.p.clock.as_ref(),
            tracker: &self.tracker,
            metrics: &self.p.metrics,
        };
        self.p.kills.retry_due(&world).await;
        for d in tick.due.iter().filter(|d| d.action != Action::Throttle) {
            self.p.kills.act(d, &world).await;
        }
        // Holds that reached notify_after: audited (and told to the notify targets).
        for d in &tick.warn {
            if self.p.kills.enforcer.is_exempt(&d.session) {
                continue;
            }
            let left = self
                .p
                .rules
                .get(&d.rule)
                .zip(self.tracker.sustain.held_for(d))
                .map(|(r, held)| r.sustain.saturating_sub(held).as_secs());
            let reason = left.map(|s| format!("acts in {s} s unless the stream stops"));
            self.p
                .kills
                .enforcer
                .note(d, crate::state::AuditAction::Warn, reason);
        }
        for d in &tick.due {
            self.tracker.sustain.acted(d);
        }
    }

    /// The metrics, the page's board, and the terminal view or a periodic log line.
    fn publish(&mut self, tick: &Tick<'_>, snap: &Snapshot, now: Micros, fresh: bool) {
        let stats = self.p.feed.stats();
        self.p.metrics.update(tick, &stats, &self.round.last_feed);
        self.p
            .metrics
            .state_failures(self.p.kills.enforcer.state_failures());
        if let Some(n) = &self.p.notify {
            self.p.metrics.notify(&n.counts());
        }
        self.round.last_feed = stats;
        let kills = &mut self.p.kills;
        let table: Vec<StreamRow> = engine::row::rows(
            tick,
            |id| kills.is_pending(id),
            |identity| throttling::row(&kills.throttles, identity, now),
        );
        let acted = view::Acted::of(&table, &kills.summary, |id| {
            kills.enforcer.already_killed(id)
        });
        let budget = kills.enforcer.budget_left();
        let dry_run = kills.enforcer.dry_run();
        let events = crate::lock(&self.p.events.status).clone();
        self.p.board.publish(
            tick,
            &table,
            &board::Facts {
                now,
                started: self.round.started,
                plex_error: snap.error.as_deref(),
                events: &events,
                fetched: snap.fetched,
                fresh,
                feed: &stats,
                dry_run,
                budget,
                reload: self.round.last_reload.as_ref(),
                rules: &self.p.rules,
                exempt: &|s| kills.enforcer.is_exempt(s),
                acted: &acted,
            },
        );
        if self.p.view == View::Terminal {
            let up = now.duration_since(self.round.started);
            let status = view::Status {
                plex_error: snap.error.as_deref(),
                fresh,
                feed: &stats,
                rules: self.p.rules.rules.len(),
                up,
                dry_run,
                reload: self.round.last_reload.as_ref(),
                acted: &acted,
            };
            view::render(&table, &status, &self.p.kills.summary.events);
        } else if self.round.ticks % 60 == 1 {
            tracing::info!(
                streams = table.len(),
                plex_ok = snap.error.is_none() && snap.fetched.is_some(),
                packets = stats.decode.read,
                "running"
            );
        }
    }

    /// SIGHUP: the configuration read again. Holds of unchanged rules go on; those of rules
    /// that changed or went away start again; kills and the budget carry on (in the state).
    pub fn on_reload(&mut self) {
        let result = self.p.reload.as_ref().map(|r| r());
        self.round.last_reload = result
            .as_ref()
            .map(|r| view::LastReload::of(r, self.p.clock.now()));
        let new = match result {
            Some(Ok(new)) => new,
            Some(Err(e)) => {
                tracing::error!("reload failed, keeping the running configuration: {e}");
                return;
            }
            None => {
                tracing::warn!("SIGHUP: nothing to reload");
                return;
            }
        };
        tracing::info!(
            rules = new.rules.rules.len(),
            dry_run = new.enforce.dry_run,
            "configuration reloaded"
        );
        if !new.restart_needed.is_empty() {
            tracing::warn!(
                "reload: {} changed and take effect only after a restart; the running settings stay",
                new.restart_needed.join(", ")
            );
        }
        self.warn_of_risks(&new);
        let (old, fresh) = (&self.p.rules, &new.rules);
        self.tracker.sustain.retain_rules(|name| {
            matches!((old.get(name), fresh.get(name)), (Some(a), Some(b)) if a.same_condition(b))
        });
        self.p.rules = Arc::new(new.rules);
        let dry_changed = self.p.kills.enforcer.dry_run() != new.enforce.dry_run;
        self.p.kills.enforcer.reconfigure(&new.enforce);
        self.p.kills.reload_throttles(
            &self.p.rules,
            dry_changed,
            &mut self.tracker.throttled,
            &self.p.metrics,
        );
        *lock(&self.p.current) = (self.p.rules.clone(), new.enforce);
    }

    /// A reload that arms enforcement, empties the exemptions or drops every rule is said at
    /// WARN and told to the notify targets: a half-saved file does exactly that.
    fn warn_of_risks(&mut self, new: &super::Reloaded) {
        let old = lock(&self.p.current).1.clone();
        let mut risks = Vec::new();
        if old.dry_run && !new.enforce.dry_run {
            risks.push("dry run is off: matching rules now kill".to_string());
        }
        if !old.exempt_users.is_empty() && new.enforce.exempt_users.is_empty() {
            risks.push(format!(
                "exempt_users is empty now (it was {}): no one is exempt",
                old.exempt_users.join(", ")
            ));
        }
        if !self.p.rules.rules.is_empty() && new.rules.rules.is_empty() {
            risks.push(format!(
                "every rule is gone (there were {})",
                self.p.rules.rules.len()
            ));
        }
        if risks.is_empty() {
            return;
        }
        let message = format!("configuration reloaded: {}", risks.join("; "));
        tracing::warn!("{message}");
        self.p.kills.enforcer.record_event(
            crate::state::AuditAction::RiskyReload,
            "reload",
            message,
        );
    }

    /// Something to be done by the one enforcer: Kill now, a throttle asked for, or a
    /// decision (or an audit note) of the hook run inside the daemon.
    pub async fn on_request(&mut self, req: manual::Request) {
        let snap = self.p.polled.snapshot();
        match req {
            manual::Request::Kill(req) => match req.throttle_rule.clone() {
                Some(rule) => {
                    let at = throttling::Asked {
                        rules: &self.p.rules,
                        sessions: &snap.sessions,
                        feed: &self.p.feed,
                        ports: &self.p.ports,
                        now: self.p.clock.now(),
                    };
                    self.p.kills.throttle_asked(
                        req,
                        &rule,
                        &at,
                        &mut self.tracker,
                        &self.p.metrics,
                    );
                }
                None => {
                    manual::handle(
                        req,
                        &mut self.p.kills,
                        &snap.sessions,
                        self.p.clock.as_ref(),
                        &self.p.metrics,
                    )
                    .await;
                }
            },
            manual::Request::Apply {
                decision,
                dry_run,
                reply,
            } => {
                let applied = self
                    .p
                    .kills
                    .by_hand(&decision, dry_run, self.p.clock.as_ref(), &self.p.metrics)
                    .await;
                let _ = reply.send(applied);
            }
            manual::Request::Note {
                decision,
                action,
                reason,
                reply,
            } => {
                self.p.kills.enforcer.note(&decision, action, reason);
                let _ = reply.send(());
            }
        }
        self.p
            .metrics
            .state_failures(self.p.kills.enforcer.state_failures());
    }

    /// The stop: every throttle lifted, notifications still being sent given a moment.
    /// Counts this round's usage; hands closed minutes to the state (rolling minute rows
    /// up to hours and dropping old ones once an hour).
    fn record_usage(
        &mut self,
        sessions: &[crate::plex::Session],
        attributed: &[Option<crate::attribute::Attributed>],
        now: Micros,
    ) {
        let (rows, counted) = {
            let m = lock(&self.p.feed.metering);
            self.usage
                .round(&m.meter, sessions, attributed, &self.p.ports, now.0)
        };
        let closed = !rows.is_empty();
        for (user, bytes) in counted {
            self.p
                .metrics
                .user_bytes
                .get_or_create(&super::metrics::UserLabels { user })
                .inc_by(bytes);
        }
        if !closed {
            self.refresh_usage(now);
            return;
        }
        let now_s = now.secs();
        let roll = (now_s.rem_euclid(3600) < 60).then(|| {
            let keep = &self.p.usage_keep;
            (
                now_s - keep.minutes.as_secs() as i64,
                now_s - keep.all.as_secs() as i64,
            )
        });
        self.p.kills.enforcer.record_usage(&rows, roll);
        // The state now holds the minute that closed: read the totals again.
        self.usage_base.0 = i64::MIN;
        self.refresh_usage(now);
    }

    /// What rules read of each user's usage: the state's totals (read again each minute)
    /// and this minute so far.
    fn refresh_usage(&mut self, now: Micros) {
        let minute = now.minute();
        if self.usage_base.0 != minute {
            let starts = self.p.usage_keep.period_starts(now.secs());
            self.usage_base = (minute, self.p.kills.enforcer.usage_since(&starts));
        }
        self.tracker.usage = Some(self.usage.by_user(&self.usage_base.1));
    }

    pub async fn finish(mut self, notify_wait: Duration) -> super::Summary {
        // What was metered since the last round, and the minute being counted: a stop
        // loses nothing.
        let now = self.p.clock.now();
        let snap = self.p.polled.snapshot();
        let attributed = self.p.feed.measure(&snap.sessions, &self.p.ports, now);
        self.record_usage(&snap.sessions, &attributed, now);
        let rows = self.usage.flush();
        self.p.kills.enforcer.record_usage(&rows, None);
        self.p.kills.lift_all(
            "streamwarden stopped",
            &mut self.tracker.throttled,
            &self.p.metrics,
        );
        if let Some(n) = self.p.notify.take() {
            for p in n.finish(notify_wait).await.problems() {
                tracing::warn!("{p}");
            }
        }
        self.p.kills.summary
    }
}
