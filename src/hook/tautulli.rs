//! Tautulli's API v2, as kill_stream.py calls it: `GET $TAUTULLI_URL/api/v2` with the
//! parameters and `apikey` in the query string. The API key is never printed: errors name
//! the server by its host and port only, and anything Tautulli answers is redacted.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use serde_json::Value as Json;

/// How long to wait for Tautulli to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What Tautulli exports to the scripts it runs.
#[derive(Clone, Default)]
pub struct TautulliEnv {
    pub url: Option<String>,
    pub apikey: Option<String>,
    pub public_url: Option<String>,
}

impl std::fmt::Debug for TautulliEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TautulliEnv")
            .field("url", &self.url)
            .field("apikey", &self.apikey.as_ref().map(|_| "(hidden)"))
            .field("public_url", &self.public_url)
            .finish()
    }
}

impl TautulliEnv {
    /// `TAUTULLI_URL`, `TAUTULLI_APIKEY` and `TAUTULLI_PUBLIC_URL` from `var`; empty
    /// values count as unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| {
            var(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Self {
            url: get("TAUTULLI_URL"),
            apikey: get("TAUTULLI_APIKEY"),
            public_url: get("TAUTULLI_PUBLIC_URL"),
        }
    }

    /// From this process's environment.
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Where the rich message's author "Tautulli" links: the public URL when Tautulli
    /// has one (it exports "/" when none is set), else its own URL.
    pub fn link(&self) -> &str {
        self.public_url
            .as_deref()
            .filter(|u| *u != "/")
            .or(self.url.as_deref())
            .unwrap_or_default()
    }
}

/// Why a call to Tautulli failed. None of these carry the API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TautulliError {
    #[error("{0}")]
    Setup(String),
    /// No answer: refused, unresolvable, TLS, or no answer in time.
    #[error("Tautulli at {at} did not answer: {reason}")]
    Unreachable { at: String, reason: String },
    /// `{"response": {"result": "error", ...}}`.
    #[error("Tautulli answered with an error: {0}")]
    Api(String),
    /// An answer that is not Tautulli's JSON.
    #[error("Tautulli at {at} answered HTTP {status} without its API's JSON")]
    BadAnswer { at: String, status: u16 },
}

impl TautulliError {
    /// Whether Tautulli did not answer at all: further calls would only wait again.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, TautulliError::Unreachable { .. })
    }
}

#[derive(Deserialize)]
struct Answer {
    response: Response,
}

#[derive(Deserialize)]
struct Response {
    result: String,
    #[serde(default)]
    message: Option<Json>,
    #[serde(default)]
    data: Json,
}

/// A Tautulli API client.
pub struct Tautulli {
    api: Url,
    /// host:port, for messages.
    at: String,
    apikey: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for Tautulli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tautulli").field("at", &self.at).finish()
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some(h) if h.eq_ignore_ascii_case("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

impl Tautulli {
    /// A client for the Tautulli `env` names. A loopback Tautulli's certificate is not
    /// checked (Tautulli's own HTTPS is self-signed, and its URL for scripts names
    /// localhost); any other host's is.
    pub fn new(env: &TautulliEnv) -> Result<Self, TautulliError> {
        let url = env.url.as_deref().ok_or_else(|| {
            TautulliError::Setup(
                "TAUTULLI_URL is not set (Tautulli sets it, with TAUTULLI_APIKEY, for the scripts it runs)".into(),
            )
        })?;
        let apikey = env.apikey.clone().ok_or_else(|| {
            TautulliError::Setup(
                "TAUTULLI_APIKEY is not set (Tautulli sets it for the scripts it runs)".into(),
            )
        })?;
        let api = Url::parse(&format!("{}/api/v2", url.trim_end_matches('/')))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| {
                TautulliError::Setup(
                    "TAUTULLI_URL is not an http(s) URL of a host; it should be like http://localhost:8181/".into(),
                )
            })?;
        let at = match (api.host_str(), api.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => "?".to_string(),
        };
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // The API key is in the query: never follow it elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(is_loopback(&api))
            .dns_resolver(std::sync::Arc::new(crate::plex::resolve::LocalFirst))
            .build()
            .map_err(|e| TautulliError::Setup(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self {
            api,
            at,
            apikey,
            client,
        })
    }

    /// The text with the API key blanked out.
    fn redact(&self, text: &str) -> String {
        if self.apikey.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.apikey, "(apikey)")
        }
    }

    /// Calls `cmd` with `params`, waiting at most `timeout`; the answer's `data`.
    async fn call(
        &self,
        cmd: &str,
        params: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Json, TautulliError> {
        let mut query: Vec<(&str, &str)> = params.to_vec();
        query.push(("cmd", cmd));
        query.push(("apikey", &self.apikey));
        let unreachable = |e: reqwest::Error| TautulliError::Unreachable {
            at: self.at.clone(),
            reason: if e.is_timeout() {
                format!("no answer within {}s", timeout.as_secs_f32())
            } else {
                self.redact(&error_chain(&e.without_url()))
            },
        };
        let answer = self
            .client
            .get(self.api.clone())
            .query(&query)
            .timeout(timeout)
            .send()
            .await
            .map_err(unreachable)?;
        let status = answer.status().as_u16();
        let text = answer.text().await.map_err(unreachable)?;
        let Ok(Answer { response }) = serde_json::from_str::<Answer>(&text) else {
            return Err(TautulliError::BadAnswer {
                at: self.at.clone(),
                status,
            });
        };
        if response.result == "success" {
            return Ok(response.data);
        }
        let message = match response.message {
            Some(Json::String(s)) => s,
            Some(Json::Null) | None => format!("{} (HTTP {status})", response.result),
            Some(other) => other.to_string(),
        };
        Err(TautulliError::Api(self.redact(&message)))
    }

    /// `cmd=notify`: sends `body` (and `subject`, when given) through notifier `id`.
    pub async fn notify(
        &self,
        notifier_id: &str,
        subject: Option<&str>,
        body: &str,
        timeout: Duration,
    ) -> Result<(), TautulliError> {
        let mut params = vec![("notifier_id", notifier_id)];
        if let Some(s) = subject {
            params.push(("subject", s));
        }
        params.push(("body", body));
        self.call("notify", &params, timeout).await.map(|_| ())
    }

    /// `cmd=get_user`: the friendly name Tautulli shows for Plex user `user_id`, when
    /// Tautulli knows the user (it answers a stand-in "Local" user for an unknown id).
    pub async fn friendly_name(
        &self,
        user_id: i64,
        timeout: Duration,
    ) -> Result<Option<String>, TautulliError> {
        let id = user_id.to_string();
        let data = self
            .call("get_user", &[("user_id", id.as_str())], timeout)
            .await?;
        let same_user = match data.get("user_id") {
            Some(Json::Number(n)) => n.to_string() == id,
            Some(Json::String(s)) => s.trim() == id,
            _ => false,
        };
        Ok(data
            .get("friendly_name")
            .and_then(Json::as_str)
            .map(str::trim)
            .filter(|n| same_user && !n.is_empty())
            .map(str::to_string))
    }
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_prefers_a_real_public_url() {
        let env = |p: Option<&str>| TautulliEnv {
            url: Some("http://localhost:8181/".into()),
            apikey: None,
            public_url: p.map(Into::into),
        };
        assert_eq!(env(Some("/")).link(), "http://localhost:8181/");
        assert_eq!(env(None).link(), "http://localhost:8181/");
        assert_eq!(
            env(Some("https://t.example.com/")).link(),
            "https://t.example.com/"
        );
    }

    #[test]
    fn setup_errors_and_debug_never_show_the_key() {
        let env = TautulliEnv::from_vars(|k| match k {
            "TAUTULLI_APIKEY" => Some("k3y".into()),
            "TAUTULLI_URL" => Some("  ".into()),
            _ => None,
        });
        assert!(!format!("{env:?}").contains("k3y"));
        let e = Tautulli::new(&env).unwrap_err();
        assert!(e.to_string().contains("TAUTULLI_URL is not set"), "{e}");
        let env = TautulliEnv {
            url: Some("localhost:8181".into()),
            ..env
        };
        let e = Tautulli::new(&env).unwrap_err();
        assert!(e.to_string().contains("not an http(s) URL"), "{e}");
    }

    #[test]
    fn loopback_hosts() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(is_loopback(&u("https://localhost:8181/api/v2")));
        assert!(is_loopback(&u("https://127.0.0.1:8181/")));
        assert!(is_loopback(&u("https://[::1]:8181/")));
        assert!(!is_loopback(&u("https://192.168.1.5:8181/")));
    }
}
