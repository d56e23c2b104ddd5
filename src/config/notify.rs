//! `[[notify]]`: where kills, failed kills and zombies are told (Discord, Slack, ntfy,
//! Gotify, Telegram or any webhook). A target's URL is a secret (it carries the webhook's
//! token or the topic): it never shows in an error, a log line or debug output. The title and
//! message templates are checked by `crate::notify`, which knows the rule variables.

use crate::state::AuditAction;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Secret, SourceMap};

/// Which service a target is, and so the shape of what it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyKind {
    Discord,
    Slack,
    Ntfy,
    Gotify,
    Telegram,
    /// Any URL: the audit line as JSON.
    Webhook,
}

impl NotifyKind {
    pub const ALL: [NotifyKind; 6] = [
        NotifyKind::Discord,
        NotifyKind::Slack,
        NotifyKind::Ntfy,
        NotifyKind::Gotify,
        NotifyKind::Telegram,
        NotifyKind::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Discord => "discord",
            NotifyKind::Slack => "slack",
            NotifyKind::Ntfy => "ntfy",
            NotifyKind::Gotify => "gotify",
            NotifyKind::Telegram => "telegram",
            NotifyKind::Webhook => "webhook",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// The audit actions a target can be told of (every one but `already-killed`, which is
/// never audited).
pub const ACTIONS: &[AuditAction] = &[
    AuditAction::Kill,
    AuditAction::KillFailed,
    AuditAction::Zombie,
    AuditAction::KillSkipped,
    AuditAction::WouldKill,
    AuditAction::Log,
    AuditAction::TranscodeStopped,
    AuditAction::Throttle,
    AuditAction::WouldThrottle,
    AuditAction::ThrottleFailed,
    AuditAction::ThrottleSkipped,
    AuditAction::Unthrottle,
    AuditAction::RiskyReload,
    AuditAction::Warn,
];

/// What a target is told of when its `on` is not given: what needs the owner's eyes. A dry
/// run's `would-kill` and `log` are asked for by name.
pub const DEFAULT_ON: &[AuditAction] = &[
    AuditAction::Kill,
    AuditAction::KillFailed,
    AuditAction::Zombie,
    AuditAction::KillSkipped,
    AuditAction::Throttle,
    AuditAction::ThrottleFailed,
    AuditAction::RiskyReload,
    AuditAction::Warn,
];

/// The default of `max_per_minute`.
pub const DEFAULT_PER_MINUTE: u32 = 6;

/// `[[notify]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    kind: Spanned<String>,
    name: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    url_env: Option<Spanned<String>>,
    on: Option<Vec<Spanned<String>>>,
    title: Option<Spanned<String>>,
    message: Option<Spanned<String>>,
    chat_id: Option<Spanned<ChatId>>,
    max_per_minute: Option<Spanned<i64>>,
}

/// Telegram's chat id: a number (negative for groups) or "@channelname".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ChatId {
    Number(i64),
    Text(String),
}

/// One `[[notify]]` target, resolved.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub kind: NotifyKind,
    /// How logs, metrics and `notify-test` name it (never the URL): `name`, else the kind
    /// (numbered when several targets share it).
    pub name: String,
    /// The URL: `url`, or the value of the variable `url_env` names (None while unset).
    pub url: Option<Secret>,
    pub url_env: Option<String>,
    /// The audit actions it is told of.
    pub on: Vec<AuditAction>,
    /// Templates, checked and compiled by `crate::notify`.
    pub title: Option<Spanned<String>>,
    pub message: Option<Spanned<String>>,
    /// Telegram's chat.
    pub chat_id: Option<String>,
    /// Messages a minute before a burst is folded into one summary.
    pub max_per_minute: u32,
    /// Where its parts stand in the file.
    pub spans: NotifySpans,
}

/// Where a target's parts stand in the file.
#[derive(Debug, Clone, Default)]
pub struct NotifySpans {
    /// `kind`, which every target has: where errors about the whole target point.
    pub kind: Range<usize>,
    pub url: Option<Range<usize>>,
    pub url_env: Option<Range<usize>>,
}

impl NotifyConfig {
    /// The same settings (where they stand in the file aside), for a reload.
    pub fn same_settings(&self, other: &NotifyConfig) -> bool {
        self.kind == other.kind
            && self.name == other.name
            && self.url == other.url
            && self.url_env == other.url_env
            && self.on == other.on
            && self.title == other.title
            && self.message == other.message
            && self.chat_id == other.chat_id
            && self.max_per_minute == other.max_per_minute
    }

    /// The URL, parsed, or a located error that does not show it: unset, not a URL, or
    /// not http(s).
    pub fn checked_url(&self, source: &SourceMap) -> Result<reqwest::Url, ConfigError> {
        let name = &self.name;
        let (span, whence) = match &self.url_env {
            Some(var) => (self.spans.url_env.clone(), format!("the value of {var}")),
            None => (self.spans.url.clone(), "url".to_string()),
        };
        let Some(url) = &self.url else {
            let var = self.url_env.as_deref().unwrap_or("?");
            return Err(source.error(
                span,
                format!(
                    "[[notify]] {name}: url_env: the environment variable {var} is not set (or is empty): export it where streamwarden runs (systemd: Environment= or EnvironmentFile=)"
                ),
            ));
        };
        let bad = |what: &str| {
            source.error(
                span.clone(),
                format!("[[notify]] {name}: {whence} {what} (not shown here: it is a secret)"),
            )
        };
        let parsed = reqwest::Url::parse(url.expose().trim())
            .map_err(|_| bad("is not a URL such as https://discord.com/api/webhooks/..."))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(bad("must start with http:// or https:// and name a host"));
        }
        Ok(parsed)
    }
}

/// Resolves every `[[notify]]` table, or the first error, located.
pub(super) fn resolve(
    raw: Vec<RawNotify>,
    source: &SourceMap,
) -> Result<Vec<NotifyConfig>, ConfigError> {
    let mut out: Vec<NotifyConfig> = Vec::with_capacity(raw.len());
    let mut named: Vec<Option<Range<usize>>> = Vec::with_capacity(raw.len());
    for t in raw {
        let kind = NotifyKind::parse(t.kind.get_ref()).ok_or_else(|| {
            source.error(
                Some(t.kind.span()),
                format!(
                    "[[notify]] kind {:?} is not one of {}",
                    t.kind.get_ref(),
                    NotifyKind::ALL.map(NotifyKind::as_str).join(", ")
                ),
            )
        })?;
        let what = kind.as_str();
        let name = match &t.name {
            Some(n) => {
                let v = n.get_ref().trim();
                let ok = !v.is_empty()
                    && v.len() <= 64
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !ok {
                    return Err(source.error(
                        Some(n.span()),
                        format!(
                            "[[notify]] {what}: name {:?} must be 1 to 64 letters, digits, '-', '_' or '.' (it names the target in logs and metrics)",
                            n.get_ref()
                        ),
                    ));
                }
                v.to_string()
            }
            None => String::new(),
        };
        let url = match (&t.url, &t.url_env) {
            (Some(_), Some(e)) => {
                return Err(source.error(
                    Some(e.span()),
                    format!("[[notify]] {what}: give url or url_env, not both"),
                ));
            }
            (None, None) => {
                return Err(source.error(
                    Some(t.kind.span()),
                    format!(
                        "[[notify]] {what}: no url: set url, or url_env = \"NAME\" to read it from the environment variable NAME (keeps the secret out of this file)"
                    ),
                ));
            }
            (Some(u), None) => Some(Secret::new(u.get_ref().trim())),
            (None, Some(_)) => None,
        };
        let url_env = match &t.url_env {
            Some(e) => {
                let v = e.get_ref().trim();
                if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(source.error(
                        Some(e.span()),
                        format!(
                            "[[notify]] {what}: url_env {:?} is not an environment variable's name such as \"DISCORD_WEBHOOK\"",
                            e.get_ref()
                        ),
                    ));
                }
                Some(v.to_string())
            }
            None => None,
        };
        let on = match &t.on {
            None => DEFAULT_ON.to_vec(),
            Some(list) => {
                let mut on: Vec<AuditAction> = Vec::new();
                for a in list {
                    let Some(action) = ACTIONS
                        .iter()
                        .find(|x| x.as_str().eq_ignore_ascii_case(a.get_ref().trim()))
                    else {
                        return Err(source.error(
                            Some(a.span()),
                            format!(
                                "[[notify]] {what}: on: {:?} is not an audit action: use {}",
                                a.get_ref(),
                                AuditAction::names(ACTIONS)
                            ),
                        ));
                    };
                    if !on.contains(action) {
                        on.push(*action);
                    }
                }
                on
            }
        };
        let chat_id = t.chat_id.as_ref().map(|c| match c.get_ref() {
            ChatId::Number(n) => n.to_string(),
            ChatId::Text(s) => s.trim().to_string(),
        });
        match (&t.chat_id, &chat_id, kind) {
            (None, _, NotifyKind::Telegram) => {
                return Err(source.error(
                    Some(t.kind.span()),
                    "[[notify]] telegram: chat_id is required: the chat's number (a group's is negative) or \"@channelname\"",
                ));
            }
            (Some(c), Some(v), NotifyKind::Telegram) if v.is_empty() => {
                return Err(source.error(Some(c.span()), "[[notify]] telegram: chat_id is empty"));
            }
            (Some(c), _, k) if k != NotifyKind::Telegram => {
                return Err(source.error(
                    Some(c.span()),
                    format!("[[notify]] {what}: chat_id is only for telegram"),
                ));
            }
            _ => {}
        }
        if kind == NotifyKind::Webhook
            && let Some(t) = t.title.as_ref().or(t.message.as_ref())
        {
            return Err(source.error(
                Some(t.span()),
                "[[notify]] webhook: title and message do nothing here: a webhook is sent the audit line itself, as JSON",
            ));
        }
        let max_per_minute = match &t.max_per_minute {
            None => DEFAULT_PER_MINUTE,
            Some(v) => u32::try_from(*v.get_ref())
                .ok()
                .filter(|n| (1..=600).contains(n))
                .ok_or_else(|| {
                    source.error(
                        Some(v.span()),
                        format!(
                            "[[notify]] {what}: max_per_minute must be a whole number from 1 to 600"
                        ),
                    )
                })?,
        };
        named.push(t.name.as_ref().map(Spanned::span));
        out.push(NotifyConfig {
            kind,
            name,
            url,
            url_env,
            on,
            title: t.title,
            message: t.message,
            chat_id,
            max_per_minute,
            spans: NotifySpans {
                kind: t.kind.span(),
                url: t.url.as_ref().map(Spanned::span),
                url_env: t.url_env.as_ref().map(Spanned::span),
            },
        });
    }
    // Unnamed targets take their kind's name, numbered when the kind repeats.
    for i in 0..out.len() {
        if out[i].name.is_empty() {
            let kind = out[i].kind;
            let same: Vec<usize> = (0..out.len()).filter(|&j| out[j].kind == kind).collect();
            out[i].name = if same.len() == 1 {
                kind.as_str().to_string()
            } else {
                let n = same.iter().position(|&j| j == i).unwrap_or(0) + 1;
                format!("{}-{n}", kind.as_str())
            };
        }
    }
    for i in 0..out.len() {
        if out[..i].iter().any(|o| o.name == out[i].name) {
            let at = named[i]
                .clone()
                .unwrap_or_else(|| out[i].spans.kind.clone());
            return Err(source.error(
                Some(at),
                format!(
                    "[[notify]] the name {:?} is used twice: give each target its own name",
                    out[i].name
                ),
            ));
        }
    }
    Ok(out)
}

/// Reads each `url_env` from the environment.
pub(super) fn apply_env(targets: &mut [NotifyConfig], get: &impl Fn(&str) -> Option<String>) {
    for t in targets {
        if let Some(var) = &t.url_env {
            t.url = get(var)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .map(Secret::new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn err(text: &str) -> String {
        Config::parse(text, Some("n.toml".into()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_and_names() {
        let c = Config::parse(
            "[[notify]]\nkind = \"discord\"\nurl = \"https://discord.com/api/webhooks/1/x\"\n\n[[notify]]\nkind = \"ntfy\"\nurl_env = \"NTFY\"\n\n[[notify]]\nkind = \"ntfy\"\nname = \"phone\"\nurl = \"https://ntfy.sh/t\"\non = [\"would-kill\", \"KILL\"]\n",
            None,
        )
        .unwrap();
        let names: Vec<&str> = c.notify.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["discord", "ntfy-1", "phone"]);
        assert_eq!(c.notify[0].on, super::DEFAULT_ON);
        assert_eq!(
            c.notify[2].on,
            [
                crate::state::AuditAction::WouldKill,
                crate::state::AuditAction::Kill
            ]
        );
        assert!(c.notify[1].url.is_none());
        assert!(!format!("{:?}", c.notify[0]).contains("webhooks"));
    }

    #[test]
    fn errors_are_located_and_never_show_the_url() {
        let e = err("[[notify]]\nkind = \"teams\"\nurl = \"https://x\"\n");
        assert!(
            e.starts_with("n.toml:2:8: [[notify]] kind \"teams\""),
            "{e}"
        );
        let e =
            err("[[notify]]\nkind = \"slack\"\nurl = \"https://x\"\non = [\"kill\", \"kil\"]\n");
        assert!(e.starts_with("n.toml:4:15: "), "{e}");
        let e = err("[[notify]]\nkind = \"telegram\"\nurl = \"https://x\"\n");
        assert!(e.contains("chat_id is required"), "{e}");
        let e = err("[[notify]]\nkind = \"slack\"\n");
        assert!(
            e.starts_with("n.toml:2:8: ") && e.contains("url_env"),
            "{e}"
        );
        let mut c = Config::parse(
            "[[notify]]\nkind = \"slack\"\nurl = \"ftp://hooks.slack.com/services/SECRET\"\n",
            Some("n.toml".into()),
        )
        .unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("n.toml:3:7: ") && !e.contains("SECRET"),
            "{e}"
        );
        c.notify[0].url_env = Some("HOOK".into());
        c.notify[0].spans.url_env = Some(0..1);
        c.apply_env(|_| None);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("HOOK is not set"), "{e}");
    }
}
