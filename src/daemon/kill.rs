//! Acting on due decisions: a fresh re-read and re-evaluation before every kill, then
//! confirmation on a later poll (gone; or its transcode stopped; or a zombie).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::enforce::{Applied, Enforcer, Terminator, escape};
use crate::engine::{self, Tracker};
use crate::micros::Micros;
use crate::plex::{Session, SessionSource};
use crate::rules::{Action, Decision, Observed, Outcome, RuleSet};
use crate::state::AuditAction;

use super::metrics::RuleLabels;
use super::{Clock, Feed, Metrics, Summary};

/// What acting reads: the rules, Plex, the meter, the time and the engine's memory.
pub(super) struct World<'a, P> {
    pub rules: &'a RuleSet,
    pub plex: &'a Arc<P>,
    pub feed: &'a Feed,
    pub ports: &'a [u16],
    pub clock: &'a dyn Clock,
    pub tracker: &'a Tracker,
    pub metrics: &'a Metrics,
}

/// How many times a failed kill is tried again, and the wait before the first retry
/// (doubled for each next one): 2, 4 and 8 s.
pub const KILL_RETRIES: u32 = 3;
const FIRST_RETRY: Duration = Duration::from_secs(2);

/// A failed kill waiting for its next attempt.
struct Retry {
    decision: Decision,
    /// Attempts made so far.
    attempts: u32,
    /// When to try again.
    at: Micros,
}

/// A kill waiting to be confirmed by a later poll.
struct Pending {
    decision: Decision,
    /// When the terminate (or the transcode's stop) was answered: only a poll sent after
    /// this says anything about it.
    answered: Micros,
    transcode_stopped: bool,
}

/// The enforcer, the kills awaiting confirmation, the throttles that are on, and what was
/// done.
pub(super) struct Kills<P: Terminator> {
    pub enforcer: Enforcer<Arc<P>>,
    pub throttles: crate::enforce::throttles::Throttles,
    pending: HashMap<String, Pending>,
    /// Failed kills to try again, by stream identity and rule.
    retries: HashMap<(String, String), Retry>,
    pub summary: Summary,
}

impl<P: SessionSource + Terminator> Kills<P> {
    pub fn new(
        enforcer: Enforcer<Arc<P>>,
        throttles: crate::enforce::throttles::Throttles,
    ) -> Self {
        Self {
            enforcer,
            throttles,
            pending: HashMap::new(),
            retries: HashMap::new(),
            summary: Summary::default(),
        }
    }

    /// Killed and not yet confirmed gone.
    pub fn is_pending(&self, session_id: &str) -> bool {
        self.pending.contains_key(session_id)
    }

    /// Acts on a due decision. A kill re-reads the session from Plex and re-evaluates it
    /// first: no kill on stale data. A kill that fails is tried again later.
    pub async fn act(&mut self, d: &Decision, w: &World<'_, P>) {
        self.attempt(d, 1, w).await;
    }

    /// Tries again the failed kills whose wait is over: each re-reads and re-evaluates
    /// first, like the first attempt, and each outcome is audited.
    pub async fn retry_due(&mut self, w: &World<'_, P>) {
        let now = w.clock.now();
        let due: Vec<(String, String)> = self
            .retries
            .iter()
            .filter(|(_, r)| r.at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(r) = self.retries.remove(&key) else {
                continue;
            };
            tracing::info!(
                rule = %r.decision.rule,
                session = r.decision.session.session_id.as_deref().unwrap_or("-"),
                "trying the failed kill again (retry {} of {KILL_RETRIES})",
                r.attempts
            );
            self.enforcer.forget_reported(&r.decision);
            self.attempt(&r.decision, r.attempts + 1, w).await;
        }
    }

    async fn attempt(&mut self, d: &Decision, attempt: u32, w: &World<'_, P>) {
        let d = if d.action == Action::Kill && !self.enforcer.dry_run() {
            match recheck(d, w).await {
                Recheck::Holds(fresh) => *fresh,
                Recheck::Not => return,
                Recheck::Unread if attempt > 1 => {
                    // A retry waits for Plex to answer again rather than being dropped.
                    self.schedule(d, attempt - 1, w);
                    return;
                }
                Recheck::Unread => return,
            }
        } else {
            d.clone()
        };
        let applied = self.enforcer.apply(&d).await;
        self.record(&applied, &d, w.clock.now(), w.metrics);
        if applied.is_failure() {
            if attempt <= KILL_RETRIES && d.session.session_id.is_some() {
                self.schedule(&d, attempt, w);
            } else {
                tracing::error!(
                    rule = %d.rule,
                    session = d.session.session_id.as_deref().unwrap_or("-"),
                    "the kill failed {attempt} times: giving up on this hold"
                );
            }
        }
    }

    /// A kill the owner asked for (the page's "kill now"): no rule to re-evaluate and no
    /// retry, but the enforcer's checks (exemptions, the budget, never twice, dry run), its
    /// audit, the metrics and the confirmation by a later poll, as for any kill.
    pub async fn by_hand(
        &mut self,
        d: &Decision,
        dry_run: bool,
        clock: &dyn Clock,
        metrics: &Metrics,
    ) -> Applied {
        let applied = self.enforcer.apply_as(d, dry_run).await;
        self.record(&applied, d, clock.now(), metrics);
        applied
    }

    /// Notes what became of a decision: the event line, the metrics, what was done, and a
    /// kill to confirm.
    pub(super) fn record(
        &mut self,
        applied: &Applied,
        d: &Decision,
        answered: Micros,
        metrics: &Metrics,
    ) {
        let labels = RuleLabels {
            rule: d.rule.clone(),
        };
        if *applied != Applied::AlreadyKilled {
            let ts = time::OffsetDateTime::now_utc();
            self.summary.events.push(format!(
                "{:02}:{:02}:{:02} {}",
                ts.hour(),
                ts.minute(),
                ts.second(),
                applied.describe(d)
            ));
        }
        match applied {
            Applied::Killed => {
                metrics.kills.get_or_create(&labels).inc();
                if let Some(id) = &d.session.session_id {
                    self.pending.insert(
                        id.clone(),
                        Pending {
                            decision: d.clone(),
                            answered,
                            transcode_stopped: false,
                        },
                    );
                }
                self.summary.kills.push(d.clone());
            }
            Applied::WouldKill => {
                metrics.would_kills.get_or_create(&labels).inc();
                self.summary.would_kills.push(d.clone());
            }
            Applied::Failed(r) => {
                metrics.kill_failures.get_or_create(&labels).inc();
                self.summary.failures.push((d.clone(), r.clone()));
            }
            Applied::Throttled => {
                metrics.throttles.get_or_create(&labels).inc();
            }
            Applied::WouldThrottle => {
                metrics.would_throttles.get_or_create(&labels).inc();
            }
            Applied::ThrottleFailed(r) => {
                metrics.throttle_failures.get_or_create(&labels).inc();
                self.summary.failures.push((d.clone(), r.clone()));
            }
            _ => {}
        }
    }

    /// Schedules the next try of a kill that failed `attempts` times.
    fn schedule(&mut self, d: &Decision, attempts: u32, w: &World<'_, P>) {
        let wait = FIRST_RETRY * (1 << (attempts.clamp(1, 16) - 1));
        tracing::warn!(
            rule = %d.rule,
            session = d.session.session_id.as_deref().unwrap_or("-"),
            "the kill failed; trying again in {} s (retry {attempts} of {KILL_RETRIES})",
            wait.as_secs()
        );
        self.retries.insert(
            (d.session.identity(), d.rule.clone()),
            Retry {
                decision: d.clone(),
                attempts,
                at: w.clock.now().plus(wait),
            },
        );
    }

    /// Checks earlier kills against a newer poll: gone is confirmed; a survivor that is a
    /// transcode gets its transcode stopped; one that survives both is a zombie.
    pub async fn confirm(&mut self, sessions: &[Session], sent: Option<Micros>, clock: &dyn Clock) {
        let ids: Vec<String> = self.pending.keys().cloned().collect();
        for id in ids {
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            // A poll sent before the answer (even one answered after it) may list the
            // stream as it was before the kill: it says nothing.
            if sent.is_none_or(|sent| sent <= p.answered) {
                continue;
            }
            let alive = sessions
                .iter()
                .find(|s| s.session_id.as_deref() == Some(id.as_str()));
            match alive {
                None => {
                    tracing::info!(session = %escape(&id), "kill confirmed: the stream is gone");
                    self.pending.remove(&id);
                    self.enforcer.confirmed(&id, true);
                }
                Some(s) if !p.transcode_stopped && s.transcode_key.is_some() => {
                    let key = s.transcode_key.clone().unwrap_or_default();
                    let result = self.enforcer.terminator().stop_transcode(&key).await;
                    let reason = match &result {
                        Ok(()) => {
                            format!("still listed after the kill; stopped its transcode {key}")
                        }
                        Err(e) => format!(
                            "still listed after the kill; stopping its transcode {key} failed: {e}"
                        ),
                    };
                    p.transcode_stopped = true;
                    p.answered = clock.now();
                    let d = p.decision.clone();
                    self.enforcer
                        .note(&d, AuditAction::TranscodeStopped, Some(reason));
                }
                Some(_) => {
                    let d = p.decision.clone();
                    self.enforcer.note(
                        &d,
                        AuditAction::Zombie,
                        Some(
                            "the stream is still listed after the kill (the player ignored it)"
                                .into(),
                        ),
                    );
                    tracing::warn!(session = %escape(&id), "zombie: the stream survived the kill");
                    self.pending.remove(&id);
                    self.enforcer.confirmed(&id, false);
                }
            }
        }
    }
}

/// Re-reads the sessions and re-evaluates `d`'s rule for its stream; the fresh decision
/// when it still holds.
async fn recheck<P: SessionSource>(d: &Decision, w: &World<'_, P>) -> Recheck {
    let sessions = match w.plex.sessions().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(rule = %d.rule, "not killing: cannot re-read the session before the kill: {e}");
            return Recheck::Unread;
        }
    };
    let id = d.session.identity();
    let session = d.session.session_id.as_deref().unwrap_or("-");
    let Some(i) = sessions.iter().position(|s| s.identity() == id) else {
        tracing::info!(rule = %d.rule, session, "the stream ended before the kill");
        return Recheck::Not;
    };
    let now = w.clock.now();
    let attributed = w.feed.measure(&sessions, w.ports, now);
    let observed = Observed {
        measured: attributed[i].as_ref().map(|a| a.measured),
        paused_for_secs: Some(w.tracker.pauses.paused_for(&sessions[i], now)),
        throttled_for_secs: Some(w.tracker.throttled.secs(&id, now)),
        usage: w.tracker.usage_of(&sessions[i]),
        now_micros: Some(now.0),
    };
    let eval = engine::evaluate_one(
        w.rules,
        &sessions,
        i,
        &observed,
        w.tracker.throttled.rule(&id),
    );
    let still = eval
        .evaluations
        .iter()
        .any(|e| e.rule.name == d.rule && e.outcome == Outcome::Match);
    if !still {
        tracing::info!(rule = %d.rule, session, "no longer holds on fresh data: not killing");
        return Recheck::Not;
    }
    match eval.decisions().into_iter().find(|x| x.rule == d.rule) {
        Some(fresh) => Recheck::Holds(Box::new(fresh)),
        None => Recheck::Not,
    }
}

/// What a re-read before a kill found.
enum Recheck {
    /// The rule still holds on fresh data: this decision.
    Holds(Box<Decision>),
    /// The stream ended or the rule no longer holds.
    Not,
    /// Plex could not be read.
    Unread,
}
