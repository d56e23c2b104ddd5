//! Facts from plaintext HTTP requests that tie a connection to a Plex playback session.
//!
//! Only the captured bytes are parsed (a snaplen of 256 leaves about 190 bytes of request), and
//! a value is only taken when its end was captured too: a request line or header cut off by the
//! snaplen never yields a truncated id. Nothing is allocated unless a hint is found.

/// The Plex identifiers found in a client's HTTP request.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestHints {
    /// Media part id from `/library/parts/<PARTID>/...` (direct play / direct stream).
    pub part_id: Option<String>,
    /// Transcode session id, from `/video/:/transcode/universal/session/<ID>/...` (also
    /// `/music/:/...`) or the `session=` query parameter of transcoder URLs: the id in the
    /// `TranscodeSession` key `/transcode/sessions/<ID>` of `/status/sessions`.
    pub transcode_session: Option<String>,
    /// The client's `X-Plex-Session-Identifier`, from the header or the query parameter.
    pub session_identifier: Option<String>,
}

impl RequestHints {
    /// Whether no hint is present.
    pub fn is_empty(&self) -> bool {
        self.part_id.is_none()
            && self.transcode_session.is_none()
            && self.session_identifier.is_none()
    }

    /// Takes every hint present in `newer`, keeping the current value of the others.
    pub fn merge(&mut self, newer: RequestHints) {
        if newer.part_id.is_some() {
            self.part_id = newer.part_id;
        }
        if newer.transcode_session.is_some() {
            self.transcode_session = newer.transcode_session;
        }
        if newer.session_identifier.is_some() {
            self.session_identifier = newer.session_identifier;
        }
    }
}

const PARTS_PREFIX: &[u8] = b"/library/parts/";
const TRANSCODE_SESSION: &[u8] = b"/transcode/universal/session/";
const SESSION_IDENTIFIER: &[u8] = b"X-Plex-Session-Identifier";
/// Longest identifier accepted.
const MAX_ID_LEN: usize = 128;

/// Whether `payload` starts like an HTTP request this module parses (`GET `, `HEAD `, `POST `).
#[inline]
pub fn looks_like_request(payload: &[u8]) -> bool {
    // One byte decides for almost every packet (most payloads are empty or data).
    match payload.first() {
        Some(b'G') => payload.starts_with(b"GET "),
        Some(b'H') => payload.starts_with(b"HEAD "),
        Some(b'P') => payload.starts_with(b"POST "),
        _ => false,
    }
}

/// Parses the start of a TCP payload as an HTTP request and returns the hints found, or `None`
/// when it is not a request or carries no hint.
pub fn parse_request(payload: &[u8]) -> Option<RequestHints> {
    let rest = if let Some(r) = payload.strip_prefix(b"GET ") {
        r
    } else if let Some(r) = payload.strip_prefix(b"HEAD ") {
        r
    } else {
        payload.strip_prefix(b"POST ")?
    };
    let mut hints = RequestHints::default();

    // Request line: target SP version, possibly cut off by the snaplen.
    let (line, after_line) = match find(rest, b'\n') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (target, target_complete) = match find(line, b' ') {
        Some(i) => (&line[..i], true),
        None => (line, false),
    };
    let target = strip_origin(target);
    let (path, query, path_complete) = match find(target, b'?') {
        Some(i) => (&target[..i], Some(&target[i + 1..]), true),
        None => (target, None, target_complete),
    };

    if let Some(rest) = path.strip_prefix(PARTS_PREFIX) {
        hints.part_id = segment(rest, path_complete);
    }
    if let Some(i) = find_sub(path, TRANSCODE_SESSION) {
        hints.transcode_session = segment(&path[i + TRANSCODE_SESSION.len()..], path_complete);
    }
    if let Some(query) = query {
        let query = match find(query, b'#') {
            Some(i) => &query[..i],
            None => query,
        };
        let mut params = query.split(|&b| b == b'&').peekable();
        while let Some(param) = params.next() {
            // the last parameter is whole only if the target's end was captured
            let whole = params.peek().is_some() || target_complete;
            let Some(eq) = find(param, b'=') else {
                continue;
            };
            let (name, value) = (&param[..eq], &param[eq + 1..]);
            if !whole {
                continue;
            }
            if name.eq_ignore_ascii_case(b"session") && hints.transcode_session.is_none() {
                hints.transcode_session = id(value);
            } else if name.eq_ignore_ascii_case(SESSION_IDENTIFIER) {
                hints.session_identifier = id(value);
            }
        }
    }

    // Header lines, each only if its line end was captured.
    let mut headers = after_line.unwrap_or(&[]);
    while let Some(i) = find(headers, b'\n') {
        let line = trim_cr(&headers[..i]);
        headers = &headers[i + 1..];
        if line.is_empty() {
            break;
        }
        let Some(colon) = find(line, b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(SESSION_IDENTIFIER) {
            hints.session_identifier = id(trim(&line[colon + 1..]));
        }
    }

    (!hints.is_empty()).then_some(hints)
}

/// The first path segment of `rest` as an id, if its end was captured.
fn segment(rest: &[u8], complete: bool) -> Option<String> {
    match find(rest, b'/') {
        Some(i) => id(&rest[..i]),
        None if complete => id(rest),
        None => None,
    }
}

/// `value` as an identifier: 1 to [`MAX_ID_LEN`] bytes of `[A-Za-z0-9._~:%-]`.
fn id(value: &[u8]) -> Option<String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value.iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b'%')
        });
    // all bytes are ASCII, so this never fails
    ok.then(|| std::str::from_utf8(value).ok().map(str::to_owned))
        .flatten()
}

/// Strips `http://host` / `https://host` from an absolute-form request target.
fn strip_origin(target: &[u8]) -> &[u8] {
    let after_scheme = target
        .strip_prefix(b"http://")
        .or_else(|| target.strip_prefix(b"https://"));
    match after_scheme {
        Some(rest) => match find(rest, b'/') {
            Some(i) => &rest[i..],
            None => &[],
        },
        None => target,
    }
}

fn find(hay: &[u8], byte: u8) -> Option<usize> {
    hay.iter().position(|&b| b == byte)
}

fn find_sub(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn direct_play_part() {
        let h = parse_request(b"GET /library/parts/4242/1690000000/file.mkv?X-Plex-Session-Identifier=abc123&X-Plex-Token=t HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(h.part_id, s("4242"));
        assert_eq!(h.session_identifier, s("abc123"));
        assert_eq!(h.transcode_session, None);
    }

    #[test]
    fn transcode_session_path_and_header() {
        let h = parse_request(b"GET /video/:/transcode/universal/session/q7x9/base/00012.ts HTTP/1.1\r\nX-Plex-Session-Identifier: zz-9\r\nAccept: */*\r\n").unwrap();
        assert_eq!(h.transcode_session, s("q7x9"));
        assert_eq!(h.session_identifier, s("zz-9"));
    }

    #[test]
    fn session_query_parameter() {
        let h = parse_request(b"GET /video/:/transcode/universal/start.m3u8?path=%2Flibrary&session=ab12&protocol=hls HTTP/1.1\r\n").unwrap();
        assert_eq!(h.transcode_session, s("ab12"));
    }

    #[test]
    fn truncated_values_are_not_taken() {
        // the snaplen cut the part id and the header value
        assert_eq!(parse_request(b"GET /library/parts/42"), None);
        assert_eq!(parse_request(b"GET /x?session=ab"), None);
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nX-Plex-Session-Identifier: abc"),
            None
        );
        assert_eq!(
            parse_request(b"GET /library/parts/42/"),
            Some(RequestHints {
                part_id: s("42"),
                ..Default::default()
            })
        );
    }

    #[test]
    fn not_requests() {
        assert_eq!(parse_request(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_request(b""), None);
    }
}
