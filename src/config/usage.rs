//! The `[usage]` table: how long the record of what each stream sent is kept.

use std::time::Duration;

/// `[usage]`, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageConfig {
    /// `keep_minutes`: minute rows older than this are rolled up to hours (default 14 days).
    pub minutes: Duration,
    /// `keep`: rows older than this are dropped (default 400 days).
    pub all: Duration,
}

const DAY: u64 = 86_400;

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            minutes: Duration::from_secs(14 * DAY),
            all: Duration::from_secs(400 * DAY),
        }
    }
}

/// `[usage]` as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUsage {
    keep_minutes: Option<toml::Spanned<String>>,
    keep: Option<toml::Spanned<String>>,
}

impl RawUsage {
    pub(super) fn resolve(
        self,
        source: &super::SourceMap,
    ) -> Result<UsageConfig, super::ConfigError> {
        let d = UsageConfig::default();
        let read = |v: &Option<toml::Spanned<String>>, key: &str, default: Duration| match v {
            None => Ok(default),
            Some(s) => super::parse_duration(s.get_ref())
                .map_err(|m| source.error(Some(s.span()), format!("{key}: {m}"))),
        };
        let minutes = read(&self.keep_minutes, "keep_minutes", d.minutes)?;
        let all = read(&self.keep, "keep", d.all)?;
        if minutes < Duration::from_secs(3600) || all < minutes {
            let span = self
                .keep
                .as_ref()
                .or(self.keep_minutes.as_ref())
                .map(|s| s.span());
            return Err(source.error(
                span,
                "keep_minutes must be at least 1h, and keep at least keep_minutes (defaults: 14d and 400d)",
            ));
        }
        Ok(UsageConfig { minutes, all })
    }
}
