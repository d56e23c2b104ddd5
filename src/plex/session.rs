//! One normalised model of a Plex stream, whatever shape the server answered with.

use serde::Serialize;
use std::net::IpAddr;

use super::xml::{self, MediaContainer, Metadata};

/// Bitrates Plex reports when it does not know (`i32::MAX`).
const BITRATE_SENTINEL: i64 = 2_147_483_647;
/// Session bandwidths at or above 10 Gbit/s are placeholders, not reservations: Plex
/// writes 10000000 for a LAN browser transcode and 10500000 was seen on a Plex Web LAN
/// live session. No Plex stream needs that much, so any such value is unknown.
const IMPLAUSIBLE_BANDWIDTH_KBPS: i64 = 10_000_000;

/// What kind of element the stream came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    Video,
    Track,
    Photo,
}

/// A stream as streamwarden sees it. Unknown values are `None`, never a sentinel number.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Session {
    /// `Session@id`: the handle a terminate needs. `None` when the server gave none.
    pub session_id: Option<String>,
    pub session_key: Option<String>,
    pub rating_key: Option<String>,
    #[serde(skip)]
    pub kind: Option<ItemKind>,
    /// movie, episode, clip, track, photo…
    pub media_type: Option<String>,
    pub title: Option<String>,
    pub grandparent_title: Option<String>,
    pub library: Option<String>,
    pub live: bool,
    pub user: Option<String>,
    pub user_id: Option<i64>,
    /// The client address as Plex sees it, `::ffff:` stripped.
    pub address: Option<String>,
    pub remote_public_address: Option<String>,
    pub player: Option<String>,
    pub platform: Option<String>,
    pub product: Option<String>,
    pub machine_identifier: Option<String>,
    /// playing, paused, buffering.
    pub state: Option<PlayState>,
    pub local: Option<bool>,
    pub relayed: Option<bool>,
    /// "lan" or "wan".
    pub location: Option<String>,
    /// kbps reserved by Plex (not measured).
    pub bandwidth_kbps: Option<i64>,
    /// kbps of what is delivered (`Media@bitrate`).
    pub stream_bitrate_kbps: Option<i64>,
    /// Delivered resolution: 4k, 1080, 720, 480 or sd.
    pub video_resolution: Option<String>,
    /// "transcode", "copy" or "direct play".
    pub video_decision: Option<String>,
    pub audio_decision: Option<String>,
    /// "transcode", "direct stream" or "direct play".
    pub transcode_decision: Option<String>,
    /// `TranscodeSession@key` without its `/transcode/sessions/` prefix.
    pub transcode_key: Option<String>,
    /// Ids of the `Part` elements being played (for packet attribution).
    pub part_ids: Vec<String>,
    /// Source file facts from `/library/metadata/{ratingKey}`, when fetched. Always
    /// unknown for live TV, which has no file.
    pub source_bitrate_kbps: Option<i64>,
    pub source_resolution: Option<String>,
    /// `Media@id` of the delivered media, used to pick the right source media.
    #[serde(skip)]
    pub media_id: Option<String>,
}

/// What a player is doing, as Plex reports it (`Player@state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayState {
    Playing,
    Paused,
    Buffering,
    /// A state this version does not know, kept as Plex wrote it.
    Other(String),
}

impl PlayState {
    pub fn as_str(&self) -> &str {
        match self {
            PlayState::Playing => "playing",
            PlayState::Paused => "paused",
            PlayState::Buffering => "buffering",
            PlayState::Other(s) => s,
        }
    }
}

impl From<&str> for PlayState {
    fn from(s: &str) -> Self {
        match s {
            "playing" => PlayState::Playing,
            "paused" => PlayState::Paused,
            "buffering" => PlayState::Buffering,
            other => PlayState::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for PlayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for PlayState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for PlayState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(PlayState::from(s.as_str()))
    }
}

impl Session {
    /// Plex can only terminate a stream it gave a `Session` id for.
    pub fn killable(&self) -> bool {
        self.session_id.is_some()
    }

    /// A name for humans: "Show - Title" or the title.
    pub fn display_title(&self) -> String {
        match (&self.grandparent_title, &self.title) {
            (Some(g), Some(t)) => format!("{g} - {t}"),
            (None, Some(t)) => t.clone(),
            (Some(g), None) => g.clone(),
            (None, None) => "(untitled)".to_string(),
        }
    }

    /// A stable name for the stream across polls: its Session id, else its session key,
    /// else its address and title.
    pub fn identity(&self) -> String {
        match (&self.session_id, &self.session_key) {
            (Some(id), _) => format!("id:{id}"),
            (None, Some(key)) => format!("key:{key}"),
            (None, None) => format!(
                "addr:{}/{}",
                self.address.as_deref().unwrap_or("-"),
                self.display_title()
            ),
        }
    }

    /// Who watches, in a few words: the user's name, else the player's, else "someone".
    pub fn who(&self) -> String {
        self.user
            .clone()
            .or_else(|| self.player.clone())
            .unwrap_or_else(|| "someone".to_string())
    }

    pub fn is_paused(&self) -> bool {
        self.state == Some(PlayState::Paused)
    }

    /// The client address parsed as an IP, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.as_deref().and_then(|a| a.parse().ok())
    }
}

/// Parses a `/status/sessions` body into sessions.
pub fn parse_sessions(body: &str) -> Result<Vec<Session>, quick_xml::DeError> {
    Ok(from_container(parse_container(body)?))
}

/// Parses a body whose root must be `<MediaContainer>` (an HTML error page is not).
pub fn parse_container(body: &str) -> Result<MediaContainer, quick_xml::DeError> {
    let mut reader = quick_xml::Reader::from_str(body);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e)) | Ok(quick_xml::events::Event::Empty(e)) => {
                if e.name().as_ref() != b"MediaContainer" {
                    return Err(quick_xml::DeError::Custom(format!(
                        "the root element is <{}>, not <MediaContainer>",
                        String::from_utf8_lossy(e.name().as_ref())
                    )));
                }
                break;
            }
            Ok(quick_xml::events::Event::Eof) => {
                let t = body.trim_start();
                let what = if t.is_empty() {
                    "the body is empty"
                } else if t.starts_with('{') || t.starts_with('[') {
                    "the body is JSON, not Plex's XML"
                } else {
                    "the body holds no XML element"
                };
                return Err(quick_xml::DeError::Custom(format!(
                    "{what}, not <MediaContainer>"
                )));
            }
            Ok(_) => {}
            Err(e) => return Err(quick_xml::DeError::Custom(e.to_string())),
        }
    }
    quick_xml::de::from_str(body)
}

/// Converts a parsed container into sessions, skipping theme music as Tautulli does.
pub fn from_container(container: MediaContainer) -> Vec<Session> {
    container
        .items
        .into_iter()
        .filter_map(|item| match item {
            xml::Item::Video(m) => Some((ItemKind::Video, m)),
            xml::Item::Track(m) => Some((ItemKind::Track, m)),
            xml::Item::Photo(m) => Some((ItemKind::Photo, m)),
            xml::Item::Other => None,
        })
        .filter(|(kind, m)| {
            !(*kind == ItemKind::Track
                && m.guid
                    .as_deref()
                    .is_some_and(|g| g.starts_with("library://")))
        })
        .map(|(kind, m)| normalise(kind, m))
        .collect()
}

/// Facts about the source file of an item from `/library/metadata/{ratingKey}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceFacts {
    pub bitrate_kbps: Option<i64>,
    pub resolution: Option<String>,
}

/// Parses a `/library/metadata/{ratingKey}` body; picks the media whose id matches
/// `media_id` when given, otherwise the first.
pub fn parse_source_facts(
    body: &str,
    media_id: Option<&str>,
) -> Result<SourceFacts, quick_xml::DeError> {
    let container = parse_container(body)?;
    let media: Vec<xml::Media> = container
        .items
        .into_iter()
        .flat_map(|item| match item {
            xml::Item::Video(m) | xml::Item::Track(m) | xml::Item::Photo(m) => m.media,
            xml::Item::Other => Vec::new(),
        })
        .collect();
    let chosen = media_id
        .and_then(|id| media.iter().find(|m| m.id.as_deref() == Some(id)))
        .or_else(|| media.first());
    Ok(chosen
        .map(|m| SourceFacts {
            bitrate_kbps: rate(m.bitrate.as_deref()),
            resolution: resolution(m.video_resolution.as_deref(), m.height.as_deref()),
        })
        .unwrap_or_default())
}

/// The ratingKeys of the items in a `/library/metadata/{ratingKey}` response.
pub fn rating_keys(body: &str) -> Result<Vec<String>, quick_xml::DeError> {
    Ok(parse_container(body)?
        .items
        .into_iter()
        .filter_map(|item| match item {
            xml::Item::Video(m) | xml::Item::Track(m) | xml::Item::Photo(m) => m.rating_key,
            xml::Item::Other => None,
        })
        .collect())
}

fn normalise(kind: ItemKind, m: Metadata) -> Session {
    let media = m
        .media
        .iter()
        .find(|media| flag(media.selected.as_deref()) == Some(true))
        .or_else(|| m.media.first());
    let part = media.and_then(|media| {
        media
            .parts
            .iter()
            .find(|p| flag(p.selected.as_deref()) == Some(true))
            .or_else(|| media.parts.first())
    });
    // Children are searched at every depth the server is known to put them.
    let transcode = m
        .transcode
        .as_ref()
        .or_else(|| m.media.iter().find_map(|x| x.transcode.as_ref()))
        .or_else(|| {
            m.media
                .iter()
                .flat_map(|x| x.parts.iter())
                .find_map(|p| p.transcode.as_ref())
        });
    let session = m
        .session
        .as_ref()
        .or_else(|| m.media.iter().find_map(|x| x.session.as_ref()))
        .or_else(|| {
            m.media
                .iter()
                .flat_map(|x| x.parts.iter())
                .find_map(|p| p.session.as_ref())
        });
    let player = m
        .player
        .as_ref()
        .or_else(|| m.media.iter().find_map(|x| x.player.as_ref()));
    let user = m
        .user
        .as_ref()
        .or_else(|| m.media.iter().find_map(|x| x.user.as_ref()));

    let stream_decision = |stream_type: &str| -> Option<String> {
        part.and_then(|p| {
            p.streams
                .iter()
                .filter(|s| s.stream_type.as_deref() == Some(stream_type))
                .find(|s| s.decision.is_some())
                .and_then(|s| s.decision.as_deref())
                .map(stream_decision_name)
        })
    };
    let part_direct = part
        .and_then(|p| p.decision.as_deref())
        .is_some_and(|d| d.eq_ignore_ascii_case("directplay"));
    let decide = |from_transcode: Option<&str>, stream_type: &str| -> String {
        if let Some(d) = from_transcode.filter(|d| !d.is_empty()) {
            return stream_decision_name(d);
        }
        if !part_direct && let Some(d) = stream_decision(stream_type) {
            return d;
        }
        "direct play".to_string()
    };
    let has_video = kind == ItemKind::Video;
    let video_decision =
        has_video.then(|| decide(transcode.and_then(|t| t.video_decision.as_deref()), "1"));
    let audio_decision = (kind != ItemKind::Photo)
        .then(|| decide(transcode.and_then(|t| t.audio_decision.as_deref()), "2"));
    let transcode_decision = match (&video_decision, &audio_decision) {
        (None, None) => Some("direct play".to_string()),
        (v, a) => {
            let any = |want: &str| v.as_deref() == Some(want) || a.as_deref() == Some(want);
            Some(
                if any("transcode") {
                    "transcode"
                } else if any("copy") {
                    "direct stream"
                } else {
                    "direct play"
                }
                .to_string(),
            )
        }
    };

    let local = player.and_then(|p| flag(p.local.as_deref()));
    let location = session
        .and_then(|s| s.location.clone())
        .filter(|l| !l.is_empty())
        .map(|l| l.to_ascii_lowercase())
        .or_else(|| local.map(|l| if l { "lan" } else { "wan" }.to_string()));

    let video_resolution = if has_video {
        media
            .and_then(|x| resolution(x.video_resolution.as_deref(), x.height.as_deref()))
            .or_else(|| transcode.and_then(|t| resolution(None, t.height.as_deref())))
    } else {
        None
    };

    Session {
        session_id: session.and_then(|s| non_empty(s.id.as_deref())),
        session_key: non_empty(m.session_key.as_deref()),
        rating_key: non_empty(m.rating_key.as_deref()),
        kind: Some(kind),
        media_type: non_empty(m.kind.as_deref()),
        title: non_empty(m.title.as_deref()),
        grandparent_title: non_empty(m.grandparent_title.as_deref()),
        library: non_empty(m.library_section_title.as_deref()),
        live: flag(m.live.as_deref()) == Some(true),
        user: user.and_then(|u| non_empty(u.title.as_deref())),
        user_id: user
            .and_then(|u| whole(u.id.as_deref()))
            .or_else(|| player.and_then(|p| whole(p.user_id.as_deref()))),
        address: player
            .and_then(|p| p.address.as_deref())
            .and_then(clean_address),
        remote_public_address: player
            .and_then(|p| p.remote_public_address.as_deref())
            .and_then(clean_address),
        player: player.and_then(|p| non_empty(p.title.as_deref())),
        platform: player.and_then(|p| non_empty(p.platform.as_deref())),
        product: player.and_then(|p| non_empty(p.product.as_deref())),
        machine_identifier: player.and_then(|p| non_empty(p.machine_identifier.as_deref())),
        state: player
            .and_then(|p| non_empty(p.state.as_deref()))
            .map(|s| PlayState::from(s.to_ascii_lowercase().as_str())),
        local,
        relayed: player.and_then(|p| flag(p.relayed.as_deref())),
        location,
        bandwidth_kbps: session
            .and_then(|s| rate(s.bandwidth.as_deref()))
            .filter(|b| *b < IMPLAUSIBLE_BANDWIDTH_KBPS),
        stream_bitrate_kbps: media.and_then(|x| rate(x.bitrate.as_deref())),
        video_resolution,
        video_decision,
        audio_decision,
        transcode_decision,
        transcode_key: transcode
            .and_then(|t| t.key.as_deref())
            .map(|k| k.trim_start_matches("/transcode/sessions/").to_string())
            .filter(|k| !k.is_empty()),
        part_ids: media
            .map(|x| x.parts.iter().filter_map(|p| p.id.clone()).collect())
            .unwrap_or_default(),
        source_bitrate_kbps: None,
        source_resolution: None,
        media_id: media.and_then(|x| non_empty(x.id.as_deref())),
    }
}

fn non_empty(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// "1"/"0"/"true"/"false" as Plex writes booleans.
fn flag(v: Option<&str>) -> Option<bool> {
    match v?.trim() {
        "1" | "true" | "True" => Some(true),
        "0" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn whole(v: Option<&str>) -> Option<i64> {
    v?.trim().parse().ok()
}

/// A rate in kbps; 0, sentinels and negative numbers are unknown (a rule dividing by a rate
/// of 0 would otherwise match on +Infinity).
fn rate(v: Option<&str>) -> Option<i64> {
    let v = v?.trim();
    let n: i64 = v.parse().ok().or_else(|| {
        v.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| f.round() as i64)
    })?;
    (n > 0 && n != BITRATE_SENTINEL).then_some(n)
}

fn stream_decision_name(d: &str) -> String {
    match d.trim().to_ascii_lowercase().as_str() {
        "transcode" | "burn" => "transcode".to_string(),
        "copy" => "copy".to_string(),
        "directplay" | "direct play" | "" => "direct play".to_string(),
        other => other.to_string(),
    }
}

/// Normalises `videoResolution` ("720p", "SD", "2160") or a height into
/// one of 4k, 1080, 720, 480 or sd.
pub fn resolution(label: Option<&str>, height: Option<&str>) -> Option<String> {
    if let Some(label) = label.map(str::trim).filter(|l| !l.is_empty()) {
        let l = label.to_ascii_lowercase();
        let l = l.trim_end_matches('p');
        let named = match l {
            "4k" | "2160" | "uhd" => Some("4k"),
            "1080" | "fhd" => Some("1080"),
            "720" | "hd" => Some("720"),
            "480" => Some("480"),
            "sd" | "576" | "360" | "240" => Some("sd"),
            _ => None,
        };
        if let Some(n) = named {
            return Some(n.to_string());
        }
        if let Ok(h) = l.parse::<i64>() {
            return from_height(h);
        }
    }
    height
        .and_then(|h| h.trim().parse::<i64>().ok())
        .and_then(from_height)
}

fn from_height(h: i64) -> Option<String> {
    let name = match h {
        i64::MIN..=0 => return None,
        1..=479 => "sd",
        480..=575 => "480",
        576..=719 => "sd",
        720..=1079 => "720",
        1080..=1599 => "1080",
        _ => "4k",
    };
    Some(name.to_string())
}

/// Strips the IPv4-mapped `::ffff:` prefix; empty is unknown.
pub fn clean_address(a: &str) -> Option<String> {
    let a = a.trim();
    let lower = a.to_ascii_lowercase();
    let a = match lower.strip_prefix("::ffff:") {
        Some(rest) if rest.parse::<std::net::Ipv4Addr>().is_ok() => rest.to_string(),
        _ => a.to_string(),
    };
    (!a.is_empty()).then_some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_are_unknown() {
        assert_eq!(rate(Some("2147483647")), None);
        assert_eq!(rate(Some("-22")), None);
        assert_eq!(rate(Some("0")), None);
        assert_eq!(rate(Some("0.0")), None);
        assert_eq!(rate(Some("6000")), Some(6000));
        assert_eq!(rate(Some("abc")), None);
    }

    #[test]
    fn resolutions_normalise() {
        assert_eq!(resolution(Some("720p"), None).as_deref(), Some("720"));
        assert_eq!(resolution(Some("SD"), None).as_deref(), Some("sd"));
        assert_eq!(resolution(Some("4k"), None).as_deref(), Some("4k"));
        assert_eq!(resolution(None, Some("2160")).as_deref(), Some("4k"));
        assert_eq!(resolution(Some("576"), None).as_deref(), Some("sd"));
        assert_eq!(resolution(None, None), None);
    }

    #[test]
    fn mapped_addresses_are_stripped() {
        assert_eq!(
            clean_address("::ffff:10.0.0.5").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            clean_address("::FFFF:10.0.0.5").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(clean_address("2001:db8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(clean_address(""), None);
    }
}
