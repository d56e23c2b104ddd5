//! The XML shapes Plex answers with, as serde structs for quick-xml.
//!
//! Every attribute is kept as an optional string: Plex mixes "720p" and "720", "1" and
//! "true", sentinels such as `2147483647` and `-22`. Conversion to numbers and the
//! handling of sentinels happen once, in [`super::session`], never here.

use serde::Deserialize;

/// `<MediaContainer>`: the root of every Plex answer.
#[derive(Debug, Default, Deserialize)]
pub struct MediaContainer {
    #[serde(rename = "@size")]
    pub size: Option<String>,
    #[serde(rename = "@myPlexSubscription")]
    pub my_plex_subscription: Option<String>,
    #[serde(rename = "@ownerFeatures")]
    pub owner_features: Option<String>,
    #[serde(rename = "@friendlyName")]
    pub friendly_name: Option<String>,
    #[serde(rename = "@version")]
    pub version: Option<String>,
    #[serde(rename = "$value", default)]
    pub items: Vec<Item>,
}

/// One child of the container. Anything but a playable item is ignored.
#[derive(Debug, Deserialize)]
pub enum Item {
    Video(Metadata),
    Track(Metadata),
    Photo(Metadata),
    #[serde(other)]
    Other,
}

/// A `Video`, `Track` or `Photo` element with the children streamwarden reads.
///
/// `Session`, `Player`, `User` and `TranscodeSession` are also looked for inside `Media`
/// and `Part`: live TV nests `TranscodeSession` inside `Media`.
#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    #[serde(rename = "@sessionKey")]
    pub session_key: Option<String>,
    #[serde(rename = "@ratingKey")]
    pub rating_key: Option<String>,
    #[serde(rename = "@type")]
    pub kind: Option<String>,
    #[serde(rename = "@title")]
    pub title: Option<String>,
    #[serde(rename = "@grandparentTitle")]
    pub grandparent_title: Option<String>,
    #[serde(rename = "@librarySectionTitle")]
    pub library_section_title: Option<String>,
    #[serde(rename = "@librarySectionID")]
    pub library_section_id: Option<String>,
    #[serde(rename = "@guid")]
    pub guid: Option<String>,
    #[serde(rename = "@live")]
    pub live: Option<String>,
    #[serde(rename = "@viewOffset")]
    pub view_offset: Option<String>,
    #[serde(rename = "@duration")]
    pub duration: Option<String>,
    #[serde(rename = "User")]
    pub user: Option<User>,
    #[serde(rename = "Player")]
    pub player: Option<Player>,
    #[serde(rename = "Session")]
    pub session: Option<SessionElement>,
    #[serde(rename = "TranscodeSession")]
    pub transcode: Option<TranscodeSession>,
    #[serde(rename = "Media", default)]
    pub media: Vec<Media>,
}

#[derive(Debug, Default, Deserialize)]
pub struct User {
    #[serde(rename = "@id")]
    pub id: Option<String>,
    #[serde(rename = "@title")]
    pub title: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Player {
    #[serde(rename = "@address")]
    pub address: Option<String>,
    #[serde(rename = "@remotePublicAddress")]
    pub remote_public_address: Option<String>,
    #[serde(rename = "@machineIdentifier")]
    pub machine_identifier: Option<String>,
    #[serde(rename = "@platform")]
    pub platform: Option<String>,
    #[serde(rename = "@product")]
    pub product: Option<String>,
    #[serde(rename = "@title")]
    pub title: Option<String>,
    #[serde(rename = "@device")]
    pub device: Option<String>,
    #[serde(rename = "@state")]
    pub state: Option<String>,
    #[serde(rename = "@local")]
    pub local: Option<String>,
    #[serde(rename = "@relayed")]
    pub relayed: Option<String>,
    #[serde(rename = "@secure")]
    pub secure: Option<String>,
    #[serde(rename = "@userID")]
    pub user_id: Option<String>,
}

/// `<Session>`: its `id` is the handle a terminate needs.
#[derive(Debug, Default, Deserialize)]
pub struct SessionElement {
    #[serde(rename = "@id")]
    pub id: Option<String>,
    #[serde(rename = "@bandwidth")]
    pub bandwidth: Option<String>,
    #[serde(rename = "@location")]
    pub location: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct TranscodeSession {
    #[serde(rename = "@key")]
    pub key: Option<String>,
    #[serde(rename = "@videoDecision")]
    pub video_decision: Option<String>,
    #[serde(rename = "@audioDecision")]
    pub audio_decision: Option<String>,
    #[serde(rename = "@throttled")]
    pub throttled: Option<String>,
    #[serde(rename = "@speed")]
    pub speed: Option<String>,
    #[serde(rename = "@width")]
    pub width: Option<String>,
    #[serde(rename = "@height")]
    pub height: Option<String>,
    #[serde(rename = "@transcodeHwRequested")]
    pub hw_requested: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Media {
    #[serde(rename = "@id")]
    pub id: Option<String>,
    #[serde(rename = "@selected")]
    pub selected: Option<String>,
    #[serde(rename = "@bitrate")]
    pub bitrate: Option<String>,
    #[serde(rename = "@videoResolution")]
    pub video_resolution: Option<String>,
    #[serde(rename = "@width")]
    pub width: Option<String>,
    #[serde(rename = "@height")]
    pub height: Option<String>,
    #[serde(rename = "@container")]
    pub container: Option<String>,
    #[serde(rename = "@videoCodec")]
    pub video_codec: Option<String>,
    #[serde(rename = "@audioCodec")]
    pub audio_codec: Option<String>,
    #[serde(rename = "User")]
    pub user: Option<User>,
    #[serde(rename = "Player")]
    pub player: Option<Player>,
    #[serde(rename = "Session")]
    pub session: Option<SessionElement>,
    #[serde(rename = "TranscodeSession")]
    pub transcode: Option<TranscodeSession>,
    #[serde(rename = "Part", default)]
    pub parts: Vec<Part>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Part {
    #[serde(rename = "@id")]
    pub id: Option<String>,
    #[serde(rename = "@decision")]
    pub decision: Option<String>,
    #[serde(rename = "@selected")]
    pub selected: Option<String>,
    #[serde(rename = "User")]
    pub user: Option<User>,
    #[serde(rename = "Player")]
    pub player: Option<Player>,
    #[serde(rename = "Session")]
    pub session: Option<SessionElement>,
    #[serde(rename = "TranscodeSession")]
    pub transcode: Option<TranscodeSession>,
    #[serde(rename = "Stream", default)]
    pub streams: Vec<Stream>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Stream {
    #[serde(rename = "@streamType")]
    pub stream_type: Option<String>,
    #[serde(rename = "@decision")]
    pub decision: Option<String>,
    #[serde(rename = "@selected")]
    pub selected: Option<String>,
}
