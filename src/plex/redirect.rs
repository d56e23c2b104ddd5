//! Redirects: followed only within the server's own origin, so the token never goes
//! elsewhere (nor from https to http).

/// How many redirects within the server's own origin one request may follow.
pub(super) const MAX_REDIRECTS: usize = 10;

/// Why the redirect policy stopped a request; turned into a [`PlexError`] by the caller,
/// which knows the endpoint.
#[derive(Debug)]
pub(super) enum Refused {
    /// The target, already stripped of credentials, query and fragment.
    CrossOrigin(String),
    Loop,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::CrossOrigin(to) => write!(f, "redirect to another origin: {to}"),
            Refused::Loop => write!(f, "more than {MAX_REDIRECTS} redirects"),
        }
    }
}

impl std::error::Error for Refused {}

/// Whether two URLs share scheme, host and port (a missing port is the scheme's default).
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A URL fit for an error message: no credentials, no query (it may hold a token), no
/// fragment.
fn printable(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    // Both fail only for URLs that cannot have credentials, which then have none.
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Follows a redirect only within the origin the request started at: every request
/// carries the token in a header, and reqwest would re-send it to any host, including
/// from https to http.
pub(super) fn policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let start = attempt.previous().first();
        if !start.is_some_and(|s| same_origin(s, attempt.url())) {
            let target = printable(attempt.url());
            return attempt.error(Refused::CrossOrigin(target));
        }
        // `previous` holds the first URL and every redirect followed so far.
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(Refused::Loop);
        }
        attempt.follow()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).expect("a test URL")
    }

    #[test]
    fn origins_differ_by_scheme_host_or_port() {
        let plex = url("https://1-2-3-4.abc.plex.direct:32400/status/sessions");
        assert!(same_origin(
            &plex,
            &url("https://1-2-3-4.abc.plex.direct:32400/other?x=1")
        ));
        // A downgrade to http on the same host and port.
        assert!(!same_origin(
            &plex,
            &url("http://1-2-3-4.abc.plex.direct:32400/status/sessions")
        ));
        assert!(!same_origin(
            &plex,
            &url("https://evil.example:32400/status/sessions")
        ));
        assert!(!same_origin(
            &plex,
            &url("https://1-2-3-4.abc.plex.direct:443/status/sessions")
        ));
        // A default port written out is the same port.
        assert!(same_origin(&url("https://h/a"), &url("https://h:443/b")));
        assert!(!same_origin(&url("https://h/a"), &url("http://h:443/b")));
    }

    #[test]
    fn printed_targets_lose_credentials_query_and_fragment() {
        assert_eq!(
            printable(&url(
                "http://u:p@other:32400/status/sessions?X-Plex-Token=t#f"
            )),
            "http://other:32400/status/sessions"
        );
    }
}
