//! The daemon's side of throttles: putting one on when a throttle rule is due, covering the
//! stream's new connections each round, lifting it when the stream ends or its
//! `release_after` is over, and keeping the engine's `Throttled` (what `throttled_for` and
//! escalations read) in step.

use super::manual::Answer;
use std::collections::{HashMap, HashSet};

use crate::enforce::Terminator;
use crate::enforce::shape::Conn;
use crate::engine::{Throttled, Tick};
use crate::meter::FlowKey;
use crate::micros::Micros;
use crate::plex::SessionSource;
use crate::rules::Decision;

use super::Metrics;
use super::kill::Kills;
use super::metrics::RuleLabels;

/// The row of the throttle on a stream, when one is.
pub fn row(
    throttles: &crate::enforce::throttles::Throttles,
    identity: &str,
    now: Micros,
) -> Option<crate::engine::row::ThrottleRow> {
    let a = throttles.active().get(identity)?;
    Some(crate::engine::row::ThrottleRow {
        rule: a.decision.rule.clone(),
        rate: a.spec.rate_text(),
        for_s: now.whole_secs_since(Micros(a.since)),
        dry: a.dry,
        connections: a.conns.len(),
    })
}

/// A meter's server → client flow as the connection a shaper limits.
pub fn conn(key: &FlowKey) -> Conn {
    Conn {
        server: std::net::SocketAddr::new(key.src, key.sport),
        client: std::net::SocketAddr::new(key.dst, key.dport),
    }
}

/// Each stream's exactly attributed connections this round, by identity.
pub fn conns_by_stream(tick: &Tick<'_>) -> HashMap<String, Vec<Conn>> {
    tick.streams
        .iter()
        .zip(&tick.attributed)
        .filter_map(|(e, a)| {
            let a = a.as_ref()?;
            Some((e.session.identity(), a.exact.iter().map(conn).collect()))
        })
        .collect()
}

impl<P: SessionSource + Terminator> Kills<P> {
    /// Puts a due throttle decision's throttle on, with the stream's connections now;
    /// what became of it (`None`: the stream was already throttled).
    pub fn throttle(
        &mut self,
        d: &Decision,
        conns: &HashMap<String, Vec<Conn>>,
        now: Micros,
        throttled: &mut Throttled,
        metrics: &Metrics,
    ) -> Option<crate::enforce::Applied> {
        let identity = d.session.identity();
        let list = conns.get(&identity).cloned().unwrap_or_default();
        let applied = self.throttles.start(&mut self.enforcer, d, &list, now.0)?;
        self.record(&applied, d, Micros(0), metrics);
        if let Some(a) = self.throttles.active().get(&identity) {
            throttled.on(identity, a.decision.rule.clone(), Micros(a.since));
        }
        Some(applied)
    }

    /// One round's upkeep of the throttles that are on: lifts those of streams Plex no
    /// longer lists (`listed`, from a fresh poll) and those whose `release_after` is over,
    /// then covers the others' new connections.
    pub fn keep_throttles(
        &mut self,
        listed: &HashSet<String>,
        conns: &HashMap<String, Vec<Conn>>,
        now: Micros,
        throttled: &mut Throttled,
        metrics: &Metrics,
    ) {
        for (identity, reason) in self.throttles.due(|id| listed.contains(id), now.0) {
            self.lift(&identity, &reason, throttled, metrics);
        }
        self.throttles.refresh(|id| conns.get(id).cloned());
        metrics
            .throttled_streams
            .set(self.throttles.active().len() as i64);
    }

    /// Lifts one stream's throttle.
    pub fn lift(
        &mut self,
        identity: &str,
        reason: &str,
        throttled: &mut Throttled,
        metrics: &Metrics,
    ) {
        throttled.off(identity);
        if let Some(a) = self.throttles.release(&mut self.enforcer, identity, reason) {
            if !a.dry {
                metrics
                    .unthrottles
                    .get_or_create(&RuleLabels {
                        rule: a.decision.rule.clone(),
                    })
                    .inc();
            }
            let ts = time::OffsetDateTime::now_utc();
            self.summary.events.push(format!(
                "{:02}:{:02}:{:02} {} throttle on session {} lifted: {}",
                ts.hour(),
                ts.minute(),
                ts.second(),
                if a.dry { "dry run:" } else { "" },
                crate::enforce::escape(a.decision.session.session_id.as_deref().unwrap_or("-")),
                crate::enforce::escape(reason)
            ));
        }
    }

    /// Lifts every throttle (the daemon stops) and restores the interface.
    pub fn lift_all(&mut self, reason: &str, throttled: &mut Throttled, metrics: &Metrics) {
        let all: Vec<String> = self.throttles.active().keys().cloned().collect();
        for identity in all {
            self.lift(&identity, reason, throttled, metrics);
        }
        self.throttles.release_all(&mut self.enforcer, reason);
        metrics.throttled_streams.set(0);
    }

    /// A reload: lifts throttles whose rule went away or stopped throttling (or all, when dry
    /// run was switched); new rates apply at once.
    pub fn reload_throttles(
        &mut self,
        rules: &crate::rules::RuleSet,
        dry_run_changed: bool,
        throttled: &mut Throttled,
        metrics: &Metrics,
    ) {
        let lifted = self
            .throttles
            .reconfigure(&mut self.enforcer, rules, dry_run_changed);
        for a in lifted {
            throttled.off(&a.decision.session.identity());
            if !a.dry {
                metrics
                    .unthrottles
                    .get_or_create(&RuleLabels {
                        rule: a.decision.rule.clone(),
                    })
                    .inc();
            }
        }
        metrics
            .throttled_streams
            .set(self.throttles.active().len() as i64);
    }
}

/// What the loop needs to answer a throttle asked for over HTTP (the hook's rules mode).
pub struct Asked<'a> {
    pub rules: &'a crate::rules::RuleSet,
    pub sessions: &'a [crate::plex::Session],
    pub feed: &'a super::Feed,
    pub ports: &'a [u16],
    pub now: Micros,
}

impl<P: SessionSource + Terminator> Kills<P> {
    /// Puts a throttle rule's throttle on a stream because the hook asked: only if the
    /// rule is a throttle rule of this daemon and holds on the daemon's own figures.
    pub fn throttle_asked(
        &mut self,
        req: super::manual::KillRequest,
        rule: &str,
        at: &Asked<'_>,
        tracker: &mut crate::engine::Tracker,
        metrics: &Metrics,
    ) {
        let answer = |outcome: Answer, said: String| super::manual::KillAnswer { outcome, said };
        let reply = |a: super::manual::KillAnswer| {
            let _ = req.reply.send(a);
        };
        let escaped = crate::enforce::escape(&req.session_id).into_owned();
        let Some(i) = at
            .sessions
            .iter()
            .position(|s| s.session_id.as_deref() == Some(req.session_id.as_str()))
        else {
            return reply(answer(
                Answer::NotFound,
                format!("Plex does not list session {escaped} now"),
            ));
        };
        if at.rules.get(rule).and_then(|r| r.throttle).is_none() {
            return reply(answer(
                Answer::NoSuchRule,
                format!(
                    "this daemon has no throttle rule {:?}",
                    crate::enforce::escape(rule)
                ),
            ));
        }
        let identity = at.sessions[i].identity();
        if self.throttles.active().contains_key(&identity) {
            return reply(answer(
                Answer::AlreadyThrottled,
                format!("session {escaped} is already throttled"),
            ));
        }
        let attributed = {
            let m = crate::lock(&at.feed.metering);
            crate::attribute::attribute(&m.meter, at.sessions, at.ports, at.now.0)
        };
        let observed = crate::rules::Observed {
            measured: attributed[i].as_ref().map(|a| a.measured),
            paused_for_secs: Some(tracker.pauses.paused_for(&at.sessions[i], at.now)),
            throttled_for_secs: Some(0.0),
            usage: tracker.usage_of(&at.sessions[i]),
            now_micros: Some(at.now.0),
        };
        let eval = crate::engine::evaluate_one(at.rules, at.sessions, i, &observed, None);
        let Some(d) = eval.decisions().into_iter().find(|d| d.rule == rule) else {
            return reply(answer(
                Answer::NotMatching,
                format!(
                    "rule {:?} does not hold for session {escaped} on the daemon's figures",
                    crate::enforce::escape(rule)
                ),
            ));
        };
        let conns: HashMap<String, Vec<Conn>> = attributed[i]
            .as_ref()
            .map(|a| (identity.clone(), a.exact.iter().map(conn).collect()))
            .into_iter()
            .collect();
        let mut throttled = tracker.throttled.clone();
        let applied = self.throttle(&d, &conns, at.now, &mut throttled, metrics);
        tracker.throttled = throttled;
        tracker.sustain.acted(&d);
        match applied {
            Some(a) => reply(answer(Answer::Did(a.action()), a.describe(&d))),
            None => reply(answer(
                Answer::AlreadyThrottled,
                format!("session {escaped} is already throttled"),
            )),
        }
    }
}
