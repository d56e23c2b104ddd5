//! What `streamwarden sessions` shows: Plex's current streams, each with what a running
//! daemon measured for it (read from its `/api/streams`), so a one-off look at the server
//! says what flows as well as what Plex reports.

use serde_json::{Map, Value as Json, json};

use crate::Failure;
use crate::config::Config;
use crate::enforce::escape;
use crate::engine::open;
use crate::engine::row::{StreamRow, unknown_share};
use crate::plex::{ONE_SHOT_BUDGET, Session};
use crate::rules::{Observed, Value, Vars};

use super::daemon_client;

/// Plex's sessions, and the daemon's rows when one answered.
#[derive(Debug, Clone)]
pub struct Listing {
    pub sessions: Vec<Session>,
    /// `None`: no `[http] listen`, or no daemon answered there.
    pub measured: Option<Vec<StreamRow>>,
}

/// Reads the sessions from Plex and, when `[http] listen` is set, the measured figures from
/// the daemon listening there (with the `[http]` token).
pub async fn list(config: &Config) -> Result<Listing, Failure> {
    let client = open::plex_client(config)?;
    client.set_budget(Some(ONE_SHOT_BUDGET));
    let sessions = client
        .sessions_with_sources()
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let measured = match config.http.listen {
        Some(listen) if !sessions.is_empty() => {
            daemon_client::streams(listen, config.http.token.as_ref()).await
        }
        _ => None,
    };
    Ok(Listing { sessions, measured })
}

impl Listing {
    /// The daemon's row for a session: by Session id, or by session key when it has none.
    fn row(&self, s: &Session) -> Option<&StreamRow> {
        let rows = self.measured.as_ref()?;
        match &s.session_id {
            Some(id) => rows.iter().find(|r| r.session_id.as_ref() == Some(id)),
            None => rows.iter().find(|r| {
                r.session_id.is_none() && s.session_key.is_some() && r.session_key == s.session_key
            }),
        }
    }

    /// The listing as `sessions --json` prints it: one object per session.
    pub fn json(&self) -> Json {
        Json::Array(
            self.sessions
                .iter()
                .map(|s| to_json(s, &self.sessions, self.row(s)))
                .collect(),
        )
    }

    /// The listing as an aligned text table; a session whose share of its address cannot
    /// be told gets a line under the table with the address's total.
    pub fn table(&self) -> String {
        if self.sessions.is_empty() {
            return "no streams\n".to_string();
        }
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let kbps =
            |v: Option<i64>| v.map_or_else(|| "-".into(), |k| format!("{:.1}", k as f64 / 1000.0));
        let header = [
            "SESSION", "USER", "ADDRESS", "STATE", "DECISION", "RES", "MBPS", "RESERVED",
            "MEASURED", "TITLE",
        ];
        let mut notes = Vec::new();
        // Every cell is escaped: Plex's names and titles stay on their row.
        let rows: Vec<[String; 10]> = self
            .sessions
            .iter()
            .map(|s| {
                let id = s
                    .session_id
                    .clone()
                    .unwrap_or_else(|| "(not killable)".into());
                let measured = match self.row(s) {
                    Some(r) => match (r.measured_kbps_1m, r.address_kbps_1m) {
                        (Some(k), _) if r.estimated => format!("{:.1} est", k / 1000.0),
                        (Some(k), _) => format!("{:.1}", k / 1000.0),
                        (None, Some(total)) => {
                            notes.push(format!("{id}: {}", unknown_share(total, &r.shared_with)));
                            "shared".into()
                        }
                        (None, None) => "none seen".into(),
                    },
                    None => "-".into(),
                };
                [
                    id,
                    dash(&s.user),
                    dash(&s.address),
                    s.state
                        .as_ref()
                        .map_or_else(|| "-".into(), ToString::to_string),
                    dash(&s.transcode_decision),
                    dash(&s.video_resolution),
                    kbps(s.stream_bitrate_kbps),
                    kbps(s.bandwidth_kbps),
                    measured,
                    s.display_title(),
                ]
                .map(|c| escape(&c).into_owned())
            })
            .collect();
        let mut widths = header.map(str::len);
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: Vec<&str>| {
            let last = cells.len() - 1;
            for (i, c) in cells.iter().enumerate() {
                if i == last {
                    out.push_str(c);
                } else {
                    out.push_str(&format!("{c:<w$}  ", w = widths[i]));
                }
            }
            out.push('\n');
        };
        line(header.to_vec());
        for r in &rows {
            line(r.iter().map(String::as_str).collect());
        }
        for n in notes {
            out.push_str(&escape(&n));
            out.push('\n');
        }
        out
    }
}

/// A session as `sessions --json` prints it, seen among `all`, with the daemon's `row` for
/// it: its fields, the measured figures (null without a daemon), then every rule variable
/// not already a key, with the value rules see (unknown: null), and all of them again under
/// `vars` (there `title` is the rules' title, not "Show - Title").
pub fn to_json(s: &Session, all: &[Session], row: Option<&StreamRow>) -> Json {
    let observed = Observed {
        measured: row.and_then(StreamRow::measured),
        ..Observed::default()
    };
    let vars: Map<String, Json> = Vars::for_session(s, all, &observed)
        .listing()
        .map(|(name, v)| (name.to_string(), var_json(v)))
        .collect();
    let r = row.cloned().unwrap_or_default();
    let mut out = json!({
        "session_id": s.session_id,
        "session_key": s.session_key,
        "user": s.user,
        "user_id": s.user_id,
        "address": s.address,
        "location": s.location,
        "state": s.state,
        "media_type": s.media_type,
        "title": s.display_title(),
        "player": s.player,
        "platform": s.platform,
        "product": s.product,
        "video_decision": s.video_decision,
        "audio_decision": s.audio_decision,
        "transcode_decision": s.transcode_decision,
        "stream_bitrate_kbps": s.stream_bitrate_kbps,
        "video_resolution": s.video_resolution,
        "source_bitrate_kbps": s.source_bitrate_kbps,
        "source_resolution": s.source_resolution,
        "bandwidth_kbps": s.bandwidth_kbps,
        "killable": s.killable(),
        "measured_kbps_10s": r.measured_kbps_10s,
        "measured_kbps_1m": r.measured_kbps_1m,
        "measured_kbps_5m": r.measured_kbps_5m,
        "measured_kbps_10m": r.measured_kbps_10m,
        "estimated": r.estimated,
        "rate_source": r.rate_source,
        "address_kbps_10s": r.address_kbps_10s,
        "address_kbps_1m": r.address_kbps_1m,
        "address_kbps_5m": r.address_kbps_5m,
        "address_kbps_10m": r.address_kbps_10m,
        "shared_with": r.shared_with,
    });
    if let Json::Object(fields) = &mut out {
        for (name, v) in &vars {
            fields.entry(name.as_str()).or_insert_with(|| v.clone());
        }
        fields.insert("vars".into(), Json::Object(vars));
    }
    out
}

/// A rule variable's value in JSON; whole numbers print as integers.
fn var_json(v: Option<&Value>) -> Json {
    match v {
        None => Json::Null,
        Some(Value::Number(n)) if n.fract() == 0.0 && n.abs() < 1e15 => Json::from(*n as i64),
        Some(v) => serde_json::to_value(v).unwrap_or(Json::Null),
    }
}
