//! `streamwarden sessions`: the server's current streams.

use std::path::Path;

use serde_json::{Map, Value as Json, json};

use crate::Failure;
use crate::enforce::escape;
use crate::engine::setup;
use crate::plex::{ONE_SHOT_BUDGET, Session};
use crate::rules::{Observed, Value, Vars};

use super::Done;

pub async fn run(config: Option<&Path>, as_json: bool) -> Result<Done, Failure> {
    let config = setup::load(config)?;
    let client = setup::plex_client(&config)?;
    client.set_budget(Some(ONE_SHOT_BUDGET));
    let sessions = client
        .sessions_with_sources()
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    if as_json {
        let list: Vec<_> = sessions.iter().map(|s| to_json(s, &sessions)).collect();
        let text =
            serde_json::to_string_pretty(&list).map_err(|e| Failure::Failed(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", table(&sessions));
    }
    Ok(Done::Ok)
}

/// A session as `sessions --json` prints it, seen among `all`: its fields, then every rule
/// variable not already a key, with the value rules see (unknown: null), and all of them
/// again under `vars` (there `title` is the rules' title, not "Show - Title").
pub fn to_json(s: &Session, all: &[Session]) -> Json {
    let vars: Map<String, Json> = Vars::for_session(s, all, &Observed::default())
        .listing()
        .map(|(name, v)| (name.to_string(), var_json(v)))
        .collect();
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

/// The sessions as an aligned text table.
pub fn table(sessions: &[Session]) -> String {
    if sessions.is_empty() {
        return "no streams\n".to_string();
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let kbps =
        |v: Option<i64>| v.map_or_else(|| "-".into(), |k| format!("{:.1}", k as f64 / 1000.0));
    let header = [
        "SESSION", "USER", "ADDRESS", "STATE", "DECISION", "RES", "MBPS", "RESERVED", "TITLE",
    ];
    // Every cell is escaped: Plex's names and titles stay on their row.
    let rows: Vec<[String; 9]> = sessions
        .iter()
        .map(|s| {
            [
                s.session_id
                    .clone()
                    .unwrap_or_else(|| "(not killable)".into()),
                dash(&s.user),
                dash(&s.address),
                s.state
                    .as_ref()
                    .map_or_else(|| "-".into(), ToString::to_string),
                dash(&s.transcode_decision),
                dash(&s.video_resolution),
                kbps(s.stream_bitrate_kbps),
                kbps(s.bandwidth_kbps),
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
    out
}
