//! Plex's event stream: `GET /:/websockets/notifications`, a WebSocket on which the server
//! announces what changes (what Tautulli, python-plexapi's AlertListener and Home Assistant
//! listen to). Each text message is one JSON object:
//!
//! ```json
//! {"NotificationContainer": {"type": "playing", "size": 1,
//!   "PlaySessionStateNotification": [{"sessionKey": "21", "state": "playing",
//!     "ratingKey": "1234", "viewOffset": 0, "transcodeSession": "abc", ...}]}}
//! ```
//!
//! `type` is also `transcodeSession.start`, `transcodeSession.update`,
//! `transcodeSession.end` (with `TranscodeSession[]`), and many that do not concern
//! streams (`timeline`, `activity`, `status`, `progress`, ...), which are counted and let be.
//!
//! The connection is the Plex client's own (reqwest: its TLS settings, its headers with
//! the token, its refusal to follow a redirect to another origin), upgraded to a WebSocket;
//! tokio-tungstenite does the framing.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::protocol::{Message, Role, WebSocketConfig};

use super::{PlexClient, PlexError};

/// Where the event stream is served.
pub const ENDPOINT: &str = "/:/websockets/notifications";

/// The largest message read: notifications are a few hundred bytes.
const MAX_MESSAGE: usize = 1 << 20;

/// What one notification says, as far as streams go.
#[derive(Debug, Clone, PartialEq)]
pub enum PlexEvent {
    /// A play session changed state (`playing`, `paused`, `buffering`, `stopped`).
    Playing {
        session_key: String,
        state: String,
        transcode_session: Option<String>,
    },
    /// A transcode started, changed (`transcodeSession.update`) or ended.
    Transcode { kind: TranscodeKind, key: String },
    /// A notification of another type (the type's name).
    Other(String),
}

impl PlexEvent {
    /// Whether it may change what a rule sees: a stream that starts, changes or stops.
    pub fn concerns_streams(&self) -> bool {
        !matches!(self, PlexEvent::Other(_))
    }
}

/// The three transcode notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscodeKind {
    Start,
    Update,
    End,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "NotificationContainer")]
    container: Container,
}

#[derive(Deserialize)]
struct Container {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(rename = "PlaySessionStateNotification", default)]
    playing: Vec<PlaySessionState>,
    #[serde(rename = "TranscodeSession", default)]
    transcodes: Vec<TranscodeSession>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlaySessionState {
    #[serde(default, deserialize_with = "text")]
    session_key: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    transcode_session: Option<String>,
}

#[derive(Deserialize)]
struct TranscodeSession {
    #[serde(default)]
    key: String,
}

/// A string or a number, as text (Plex writes some keys either way).
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// The events of one message, or why it is not a notification.
pub fn parse(message: &str) -> Result<Vec<PlexEvent>, String> {
    let envelope: Envelope =
        serde_json::from_str(message).map_err(|e| format!("not a Plex notification ({e})"))?;
    let c = envelope.container;
    let transcode = match c.kind.as_str() {
        "playing" => {
            return Ok(c
                .playing
                .into_iter()
                .map(|p| PlexEvent::Playing {
                    session_key: p.session_key,
                    state: p.state,
                    transcode_session: p.transcode_session,
                })
                .collect());
        }
        "transcodeSession.start" => TranscodeKind::Start,
        "transcodeSession.update" => TranscodeKind::Update,
        "transcodeSession.end" => TranscodeKind::End,
        _ => return Ok(vec![PlexEvent::Other(c.kind)]),
    };
    let mut out: Vec<PlexEvent> = c
        .transcodes
        .into_iter()
        .map(|t| PlexEvent::Transcode {
            kind: transcode,
            key: t.key,
        })
        .collect();
    if out.is_empty() {
        out.push(PlexEvent::Transcode {
            kind: transcode,
            key: String::new(),
        });
    }
    Ok(out)
}

/// An open event stream: each item is one message's events, or why the stream ended.
pub struct Notifications {
    inner: Pin<Box<dyn Stream<Item = Result<Vec<PlexEvent>, String>> + Send>>,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifications")
    }
}

impl Notifications {
    /// The next message's events; `None` when the server closed the stream. A message that
    /// is not a notification gives no events (it is logged at debug).
    pub async fn next(&mut self) -> Option<Result<Vec<PlexEvent>, String>> {
        self.inner.next().await
    }

    /// A stream of given items (tests and stand-ins).
    pub fn of(items: impl Stream<Item = Result<Vec<PlexEvent>, String>> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(items),
        }
    }
}

impl PlexClient {
    /// Opens Plex's event stream. A server that does not serve it (an older Plex, a proxy
    /// that does not pass WebSockets) answers with an error status.
    pub async fn notifications(&self) -> Result<Notifications, PlexError> {
        let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
        let url = format!("{}{ENDPOINT}", self.base);
        let response = self
            .http
            .get(&url)
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", &key)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| self.map_send_error(ENDPOINT, e))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(PlexError::Unauthorized {
                endpoint: ENDPOINT.into(),
            });
        }
        if status != reqwest::StatusCode::SWITCHING_PROTOCOLS {
            return Err(PlexError::Status {
                endpoint: ENDPOINT.into(),
                status: status.as_u16(),
                detail: "the server did not open a WebSocket".into(),
            });
        }
        let accept = response
            .headers()
            .get("Sec-WebSocket-Accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let expected = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        if accept != expected {
            return Err(PlexError::Status {
                endpoint: ENDPOINT.into(),
                status: status.as_u16(),
                detail: "the server's WebSocket handshake is not valid (Sec-WebSocket-Accept)"
                    .into(),
            });
        }
        let upgraded = response
            .upgrade()
            .await
            .map_err(|e| self.map_send_error(ENDPOINT, e))?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            upgraded,
            Role::Client,
            Some(config),
        )
        .await;
        let stream = ws.filter_map(|m| async move {
            match m {
                Ok(Message::Text(t)) => Some(match parse(t.as_str()) {
                    Ok(events) => Ok(events),
                    Err(e) => {
                        tracing::debug!("Plex's event stream: {e}");
                        Ok(Vec::new())
                    }
                }),
                Ok(Message::Close(_)) => Some(Err("Plex closed the event stream".to_string())),
                // Pings are answered by tungstenite; binary frames are not Plex's.
                Ok(_) => None,
                Err(e) => Some(Err(format!("the event stream failed: {e}"))),
            }
        });
        Ok(Notifications::of(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playing_and_transcode_notifications_are_read() {
        let playing = r#"{"NotificationContainer":{"type":"playing","size":1,"PlaySessionStateNotification":[{"sessionKey":"21","clientIdentifier":"abc","guid":"","ratingKey":"1234","url":"","key":"/library/metadata/1234","viewOffset":0,"playQueueItemID":7,"state":"playing","transcodeSession":"tc1"}]}}"#;
        assert_eq!(
            parse(playing).unwrap(),
            vec![PlexEvent::Playing {
                session_key: "21".into(),
                state: "playing".into(),
                transcode_session: Some("tc1".into()),
            }]
        );
        let numeric = r#"{"NotificationContainer":{"type":"playing","PlaySessionStateNotification":[{"sessionKey":5,"state":"stopped"}]}}"#;
        assert!(matches!(&parse(numeric).unwrap()[0],
            PlexEvent::Playing { session_key, state, .. } if session_key == "5" && state == "stopped"));
        let tc = r#"{"NotificationContainer":{"type":"transcodeSession.start","size":1,"TranscodeSession":[{"key":"/transcode/sessions/x","throttled":false}]}}"#;
        assert_eq!(
            parse(tc).unwrap(),
            vec![PlexEvent::Transcode {
                kind: TranscodeKind::Start,
                key: "/transcode/sessions/x".into()
            }]
        );
        let other =
            r#"{"NotificationContainer":{"type":"activity","size":1,"ActivityNotification":[]}}"#;
        let e = parse(other).unwrap();
        assert_eq!(e, vec![PlexEvent::Other("activity".into())]);
        assert!(!e[0].concerns_streams());
        assert!(parse("{}").is_err());
        assert!(parse("not json").is_err());
    }
}
