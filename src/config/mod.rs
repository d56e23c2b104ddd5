//! The configuration file: one TOML file, with PLEX_URL and PLEX_TOKEN overriding it.
//!
//! Search order when `--config` is not given: `$STREAMWARDEN_CONFIG`, `./streamwarden.toml`,
//! `$XDG_CONFIG_HOME/streamwarden/config.toml` (or `~/.config/streamwarden/config.toml`),
//! `/etc/streamwarden/config.toml`. With none found, defaults apply (no rules).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub mod capture;
pub mod enforce;
pub mod http;
mod identifier;
pub mod measure;
pub mod notify;
pub mod people;
pub mod state;
pub mod usage;
pub use identifier::stable_client_identifier;
mod validate;

use crate::plex::PlexSettings;
pub use capture::CaptureConfig;
pub use enforce::EnforceConfig;
pub use http::{HttpConfig, Secret};
pub use measure::{MeasureConfig, MeasureSource};
pub use notify::{NotifyConfig, NotifyKind};
pub use state::StateConfig;
pub use usage::UsageConfig;

/// A configuration problem, located in its file where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    /// 1-based line and column in the file.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.position) {
            (Some(file), Some((l, c))) => write!(f, "{}:{l}:{c}: {}", file.display(), self.message),
            (Some(file), None) => write!(f, "{}: {}", file.display(), self.message),
            (None, Some((l, c))) => write!(f, "{l}:{c}: {}", self.message),
            (None, None) => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Config errors as one failure (a usage error), a line each.
pub fn failure(errors: &[ConfigError]) -> crate::Failure {
    crate::Failure::Usage(
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\nerror: "),
    )
}

/// Where a span of the file sits, so rule errors can point into it.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    pub file: Option<PathBuf>,
    text: String,
}

impl SourceMap {
    pub fn new(file: Option<PathBuf>, text: &str) -> Self {
        Self {
            file,
            text: text.to_string(),
        }
    }

    /// 1-based line and column of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..self.text.floor_char_boundary(offset)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    pub fn error(
        &self,
        span: Option<std::ops::Range<usize>>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            position: span.map(|s| self.position(s.start)),
            message: message.into(),
        }
    }

    /// The file offset of byte `offset` of a string value's decoded content, accounting for
    /// the escapes of a basic ("...") string; literal ('...') strings map one to one.
    pub fn string_offset(
        &self,
        span: &std::ops::Range<usize>,
        decoded: &str,
        offset: usize,
    ) -> usize {
        let start = self.string_content_start(span);
        let raw = self.text.get(span.clone()).unwrap_or("");
        if !raw.starts_with('"') {
            return start + offset;
        }
        let body = self.text.get(start..span.end).unwrap_or("");
        let (mut r, mut d) = (0usize, 0usize);
        let rb = body.as_bytes();
        for ch in decoded.chars() {
            if d >= offset {
                break;
            }
            let step = if rb.get(r) == Some(&b'\\') {
                match rb.get(r + 1) {
                    Some(b'u') => 6,
                    Some(b'U') => 10,
                    _ => 2,
                }
            } else {
                body[r..].chars().next().map_or(1, char::len_utf8)
            };
            r += step;
            d += ch.len_utf8();
        }
        start + r
    }

    /// Position of the first character of a string value's content (past the quotes).
    pub fn string_content_start(&self, span: &std::ops::Range<usize>) -> usize {
        let raw = self.text.get(span.clone()).unwrap_or("");
        let quote = if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
            let mut n = 3;
            // A newline right after a multi-line opening is trimmed by TOML.
            if raw[3..].starts_with("\r\n") {
                n += 2;
            } else if raw[3..].starts_with('\n') {
                n += 1;
            }
            n
        } else if raw.starts_with('\'') || raw.starts_with('"') {
            1
        } else {
            0
        };
        span.start + quote
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    plex: RawPlex,
    #[serde(default)]
    enforce: enforce::RawEnforce,
    #[serde(default)]
    groups: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    capture: capture::RawCapture,
    #[serde(default)]
    http: http::RawHttp,
    #[serde(default)]
    measure: measure::RawMeasure,
    #[serde(default)]
    state: state::RawState,
    #[serde(default)]
    usage: usage::RawUsage,
    #[serde(default)]
    notify: Vec<notify::RawNotify>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlex {
    url: Option<Spanned<String>>,
    token: Option<String>,
    client_identifier: Option<String>,
    poll_interval: Option<Spanned<String>>,
    poll_interval_fallback: Option<Spanned<String>>,
    events: Option<bool>,
    timeout: Option<Spanned<String>>,
    tls_verify: Option<Spanned<bool>>,
    max_response_mb: Option<Spanned<i64>>,
}

/// A rule as written in the file, with the spans needed to point at its parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Spanned<String>,
    pub when: Spanned<String>,
    pub action: Option<Spanned<String>>,
    pub message: Option<Spanned<String>>,
    pub sustain: Option<Spanned<String>>,
    /// `action = "throttle"`: the rate the stream's connections are limited to.
    pub rate: Option<Spanned<String>>,
    /// `action = "throttle"`: lift the throttle after this long even if the stream goes on.
    pub release_after: Option<Spanned<String>>,
    /// `action = "throttle"`: what to do when the stream still offends once throttled.
    pub escalate: Option<Spanned<RawEscalate>>,
    /// Which of a user's matching streams it acts on: "newest", "oldest" or "all".
    pub pick: Option<Spanned<String>>,
    /// Tell the owner once the condition has held this long (before `sustain` is over).
    pub notify_after: Option<Spanned<String>>,
}

/// `escalate = { after = "5m", action = "kill", when = "...", message = "..." }` of a
/// throttle rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEscalate {
    pub after: Spanned<String>,
    pub action: Option<Spanned<String>>,
    pub when: Option<Spanned<String>>,
    pub message: Option<Spanned<String>>,
}

/// `[plex]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlexConfig {
    pub url: Option<String>,
    pub token: Option<String>,
    pub client_identifier: Option<String>,
    /// How often sessions are read while Plex's event stream is live (default 30 s).
    pub poll_interval: Duration,
    /// How often while it is not, or with `events = false` (default 10 s).
    pub poll_interval_fallback: Duration,
    /// Listen to Plex's event stream (`/:/websockets/notifications`; default true).
    pub events: bool,
    pub timeout: Duration,
    pub tls_verify: bool,
    /// The most of one answer read from Plex, in bytes (`max_response_mb`, default 32).
    pub max_response: usize,
}

impl Config {
    /// Where the state database is: `[state] path`, else the default place (None when there
    /// is none: no HOME, not root, no systemd state folder).
    pub fn state_path(&self) -> Option<PathBuf> {
        self.state.path.clone().or_else(crate::state::default_path)
    }

    /// The settings a running daemon cannot take over on a reload, named as in the file,
    /// where `other` differs from this configuration.
    pub fn restart_needed(&self, other: &Config) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.plex != other.plex {
            out.push("[plex]");
        }
        if self.capture != other.capture {
            out.push("[capture]");
        }
        if self.http != other.http {
            out.push("[http]");
        }
        if self.measure != other.measure {
            out.push("[measure]");
        }
        if self.state != other.state {
            out.push("[state]");
        }
        if self.enforce.audit_log != other.enforce.audit_log {
            out.push("[enforce] audit_log");
        }
        if self.notify.len() != other.notify.len()
            || self
                .notify
                .iter()
                .zip(&other.notify)
                .any(|(a, b)| !a.same_settings(b))
        {
            out.push("[[notify]]");
        }
        out
    }
}

impl Default for PlexConfig {
    fn default() -> Self {
        Self {
            url: None,
            token: None,
            client_identifier: None,
            poll_interval: Duration::from_secs(30),
            poll_interval_fallback: Duration::from_secs(10),
            events: true,
            timeout: Duration::from_secs(10),
            tls_verify: true,
            max_response: crate::plex::DEFAULT_MAX_RESPONSE,
        }
    }
}

/// The whole configuration. Rules are kept raw here and compiled by [`crate::rules`].
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub plex: PlexConfig,
    pub enforce: EnforceConfig,
    /// `[groups]`: named groups of users.
    pub groups: people::Groups,
    pub rules: Vec<RawRule>,
    /// `[capture]`: interface, ports, snaplen, buffer size, immediate mode.
    pub capture: CaptureConfig,
    pub http: HttpConfig,
    /// `[measure]`: packets, Plex's counters, or both.
    pub measure: MeasureConfig,
    /// `[state]`: where the state database lives.
    pub state: StateConfig,
    /// `[usage]`: how long usage is kept.
    pub usage: UsageConfig,
    /// `[[notify]]`: where kills are told.
    pub notify: Vec<NotifyConfig>,
    pub source: SourceMap,
    /// Where checked values stand in the file (none when they came from elsewhere).
    pub spans: Spans,
}

/// The places in the file of values checked after the environment is applied.
#[derive(Debug, Clone, Default)]
pub struct Spans {
    pub plex_url: Option<std::ops::Range<usize>>,
    pub tls_verify: Option<std::ops::Range<usize>>,
    pub audit_log: Option<std::ops::Range<usize>>,
    pub http_listen: Option<std::ops::Range<usize>>,
}

/// The default places a config file is looked for, in order.
pub fn search_path() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(p) = std::env::var_os("STREAMWARDEN_CONFIG").filter(|p| !p.is_empty()) {
        paths.push(PathBuf::from(p));
    }
    paths.push(PathBuf::from("streamwarden.toml"));
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        paths.push(PathBuf::from(dir).join("streamwarden/config.toml"));
    } else if let Some(home) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        paths.push(PathBuf::from(home).join(".config/streamwarden/config.toml"));
    }
    paths.push(PathBuf::from("/etc/streamwarden/config.toml"));
    paths
}

impl Config {
    /// Loads `explicit` (which must exist), or the first file found on the search path,
    /// or the defaults; then applies PLEX_URL and PLEX_TOKEN.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        // A file named by --config or $STREAMWARDEN_CONFIG must exist; the default
        // places are only looked in.
        let named = explicit.map(Path::to_path_buf).or_else(|| {
            std::env::var_os("STREAMWARDEN_CONFIG")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        });
        let path = match named {
            Some(p) => Some(p),
            None => search_path().into_iter().find(|p| p.is_file()),
        };
        let mut config = match path {
            Some(p) => {
                let bytes = std::fs::read(&p).map_err(|e| ConfigError {
                    file: Some(p.clone()),
                    position: None,
                    message: format!("cannot read the config file: {e}"),
                })?;
                let text = String::from_utf8(bytes).map_err(|e| {
                    let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                    let before = String::from_utf8_lossy(valid);
                    ConfigError {
                        file: Some(p.clone()),
                        position: Some(SourceMap::new(None, &before).position(before.len())),
                        message: "not UTF-8 text: save the file as UTF-8".into(),
                    }
                })?;
                Self::parse(&text, Some(p))?
            }
            None => Self::default(),
        };
        config.apply_env(|k| std::env::var(k).ok());
        config.validate()?;
        Ok(config)
    }

    /// As [`Config::load`] for a reload: the file is read until two reads 50 ms apart
    /// agree, so a file caught half-saved by an editor is not taken for the new settings.
    pub fn load_settled(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        if let Some(path) = explicit {
            let mut last = std::fs::read(path).ok();
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(50));
                let now = std::fs::read(path).ok();
                if now == last {
                    break;
                }
                last = now;
            }
        }
        Self::load(explicit)
    }

    /// Parses config text. `file` is only used to name the file in errors.
    pub fn parse(text: &str, file: Option<PathBuf>) -> Result<Self, ConfigError> {
        let source = SourceMap::new(file, text);
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| validate::toml_error(text, &source, e))?;
        let duration = |v: &Option<Spanned<String>>, default: Duration, what: &str| {
            v.as_ref().map_or(Ok(default), |s| {
                parse_duration(s.get_ref())
                    .map_err(|m| source.error(Some(s.span()), format!("{what}: {m}")))
            })
        };
        let plex = PlexConfig {
            url: raw
                .plex
                .url
                .as_ref()
                .map(|u| u.get_ref().clone())
                .filter(|u| !u.trim().is_empty()),
            token: raw.plex.token.filter(|t| !t.trim().is_empty()),
            client_identifier: raw.plex.client_identifier.filter(|t| !t.trim().is_empty()),
            poll_interval: duration(
                &raw.plex.poll_interval,
                Duration::from_secs(30),
                "poll_interval",
            )?,
            poll_interval_fallback: duration(
                &raw.plex.poll_interval_fallback,
                Duration::from_secs(10),
                "poll_interval_fallback",
            )?,
            events: raw.plex.events.unwrap_or(true),
            timeout: duration(&raw.plex.timeout, Duration::from_secs(10), "timeout")?,
            tls_verify: raw.plex.tls_verify.as_ref().is_none_or(|t| *t.get_ref()),
            max_response: match &raw.plex.max_response_mb {
                None => crate::plex::DEFAULT_MAX_RESPONSE,
                Some(m) if (1..=1024).contains(m.get_ref()) => (*m.get_ref() as usize) << 20,
                Some(m) => {
                    return Err(source.error(
                        Some(m.span()),
                        "max_response_mb: give a number of megabytes from 1 to 1024 (default 32)",
                    ));
                }
            },
        };
        for (value, raw, key) in [
            (plex.poll_interval, &raw.plex.poll_interval, "poll_interval"),
            (
                plex.poll_interval_fallback,
                &raw.plex.poll_interval_fallback,
                "poll_interval_fallback",
            ),
        ] {
            if value < Duration::from_secs(1) {
                let span = raw.as_ref().map(|s| s.span());
                return Err(source.error(span, format!("{key}: must be at least 1s")));
            }
        }
        if plex.timeout.is_zero() {
            return Err(source.error(
                raw.plex.timeout.as_ref().map(|s| s.span()),
                "timeout: must be more than 0s",
            ));
        }
        let groups = people::Groups::of(raw.groups);
        let enforce = raw.enforce.resolve(&source, &groups)?;
        let (http, listen_span) = raw.http.resolve(&source)?;
        let spans = Spans {
            http_listen: listen_span,
            plex_url: raw.plex.url.as_ref().map(Spanned::span),
            tls_verify: raw.plex.tls_verify.as_ref().map(Spanned::span),
            audit_log: raw.enforce.audit_log.as_ref().map(Spanned::span),
        };
        Ok(Self {
            plex,
            enforce,
            groups,
            spans,
            rules: raw.rules,
            capture: raw.capture.resolve(&source)?,
            http,
            measure: raw.measure.resolve(&source)?,
            state: raw.state.resolve(&source)?,
            usage: raw.usage.resolve(&source)?,
            notify: notify::resolve(raw.notify, &source)?,
            source,
        })
    }

    /// PLEX_URL and PLEX_TOKEN (as Tautulli exports them) override the file.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(url) = get("PLEX_URL").filter(|v| !v.trim().is_empty()) {
            self.plex.url = Some(url.trim().to_string());
            self.spans.plex_url = None;
        }
        if let Some(token) = get("PLEX_TOKEN").filter(|v| !v.trim().is_empty()) {
            self.plex.token = Some(token.trim().to_string());
        }
        if let Some(token) = get(http::TOKEN_ENV).filter(|v| !v.trim().is_empty()) {
            self.http.token = Some(Secret::new(token.trim()));
        }
        notify::apply_env(&mut self.notify, &get);
    }

    /// The settings a Plex client needs; errors say how to supply what is missing.
    pub fn plex_settings(&self) -> Result<PlexSettings, ConfigError> {
        let missing = |what: &str, env: &str| ConfigError {
            file: self.source.file.clone(),
            position: None,
            message: format!(
                "no Plex {what}: set [plex] {what} in the config file or the {env} environment variable"
            ),
        };
        let url = self
            .plex
            .url
            .clone()
            .ok_or_else(|| missing("url", "PLEX_URL"))?;
        let token = self
            .plex
            .token
            .clone()
            .ok_or_else(|| missing("token", "PLEX_TOKEN"))?;
        Ok(PlexSettings {
            url,
            token,
            client_identifier: self
                .plex
                .client_identifier
                .clone()
                .unwrap_or_else(stable_client_identifier),
            timeout: self.plex.timeout,
            tls_verify: self.plex.tls_verify,
            max_response: self.plex.max_response,
        })
    }
}

/// Parses "30s", "2m", "1h 30m"; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("{s:?} is not a duration such as \"30s\" or \"5m\" ({e})"))
}

#[cfg(test)]
mod tests;
