//! "Kill now" from the owner's page: the request goes to the loop, which owns the enforcer,
//! so a kill by hand meets the same exemptions, budget, never-twice, dry run and audit as a
//! rule's, and is confirmed by a later poll like any other.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::enforce::{Applied, Terminator, escape};
use crate::plex::{Session, SessionSource};
use crate::rules::{Action, DEFAULT_MESSAGE, Decision, Observed, Vars};
use crate::state::AuditAction;

use super::Metrics;
use super::kill::Kills;

/// The name a kill by hand is audited under, in place of a rule's.
pub const RULE: &str = "kill-now";

/// The longest message a kill by hand sends, in characters.
pub const MAX_MESSAGE: usize = 300;

/// Where the page, `POST /api/streams/throttle` and `POST /api/tautulli` send what they want
/// done: to the loop, which owns the one enforcer.
pub type Requests = mpsc::Sender<Request>;

/// Something to be done by the loop's enforcer.
#[derive(Debug)]
pub enum Request {
    /// Kill now (the page), or a throttle rule's throttle (the hook's rules mode).
    Kill(KillRequest),
    /// A decision of the hook run inside the daemon (`POST /api/tautulli`, its delayed and
    /// paused jobs too): applied by the loop's enforcer, in a dry run when `dry_run`.
    Apply {
        decision: Box<Decision>,
        dry_run: bool,
        reply: oneshot::Sender<Applied>,
    },
    /// An audit record of the hook run inside the daemon that is not a decision applied.
    Note {
        decision: Box<Decision>,
        action: AuditAction,
        reason: Option<String>,
        reply: oneshot::Sender<()>,
    },
}

/// The owner asks to stop one stream, or the hook asks for a throttle rule's throttle.
#[derive(Debug)]
pub struct KillRequest {
    pub session_id: String,
    /// What the viewer sees; the default message when none.
    pub message: Option<String>,
    /// Put this throttle rule's throttle on instead (the hook's rules mode): the daemon
    /// evaluates the rule on its own figures first.
    pub throttle_rule: Option<String>,
    pub reply: oneshot::Sender<KillAnswer>,
}

/// What became of a request: what the audit says of it, or why nothing was tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Applied: the audit's name for what became of it.
    Did(AuditAction),
    /// Plex does not list the stream.
    NotFound,
    AlreadyThrottled,
    NoSuchRule,
    /// The rule does not hold on the daemon's figures.
    NotMatching,
}

impl Answer {
    pub const fn as_str(self) -> &'static str {
        match self {
            Answer::Did(a) => a.as_str(),
            Answer::NotFound => "not-found",
            Answer::AlreadyThrottled => "already-throttled",
            Answer::NoSuchRule => "no-such-rule",
            Answer::NotMatching => "not-matching",
        }
    }

    /// The HTTP status the page's APIs answer it with.
    pub fn status(self) -> axum::http::StatusCode {
        use AuditAction as A;
        use axum::http::StatusCode as S;
        match self {
            Answer::Did(A::Kill | A::WouldKill | A::Throttle | A::WouldThrottle | A::Log) => S::OK,
            Answer::NotFound | Answer::NoSuchRule => S::NOT_FOUND,
            Answer::Did(A::KillFailed | A::ThrottleFailed) => S::BAD_GATEWAY,
            Answer::Did(
                A::KillSkipped
                | A::AlreadyKilled
                | A::ThrottleSkipped
                | A::Zombie
                | A::TranscodeStopped
                | A::Unthrottle
                | A::RiskyReload
                | A::Warn,
            )
            | Answer::AlreadyThrottled
            | Answer::NotMatching => S::CONFLICT,
        }
    }
}

impl Serialize for Answer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What became of a kill by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KillAnswer {
    pub outcome: Answer,
    /// One line for people.
    pub said: String,
}

/// The message as sent: trimmed, control characters dropped, at most [`MAX_MESSAGE`].
pub fn message(given: Option<&str>) -> String {
    let text: String = given
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        DEFAULT_MESSAGE.to_string()
    } else {
        text.to_string()
    }
}

/// Carries out one request against the latest poll's `sessions`, and answers it.
pub(super) async fn handle<P: SessionSource + Terminator>(
    req: KillRequest,
    kills: &mut Kills<P>,
    sessions: &[Session],
    clock: &dyn super::Clock,
    metrics: &Metrics,
) {
    let Some(session) = sessions
        .iter()
        .find(|s| s.session_id.as_deref() == Some(req.session_id.as_str()))
    else {
        let _ = req.reply.send(KillAnswer {
            outcome: Answer::NotFound,
            said: format!("Plex does not list session {} now", escape(&req.session_id)),
        });
        return;
    };
    let d = Decision {
        rule: RULE.to_string(),
        action: Action::Kill,
        session: session.clone(),
        message: message(req.message.as_deref()),
        values: BTreeMap::new(),
        estimated: false,
        vars: Vars::for_session(session, sessions, &Observed::default()),
        throttle: None,
    };
    tracing::info!(session = %escape(&req.session_id), "kill asked for from the page");
    let applied = kills.by_hand(&d, false, clock, metrics).await;
    let outcome = Answer::Did(applied.action());
    let _ = req.reply.send(KillAnswer {
        outcome,
        said: applied.describe(&d),
    });
}
