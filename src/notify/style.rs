//! How each service shows an audit action: how loud it is, its colour, emoji and priority.

use crate::state::{AuditAction, AuditAction as A};

/// How much an action needs the owner's eyes (a folded summary takes its worst).
pub(super) fn severity(action: AuditAction) -> u8 {
    match action {
        A::KillFailed => 6,
        A::Zombie | A::ThrottleFailed | A::RiskyReload => 5,
        A::Kill => 4,
        A::KillSkipped | A::Warn => 3,
        A::TranscodeStopped | A::Throttle | A::ThrottleSkipped => 2,
        A::WouldKill | A::WouldThrottle => 1,
        A::Log | A::AlreadyKilled | A::Unthrottle => 0,
    }
}

/// Discord's embed colour by action.
pub fn colour(action: AuditAction) -> u32 {
    match action {
        A::Kill => 0xD9342B,
        A::KillFailed | A::ThrottleFailed => 0xF28C28,
        A::Zombie => 0x8E44AD,
        A::RiskyReload => 0xC0392B,
        A::KillSkipped => 0xF1C40F,
        A::Warn => 0xF39C12,
        A::WouldKill | A::WouldThrottle => 0x3498DB,
        A::TranscodeStopped => 0x1ABC9C,
        A::Throttle => 0xE67E22,
        A::Unthrottle => 0x2ECC71,
        A::Log | A::AlreadyKilled | A::ThrottleSkipped => 0x95A5A6,
    }
}

pub(super) fn slack_emoji(action: AuditAction) -> &'static str {
    match action {
        A::Kill => ":no_entry:",
        A::KillFailed | A::ThrottleFailed => ":warning:",
        A::Zombie => ":zombie:",
        A::RiskyReload => ":rotating_light:",
        A::KillSkipped => ":pause_button:",
        A::Warn => ":hourglass_flowing_sand:",
        A::WouldKill | A::WouldThrottle => ":eyes:",
        A::TranscodeStopped => ":octagonal_sign:",
        A::Throttle => ":turtle:",
        A::Unthrottle => ":arrow_forward:",
        A::Log | A::AlreadyKilled | A::ThrottleSkipped => ":memo:",
    }
}

/// ntfy's emoji tag by action.
pub(super) fn ntfy_tag(action: AuditAction) -> &'static str {
    match action {
        A::Kill => "no_entry",
        A::KillFailed | A::ThrottleFailed => "warning",
        A::Zombie => "zombie",
        A::RiskyReload => "rotating_light",
        A::KillSkipped => "pause_button",
        A::Warn => "hourglass_flowing_sand",
        A::WouldKill | A::WouldThrottle => "eyes",
        A::TranscodeStopped => "stop_sign",
        A::Throttle => "turtle",
        A::Unthrottle => "arrow_forward",
        A::Log | A::AlreadyKilled | A::ThrottleSkipped => "memo",
    }
}

/// ntfy's priority (1 min to 5 max) by action.
pub(super) fn ntfy_priority(action: AuditAction) -> u8 {
    match severity(action) {
        5.. => 4,
        3..=4 => 3,
        _ => 2,
    }
}

/// Gotify's priority (0 to 10) by action.
pub(super) fn gotify_priority(action: AuditAction) -> u8 {
    match severity(action) {
        5.. => 8,
        3..=4 => 5,
        _ => 2,
    }
}
