//! Checks made once the environment is applied: the Plex URL and token, and the audit log.
//! Errors point at the value in the file where it came from there, and never echo a secret.

use super::{Config, ConfigError};

/// A TOML error said plainly where a usual slip explains it: `[rules]` (one table) for
/// `[[rules]]` (the list of rules) or `[[notify]]`'s like.
pub(super) fn toml_error(text: &str, source: &super::SourceMap, e: toml::de::Error) -> ConfigError {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        for list in ["rules", "notify"] {
            if t == format!("[{list}]") {
                let at = offset + (line.len() - line.trim_start().len());
                return source.error(
                    Some(at..at + t.len()),
                    format!(
                        "[{list}] declares one table, but {list} are a list: write each one under [[{list}]], with two brackets"
                    ),
                );
            }
        }
        offset += line.len();
    }
    source.error(e.span(), e.message().trim().to_string())
}

impl Config {
    fn located(&self, span: Option<&std::ops::Range<usize>>, message: String) -> ConfigError {
        self.source.error(span.cloned(), message)
    }

    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url_at = self.spans.plex_url.as_ref();
        let whence = if url_at.is_some() {
            "[plex] url"
        } else {
            "PLEX_URL"
        };
        if let Some(url) = &self.plex.url {
            let parsed = reqwest::Url::parse(url).map_err(|_| {
                self.located(url_at, format!("{whence} is not a URL: write it as http://HOST:32400 (or https://...plex.direct:32400)"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(self.located(
                    url_at,
                    format!("{whence} must start with http:// or https:// and name a host, e.g. http://127.0.0.1:32400"),
                ));
            }
            if parsed.path().starts_with("/web") {
                return Err(self.located(
                    url_at,
                    format!(
                        "{whence} is the address of Plex Web in a browser ({}): give the server's address without the path, {}://{}{}",
                        parsed.path(),
                        parsed.scheme(),
                        parsed.host_str().unwrap_or("HOST"),
                        parsed.port().map_or_else(String::new, |p| format!(":{p}")),
                    ),
                ));
            }
            if parsed.query().is_some()
                || !parsed.username().is_empty()
                || parsed.password().is_some()
            {
                return Err(self.located(
                    url_at,
                    format!(
                        "{whence} must be the server's base address ({}://{}), without a query or credentials: give the token as PLEX_TOKEN or [plex] token",
                        parsed.scheme(),
                        parsed.host_str().unwrap_or("HOST"),
                    ),
                ));
            }
        }
        if let Some(token) = &self.plex.token
            && token.chars().any(|c| c.is_control() || c == ' ')
        {
            return Err(self.located(
                None,
                "the Plex token contains spaces or control characters (a stray newline?)".into(),
            ));
        }
        if let Some(listen) = self.http.listen
            && !listen.ip().is_loopback()
            && self.http.token.is_none()
        {
            return Err(self.located(
                self.spans.http_listen.as_ref(),
                format!(
                    "[http] listen = \"{listen}\" is reachable from other hosts, so it needs a token: set [http] token (or token_file, or {}), which clients send as Authorization: Bearer TOKEN",
                    super::http::TOKEN_ENV
                ),
            ));
        }
        for target in &self.notify {
            target.checked_url(&self.source)?;
        }
        if let Some(audit) = &self.enforce.audit_log {
            let at = self.spans.audit_log.as_ref();
            if audit.is_dir() {
                return Err(self.located(
                    at,
                    format!(
                        "audit_log {} is a directory: name a file, e.g. {}/audit.jsonl",
                        audit.display(),
                        audit.display()
                    ),
                ));
            }
            if let Some(dir) = audit.parent().filter(|d| !d.as_os_str().is_empty())
                && !dir.is_dir()
            {
                return Err(self.located(
                    at,
                    format!(
                        "audit_log: the directory {} does not exist: create it, owned by the user streamwarden runs as",
                        dir.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Settings that are legal but do nothing as written, one sentence each.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.plex.tls_verify
            && self
                .plex
                .url
                .as_deref()
                .is_some_and(|u| u.trim_start().to_ascii_lowercase().starts_with("http://"))
        {
            let at = self
                .spans
                .tls_verify
                .as_ref()
                .map_or_else(String::new, |s| {
                    let (l, c) = self.source.position(s.start);
                    format!(" (line {l}, column {c})")
                });
            out.push(format!(
                "[plex] tls_verify = false{at} has no effect: the Plex url is plain http://, which is never verified"
            ));
        }
        out
    }
}
