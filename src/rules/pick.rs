//! `pick`: which of a user's streams a rule over stream counts acts on. "At most two
//! remote streams" holds for all three of a user's streams at once; acting on all of them
//! (or on whichever Plex lists first) is not what an owner means: the newest one goes.

use serde::Serialize;

/// Which of a user's matching streams a rule acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pick {
    /// The most recently started (Plex's highest session key).
    Newest,
    /// The longest running.
    Oldest,
    /// Every matching stream.
    All,
}

impl Pick {
    pub fn as_str(self) -> &'static str {
        match self {
            Pick::Newest => "newest",
            Pick::Oldest => "oldest",
            Pick::All => "all",
        }
    }
}

/// The variables that count a user's streams: a rule reading one picks the newest stream
/// unless it says otherwise.
pub const COUNTS: &[&str] = &[
    "user_streams",
    "user_wan_streams",
    "user_lan_streams",
    "user_addresses",
];

/// The rule's `pick`, written or by default (see [`COUNTS`]).
pub fn parse(written: Option<&str>, reads: &[&'static str]) -> Result<Pick, String> {
    match written.map(str::trim) {
        None => Ok(if reads.iter().any(|r| COUNTS.contains(r)) {
            Pick::Newest
        } else {
            Pick::All
        }),
        Some("newest") => Ok(Pick::Newest),
        Some("oldest") => Ok(Pick::Oldest),
        Some("all") => Ok(Pick::All),
        Some(other) => Err(format!(
            "pick {other:?} is not \"newest\", \"oldest\" or \"all\""
        )),
    }
}

/// Where a stream stands in start order: Plex's session key, which grows with each new
/// session (a stream without one counts as the oldest).
pub fn start_order(session_key: Option<&str>) -> i64 {
    session_key
        .and_then(|k| k.trim().parse::<i64>().ok())
        .unwrap_or(i64::MIN)
}
