//! The hook's four modes.

use std::time::Duration;

use crate::Failure;
use crate::enforce::Applied;
use crate::engine::{self, Clock, Pauses, SystemClock};
use crate::plex::{ONE_SHOT_BUDGET, Session};
use crate::rules::{Action, Decision, Observed, Outcome as RuleOutcome, RuleSet, Vars};

use super::notify::Killed;
use super::{Act, Outcome, Say, daemon_client};

/// Whose streams allStreams kills.
pub(super) struct Who<'a> {
    pub user_id: Option<&'a str>,
    pub username: Option<&'a str>,
}

/// What rules mode works with.
pub(super) struct RulesCx<'a, A: Act> {
    pub enforcer: &'a mut A,
    pub rules: &'a RuleSet,
    pub daemon: Option<std::net::SocketAddr>,
    pub daemon_token: Option<crate::config::Secret>,
}

/// paused's timing.
pub(super) struct Watch {
    pub limit: Duration,
    pub interval: Duration,
}

/// Reads the sessions, the start of each step (after any delay; each poll of paused). A
/// step's Plex requests, from this read to the kill, get `ONE_SHOT_BUDGET` in all, so that
/// a slow Plex fails the step with its reason inside Tautulli's script timeout.
async fn read_sessions<A: Act>(enforcer: &A) -> Result<Vec<Session>, Failure> {
    let plex = enforcer.plex();
    plex.set_budget(Some(ONE_SHOT_BUDGET));
    plex.sessions()
        .await
        .map_err(|e| Failure::Failed(e.to_string()))
}

async fn wait(delay: Option<Duration>, say: &mut dyn FnMut(Say)) {
    if let Some(d) = delay.filter(|d| !d.is_zero()) {
        say(Say::Info(format!("waiting {}s before acting", d.as_secs())));
        tokio::time::sleep(d).await;
    }
}

/// Applies decisions and says what happened; a failed kill makes the outcome a failure.
/// What was killed (or in a dry run would have been) goes to `killed`.
async fn apply_all<A: Act>(
    enforcer: &mut A,
    decisions: &[Decision],
    say: &mut dyn FnMut(Say),
    killed: &mut Vec<Killed>,
) -> Outcome {
    let mut outcome = Outcome::Done;
    for d in decisions {
        let applied = enforcer.apply(d).await;
        if matches!(applied, Applied::Killed | Applied::WouldKill) {
            killed.push(Killed {
                decision: d.clone(),
                dry_run: applied == Applied::WouldKill,
            });
        }
        let line = applied.describe(d);
        if applied.is_failure() {
            outcome = Outcome::KillFailed;
            say(Say::Error(line));
        } else {
            say(Say::Info(line));
        }
    }
    outcome
}

/// A kill asked for by name rather than by a rule; records what the stream was.
fn manual_decision(rule: &str, session: &Session, all: &[Session], message: &str) -> Decision {
    let vars = Vars::for_session(session, all, &Observed::default());
    Decision {
        rule: rule.to_string(),
        action: Action::Kill,
        session: session.clone(),
        message: message.to_string(),
        values: [
            "user",
            "transcode_decision",
            "video_decision",
            "state",
            "stream_bitrate",
        ]
        .into_iter()
        .map(|k| (k, vars.get(k).cloned()))
        .collect(),
        estimated: false,
        vars,
        throttle: None,
    }
}

pub(super) async fn stream<A: Act>(
    enforcer: &mut A,
    id: &str,
    message: &str,
    delay: Option<Duration>,
    say: &mut dyn FnMut(Say),
    killed: &mut Vec<Killed>,
) -> Result<Outcome, Failure> {
    wait(delay, say).await;
    let sessions = read_sessions(enforcer).await?;
    let Some(session) = sessions
        .iter()
        .find(|s| s.session_id.as_deref() == Some(id))
    else {
        if delay.is_some() {
            say(Say::Info(format!(
                "session {id} ended during the delay: nothing to do"
            )));
            return Ok(Outcome::Done);
        }
        return Err(Failure::Failed(format!(
            "could not kill session {id}: Plex lists no such session (it ended, or the id is wrong)"
        )));
    };
    let d = manual_decision("jbop:stream", session, &sessions, message);
    Ok(apply_all(enforcer, &[d], say, killed).await)
}

pub(super) async fn all_streams<A: Act>(
    enforcer: &mut A,
    who: Who<'_>,
    message: &str,
    delay: Option<Duration>,
    say: &mut dyn FnMut(Say),
    killed: &mut Vec<Killed>,
) -> Result<Outcome, Failure> {
    wait(delay, say).await;
    let sessions = read_sessions(enforcer).await?;
    let wanted: Vec<&Session> = sessions
        .iter()
        .filter(|s| match who.user_id {
            Some(id) => s.user_id.map(|u| u.to_string()).as_deref() == Some(id.trim()),
            None => s
                .user
                .as_deref()
                .zip(who.username)
                .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b.trim())),
        })
        .collect();
    if wanted.is_empty() {
        say(Say::Info(format!(
            "no streams of user {}: nothing to do",
            who.user_id.or(who.username).unwrap_or("?")
        )));
        return Ok(Outcome::Done);
    }
    // What Plex cannot stop is skipped with a note: only a stoppable stream whose kill
    // failed makes the run a failure.
    let mut outcome = Outcome::Done;
    for s in wanted {
        let d = manual_decision("jbop:allStreams", s, &sessions, message);
        if !s.killable() {
            skip_unstoppable(enforcer, &d, say).await;
        } else if apply_all(enforcer, std::slice::from_ref(&d), say, killed).await
            == Outcome::KillFailed
        {
            outcome = Outcome::KillFailed;
        }
    }
    Ok(outcome)
}

/// Notes and audits a stream Plex gave no Session id: there is nothing to terminate.
async fn skip_unstoppable<A: Act>(enforcer: &mut A, d: &Decision, say: &mut dyn FnMut(Say)) {
    let skipped = Applied::Skipped(
        "Plex gave it no Session id (a photo, some Plexamp streams, synced content or an old server), so it cannot be stopped".into(),
    );
    enforcer
        .note(d, skipped.action(), skipped.reason().map(str::to_string))
        .await;
    say(Say::Info(skipped.describe(d)));
}

pub(super) async fn paused<A: Act>(
    enforcer: &mut A,
    id: &str,
    message: &str,
    Watch { limit, interval }: Watch,
    say: &mut dyn FnMut(Say),
    killed: &mut Vec<Killed>,
) -> Result<Outcome, Failure> {
    // Said at once, so that a run Tautulli's timeout stops leaves a trace of what it was.
    say(Say::Info(format!(
        "watching session {id}: killed once paused for {} s, checked every {} s",
        limit.as_secs(),
        interval.as_secs()
    )));
    let clock = SystemClock;
    let mut pauses = Pauses::default();
    let mut watched = false;
    loop {
        let sessions = read_sessions(enforcer).await?;
        let Some(i) = sessions
            .iter()
            .position(|s| s.session_id.as_deref() == Some(id))
        else {
            say(Say::Info(format!("session {id} ended: stopped watching")));
            return Ok(Outcome::Done);
        };
        let session = &sessions[i];
        let paused_for = pauses.observe(std::slice::from_ref(session), clock.now())[0];
        if !session.is_paused() {
            let state = session
                .state
                .as_ref()
                .map_or("in an unknown state", |s| s.as_str());
            say(Say::Info(if watched {
                format!("session {id} resumed ({state}): stopped watching")
            } else {
                format!("session {id} is {state}, not paused: nothing to do")
            }));
            return Ok(Outcome::Done);
        }
        watched = true;
        let held = Duration::try_from_secs_f64(paused_for).unwrap_or_default();
        if held >= limit {
            let d = manual_decision("jbop:paused", session, &sessions, message);
            return Ok(apply_all(enforcer, &[d], say, killed).await);
        }
        tokio::time::sleep(interval.min(limit - held)).await;
    }
}

pub(super) async fn rules<A: Act>(
    mut cx: RulesCx<'_, A>,
    id: &str,
    delay: Option<Duration>,
    say: &mut dyn FnMut(Say),
    killed: &mut Vec<Killed>,
) -> Result<Outcome, Failure> {
    wait(delay, say).await;
    let plex = cx.enforcer.plex();
    let mut sessions = read_sessions(cx.enforcer).await?;
    let Some(pos) = sessions
        .iter()
        .position(|s| s.session_id.as_deref() == Some(id))
    else {
        say(Say::Info(format!(
            "session {id} is not playing: nothing to do"
        )));
        return Ok(Outcome::Done);
    };
    plex.fill_source(&mut sessions[pos]).await;
    // With a daemon running, rules see its real measured bandwidth too.
    let measured = match cx.daemon {
        Some(addr) => daemon_client::measured(addr, cx.daemon_token.as_ref(), id).await,
        None => None,
    };
    if let (Some(_), Some(addr)) = (measured, cx.daemon) {
        say(Say::Info(format!(
            "measured figures from the daemon at {addr}"
        )));
    }
    let observed = Observed {
        measured,
        ..Observed::default()
    };
    let eval = engine::evaluate_one(cx.rules, &sessions, pos, &observed, None);
    for ev in &eval.evaluations {
        let verdict = match &ev.outcome {
            RuleOutcome::Match => "matches".to_string(),
            RuleOutcome::NoMatch => "does not match".to_string(),
            RuleOutcome::Unknown { missing } => {
                format!("does not match: unknown {}", missing.join(", "))
            }
            RuleOutcome::Error(m) => format!("could not be evaluated: {m}"),
        };
        say(Say::Info(format!("rule {:?} {verdict}", ev.rule.name)));
    }
    let (throttles, others): (Vec<Decision>, Vec<Decision>) = eval
        .decisions()
        .into_iter()
        .partition(|d| d.action == Action::Throttle);
    let mut outcome = apply_all(cx.enforcer, &others, say, killed).await;
    for d in &throttles {
        if ask_daemon_to_throttle(&mut cx, d, say).await.is_err() {
            outcome = Outcome::KillFailed;
        }
    }
    Ok(outcome)
}

/// A throttle rule matched: the daemon keeps throttles, so it is asked to put it on (in a
/// dry run, or with no daemon, the hook's own enforcer audits it: would-throttle, or a
/// failure saying the daemon was not reached).
async fn ask_daemon_to_throttle<A: Act>(
    cx: &mut RulesCx<'_, A>,
    d: &Decision,
    say: &mut dyn FnMut(Say),
) -> Result<(), ()> {
    let (Some(addr), false, Some(id)) = (
        cx.daemon,
        cx.enforcer.dry_run(),
        d.session.session_id.as_deref(),
    ) else {
        let applied = cx.enforcer.apply(d).await;
        let line = applied.describe(d);
        return if matches!(applied, Applied::ThrottleFailed(_)) {
            say(Say::Error(line));
            Err(())
        } else {
            say(Say::Info(line));
            Ok(())
        };
    };
    match daemon_client::throttle(addr, cx.daemon_token.as_ref(), id, &d.rule).await {
        Ok((outcome, said)) => {
            let line = format!("the daemon at {addr}: {said}");
            if outcome == "throttle-failed" {
                say(Say::Error(line));
                Err(())
            } else {
                say(Say::Info(line));
                Ok(())
            }
        }
        Err(e) => {
            let applied = Applied::ThrottleFailed(e);
            cx.enforcer
                .note(d, applied.action(), applied.reason().map(str::to_string))
                .await;
            say(Say::Error(applied.describe(d)));
            Err(())
        }
    }
}
