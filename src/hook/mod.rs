//! Tautulli's script notifier: kill_stream.py's modes (`--jbop stream|allStreams|paused`)
//! and rules mode (`--session-id ID`: the configured rules applied to one live session).
//!
//! Every kill goes through the same enforcer as the daemon: dry run, audit, exemptions, the
//! kill budget and never-twice all apply.

pub mod args;
pub mod daemon_client;
pub mod message;
mod modes;
pub mod tautulli;

use std::time::Duration;

use crate::Failure;
use crate::enforce::{Enforcer, escape};
use crate::plex::PlexClient;
use crate::rules::RuleSet;

pub use args::{HookArgs, Jbop};

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
}

/// How a hook run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked was done (nothing to do counts).
    Done,
    /// A kill failed.
    KillFailed,
}

/// What the hook works with.
pub struct Context<'a> {
    pub enforcer: &'a mut Enforcer<PlexClient>,
    pub rules: &'a RuleSet,
    /// A running daemon's HTTP endpoint, for measured figures in rules mode.
    pub daemon: Option<std::net::SocketAddr>,
}

/// Carries out `plan`, telling `say` what happens. Every line said, and the failure
/// returned, may carry outside data (Plex's names and titles, Tautulli's ids, the message):
/// it is escaped, so that each stays one line of Tautulli's log.
pub async fn run(
    plan: &Plan,
    cx: Context<'_>,
    say: &mut dyn FnMut(Say),
) -> Result<Outcome, Failure> {
    let mut escaped = |s: Say| say(s.escaped());
    run_plan(plan, cx, &mut escaped).await.map_err(|f| match f {
        Failure::Usage(m) => Failure::Usage(escape(&m).into_owned()),
        Failure::Failed(m) => Failure::Failed(escape(&m).into_owned()),
    })
}

async fn run_plan(
    plan: &Plan,
    cx: Context<'_>,
    say: &mut dyn FnMut(Say),
) -> Result<Outcome, Failure> {
    let message = plan.message.as_str();
    match &plan.mode {
        Mode::Rules(id) => modes::rules(cx, id, plan.delay, say).await,
        Mode::Stream(id) => modes::stream(cx.enforcer, id, message, plan.delay, say).await,
        Mode::AllStreams { user_id, username } => {
            let who = modes::Who {
                user_id: user_id.as_deref(),
                username: username.as_deref(),
            };
            modes::all_streams(cx.enforcer, who, message, plan.delay, say).await
        }
        Mode::Paused {
            id,
            limit,
            interval,
        } => modes::paused(cx.enforcer, id, message, *limit, *interval, say).await,
    }
}
