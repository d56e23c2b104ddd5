//! `notify-test`: a sample kill sent to every target, so the owner sees each before arming
//! anything.

use crate::state::{AuditAction, Mode};
use serde_json::{Map, Value as Json};

use crate::Failure;
use crate::config::Config;
use crate::enforce::Record;
use crate::rules::{Value, Vars};

use super::deliver::{self, Delivery};
use super::{Target, format, targets};

/// What became of the sample sent to one target.
#[derive(Debug, Clone)]
pub struct Tried {
    pub name: String,
    pub kind: &'static str,
    /// The audit actions the target is told of (the sample goes whatever they are).
    pub on: Vec<crate::state::AuditAction>,
    /// Why it was not sent (never with the URL).
    pub result: Result<(), String>,
}

/// A kill as a notification shows it, made up.
pub fn record() -> Record {
    let mut vars = Vars::default();
    for (k, v) in [
        ("user", "sample-user"),
        ("username", "sample-user"),
        ("title", "Big Buck Bunny"),
        ("player", "Living Room TV"),
        ("platform", "Android"),
        ("product", "Plex for Android (TV)"),
        ("transcode_decision", "transcode"),
        ("video_resolution", "1080"),
        ("source_resolution", "4k"),
        ("location", "wan"),
        ("address", "203.0.113.7"),
    ] {
        vars.set(k, Value::Text(v.into()));
    }
    for (k, v) in [
        ("stream_bitrate", 20_000.0),
        ("source_bitrate", 8_000.0),
        ("measured_kbps_10s", 21_500.0),
        ("measured_kbps_1m", 20_800.0),
    ] {
        vars.set(k, Value::Number(v));
    }
    let mut values = Map::new();
    values.insert("transcode_decision".into(), Json::from("transcode"));
    values.insert("source_resolution".into(), Json::from("4k"));
    Record {
        ts: crate::enforce::audit::now_rfc3339(),
        mode: Mode::Test,
        action: AuditAction::Kill,
        rule: "notify-test".into(),
        session_id: Some("sample-session".into()),
        session_key: Some("1".into()),
        user: Some("sample-user".into()),
        address: Some("203.0.113.7".into()),
        title: Some("Big Buck Bunny (2008)".into()),
        message: "This stream was stopped as a test: nothing was really killed.".into(),
        values,
        missing: Vec::new(),
        estimated: false,
        reason: None,
        rate: None,
        vars,
    }
}

/// Sends the sample to every target at once; one answer per target, in order. No targets,
/// or a target that does not check, is a configuration failure.
pub async fn send_samples(config: &Config) -> Result<Vec<Tried>, Failure> {
    let targets = targets(config).map_err(|e| crate::config::failure(&e))?;
    if targets.is_empty() {
        let file = config
            .source
            .file
            .as_ref()
            .map_or_else(|| "the configuration".into(), |f| f.display().to_string());
        return Err(Failure::Usage(format!(
            "{file} has no [[notify]] targets: add one (kind and url, or url_env) to test it"
        )));
    }
    let client = deliver::client().map_err(Failure::Failed)?;
    let sample = record();
    let mut set = tokio::task::JoinSet::new();
    let total = targets.len();
    for (i, t) in targets.into_iter().enumerate() {
        let (client, sample) = (client.clone(), sample.clone());
        set.spawn(async move {
            let result =
                deliver::send(&client, &t, &format::single(&t, &sample), Delivery::TEST).await;
            (i, tried(&t, result))
        });
    }
    let mut out: Vec<Option<Tried>> = vec![None; total];
    while let Some(done) = set.join_next().await {
        match done {
            Ok((i, t)) => {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(t);
                }
            }
            Err(e) => return Err(Failure::Failed(format!("a notification task stopped: {e}"))),
        }
    }
    Ok(out.into_iter().flatten().collect())
}

fn tried(t: &Target, result: Result<(), String>) -> Tried {
    Tried {
        name: t.name.clone(),
        kind: t.kind.as_str(),
        on: t.on.clone(),
        result,
    }
}
