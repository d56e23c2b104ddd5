//! `[http]`: the daemon's endpoint, and the token that guards it.

use std::net::SocketAddr;
use std::path::PathBuf;

use toml::Spanned;

use super::{ConfigError, SourceMap};

/// The environment variable that gives the HTTP token (it wins over the file).
pub const TOKEN_ENV: &str = "STREAMWARDEN_HTTP_TOKEN";

/// A secret that never shows in logs, errors or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[http]`, resolved. Off unless `listen` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpConfig {
    /// e.g. "127.0.0.1:9090".
    pub listen: Option<SocketAddr>,
    /// Required as `Authorization: Bearer TOKEN` when set.
    pub token: Option<Secret>,
    /// Host names the endpoint answers to besides its own address and `localhost` (the
    /// name Tautulli, Prometheus or a browser uses for it); any other gets 421.
    pub hosts: Vec<String>,
}

/// `[http]` as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<Spanned<SocketAddr>>,
    token: Option<String>,
    token_file: Option<Spanned<PathBuf>>,
    hosts: Option<Vec<Spanned<String>>>,
}

/// Where `listen` stands in the file, for the check made once the environment is known.
pub(super) type ListenSpan = Option<std::ops::Range<usize>>;

impl RawHttp {
    pub(super) fn resolve(
        self,
        source: &SourceMap,
    ) -> Result<(HttpConfig, ListenSpan), ConfigError> {
        let token = match (&self.token, &self.token_file) {
            (Some(_), Some(f)) => {
                return Err(source.error(
                    Some(f.span()),
                    "token_file: give the token or token_file, not both",
                ));
            }
            (Some(t), None) => Some(t.trim().to_string()),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(f.get_ref()).map_err(|e| {
                    source.error(
                        Some(f.span()),
                        format!("token_file: cannot read {}: {e}", f.get_ref().display()),
                    )
                })?;
                Some(text.trim().to_string())
            }
            (None, None) => None,
        };
        let token = token.filter(|t| !t.is_empty()).map(Secret);
        let mut hosts = Vec::new();
        for h in self.hosts.iter().flatten() {
            let name = h.get_ref().trim().to_ascii_lowercase();
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
            if !ok {
                return Err(source.error(
                    Some(h.span()),
                    format!(
                        "hosts: {:?} is not a host name: write names such as \"nas.local\" or \"streamwarden\", without a scheme or a port",
                        h.get_ref()
                    ),
                ));
            }
            hosts.push(name);
        }
        Ok((
            HttpConfig {
                listen: self.listen.as_ref().map(|l| *l.get_ref()),
                token,
                hosts,
            },
            self.listen.as_ref().map(Spanned::span),
        ))
    }
}
