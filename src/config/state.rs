//! The `[state]` table: where the state database lives.

use std::path::PathBuf;

/// `[state]`, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateConfig {
    /// `path`, when set; otherwise the default (`state::default_path`).
    pub path: Option<PathBuf>,
}

/// `[state]` as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    path: Option<toml::Spanned<String>>,
}

impl RawState {
    pub(super) fn resolve(
        self,
        source: &super::SourceMap,
    ) -> Result<StateConfig, super::ConfigError> {
        let Some(p) = self.path else {
            return Ok(StateConfig::default());
        };
        let text = p.get_ref().trim();
        if text.is_empty() {
            return Err(source.error(
                Some(p.span()),
                "path: empty; leave it out for the default (the XDG state folder, /var/lib/streamwarden under systemd)".to_string(),
            ));
        }
        Ok(StateConfig {
            path: Some(PathBuf::from(text)),
        })
    }
}
