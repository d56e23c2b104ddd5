//! The throttles a daemon keeps on: which stream, by which rule, at what rate, on which
//! connections; put on through the enforcer (exemptions, estimates, dry run, audit) and a
//! [`Shaper`], kept up to date as players open new connections, and lifted when the stream
//! ends, when `release_after` is over, when a reload drops the rule, and at shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::rules::{Decision, RuleSet, ThrottleSpec};

use super::shape::{Conn, Shaper, ThrottleId};
use super::{Applied, Enforcer, Terminator};

/// One throttle that is on (or, in a dry run, would be).
#[derive(Debug, Clone)]
pub struct Active {
    pub id: ThrottleId,
    /// The decision that put it on (its rule, stream and rate).
    pub decision: Decision,
    pub spec: ThrottleSpec,
    /// When it went on (the clock's microseconds).
    pub since: i64,
    pub conns: BTreeSet<Conn>,
    /// A dry run's: nothing was touched.
    pub dry: bool,
}

/// The throttles that are on, by stream identity.
pub struct Throttles {
    /// What puts throttles on, or why nothing can.
    shaper: Result<Arc<dyn Shaper>, String>,
    active: BTreeMap<String, Active>,
}

impl std::fmt::Debug for Throttles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttles")
            .field("available", &self.shaper.is_ok())
            .field("active", &self.active)
            .finish()
    }
}

impl Throttles {
    /// `shaper` is what limits connections, or why throttling is unavailable here (the
    /// reason each throttle decision then fails with).
    pub fn new(shaper: Result<Arc<dyn Shaper>, String>) -> Self {
        Self {
            shaper,
            active: BTreeMap::new(),
        }
    }

    /// The throttles that are on, by stream identity.
    pub fn active(&self) -> &BTreeMap<String, Active> {
        &self.active
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Why throttling is unavailable, when it is.
    pub fn unavailable(&self) -> Option<&str> {
        self.shaper.as_ref().err().map(String::as_str)
    }

    /// Puts `d`'s throttle on the stream's `conns` (the connections tied to it exactly).
    /// `None` when the stream is already throttled (nothing to audit).
    pub fn start<T: Terminator>(
        &mut self,
        enforcer: &mut Enforcer<T>,
        d: &Decision,
        conns: &[Conn],
        now: i64,
    ) -> Option<Applied> {
        let identity = d.session.identity();
        if self.active.contains_key(&identity) {
            return None;
        }
        let spec = d.throttle?;
        let id = self.free_id();
        let applied = enforcer.apply_throttle(d, || {
            if conns.is_empty() {
                return Err(
                    "none of its connections is known exactly (no traffic seen, or several streams share its address and could not be told apart)".into(),
                );
            }
            let shaper = self.shaper.as_ref().map_err(Clone::clone)?;
            let id = id.ok_or("too many throttles at once")?;
            shaper
                .apply(id, spec.bytes_per_sec(), conns)
                .map_err(|e| e.to_string())
        });
        let dry = match applied {
            Applied::Throttled => false,
            Applied::WouldThrottle => true,
            _ => return Some(applied),
        };
        if !dry && let Ok(shaper) = &self.shaper {
            let row = crate::state::ThrottleRow {
                identity: identity.clone(),
                session_id: d.session.session_id.clone(),
                rule: d.rule.clone(),
                rate_bps: spec.bytes_per_sec().saturating_mul(8),
                interface: shaper.interface().to_string(),
                since: crate::state::now_micros(),
            };
            if let Err(e) = enforcer.state_mut().throttle_on(&row) {
                tracing::error!("{e}: a restart may not know to lift this throttle");
            }
        }
        self.active.insert(
            identity,
            Active {
                id: id.unwrap_or(0),
                decision: d.clone(),
                spec,
                since: now,
                conns: conns.iter().copied().collect(),
                dry,
            },
        );
        Some(applied)
    }

    /// Covers new connections of throttled streams (players reconnect): `conns_of` gives a
    /// stream's connections now, by identity. Connections no longer seen are dropped from
    /// the filters. A failure is logged and tried again next time.
    pub fn refresh(&mut self, conns_of: impl Fn(&str) -> Option<Vec<Conn>>) {
        for (identity, a) in &mut self.active {
            let Some(now) = conns_of(identity) else {
                continue;
            };
            let now: BTreeSet<Conn> = now.into_iter().collect();
            if now.is_empty() || now == a.conns {
                continue;
            }
            if !a.dry {
                let Ok(shaper) = &self.shaper else { continue };
                let list: Vec<Conn> = now.iter().copied().collect();
                if let Err(e) = shaper.apply(a.id, a.spec.bytes_per_sec(), &list) {
                    tracing::warn!(rule = %a.decision.rule, "cannot cover the stream's new connections: {e}");
                    continue;
                }
            }
            a.conns = now;
        }
    }

    /// The throttles to lift now: of streams no longer listed (`listed` says which are),
    /// and those whose `release_after` is over; with the reason for each.
    pub fn due(&self, listed: impl Fn(&str) -> bool, now: i64) -> Vec<(String, String)> {
        self.active
            .iter()
            .filter_map(|(identity, a)| {
                if !listed(identity) {
                    return Some((identity.clone(), "the stream ended".to_string()));
                }
                let after = a.spec.release_after?;
                let over = now.saturating_sub(a.since) >= after.as_micros() as i64;
                over.then(|| {
                    (
                        identity.clone(),
                        format!(
                            "release_after = {} is over",
                            humantime::format_duration(after)
                        ),
                    )
                })
            })
            .collect()
    }

    /// Lifts one stream's throttle and audits it (`unthrottle`; a dry run's is only
    /// forgotten). Returns it when there was one.
    pub fn release<T: Terminator>(
        &mut self,
        enforcer: &mut Enforcer<T>,
        identity: &str,
        reason: &str,
    ) -> Option<Active> {
        let a = self.active.remove(identity)?;
        if a.dry {
            return Some(a);
        }
        let reason = match &self.shaper {
            Ok(shaper) => match shaper.release(a.id) {
                Ok(()) => reason.to_string(),
                Err(e) => format!("{reason}; lifting it failed: {e}"),
            },
            Err(_) => reason.to_string(),
        };
        tracing::info!(rule = %a.decision.rule, session = a.decision.session.session_id.as_deref().unwrap_or("-"), "throttle lifted: {reason}");
        if let Err(e) = enforcer.state_mut().throttle_off(identity) {
            tracing::error!("{e}");
        }
        enforcer.note(
            &a.decision,
            crate::state::AuditAction::Unthrottle,
            Some(reason),
        );
        Some(a)
    }

    /// Lifts every throttle (shutdown), audits each, and leaves the interface as found.
    pub fn release_all<T: Terminator>(&mut self, enforcer: &mut Enforcer<T>, reason: &str) {
        let all: Vec<String> = self.active.keys().cloned().collect();
        for identity in all {
            self.release(enforcer, &identity, reason);
        }
        if let Ok(shaper) = &self.shaper
            && let Err(e) = shaper.release_all()
        {
            tracing::error!("cannot restore the interface's queueing: {e}");
        }
    }

    /// Takes a reload: a throttle whose rule is gone, or no longer throttles, is lifted; a
    /// new rate of its rule applies at once; a switch to or from dry run lifts them all.
    pub fn reconfigure<T: Terminator>(
        &mut self,
        enforcer: &mut Enforcer<T>,
        rules: &RuleSet,
        dry_run_changed: bool,
    ) -> Vec<Active> {
        let mut lifted = Vec::new();
        let identities: Vec<String> = self.active.keys().cloned().collect();
        for identity in identities {
            let Some(a) = self.active.get(&identity) else {
                continue;
            };
            let rule = a.decision.rule.clone();
            let reason = if dry_run_changed {
                Some("a reload switched dry run".to_string())
            } else {
                match rules.get(&rule).and_then(|r| r.throttle) {
                    None => Some(format!("a reload removed rule {rule:?} or its throttle")),
                    Some(spec) => {
                        self.change(&identity, spec);
                        None
                    }
                }
            };
            if let Some(reason) = reason
                && let Some(a) = self.release(enforcer, &identity, &reason)
            {
                lifted.push(a);
            }
        }
        lifted
    }

    /// Gives a throttle its rule's new settings.
    fn change(&mut self, identity: &str, spec: ThrottleSpec) {
        let Some(a) = self.active.get_mut(identity) else {
            return;
        };
        if a.spec == spec {
            return;
        }
        if !a.dry
            && spec.rate_bps != a.spec.rate_bps
            && let Ok(shaper) = &self.shaper
        {
            let list: Vec<Conn> = a.conns.iter().copied().collect();
            if let Err(e) = shaper.apply(a.id, spec.bytes_per_sec(), &list) {
                tracing::warn!(rule = %a.decision.rule, "cannot change the throttle's rate: {e}");
                return;
            }
        }
        a.spec = spec;
        a.decision.throttle = Some(spec);
    }

    /// The lowest id no throttle uses.
    fn free_id(&self) -> Option<ThrottleId> {
        let used: BTreeSet<ThrottleId> = self.active.values().map(|a| a.id).collect();
        (1..=0xfffe).find(|id| !used.contains(id))
    }
}
