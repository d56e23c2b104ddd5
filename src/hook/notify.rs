//! kill_stream.py's `--notify`: after the kills, one Tautulli notify call per killed
//! stream and notifier. A notification that fails is said on stderr; it never undoes a
//! kill nor changes the outcome, and all of them together take at most `BUDGET`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::Say;
use super::message::{self, KillKind, Look, Note, RichKind};
use super::tautulli::{Tautulli, TautulliEnv, TautulliError};
use crate::rules::Decision;

/// The longest one call to Tautulli may take.
pub const PER_CALL: Duration = Duration::from_secs(4);
/// The longest all notifications of one run may take together, so that the hook stays
/// well inside Tautulli's 30-second script timeout.
pub const BUDGET: Duration = Duration::from_secs(8);

/// Whom to notify, and how: from `--notify`, `--username` and the rich options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    /// Tautulli notifier ids, in order, each once.
    pub ids: Vec<String>,
    /// `--username`: names the user in the plain body.
    pub username: Option<String>,
    /// `--richMessage` and its look; `None` sends the plain text.
    pub look: Option<Look>,
}

/// A stream the hook stopped, or in a dry run would have stopped.
#[derive(Debug, Clone)]
pub struct Killed {
    pub decision: Decision,
    pub dry_run: bool,
}

/// A Tautulli notifier id: a whole number from 1 (kill_stream.py takes an int and sends
/// nothing for 0).
pub fn notifier_id(v: &str) -> Option<String> {
    let v = v.trim();
    let n: u32 = v
        .parse()
        .ok()
        .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))?;
    (n > 0).then(|| n.to_string())
}

/// The rich message kind from the `--richMessage` words, with warnings about the rest.
pub fn rich_kind(words: &[String], warn: &mut Vec<String>) -> Option<RichKind> {
    let mut kind: Option<RichKind> = None;
    for w in words {
        match (RichKind::parse(w), kind) {
            (None, _) => warn.push(format!(
                "--richMessage {:?} is neither discord nor slack; it is ignored",
                w
            )),
            (Some(k), None) => kind = Some(k),
            (Some(k), Some(first)) if k != first => warn.push(format!(
                "--richMessage names both {} and {}; using {}",
                first.as_str(),
                k.as_str(),
                first.as_str()
            )),
            _ => {}
        }
    }
    kind
}

fn session_name(d: &Decision) -> &str {
    d.session.session_id.as_deref().unwrap_or("-")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Sends the notifications for `killed` (by `kind`) that `spec` asks for.
pub async fn send(
    spec: &Spec,
    kind: KillKind,
    killed: &[Killed],
    env: &TautulliEnv,
    say: &mut dyn FnMut(Say),
) {
    if spec.ids.is_empty() {
        return;
    }
    let (dry, real): (Vec<&Killed>, Vec<&Killed>) = killed.iter().partition(|k| k.dry_run);
    for k in dry {
        for id in &spec.ids {
            say(Say::Info(format!(
                "dry run: would notify Tautulli notifier {id} of the kill of session {} (not sent)",
                session_name(&k.decision)
            )));
        }
    }
    if real.is_empty() {
        return;
    }
    let wanted = real.len() * spec.ids.len();
    let tautulli = match Tautulli::new(env) {
        Ok(t) => t,
        Err(e) => {
            say(Say::Error(format!(
                "{wanted} Tautulli notification{} not sent: {e}",
                plural(wanted)
            )));
            return;
        }
    };
    let deadline = Instant::now() + BUDGET;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .min(PER_CALL)
    };
    // Once Tautulli does not answer, the rest would only wait again.
    let mut down: Option<TautulliError> = None;
    let names = match &spec.look {
        Some(_) => friendly_names(&tautulli, &real, &left, &mut down).await,
        None => HashMap::new(),
    };
    let (mut unsent, mut tried) = (0usize, 0usize);
    for k in &real {
        let d = &k.decision;
        let note = build(spec, kind, d, &names, env);
        for id in &spec.ids {
            let timeout = left();
            if down.is_some() || timeout.is_zero() {
                unsent += 1;
                continue;
            }
            let sid = session_name(d);
            tried += 1;
            match tautulli
                .notify(id, note.subject.as_deref(), &note.body, timeout)
                .await
            {
                Ok(()) => say(Say::Info(format!(
                    "notified Tautulli notifier {id} of the kill of session {sid}"
                ))),
                Err(e) => {
                    say(Say::Error(format!(
                        "could not notify Tautulli notifier {id} of the kill of session {sid}: {e}"
                    )));
                    if e.is_unreachable() {
                        down = Some(e);
                    }
                }
            }
        }
    }
    if unsent > 0 {
        let why = match &down {
            Some(e) => e.to_string(),
            None => format!("notifications may take {}s in all", BUDGET.as_secs()),
        };
        let more = if tried > 0 { " more" } else { "" };
        say(Say::Error(format!(
            "{unsent}{more} Tautulli notification{} not sent: {why}",
            plural(unsent)
        )));
    }
}

/// Tautulli's friendly names of the killed streams' users, as kill_stream.py's rich
/// message shows them. The server owner is Plex user 1 in a session but has another id
/// in Tautulli, so Plex's name stands. Best effort: a user Tautulli cannot name keeps
/// Plex's name.
async fn friendly_names(
    tautulli: &Tautulli,
    killed: &[&Killed],
    left: &dyn Fn() -> Duration,
    down: &mut Option<TautulliError>,
) -> HashMap<i64, String> {
    let mut names = HashMap::new();
    let mut asked = Vec::new();
    for k in killed {
        let Some(id) = k.decision.session.user_id.filter(|&id| id != 1) else {
            continue;
        };
        let timeout = left();
        if asked.contains(&id) || down.is_some() || timeout.is_zero() {
            continue;
        }
        asked.push(id);
        match tautulli.friendly_name(id, timeout).await {
            Ok(Some(name)) => {
                names.insert(id, name);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!("no friendly name for user {id}: {e}");
                if e.is_unreachable() {
                    *down = Some(e);
                }
            }
        }
    }
    names
}

/// The notify call's subject and body for one killed stream.
fn build(
    spec: &Spec,
    kind: KillKind,
    d: &Decision,
    names: &HashMap<i64, String>,
    env: &TautulliEnv,
) -> Note {
    let s = &d.session;
    let Some(look) = &spec.look else {
        return message::plain(spec.username.as_deref(), session_name(d), &d.message);
    };
    let user = s
        .user_id
        .and_then(|id| names.get(&id))
        .map(String::as_str)
        .or(s.user.as_deref())
        .unwrap_or("-");
    let watching = message::full_title(s);
    let killed = message::Killed {
        kind,
        user,
        session_key: s.session_key.as_deref().unwrap_or("-"),
        watching: if watching.is_empty() { "-" } else { &watching },
        message: &d.message,
        tautulli_link: env.link(),
    };
    message::rich(look, &killed, OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifier_ids_are_whole_numbers_from_one() {
        assert_eq!(notifier_id(" 3 ").as_deref(), Some("3"));
        assert_eq!(notifier_id("03").as_deref(), Some("3"));
        assert_eq!(notifier_id("0"), None);
        assert_eq!(notifier_id("+1"), None);
        assert_eq!(notifier_id("-1"), None);
        assert_eq!(notifier_id("{notifier_id}"), None);
    }

    #[test]
    fn rich_kind_takes_the_first_and_warns_about_the_rest() {
        let w = |v: &[&str]| {
            let mut warn = Vec::new();
            let words: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            (rich_kind(&words, &mut warn), warn.len())
        };
        assert_eq!(w(&["Discord"]), (Some(RichKind::Discord), 0));
        assert_eq!(w(&["slack", "discord"]), (Some(RichKind::Slack), 1));
        assert_eq!(w(&["teams"]), (None, 1));
        assert_eq!(w(&[]), (None, 0));
    }
}
