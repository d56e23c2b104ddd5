//! Enforcement: turns decisions into kills (or would-kills), within the budget, never on
//! exempt users, never twice, and writes every step to the audit log.

mod applied;
pub mod audit;
pub mod history;
pub mod shape;
pub mod throttles;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;

use serde_json::{Map, Value as Json};
use std::time::Duration;

use crate::config::EnforceConfig;
use crate::plex::{PlexClient, PlexError, Session};
use crate::rules::{Action, Decision, Value};
use crate::state::{AuditAction, Begin, KillIntent, KillOutcome, Mode, State, StateError};
pub use applied::{Applied, escape};
pub use audit::{AuditLog, AuditSink, Record};

/// The `exempt_users` entry that names the server owner, whatever the account is called.
pub const OWNER: &str = "owner";
/// Plex's user id of the server owner in /status/sessions.
pub const OWNER_ID: i64 = 1;

/// What actually stops a stream: the Plex client, or a test double.
pub trait Terminator: Send + Sync {
    /// Checked once before the first kill: can this server kill at all?
    fn preflight(&self) -> impl Future<Output = Result<(), String>> + Send;
    /// Stops one stream with a message the viewer sees.
    fn terminate(
        &self,
        session_id: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Stops the transcode of a stream that survived its terminate.
    fn stop_transcode(&self, key: &str) -> impl Future<Output = Result<(), String>> + Send;
}

impl Terminator for PlexClient {
    async fn preflight(&self) -> Result<(), String> {
        match self.capabilities().await {
            Ok(c) if c.can_kill() => Ok(()),
            Ok(_) => Err(PlexError::NoPlexPass.to_string()),
            Err(e @ PlexError::Unauthorized { .. }) => Err(e.to_string()),
            // Other failures to read GET / do not prove the kill will fail: try it.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the server's capabilities; trying the kill anyway");
                Ok(())
            }
        }
    }

    async fn terminate(&self, session_id: &str, reason: &str) -> Result<(), String> {
        let result = PlexClient::terminate(self, session_id, reason).await;
        // A terminate is never sent twice. When its answer was lost, the sessions say
        // whether it landed.
        if let Err(PlexError::Timeout { .. } | PlexError::Unreachable { .. }) = &result
            && let Ok(sessions) = self.sessions().await
            && !sessions
                .iter()
                .any(|s| s.session_id.as_deref() == Some(session_id))
        {
            tracing::warn!(
                session = session_id,
                "no answer to the terminate, but the session is gone: counted as killed"
            );
            return Ok(());
        }
        result.map_err(|e| match e {
            PlexError::Unauthorized { .. } => {
                format!("{e} (a 401 on terminate also means the server has no Plex Pass)")
            }
            PlexError::Status {
                status: 400 | 403 | 404,
                ..
            } => {
                format!("{e}: Plex does not know session {session_id:?}")
            }
            e => e.to_string(),
        })
    }

    async fn stop_transcode(&self, key: &str) -> Result<(), String> {
        PlexClient::stop_transcode(self, key)
            .await
            .map_err(|e| e.to_string())
    }
}

impl<T: Terminator> Terminator for std::sync::Arc<T> {
    fn preflight(&self) -> impl Future<Output = Result<(), String>> + Send {
        (**self).preflight()
    }
    fn terminate(
        &self,
        session_id: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), String>> + Send {
        (**self).terminate(session_id, reason)
    }
    fn stop_transcode(&self, key: &str) -> impl Future<Output = Result<(), String>> + Send {
        (**self).stop_transcode(key)
    }
}

/// Applies decisions: one per process, so that every path that kills shares one memory
/// (never twice, the budget, what is pending) kept in the state database.
pub struct Enforcer<T: Terminator> {
    terminator: T,
    dry_run: bool,
    act_on_estimates: bool,
    exempt: HashSet<String>,
    max_per_minute: u32,
    /// What was killed, the budget's window and the audit records.
    state: State,
    /// The time of the latest decision (microseconds): wall time for live work, packet
    /// time for a replayed capture.
    clock_at: i64,
    /// Live work reads the wall clock; a replay is given packet time.
    wall_clock: bool,
    /// Skips and failures already audited, so a condition that keeps holding is not
    /// audited again every second.
    reported: HashSet<(String, String, String)>,
    preflight: Option<Result<(), String>>,
    audit: AuditLog,
    /// The state could not be written at the last try: kills are refused until it can.
    state_down: bool,
    /// Writes to the state that failed, for /metrics.
    state_failures: u64,
}

impl<T: Terminator> Enforcer<T> {
    /// `state` is shared with every other path and process acting on the same streams (the
    /// hook runs once per Tautulli event): the budget and never-twice are read from it.
    pub fn new(terminator: T, cfg: &EnforceConfig, state: State, audit: AuditLog) -> Self {
        Self {
            terminator,
            dry_run: cfg.dry_run,
            act_on_estimates: cfg.act_on_estimates,
            exempt: cfg
                .exempt_users
                .iter()
                .map(|u| u.trim().to_lowercase())
                .collect(),
            max_per_minute: cfg.max_kills_per_minute.max(1),
            state,
            clock_at: 0,
            wall_clock: true,
            reported: HashSet::new(),
            preflight: None,
            audit,
            state_down: false,
            state_failures: 0,
        }
    }

    /// Applies new settings (a reload). What was killed and the kills of the last minute
    /// stay in the state, so they carry over.
    pub fn reconfigure(&mut self, cfg: &EnforceConfig) {
        self.dry_run = cfg.dry_run;
        self.act_on_estimates = cfg.act_on_estimates;
        self.exempt = cfg
            .exempt_users
            .iter()
            .map(|u| u.trim().to_lowercase())
            .collect();
        self.max_per_minute = cfg.max_kills_per_minute.max(1);
    }

    fn mode(&self, dry_run: bool) -> Mode {
        Mode::of(dry_run)
    }

    fn now(&mut self) -> i64 {
        if self.wall_clock {
            self.clock_at = self.clock_at.max(crate::state::now_micros());
        }
        self.clock_at
    }

    /// Kills the budget allows now, and its size (`max_kills_per_minute`): in a dry run, as
    /// would-kills spend it.
    pub fn budget_left(&mut self) -> (u32, u32) {
        let now = self.now();
        let mode = self.mode(self.dry_run);
        let used = self.state.kills_in_window(mode, now).unwrap_or(0);
        (
            self.max_per_minute.saturating_sub(used),
            self.max_per_minute,
        )
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    pub fn terminator(&self) -> &T {
        &self.terminator
    }

    /// The state database, to read (the throttles it holds, a reader for the page).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The state database, to record what is not a decision (throttles in force).
    pub fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    /// Writes to the state database that failed since the start.
    pub fn state_failures(&self) -> u64 {
        self.state_failures
    }

    /// Whether the state could not be written at the last try (kills are refused).
    pub fn state_down(&self) -> bool {
        self.state_down
    }

    /// Whether a session's user is exempt: by name (case-insensitive), by numeric id, or,
    /// for the entry `owner`, as the server owner (Plex user id 1).
    pub fn is_exempt(&self, s: &Session) -> bool {
        s.user
            .as_ref()
            .is_some_and(|u| self.exempt.contains(&u.to_lowercase()))
            || s.user_id.is_some_and(|id| {
                self.exempt.contains(&id.to_string())
                    || (id == OWNER_ID && self.exempt.contains(OWNER))
            })
    }

    /// Forgets which skips and failures of `d`'s stream and rule were audited, so that
    /// the next attempt's outcome is audited again (a retried kill).
    pub fn forget_reported(&mut self, d: &Decision) {
        let id = d.session.identity();
        self.reported
            .retain(|(s, r, _)| !(*s == id && *r == d.rule));
    }

    /// Whether the session was killed (or a kill of it sent, or in a dry run decided), by
    /// this process or any other on the same state.
    pub fn already_killed(&self, session_id: &str) -> bool {
        self.state
            .was_killed(session_id, self.mode(self.dry_run))
            .unwrap_or(false)
    }

    /// Records that a later poll no longer lists a killed stream, or still does.
    pub fn confirmed(&mut self, session_id: &str, gone: bool) {
        let outcome = if gone {
            KillOutcome::Confirmed
        } else {
            KillOutcome::Zombie
        };
        let at = self.now();
        let r = self.state.confirm_kill(session_id, outcome, at);
        self.wrote(r);
    }

    /// Applies one decision now and audits it.
    pub async fn apply(&mut self, d: &Decision) -> Applied {
        let dry = self.dry_run;
        self.apply_as(d, dry).await
    }

    /// As `apply`, in a dry run when `dry_run` even if the enforcer is armed (a webhook
    /// request's `dryRun`).
    pub async fn apply_as(&mut self, d: &Decision, dry_run: bool) -> Applied {
        let applied = self.decide(d, dry_run || self.dry_run).await;
        self.audit_applied(d, applied, dry_run || self.dry_run)
    }

    /// Applies one decision made `at` into the run (packet time for a replay).
    pub async fn apply_at(&mut self, d: &Decision, at: Duration) -> Applied {
        self.wall_clock = false;
        self.clock_at = self
            .clock_at
            .max(i64::try_from(at.as_micros()).unwrap_or(i64::MAX));
        self.apply(d).await
    }

    fn audit_applied(&mut self, d: &Decision, applied: Applied, dry_run: bool) -> Applied {
        if applied == Applied::AlreadyKilled {
            return applied;
        }
        let (action, reason) = (applied.action(), applied.reason().map(str::to_string));
        if let Some(r) = &reason {
            let key = (d.session.identity(), d.rule.clone(), r.clone());
            if !self.reported.insert(key) {
                return applied;
            }
        }
        match &applied {
            Applied::Failed(r) => {
                tracing::error!(rule = %escape(&d.rule), session = d.session.session_id.as_deref().unwrap_or("-"), "kill failed: {}", escape(r))
            }
            Applied::Skipped(r) => {
                tracing::warn!(rule = %escape(&d.rule), session = d.session.session_id.as_deref().unwrap_or("-"), "kill skipped: {}", escape(r))
            }
            _ => {}
        }
        self.note_as(d, action, reason, dry_run);
        applied
    }

    /// Applies a throttle decision: the same exemptions, estimate rule and dry run as a
    /// kill (no kill budget: nothing is stopped), then `put_on` (the shaper), and audits
    /// what became of it. A skip or failure that keeps recurring is audited once.
    pub fn apply_throttle(
        &mut self,
        d: &Decision,
        put_on: impl FnOnce() -> Result<(), String>,
    ) -> Applied {
        let applied = if self.is_exempt(&d.session) {
            Applied::ThrottleSkipped(format!(
                "user {} is exempt",
                d.session.user.as_deref().unwrap_or("?")
            ))
        } else if d.estimated && !self.act_on_estimates {
            Applied::ThrottleSkipped(
                "the measured figure is an estimate (several streams share the address); set [enforce] act_on_estimates = true to act on estimates".into(),
            )
        } else if self.dry_run {
            Applied::WouldThrottle
        } else {
            match put_on() {
                Ok(()) => Applied::Throttled,
                Err(e) => Applied::ThrottleFailed(e),
            }
        };
        if let Some(r) = applied.reason() {
            let key = (d.session.identity(), d.rule.clone(), r.to_string());
            if !self.reported.insert(key) {
                return applied;
            }
            tracing::warn!(rule = %escape(&d.rule), session = d.session.session_id.as_deref().unwrap_or("-"), "{}", applied.describe(d));
        } else {
            tracing::info!("{}", applied.describe(d));
        }
        self.note(d, applied.action(), applied.reason().map(str::to_string));
        applied
    }

    /// Audits something that happened to a stream after a decision (a zombie, a stopped
    /// transcode).
    pub fn note(&mut self, d: &Decision, action: AuditAction, reason: Option<String>) {
        let dry = self.dry_run;
        self.note_as(d, action, reason, dry);
    }

    fn note_as(&mut self, d: &Decision, action: AuditAction, reason: Option<String>, dry: bool) {
        let at = self.now();
        let record = Record {
            ts: audit::rfc3339(at),
            mode: self.mode(dry),
            action,
            rule: d.rule.clone(),
            session_id: d.session.session_id.clone(),
            session_key: d.session.session_key.clone(),
            user: d.session.user.clone(),
            address: d.session.address.clone(),
            title: Some(d.session.display_title()),
            message: d.message.clone(),
            values: values_json(&d.values),
            missing: Vec::new(),
            estimated: d.estimated,
            reason,
            rate: d.throttle.map(|t| t.rate_text()),
            vars: d.vars.clone(),
        };
        let stored = self.state.insert_audit(&record.row(at));
        self.wrote(stored);
        if let Err(e) = self.audit.write(&record) {
            tracing::error!(error = %e, path = ?self.audit.path(), "cannot write the audit log");
        }
    }

    /// Audits something that concerns no stream (a risky reload): in the state, the JSONL
    /// export and to the notify targets.
    pub fn record_event(&mut self, action: AuditAction, rule: &str, message: String) {
        let at = self.now();
        let mut record = Record::state_down("", self.mode(self.dry_run));
        record.ts = audit::rfc3339(at);
        record.action = action;
        record.rule = rule.to_string();
        record.message = message;
        record.reason = None;
        let stored = self.state.insert_audit(&record.row(at));
        self.wrote(stored);
        if let Err(e) = self.audit.write(&record) {
            tracing::error!(error = %e, path = ?self.audit.path(), "cannot write the audit log");
        }
    }

    /// Records closed minutes of usage in the state, rolling minutes older than
    /// `minutes_before` up to hours and dropping rows older than `drop_before` (unix
    /// seconds) when given.
    pub fn record_usage(
        &mut self,
        rows: &[crate::state::usage::UsageRow],
        roll_up: Option<(i64, i64)>,
    ) {
        let mut result = self.state.record_usage(rows);
        if let (Ok(()), Some((minutes_before, drop_before))) = (&result, roll_up) {
            result = self.state.roll_up_usage(minutes_before, drop_before);
        }
        self.wrote(result);
    }

    /// Each user's recorded usage since each of `since` (unix seconds).
    pub fn usage_since(&self, since: &[i64]) -> Vec<(String, Vec<crate::state::usage::Since>)> {
        self.state.usage_since(since).unwrap_or_else(|e| {
            tracing::warn!("cannot read the usage totals: {e}");
            Vec::new()
        })
    }

    /// Keeps track of whether the state can be written: said once at ERROR when it cannot
    /// (and told to the notify targets), once at INFO when it can again.
    fn wrote(&mut self, result: Result<(), StateError>) {
        match result {
            Ok(()) if self.state_down => {
                self.state_down = false;
                tracing::info!("the state database can be written again: kills resume");
            }
            Ok(()) => {}
            Err(e) => {
                self.state_failures += 1;
                if !self.state_down {
                    self.state_down = true;
                    tracing::error!(path = ?self.state.path(), "{e}: no kill is sent until it can be written");
                    self.audit
                        .tell(&Record::state_down(&e.to_string(), self.mode(self.dry_run)));
                }
            }
        }
    }

    async fn decide(&mut self, d: &Decision, dry_run: bool) -> Applied {
        if d.action == Action::Log {
            return Applied::Logged;
        }
        if d.action == Action::Throttle {
            // Here (a replay, the hook without a daemon) nothing keeps a throttle on: it
            // is a decision only.
            return self.apply_throttle_here(d);
        }
        if self.is_exempt(&d.session) {
            return Applied::Skipped(format!(
                "user {} is exempt",
                d.session.user.as_deref().unwrap_or("?")
            ));
        }
        let Some(id) = d.session.session_id.clone() else {
            // Nothing can be sent: not a failure of a kill, and not worth an error.
            return Applied::Skipped(
                "Plex gave no Session id for this stream (synced content, some Plexamp streams or an old server): it cannot be stopped".into(),
            );
        };
        let mode = self.mode(dry_run);
        match self.state.was_killed(&id, mode) {
            Ok(true) => {
                tracing::debug!(session = %escape(&id), "already killed; not killing twice");
                return Applied::AlreadyKilled;
            }
            Ok(false) => {}
            Err(e) => return self.state_refused(e),
        }
        if d.estimated && !self.act_on_estimates {
            return Applied::Skipped(
                "the measured figure is an estimate (several streams share the address); set [enforce] act_on_estimates = true to act on estimates".into(),
            );
        }
        if !dry_run {
            if self.preflight.is_none() {
                self.preflight = Some(self.terminator.preflight().await);
            }
            if let Some(Err(e)) = &self.preflight {
                return Applied::Failed(e.clone());
            }
        }
        let at = self.now();
        let intent = KillIntent {
            session_id: &id,
            mode,
            rule: &d.rule,
            at,
            max_per_minute: self.max_per_minute,
        };
        let kill = match self.state.begin_kill(&intent) {
            Ok(Begin::Go(kill)) => {
                self.wrote(Ok(()));
                kill
            }
            Ok(Begin::AlreadyKilled) => return Applied::AlreadyKilled,
            Ok(Begin::OverBudget) => {
                return Applied::Skipped(format!(
                    "kill budget exhausted: max_kills_per_minute = {} already used in the last minute",
                    self.max_per_minute
                ));
            }
            Err(e) => return self.state_refused(e),
        };
        if dry_run {
            return Applied::WouldKill;
        }
        let (applied, outcome) = match self.terminator.terminate(&id, &d.message).await {
            Ok(()) => (Applied::Killed, KillOutcome::Killed),
            Err(e) => (Applied::Failed(e), KillOutcome::Failed),
        };
        let at = self.now();
        let r = self.state.end_kill(kill, outcome, at);
        self.wrote(r);
        applied
    }

    /// A kill refused because the state cannot be written (or read).
    fn state_refused(&mut self, e: StateError) -> Applied {
        let reason = format!("{e}: no kill is sent until the state database can be written");
        self.wrote(Err(e));
        Applied::Skipped(reason)
    }
}

impl<T: Terminator> Enforcer<T> {
    fn apply_throttle_here(&mut self, d: &Decision) -> Applied {
        if self.dry_run {
            return if self.is_exempt(&d.session) {
                Applied::ThrottleSkipped(format!(
                    "user {} is exempt",
                    d.session.user.as_deref().unwrap_or("?")
                ))
            } else {
                Applied::WouldThrottle
            };
        }
        Applied::ThrottleFailed(
            "a throttle is kept by the daemon (streamwarden run), which was not reached".into(),
        )
    }
}

fn values_json(values: &BTreeMap<&'static str, Option<Value>>) -> Map<String, Json> {
    values
        .iter()
        .map(|(k, v)| {
            let j = match v {
                None => Json::Null,
                Some(Value::Text(s)) => Json::String(s.clone()),
                Some(Value::Number(n)) => {
                    serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number)
                }
                Some(Value::Flag(b)) => Json::Bool(*b),
                Some(Value::List(l)) => Json::from(l.clone()),
            };
            (k.to_string(), j)
        })
        .collect()
}
