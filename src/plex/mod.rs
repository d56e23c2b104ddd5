//! The Plex Media Server client: sessions, source facts, capabilities and terminate.

pub mod bandwidth;
pub mod events;
mod redirect;
pub mod resolve;
pub mod session;
pub mod source;
pub mod xml;

pub use session::{PlayState, Session, SourceFacts};
pub use source::SessionSource;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};

/// How to reach and identify with a Plex server.
#[derive(Clone)]
pub struct PlexSettings {
    pub url: String,
    pub token: String,
    pub client_identifier: String,
    pub timeout: Duration,
    pub tls_verify: bool,
    /// The most of one answer that is read, in bytes: a longer one is an error, not memory.
    pub max_response: usize,
}

/// The default cap on one answer from Plex: 32 MB (thousands of sessions fit in 1 MB).
pub const DEFAULT_MAX_RESPONSE: usize = 32 << 20;

impl std::fmt::Debug for PlexSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlexSettings")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("client_identifier", &self.client_identifier)
            .field("timeout", &self.timeout)
            .field("tls_verify", &self.tls_verify)
            .finish()
    }
}

/// Everything that can go wrong talking to Plex. Messages never carry the token.
#[derive(Debug, thiserror::Error)]
pub enum PlexError {
    #[error(
        "Plex rejected the token (401 Unauthorized at {endpoint}): check PLEX_TOKEN or [plex] token"
    )]
    Unauthorized { endpoint: String },
    #[error(
        "this Plex server cannot stop streams: it has no Plex Pass (ownerFeatures lacks session_kick); stopping a stream needs the server owner's Plex Pass"
    )]
    NoPlexPass,
    #[error("Plex answered {status} at {endpoint}{detail}")]
    Status {
        endpoint: String,
        status: u16,
        detail: String,
    },
    #[error(
        "Plex's answer to {endpoint} is longer than {max_mb} MB: not read (raise [plex] max_response_mb if the server is really that busy)"
    )]
    TooLarge { endpoint: String, max_mb: usize },
    #[error("cannot reach Plex at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Plex did not answer {endpoint} within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("Plex's answer to {endpoint} is not the XML expected: {reason}")]
    BadXml { endpoint: String, reason: String },
    #[error(
        "Plex redirected {endpoint} from {url} to {target}, another origin (scheme, host or port): refused, the token is only sent to the configured server; if that server is yours, set [plex] url to it"
    )]
    CrossOriginRedirect {
        endpoint: String,
        url: String,
        /// The redirect's target without credentials, query or fragment.
        target: String,
    },
    #[error("Plex redirected {endpoint} more than {max} times within {url}: a redirect loop")]
    RedirectLoop {
        endpoint: String,
        url: String,
        max: usize,
    },
    #[error("invalid Plex settings: {0}")]
    Settings(String),
}

impl PlexError {
    /// Whether a read that failed this way is worth retrying.
    fn transient(&self) -> bool {
        match self {
            PlexError::Unreachable { .. } | PlexError::Timeout { .. } => true,
            PlexError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// What `GET /` says about the server.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    pub plex_pass: Option<bool>,
    pub session_kick: Option<bool>,
    pub name: Option<String>,
    pub version: Option<String>,
}

impl Capabilities {
    /// False only when the server says plainly that it cannot kick sessions.
    pub fn can_kill(&self) -> bool {
        !(self.session_kick == Some(false)
            || (self.session_kick.is_none() && self.plex_pass == Some(false)))
    }
}

/// A Plex Media Server client.
pub struct PlexClient {
    http: reqwest::Client,
    settings: PlexSettings,
    base: String,
    sources: Mutex<HashMap<String, SourceFacts>>,
    read_attempts: u32,
    /// When every request must be over, retries included, and the budget it was set from.
    deadline: Mutex<Option<(tokio::time::Instant, Duration)>>,
}

const PRODUCT: &str = "streamwarden";

/// The most a one-shot command (`sessions`, each step of `hook`) spends talking to Plex,
/// retries included: well inside Tautulli's 30 s script timeout, so the reason is printed.
pub const ONE_SHOT_BUDGET: Duration = Duration::from_secs(20);

impl PlexClient {
    pub fn new(settings: PlexSettings) -> Result<Self, PlexError> {
        let base = settings.url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| PlexError::Settings(format!("Plex url {base:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(PlexError::Settings(format!(
                "Plex url {base:?} must start with http:// or https://"
            )));
        }
        let mut headers = HeaderMap::new();
        let mut token = HeaderValue::from_str(&settings.token).map_err(|_| {
            PlexError::Settings("the Plex token contains characters not allowed in a header".into())
        })?;
        token.set_sensitive(true);
        headers.insert("X-Plex-Token", token);
        let id = HeaderValue::from_str(&settings.client_identifier).map_err(|_| {
            PlexError::Settings(
                "client_identifier contains characters not allowed in a header".into(),
            )
        })?;
        headers.insert("X-Plex-Client-Identifier", id);
        headers.insert("X-Plex-Product", HeaderValue::from_static(PRODUCT));
        headers.insert(
            "X-Plex-Version",
            HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
        );
        headers.insert("Accept", HeaderValue::from_static("application/xml"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(settings.timeout)
            .redirect(redirect::policy())
            .connect_timeout(settings.timeout)
            .danger_accept_invalid_certs(!settings.tls_verify)
            .user_agent(concat!("streamwarden/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(std::sync::Arc::new(resolve::LocalFirst))
            .build()
            .map_err(|e| {
                PlexError::Settings(format!("cannot build the HTTP client: {}", e.without_url()))
            })?;
        Ok(Self {
            http,
            settings,
            base,
            sources: Mutex::new(HashMap::new()),
            read_attempts: 3,
            deadline: Mutex::new(None),
        })
    }

    /// The server URL (never the token).
    pub fn url(&self) -> &str {
        &self.base
    }

    /// How many times a read is tried before giving up (at least once).
    pub fn set_read_attempts(&mut self, n: u32) {
        self.read_attempts = n.max(1);
    }

    /// Gives the reads and terminates made from now on `budget` in all, retries included;
    /// one still running then fails as a timeout, and none starts after. `None` lifts the
    /// bound (each try still has the configured timeout).
    pub fn set_budget(&self, budget: Option<Duration>) {
        *crate::lock(&self.deadline) = budget.map(|b| (tokio::time::Instant::now() + b, b));
    }

    /// `work` (a request, or a read with its retries) within the budget, if one is set.
    async fn within<T>(
        &self,
        endpoint: &str,
        work: impl Future<Output = Result<T, PlexError>>,
    ) -> Result<T, PlexError> {
        let Some((deadline, budget)) = *crate::lock(&self.deadline) else {
            return work.await;
        };
        let spent = || PlexError::Timeout {
            endpoint: endpoint.to_string(),
            timeout: budget,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(spent());
        }
        tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or_else(|_| Err(spent()))
    }

    fn map_send_error(&self, endpoint: &str, e: reqwest::Error) -> PlexError {
        let refused = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<redirect::Refused>())
            .filter(|_| e.is_redirect());
        if let Some(refused) = refused {
            return match refused {
                redirect::Refused::CrossOrigin(target) => PlexError::CrossOriginRedirect {
                    endpoint: endpoint.to_string(),
                    url: self.base.clone(),
                    target: redact(target, &self.settings.token),
                },
                redirect::Refused::Loop => PlexError::RedirectLoop {
                    endpoint: endpoint.to_string(),
                    url: self.base.clone(),
                    max: redirect::MAX_REDIRECTS,
                },
            };
        }
        if e.is_timeout() {
            PlexError::Timeout {
                endpoint: endpoint.to_string(),
                timeout: self.settings.timeout,
            }
        } else {
            let e = e.without_url();
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason.push_str(": ");
                reason.push_str(&s.to_string());
                source = s.source();
            }
            if self.base.starts_with("https://")
                && (reason.contains("InvalidContentType") || reason.contains("corrupt message"))
            {
                reason.push_str(" (the server answered in plain HTTP: use an http:// URL)");
            }
            if let Some(hint) = tls_hint(&reason) {
                reason.push_str(hint);
            }
            PlexError::Unreachable {
                url: self.base.clone(),
                reason: redact(&reason, &self.settings.token),
            }
        }
    }

    async fn get_once(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<String, PlexError> {
        let url = format!("{}{}", self.base, endpoint);
        let resp = self
            .http
            .get(&url)
            .query(query)
            .send()
            .await
            .map_err(|e| self.map_send_error(endpoint, e))?;
        let status = resp.status();
        let body = self.read_body(endpoint, resp).await?;
        check_status(endpoint, status, &body, &self.settings.token)?;
        Ok(body)
    }

    /// A response's body, read chunk by chunk up to `max_response` bytes: an endless or
    /// huge answer is an error, never memory.
    async fn read_body(
        &self,
        endpoint: &str,
        mut resp: reqwest::Response,
    ) -> Result<String, PlexError> {
        let max = self.settings.max_response;
        let too_large = || PlexError::TooLarge {
            endpoint: endpoint.to_string(),
            max_mb: max >> 20,
        };
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.map_send_error(endpoint, e))?
        {
            if body.len() + chunk.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// A read, retries included, within the budget.
    async fn read(&self, endpoint: &str) -> Result<String, PlexError> {
        self.within(endpoint, self.read_retrying(endpoint, &[]))
            .await
    }

    /// A read with bounded retries and backoff on transient failures.
    async fn read_retrying(
        &self,
        endpoint: &str,
        query: &[(&str, &str)],
    ) -> Result<String, PlexError> {
        let mut delay = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            match self.get_once(endpoint, query).await {
                Ok(body) => return Ok(body),
                Err(e) if e.transient() && attempt < self.read_attempts => {
                    tracing::debug!(endpoint, attempt, error = %e, "retrying Plex read");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `GET /status/sessions`, normalised.
    pub async fn sessions(&self) -> Result<Vec<Session>, PlexError> {
        let endpoint = "/status/sessions";
        let body = self.read(endpoint).await?;
        session::parse_sessions(&body).map_err(|e| PlexError::BadXml {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })
    }

    /// `GET /statistics/bandwidth?timespan=6&at>=SINCE`: Plex's per-second byte counters
    /// from `since` (unix seconds) on. Without Plex Pass the server answers 401, 403 or 404.
    pub async fn bandwidth(&self, since: i64) -> Result<bandwidth::Bandwidth, PlexError> {
        let endpoint = "/statistics/bandwidth";
        let timespan = bandwidth::TIMESPAN_SECONDS.to_string();
        let since = since.to_string();
        // `at>` is sent as `at%3E=SINCE`, which the server reads as at >= SINCE.
        let query = [("timespan", timespan.as_str()), ("at>", since.as_str())];
        let body = self
            .within(endpoint, self.read_retrying(endpoint, &query))
            .await?;
        bandwidth::parse(&body).map_err(|e| PlexError::BadXml {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })
    }

    /// Sessions with their source file facts filled in (cached per ratingKey).
    /// A failure to read a source leaves its facts unknown rather than failing.
    pub async fn sessions_with_sources(&self) -> Result<Vec<Session>, PlexError> {
        let mut sessions = self.sessions().await?;
        for s in &mut sessions {
            self.fill_source(s).await;
        }
        Ok(sessions)
    }

    /// Fills `source_bitrate_kbps` and `source_resolution` from the library.
    ///
    /// Live TV has no library file: its ratingKey names a guide entry whose Media
    /// describes the broadcast, not a source, so a live session's source facts stay
    /// unknown and the library is not asked.
    pub async fn fill_source(&self, s: &mut Session) {
        if s.live {
            s.source_bitrate_kbps = None;
            s.source_resolution = None;
            return;
        }
        let Some(key) = s.rating_key.clone() else {
            return;
        };
        match self.source_facts(&key, s.media_id.as_deref()).await {
            Ok(f) => {
                s.source_bitrate_kbps = f.bitrate_kbps;
                s.source_resolution = f.resolution;
            }
            Err(e) => {
                tracing::debug!(rating_key = %key, error = %e, "cannot read the source file's facts; source_bitrate and source_resolution stay unknown")
            }
        }
    }

    /// `GET /library/metadata/{ratingKey}`, cached.
    pub async fn source_facts(
        &self,
        rating_key: &str,
        media_id: Option<&str>,
    ) -> Result<SourceFacts, PlexError> {
        let cache_key = format!("{rating_key}/{}", media_id.unwrap_or(""));
        if let Some(f) = self.cache().get(&cache_key) {
            return Ok(f.clone());
        }
        let endpoint = format!("/library/metadata/{}", path_key(rating_key)?);
        let body = match self.read(&endpoint).await {
            Ok(b) => b,
            // Not in the library (a pre-roll, a deleted item): unknown facts, remembered so
            // the library is not asked again at every poll.
            Err(PlexError::Status { status: 404, .. }) => {
                self.cache().insert(cache_key, SourceFacts::default());
                return Ok(SourceFacts::default());
            }
            Err(e) => return Err(e),
        };
        let facts =
            session::parse_source_facts(&body, media_id).map_err(|e| PlexError::BadXml {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        self.cache().insert(cache_key, facts.clone());
        Ok(facts)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, SourceFacts>> {
        crate::lock(&self.sources)
    }

    /// `GET /`: whether the server can kill sessions.
    pub async fn capabilities(&self) -> Result<Capabilities, PlexError> {
        let body = self.read("/").await?;
        let c = session::parse_container(&body).map_err(|e| PlexError::BadXml {
            endpoint: "/".to_string(),
            reason: e.to_string(),
        })?;
        Ok(Capabilities {
            plex_pass: c
                .my_plex_subscription
                .as_deref()
                .map(|v| v == "1" || v == "true"),
            session_kick: c
                .owner_features
                .as_deref()
                .map(|f| f.split(',').any(|x| x.trim() == "session_kick")),
            name: c.friendly_name,
            version: c.version,
        })
    }

    /// `GET /status/sessions/terminate`. Never retried: a caller that is unsure whether
    /// it landed re-reads the sessions instead.
    pub async fn terminate(&self, session_id: &str, reason: &str) -> Result<(), PlexError> {
        let endpoint = "/status/sessions/terminate";
        let query = [("sessionId", session_id), ("reason", reason)];
        self.within(endpoint, self.get_once(endpoint, &query))
            .await
            .map(|_| ())
    }

    /// `DELETE /transcode/sessions/KEY`: stops a transcode that survived a terminate.
    pub async fn stop_transcode(&self, key: &str) -> Result<(), PlexError> {
        let endpoint = format!("/transcode/sessions/{}", path_key(key)?);
        let url = format!("{}{}", self.base, endpoint);
        let resp = self
            .http
            .delete(&url)
            .send()
            .await
            .map_err(|e| self.map_send_error(&endpoint, e))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        check_status(&endpoint, status, &body, &self.settings.token)
    }
}

fn check_status(
    endpoint: &str,
    status: StatusCode,
    body: &str,
    token: &str,
) -> Result<(), PlexError> {
    if status.is_success() {
        return Ok(());
    }
    if status == StatusCode::UNAUTHORIZED {
        return Err(PlexError::Unauthorized {
            endpoint: endpoint.to_string(),
        });
    }
    let snippet: String = body.chars().filter(|c| !c.is_control()).take(160).collect();
    let detail = if snippet.trim().is_empty() || snippet.trim_start().starts_with('<') {
        String::new()
    } else {
        format!(": {}", redact(snippet.trim(), token))
    };
    Err(PlexError::Status {
        endpoint: endpoint.to_string(),
        status: status.as_u16(),
        detail,
    })
}

/// Keys Plex hands out (ratingKey, transcode key) are plain tokens; anything else is
/// refused rather than spliced into a path.
fn path_key(s: &str) -> Result<&str, PlexError> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
    {
        Ok(s)
    } else {
        Err(PlexError::Settings(format!("{s:?} is not a Plex key")))
    }
}

/// What to do when the server's certificate was refused, from rustls's reason.
fn tls_hint(reason: &str) -> Option<&'static str> {
    const REFUSALS: &[&str] = &[
        "CaUsedAsEndEntity",
        "UnknownIssuer",
        "NotValidForName",
        "Expired",
        "BadSignature",
        "SelfSigned",
        "invalid peer certificate",
    ];
    REFUSALS.iter().any(|r| reason.contains(r)).then_some(
        " (the server's TLS certificate does not verify for this address: use its plex.direct \
         address, https://IP-WITH-DASHES.SERVER-HASH.plex.direct:32400 as Plex's own apps do \
         (shown in Plex Web's network tab or at plex.tv/api/resources), use http://, or set \
         [plex] tls_verify = false)",
    )
}

/// Replaces every occurrence of the token in `text`.
pub fn redact(text: &str, token: &str) -> String {
    if token.len() < 4 {
        return text.to_string();
    }
    text.replace(token, "<redacted>")
}

#[cfg(test)]
mod tls_tests {
    #[test]
    fn a_refused_certificate_says_what_to_do() {
        let reason = "error sending request: client error (Connect): invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))";
        let hint = super::tls_hint(reason).expect("a hint");
        assert!(hint.contains("plex.direct"), "{hint}");
        assert!(hint.contains("tls_verify = false"), "{hint}");
        assert!(super::tls_hint("connection refused").is_none());
    }
}
