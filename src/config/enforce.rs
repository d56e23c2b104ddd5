//! The `[enforce]` table: dry run, the audit export, the kill budget, who is exempt, and
//! the owner's clock for the rules' `hour`, `minute`, `weekday` and `date`.

use std::path::PathBuf;

use toml::Spanned;

use super::{ConfigError, SourceMap};

/// `[enforce]`, resolved.
#[derive(Debug, Clone)]
pub struct EnforceConfig {
    pub dry_run: bool,
    pub audit_log: Option<PathBuf>,
    pub max_kills_per_minute: u32,
    pub exempt_users: Vec<String>,
    /// Users of these `[groups]` are exempt too.
    pub exempt_groups: Vec<String>,
    pub act_on_estimates: bool,
    /// Where `hour`, `minute`, `weekday` and `date` are read (default the machine's zone).
    pub timezone: jiff::tz::TimeZone,
}

impl Default for EnforceConfig {
    fn default() -> Self {
        Self {
            dry_run: false,
            audit_log: None,
            max_kills_per_minute: 10,
            exempt_users: Vec::new(),
            exempt_groups: Vec::new(),
            act_on_estimates: false,
            timezone: jiff::tz::TimeZone::system(),
        }
    }
}

/// `[enforce]` as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnforce {
    dry_run: Option<bool>,
    pub(super) audit_log: Option<Spanned<PathBuf>>,
    max_kills_per_minute: Option<Spanned<i64>>,
    #[serde(default)]
    exempt_users: Vec<String>,
    #[serde(default)]
    exempt_groups: Vec<Spanned<String>>,
    act_on_estimates: Option<bool>,
    timezone: Option<Spanned<String>>,
}

impl RawEnforce {
    pub(super) fn resolve(
        &self,
        source: &SourceMap,
        groups: &super::people::Groups,
    ) -> Result<EnforceConfig, ConfigError> {
        let max_kills = match &self.max_kills_per_minute {
            None => 10,
            Some(v) => u32::try_from(*v.get_ref())
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    source.error(
                        Some(v.span()),
                        "max_kills_per_minute: must be a whole number of at least 1",
                    )
                })?,
        };
        for g in &self.exempt_groups {
            if !groups.has(g.get_ref()) {
                return Err(source.error(
                    Some(g.span()),
                    format!(
                        "exempt_groups: no group {:?} in [groups] (it has: {})",
                        g.get_ref(),
                        groups.names().join(", ")
                    ),
                ));
            }
        }
        let timezone = match &self.timezone {
            None => jiff::tz::TimeZone::system(),
            Some(t) => super::usage::zone(t, source)?,
        };
        Ok(EnforceConfig {
            dry_run: self.dry_run.unwrap_or(false),
            audit_log: self.audit_log.as_ref().map(|a| a.get_ref().clone()),
            max_kills_per_minute: max_kills,
            // A group's members are exempt as if each were listed.
            exempt_users: self
                .exempt_users
                .iter()
                .cloned()
                .chain(
                    self.exempt_groups
                        .iter()
                        .flat_map(|g| groups.members(g.get_ref()).iter().cloned()),
                )
                .collect(),
            exempt_groups: self
                .exempt_groups
                .iter()
                .map(|g| g.get_ref().clone())
                .collect(),
            act_on_estimates: self.act_on_estimates.unwrap_or(false),
            timezone,
        })
    }
}
