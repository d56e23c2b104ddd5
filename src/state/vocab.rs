//! The audit vocabulary: what an audit record says was done (`AuditAction`) and in which mode
//! (`Mode`), each with its name (as written in the audit, the state and the config's
//! `[[notify]] on`) and its severity beside it. Adding one is a compiler-guided change: every
//! table that maps them is a `match`.

use serde::{Deserialize, Serialize};

/// How loudly an action is said (logs, notifications, the page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warn,
    Error,
}

/// What an audit record says was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    Kill,
    WouldKill,
    Log,
    KillFailed,
    KillSkipped,
    AlreadyKilled,
    TranscodeStopped,
    Zombie,
    Throttle,
    WouldThrottle,
    ThrottleFailed,
    ThrottleSkipped,
    Unthrottle,
    /// A reload that weakens what protects streams or arms what kills them (dry run off,
    /// exemptions emptied, every rule gone).
    RiskyReload,
    /// A rule's hold reached its `notify_after`: it acts when its sustain is over, unless
    /// the stream stops first.
    Warn,
}

impl AuditAction {
    /// Every action, in the order they are listed.
    pub const ALL: &'static [AuditAction] = &[
        AuditAction::Kill,
        AuditAction::WouldKill,
        AuditAction::Log,
        AuditAction::KillFailed,
        AuditAction::KillSkipped,
        AuditAction::AlreadyKilled,
        AuditAction::TranscodeStopped,
        AuditAction::Zombie,
        AuditAction::Throttle,
        AuditAction::WouldThrottle,
        AuditAction::ThrottleFailed,
        AuditAction::ThrottleSkipped,
        AuditAction::Unthrottle,
        AuditAction::RiskyReload,
        AuditAction::Warn,
    ];

    /// Its name in the audit, the state and the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditAction::Kill => "kill",
            AuditAction::WouldKill => "would-kill",
            AuditAction::Log => "log",
            AuditAction::KillFailed => "kill-failed",
            AuditAction::KillSkipped => "kill-skipped",
            AuditAction::AlreadyKilled => "already-killed",
            AuditAction::TranscodeStopped => "transcode-stopped",
            AuditAction::Zombie => "zombie",
            AuditAction::Throttle => "throttle",
            AuditAction::WouldThrottle => "would-throttle",
            AuditAction::ThrottleFailed => "throttle-failed",
            AuditAction::ThrottleSkipped => "throttle-skipped",
            AuditAction::Unthrottle => "unthrottle",
            AuditAction::RiskyReload => "risky-reload",
            AuditAction::Warn => "warn",
        }
    }

    /// How loudly it is said.
    pub const fn severity(self) -> Severity {
        match self {
            AuditAction::KillFailed | AuditAction::ThrottleFailed => Severity::Error,
            AuditAction::KillSkipped
            | AuditAction::Zombie
            | AuditAction::TranscodeStopped
            | AuditAction::ThrottleSkipped
            | AuditAction::RiskyReload
            | AuditAction::Warn => Severity::Warn,
            AuditAction::Kill
            | AuditAction::WouldKill
            | AuditAction::Log
            | AuditAction::AlreadyKilled
            | AuditAction::Throttle
            | AuditAction::WouldThrottle
            | AuditAction::Unthrottle => Severity::Info,
        }
    }

    /// Names, comma-separated ("kill, zombie").
    pub fn names(list: &[AuditAction]) -> String {
        list.iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The action a name stands for.
    pub fn parse(name: &str) -> Option<AuditAction> {
        AuditAction::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == name.trim())
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a record was acted on for real or in a dry run (or is a sample).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Enforce,
    DryRun,
    /// `notify-test`'s samples.
    Test,
}

impl Mode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::DryRun => "dry-run",
            Mode::Test => "test",
        }
    }

    /// The mode of a run that is (or is not) a dry run.
    pub const fn of(dry_run: bool) -> Mode {
        if dry_run { Mode::DryRun } else { Mode::Enforce }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_serialize_as_written() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(*a));
            assert_eq!(
                serde_json::to_value(a).unwrap(),
                serde_json::Value::String(a.as_str().into())
            );
        }
        assert_eq!(AuditAction::parse("kil"), None);
        assert_eq!(serde_json::to_value(Mode::DryRun).unwrap(), "dry-run");
    }
}
