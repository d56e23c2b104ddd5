//! The notifications kill_stream.py sends through Tautulli, built the same way: the plain
//! subject and body, and the Discord embed or Slack attachment a Tautulli Webhook notifier
//! passes on. Field names, texts, defaults and the JSON layout are kill_stream.py's, so an
//! owner's channel looks the same whichever of the two sent the message.

use serde_json::{Map, Value as Json, json};
use time::OffsetDateTime;

use crate::plex::Session;

/// The plain notification's subject.
pub const SUBJECT: &str = "Tautulli has killed a stream.";
/// Tautulli's logo: the rich message's author icon, and its default thumbnail.
pub const TAUTULLI_ICON: &str = "https://github.com/Tautulli/Tautulli/raw/master/data/interfaces/default/images/logo-circle.png";
/// `--serverName` when not given.
pub const DEFAULT_SERVER_NAME: &str = "Plex Server";
/// `--richColor` when not given (Plex's orange).
pub const DEFAULT_COLOR: &str = "#E5A00D";
/// `--plexUrl` when not given.
pub const DEFAULT_PLEX_URL: &str = "https://app.plex.tv";

/// Which of kill_stream.py's modes killed the stream: it names the rich message's footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillKind {
    Stream,
    Paused,
    AllStreams,
}

impl KillKind {
    /// The footer's words after "Kill ".
    pub fn footer_name(self) -> &'static str {
        match self {
            KillKind::Stream => "Stream",
            KillKind::Paused => "Paused",
            KillKind::AllStreams => "All Streams",
        }
    }
}

/// `--richMessage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RichKind {
    Discord,
    Slack,
}

impl RichKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "discord" => Some(RichKind::Discord),
            "slack" => Some(RichKind::Slack),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RichKind::Discord => "discord",
            RichKind::Slack => "slack",
        }
    }
}

/// The rich message's look, from `--richMessage`, `--serverName`, `--richColor`,
/// `--plexUrl` and `--posterUrl`, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Look {
    pub kind: RichKind,
    pub server_name: String,
    pub color: String,
    pub plex_url: String,
    pub poster_url: String,
}

impl Look {
    /// Missing or empty values take kill_stream.py's defaults.
    pub fn new(
        kind: RichKind,
        server_name: Option<&str>,
        color: Option<&str>,
        plex_url: Option<&str>,
        poster_url: Option<&str>,
    ) -> Self {
        let or = |v: Option<&str>, d: &str| {
            v.map(str::trim)
                .filter(|s| !s.is_empty())
                .unwrap_or(d)
                .to_string()
        };
        Self {
            kind,
            server_name: or(server_name, DEFAULT_SERVER_NAME),
            color: or(color, DEFAULT_COLOR),
            plex_url: or(plex_url, DEFAULT_PLEX_URL),
            poster_url: or(poster_url, TAUTULLI_ICON),
        }
    }
}

/// One notify call's text: Tautulli's `subject` (absent for a rich message, as
/// kill_stream.py sends none) and `body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub subject: Option<String>,
    pub body: String,
}

/// The plain notification: by `--username` when given, else by the killed session's id.
pub fn plain(username: Option<&str>, session_id: &str, message: &str) -> Note {
    let body = match username.map(str::trim).filter(|u| !u.is_empty()) {
        Some(user) => format!("Killed {user}'s stream. Reason: {message}."),
        None => format!("Killed session ID '{session_id}'. Reason: {message}"),
    };
    Note {
        subject: Some(SUBJECT.to_string()),
        body,
    }
}

/// What a rich message says about one killed stream.
#[derive(Debug, Clone)]
pub struct Killed<'a> {
    pub kind: KillKind,
    /// Tautulli's friendly name for the user.
    pub user: &'a str,
    pub session_key: &'a str,
    /// What was playing, as Tautulli's `full_title`.
    pub watching: &'a str,
    /// The message the viewer was sent.
    pub message: &'a str,
    /// Where the author "Tautulli" links to.
    pub tautulli_link: &'a str,
}

/// The rich body for `look.kind`, at `now`.
pub fn rich(look: &Look, k: &Killed<'_>, now: OffsetDateTime) -> Note {
    let title = match k.kind {
        KillKind::Paused => format!("Killed {}'s paused stream.", k.user),
        KillKind::Stream | KillKind::AllStreams => format!("Killed {}'s stream.", k.user),
    };
    let footer = format!("{} | Kill {}", look.server_name, k.kind.footer_name());
    // allStreams kills streams other than the one Tautulli's arguments describe, so
    // kill_stream.py shows neither that stream's poster nor its link.
    let (poster, link) = match k.kind {
        KillKind::AllStreams => (TAUTULLI_ICON, DEFAULT_PLEX_URL),
        _ => (look.poster_url.as_str(), look.plex_url.as_str()),
    };
    let author_link = k.tautulli_link.trim_end_matches('/');
    let body = match look.kind {
        RichKind::Discord => json!({
            "embeds": [{
                "author": {"icon_url": TAUTULLI_ICON, "name": "Tautulli", "url": author_link},
                "color": hex_to_int(&look.color),
                "fields": [
                    {"inline": true, "name": "User", "value": k.user},
                    {"inline": true, "name": "Session Key", "value": k.session_key},
                    {"inline": true, "name": "Watching", "value": k.watching},
                    {"inline": false, "name": "Message Sent", "value": k.message},
                ],
                "thumbnail": {"url": poster},
                "title": title,
                "timestamp": iso_utc(now),
                "url": link,
                "footer": {"text": footer},
            }],
        }),
        RichKind::Slack => json!({
            "attachments": [{
                "title": title,
                "title_link": link,
                "author_icon": TAUTULLI_ICON,
                "author_name": "Tautulli",
                "author_link": author_link,
                "color": look.color,
                "fields": [
                    {"title": "User", "value": k.user, "short": true},
                    {"title": "Session Key", "value": k.session_key, "short": true},
                    {"title": "Watching", "value": k.watching, "short": true},
                    {"title": "Message Sent", "value": k.message, "short": false},
                ],
                "thumb_url": poster,
                "footer": footer,
                "ts": unix_seconds(now),
            }],
        }),
    };
    Note {
        subject: None,
        body: python_json(&body),
    }
}

/// What is playing, as Tautulli's `full_title` names it: "Show - Episode", "Track -
/// Artist", else the title. Live TV (a rating key that is not a number) is its title.
pub fn full_title(s: &Session) -> String {
    let title = s.title.as_deref().unwrap_or_default();
    let library_item = s
        .rating_key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()));
    let parent = s.grandparent_title.as_deref().unwrap_or_default();
    match s.media_type.as_deref() {
        Some("episode") if library_item => format!("{parent} - {title}"),
        Some("track") if library_item => format!("{title} - {parent}"),
        _ => title.to_string(),
    }
}

/// kill_stream.py's colour for Discord: the text after any leading '#' read as
/// hexadecimal (as Python's `int(text, 16)`), 0 when it is not.
pub fn hex_to_int(color: &str) -> i64 {
    let s = color.trim_start_matches('#').trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    // Python allows single underscores between digits.
    if s.is_empty() || s.starts_with('_') || s.ends_with('_') || s.contains("__") {
        return 0;
    }
    let digits: String = s.chars().filter(|&c| c != '_').collect();
    match i64::from_str_radix(&digits, 16) {
        Ok(n) if !digits.starts_with(['+', '-']) => {
            if negative {
                -n
            } else {
                n
            }
        }
        _ => 0,
    }
}

/// Python's `datetime.utcnow().isoformat()`: no offset, microseconds unless zero.
pub fn iso_utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    match t.microsecond() {
        0 => base,
        us => format!("{base}.{us:06}"),
    }
}

/// Python's `time.time()`: seconds since the epoch as a float.
fn unix_seconds(t: OffsetDateTime) -> Json {
    let micros = i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX);
    // Microseconds since 1970 fit an f64 exactly for the next few hundred years.
    let secs = crate::micros::Micros(micros).as_secs_f64();
    serde_json::Number::from_f64(secs).map_or(Json::Null, Json::Number)
}

/// `v` written as Python's `json.dumps(v, sort_keys=True, separators=(',', ': '))`:
/// keys sorted, "," between items, ": " after keys, and everything outside printable
/// ASCII escaped as `\uXXXX`.
pub fn python_json(v: &Json) -> String {
    let mut out = String::new();
    write_json(v, &mut out);
    out
}

fn write_json(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(&n.to_string()),
        Json::String(s) => write_str(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Json::Object(map) => write_object(map, out),
    }
}

fn write_object(map: &Map<String, Json>, out: &mut String) {
    let mut entries: Vec<(&String, &Json)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(k, out);
        out.push_str(": ");
        write_json(v, out);
    }
    out.push('}');
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_written_as_python_writes_it() {
        let v = json!({"b": [1, true, null], "a": {"z": "é\u{1F600}\u{7f}\"\\\n", "y": 1.5}});
        assert_eq!(
            python_json(&v),
            r#"{"a": {"y": 1.5,"z": "\u00e9\ud83d\ude00\u007f\"\\\n"},"b": [1,true,null]}"#
        );
    }

    #[test]
    fn colours_read_as_python_reads_hex() {
        assert_eq!(hex_to_int("#E5A00D"), 0xE5A00D);
        assert_eq!(hex_to_int("##e5a00d"), 0xE5A00D);
        assert_eq!(hex_to_int("0xff"), 255);
        assert_eq!(hex_to_int("f_f"), 255);
        assert_eq!(hex_to_int("-ff"), -255);
        assert_eq!(hex_to_int("orange"), 0);
        assert_eq!(hex_to_int(""), 0);
        assert_eq!(hex_to_int("f__f"), 0);
        assert_eq!(hex_to_int("+-f"), 0);
    }

    #[test]
    fn timestamps_as_python_writes_them() {
        let t = time::macros::datetime!(2024-05-01 12:03:04.000_120 UTC);
        assert_eq!(iso_utc(t), "2024-05-01T12:03:04.000120");
        let t = time::macros::datetime!(2024-05-01 12:03:04 UTC);
        assert_eq!(iso_utc(t), "2024-05-01T12:03:04");
        assert_eq!(unix_seconds(t).to_string(), "1714564984.0");
    }

    #[test]
    fn full_title_follows_tautulli() {
        let s = |t: &str, g: Option<&str>, key: &str| Session {
            media_type: Some(t.into()),
            title: Some("T".into()),
            grandparent_title: g.map(Into::into),
            rating_key: Some(key.into()),
            ..Session::default()
        };
        assert_eq!(full_title(&s("episode", Some("Show"), "5")), "Show - T");
        assert_eq!(full_title(&s("track", Some("Artist"), "5")), "T - Artist");
        assert_eq!(full_title(&s("movie", None, "5")), "T");
        assert_eq!(full_title(&s("episode", Some("Show"), "plex://x")), "T");
    }

    #[test]
    fn plain_bodies_are_kill_streams() {
        assert_eq!(
            plain(Some("bob"), "abc", "Bye").body,
            "Killed bob's stream. Reason: Bye."
        );
        assert_eq!(
            plain(None, "abc", "Bye").body,
            "Killed session ID 'abc'. Reason: Bye"
        );
        assert_eq!(plain(None, "abc", "Bye").subject.as_deref(), Some(SUBJECT));
    }
}
