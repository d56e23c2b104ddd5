//! What the HTTP endpoint's guard and handlers share: the Host names it answers to, the
//! cross-site check for requests that change anything, typed JSON bodies (`ApiJson`) and the
//! one API error (`ApiError`).

use axum::http::header;
use axum::response::IntoResponse;

/// The Host names the endpoint answers to: the address it listens on (any IP address when
/// it listens on all of them), `localhost`, and the names in `[http] hosts`. A name that
/// resolves here by other means (DNS rebinding: a web page's own name pointed at this
/// address) gets 421, so no page can read or act through the owner's browser.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    listen: Option<std::net::SocketAddr>,
    names: Vec<String>,
}

impl Hosts {
    pub fn new(listen: Option<std::net::SocketAddr>, names: &[String]) -> Self {
        Self {
            listen,
            names: names
                .iter()
                .map(|n| n.trim().to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether a request's `Host` header names this endpoint.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        // The name without its port ("[::1]:8686", "nas.local:8686", "10.0.0.2").
        let name = if let Some(rest) = host.strip_prefix('[') {
            rest.split(']').next().unwrap_or_default().to_string()
        } else {
            host.rsplit_once(':')
                .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
                .map_or(host.as_str(), |(n, _)| n)
                .to_string()
        };
        if name == "localhost" || self.names.contains(&name) {
            return true;
        }
        let Ok(ip) = name.parse::<std::net::IpAddr>() else {
            return false;
        };
        match self.listen.map(|l| l.ip()) {
            // Listening everywhere: any address of this host; a name is never an address.
            Some(l) if l.is_unspecified() => true,
            Some(l) => l == ip || (l.is_loopback() && ip.is_loopback()),
            None => ip.is_loopback(),
        }
    }
}

/// Why a request that changes something is refused as coming from another site: not JSON
/// (a form or a no-cors fetch can post across sites without asking; JSON cannot), or a
/// browser that says it comes from another site or origin.
pub fn cross_site(headers: &axum::http::HeaderMap) -> Option<&'static str> {
    let value = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let json = value(header::CONTENT_TYPE)
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Some("send the request as Content-Type: application/json");
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Some("refused: the request comes from another site");
    }
    if let Some(origin) = value(header::ORIGIN) {
        let host = value(header::HOST).unwrap_or_default();
        let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
        if origin == "null" || !authority.eq_ignore_ascii_case(host) {
            return Some("refused: the request comes from another origin");
        }
    }
    None
}

/// An API's refusal or failure: a status and `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: axum::http::StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: axum::http::StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// A JSON request body of type `T`: a body that is not one is answered 400 with what was
/// expected (an [`ApiError`]), so no handler parses JSON by hand.
pub struct ApiJson<T>(pub T);

/// What a typed body looks like, for the 400 that says so.
pub trait Example {
    const EXAMPLE: &'static str;
}

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned + Example,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_REQUEST, e.body_text()))?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                format!("the body must be JSON such as {}: {e}", T::EXAMPLE),
            )
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}
