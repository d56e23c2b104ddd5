//! What became of a decision (`Applied`), its audit name and its line for people, and the
//! escaping that keeps outside text on one line.

use std::borrow::Cow;

use crate::rules::Decision;
use crate::state::AuditAction;

/// What became of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Killed,
    WouldKill,
    Logged,
    Failed(String),
    Skipped(String),
    AlreadyKilled,
    /// The stream's connections are limited to the decision's rate.
    Throttled,
    WouldThrottle,
    ThrottleFailed(String),
    ThrottleSkipped(String),
}

impl Applied {
    /// A kill that failed (and may be tried again).
    pub fn is_failure(&self) -> bool {
        matches!(self, Applied::Failed(_))
    }

    /// What the audit says of it.
    pub fn action(&self) -> AuditAction {
        match self {
            Applied::Killed => AuditAction::Kill,
            Applied::WouldKill => AuditAction::WouldKill,
            Applied::Logged => AuditAction::Log,
            Applied::Failed(_) => AuditAction::KillFailed,
            Applied::Skipped(_) => AuditAction::KillSkipped,
            Applied::AlreadyKilled => AuditAction::AlreadyKilled,
            Applied::Throttled => AuditAction::Throttle,
            Applied::WouldThrottle => AuditAction::WouldThrottle,
            Applied::ThrottleFailed(_) => AuditAction::ThrottleFailed,
            Applied::ThrottleSkipped(_) => AuditAction::ThrottleSkipped,
        }
    }

    /// Why a kill failed or was skipped.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Applied::Failed(r)
            | Applied::Skipped(r)
            | Applied::ThrottleFailed(r)
            | Applied::ThrottleSkipped(r) => Some(r),
            _ => None,
        }
    }

    /// One line for people: what became of `d`. Everything from outside (Plex's names
    /// and titles, the message, the reason) is `escape`d, so it stays on this one line.
    pub fn describe(&self, d: &Decision) -> String {
        let who = format!(
            "session {} ({}, {})",
            escape(d.session.session_id.as_deref().unwrap_or("-")),
            escape(d.session.user.as_deref().unwrap_or("?")),
            escape(&d.session.display_title())
        );
        let rule = escape(&d.rule);
        let message = escape(&d.message);
        let rate = d
            .throttle
            .map_or_else(|| "?".to_string(), |t| t.rate_text());
        match self {
            Applied::Killed => format!("killed {who} [{rule}]: {message}"),
            Applied::WouldKill => format!("dry run: would kill {who} [{rule}]: {message}"),
            Applied::Logged => format!("rule {rule} matched {who}: {message}"),
            Applied::Failed(r) => format!("could not kill {who} [{rule}]: {}", escape(r)),
            Applied::Skipped(r) => format!("not killing {who} [{rule}]: {}", escape(r)),
            Applied::AlreadyKilled => format!("{who} was already killed"),
            Applied::Throttled => format!("throttled {who} to {rate} [{rule}]"),
            Applied::WouldThrottle => format!("dry run: would throttle {who} to {rate} [{rule}]"),
            Applied::ThrottleFailed(r) => {
                format!("could not throttle {who} [{rule}]: {}", escape(r))
            }
            Applied::ThrottleSkipped(r) => {
                format!("not throttling {who} [{rule}]: {}", escape(r))
            }
        }
    }
}

/// Text from outside (Plex's titles and names, messages, reasons) made safe to print on
/// one line of a report or a log: a control character (C0, DEL, C1), a Unicode line or
/// paragraph separator, or a bidirectional override is written as an escape (`\n`, `\r`,
/// `\t`, else `\u{1b}`), so it can neither start a forged line nor drive a terminal.
/// Everything else, backslashes included, is kept, so escaping twice changes nothing.
pub fn escape(text: &str) -> Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            )
    }
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}
