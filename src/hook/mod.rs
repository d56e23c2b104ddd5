//! Tautulli's script notifier: kill_stream.py's modes (`--jbop stream|allStreams|paused`)
//! and rules mode (`--session-id ID`: the configured rules applied to one live session).
//!
//! Every kill goes through the same enforcer as the daemon: dry run, audit, exemptions, the
//! kill budget and never-twice all apply.

pub mod args;
pub mod daemon_client;
pub mod listing;
pub mod message;
mod modes;
pub mod notify;
pub mod tautulli;

use std::future::Future;
use std::time::Duration;

use crate::Failure;
use crate::enforce::{Applied, Enforcer, escape};
use crate::plex::PlexClient;
use crate::rules::{Decision, RuleSet};
use crate::state::AuditAction;

pub use args::{HookArgs, Jbop};
pub use tautulli::TautulliEnv;

use message::KillKind;
use notify::Killed;

/// What the hook says as it goes: information for stdout, warnings and errors for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Say {
    Info(String),
    Warn(String),
    Error(String),
}

impl Say {
    /// The same, with outside data escaped so that it stays on one line.
    fn escaped(self) -> Say {
        let e = |s: String| escape(&s).into_owned();
        match self {
            Say::Info(s) => Say::Info(e(s)),
            Say::Warn(s) => Say::Warn(e(s)),
            Say::Error(s) => Say::Error(e(s)),
        }
    }
}

/// What to do, worked out from the arguments before Plex is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Apply the configured rules to this session.
    Rules(String),
    /// Kill this session.
    Stream(String),
    /// Kill every stream of a user (by id, else by name).
    AllStreams {
        user_id: Option<String>,
        username: Option<String>,
    },
    /// Watch this session; kill it once paused for `limit`.
    Paused {
        id: String,
        limit: Duration,
        interval: Duration,
    },
}

/// A planned hook run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    /// The message the viewer sees (jbop modes).
    pub message: String,
    /// Wait this long, then re-check, before acting.
    pub delay: Option<Duration>,
    /// Whom to tell of the kills through Tautulli (`--notify`).
    pub notify: notify::Spec,
}

/// How a hook run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked was done (nothing to do counts).
    Done,
    /// A kill failed.
    KillFailed,
}

/// What the hook acts through: its own enforcer (a process per Tautulli event, on the
/// shared state database), or the daemon's one enforcer (`POST /api/tautulli`), so that
/// every path that kills shares one never-twice, one budget and one audit.
pub trait Act: Send {
    /// The Plex client sessions are read with.
    fn plex(&self) -> &PlexClient;
    fn dry_run(&self) -> bool;
    /// Applies one decision and audits it.
    fn apply(&mut self, d: &Decision) -> impl Future<Output = Applied> + Send;
    /// Audits something that is not a decision applied (a stream that cannot be stopped).
    fn note(
        &mut self,
        d: &Decision,
        action: AuditAction,
        reason: Option<String>,
    ) -> impl Future<Output = ()> + Send;
}

impl Act for Enforcer<PlexClient> {
    fn plex(&self) -> &PlexClient {
        self.terminator()
    }
    fn dry_run(&self) -> bool {
        Enforcer::dry_run(self)
    }
    fn apply(&mut self, d: &Decision) -> impl Future<Output = Applied> + Send {
        Enforcer::apply(self, d)
    }
    async fn note(&mut self, d: &Decision, action: AuditAction, reason: Option<String>) {
        Enforcer::note(self, d, action, reason);
    }
}

/// What the hook works with.
pub struct Context<'a, A: Act> {
    pub enforcer: &'a mut A,
    pub rules: &'a RuleSet,
    /// A running daemon's HTTP endpoint, for measured figures in rules mode.
    pub daemon: Option<std::net::SocketAddr>,
    /// The token the daemon's endpoint requires.
    pub daemon_token: Option<crate::config::Secret>,
    /// Where `--notify` reaches Tautulli.
    pub tautulli: TautulliEnv,
}

/// `streamwarden hook`: plans the run from `args`, then carries it out with an enforcer on
/// the state database the daemon shares. When that database cannot be opened, the run is
/// handed to the running daemon (`[http] listen`), whose one enforcer acts; with no daemon
/// either, it runs with a state of its own for this run, and says what that costs.
pub async fn command(
    args: &HookArgs,
    mut config: crate::config::Config,
    say: &mut dyn FnMut(Say),
) -> Result<Outcome, Failure> {
    use crate::engine::open;
    use crate::notify::{Delivery, Notifier};
    if args.dry_run {
        config.enforce.dry_run = true;
    }
    let rules = open::compile(&config)?;
    let plan = args.plan(!rules.is_empty(), config.source.file.as_deref())?;
    for w in args.warnings(&plan) {
        say(Say::Warn(w));
    }
    open::warn(&config);
    let client = open::plex_client(&config)?;
    let state = match open::hook_state(&config) {
        Ok(s) => s,
        Err(e) => {
            if let Some(listen) = config.http.listen {
                match daemon_client::hand_over(listen, config.http.token.as_ref(), args).await {
                    Ok(handed) => return Ok(said_by_daemon(handed, listen, say)),
                    Err(why) => say(Say::Warn(format!("{e}; and {why}"))),
                }
            }
            say(Say::Warn(format!(
                "{e}; never-twice and the kill budget cover this run only"
            )));
            crate::state::State::memory()
        }
    };
    let notify = Notifier::from_config(&config, Delivery::HOOK)?;
    let audit = open::open_audit(&config)?.with_sink(notify.as_ref().map(Notifier::sink));
    let mut enforcer = Enforcer::new(client, &config.enforce, state, audit);
    let cx = Context {
        enforcer: &mut enforcer,
        rules: &rules,
        daemon: config.http.listen,
        daemon_token: config.http.token.clone(),
        tautulli: TautulliEnv::from_env(),
    };
    let outcome = run(&plan, cx, say).await;
    // [[notify]] has been sending since the first kill; what is left gets a few seconds,
    // so that a dead target cannot hold the hook near Tautulli's timeout.
    if let Some(n) = notify {
        for p in n.finish(crate::notify::HOOK_FINISH).await.problems() {
            say(Say::Warn(p));
        }
    }
    outcome
}

/// The daemon's answer to a handed-over run, said line by line.
fn said_by_daemon(
    handed: daemon_client::Handed,
    listen: std::net::SocketAddr,
    say: &mut dyn FnMut(Say),
) -> Outcome {
    say(Say::Info(format!(
        "handed to the daemon at {listen} (its state and budget apply)"
    )));
    for (level, text) in handed.lines {
        say(match level.as_str() {
            "error" => Say::Error(text),
            "warning" => Say::Warn(text),
            _ => Say::Info(text),
        }
        .escaped());
    }
    if handed.outcome == "kill-failed" {
        Outcome::KillFailed
    } else {
        Outcome::Done
    }
}

/// Carries out `plan`, telling `say` what happens. Every line said, and the failure
/// returned, may carry outside data (Plex's names and titles, Tautulli's ids, the message):
/// it is escaped, so that each stays one line of Tautulli's log.
pub async fn run<A: Act>(
    plan: &Plan,
    cx: Context<'_, A>,
    say: &mut dyn FnMut(Say),
) -> Result<Outcome, Failure> {
    let mut escaped = |s: Say| say(s.escaped());
    run_plan(plan, cx, &mut escaped).await.map_err(|f| match f {
        Failure::Usage(m) => Failure::Usage(escape(&m).into_owned()),
        Failure::Failed(m) => Failure::Failed(escape(&m).into_owned()),
    })
}

async fn run_plan<A: Act>(
    plan: &Plan,
    cx: Context<'_, A>,
    say: &mut dyn FnMut(Say),
) -> Result<Outcome, Failure> {
    let Context {
        enforcer,
        rules,
        daemon,
        daemon_token,
        tautulli,
    } = cx;
    let message = plan.message.as_str();
    let mut killed: Vec<Killed> = Vec::new();
    let (kind, done) = match &plan.mode {
        Mode::Rules(id) => {
            let cx = modes::RulesCx {
                enforcer,
                rules,
                daemon,
                daemon_token,
            };
            let done = modes::rules(cx, id, plan.delay, say, &mut killed).await;
            (KillKind::Stream, done)
        }
        Mode::Stream(id) => {
            let done = modes::stream(enforcer, id, message, plan.delay, say, &mut killed).await;
            (KillKind::Stream, done)
        }
        Mode::AllStreams { user_id, username } => {
            let who = modes::Who {
                user_id: user_id.as_deref(),
                username: username.as_deref(),
            };
            let done =
                modes::all_streams(enforcer, who, message, plan.delay, say, &mut killed).await;
            (KillKind::AllStreams, done)
        }
        Mode::Paused {
            id,
            limit,
            interval,
        } => {
            let timing = modes::Watch {
                limit: *limit,
                interval: *interval,
            };
            let done = modes::paused(enforcer, id, message, timing, say, &mut killed).await;
            (KillKind::Paused, done)
        }
    };
    // Only after the kills, so that a slow Tautulli never delays one; whatever became
    // of the notifications, the outcome is the kills'.
    notify::send(&plan.notify, kind, &killed, &tautulli, say).await;
    done
}
