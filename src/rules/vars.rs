//! The variables a rule can read, and their values for one stream.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::meter::Measured;
use crate::plex::Session;

/// The type of a rule variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Number,
    Flag,
}

/// Every variable a rule may name, with its type. Rates are kbps.
pub const VARIABLES: &[(&str, Kind)] = &[
    ("user", Kind::Text),
    ("username", Kind::Text),
    ("user_id", Kind::Number),
    ("address", Kind::Text),
    ("player", Kind::Text),
    ("platform", Kind::Text),
    ("product", Kind::Text),
    ("location", Kind::Text),
    ("local", Kind::Flag),
    ("relayed", Kind::Flag),
    ("state", Kind::Text),
    ("media_type", Kind::Text),
    ("title", Kind::Text),
    ("grandparent_title", Kind::Text),
    ("library", Kind::Text),
    ("video_decision", Kind::Text),
    ("audio_decision", Kind::Text),
    ("transcode_decision", Kind::Text),
    ("stream_bitrate", Kind::Number),
    ("source_bitrate", Kind::Number),
    ("bandwidth", Kind::Number),
    ("video_resolution", Kind::Text),
    ("source_resolution", Kind::Text),
    ("user_streams", Kind::Number),
    ("server_streams", Kind::Number),
    ("user_addresses", Kind::Number),
    ("paused_for", Kind::Number),
    ("throttled_for", Kind::Number),
    ("measured_kbps_10s", Kind::Number),
    ("measured_kbps_1m", Kind::Number),
    ("measured_kbps_5m", Kind::Number),
    ("measured_kbps_10m", Kind::Number),
    ("rate_source", Kind::Text),
];

/// Variables that carry a rate in kbps and so have an `_mbps` template form.
pub const RATES: &[&str] = &[
    "stream_bitrate",
    "source_bitrate",
    "bandwidth",
    "measured_kbps_10s",
    "measured_kbps_1m",
    "measured_kbps_5m",
    "measured_kbps_10m",
];

/// The measured variables (estimated when the stream could not be told apart).
pub const MEASURED: &[&str] = &[
    "measured_kbps_10s",
    "measured_kbps_1m",
    "measured_kbps_5m",
    "measured_kbps_10m",
];

/// Looks a variable up by name.
pub fn lookup(name: &str) -> Option<(&'static str, Kind)> {
    VARIABLES.iter().find(|(n, _)| *n == name).copied()
}

/// A variable's value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Text(String),
    Number(f64),
    Flag(bool),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => write!(f, "{}", *n as i64),
            Value::Number(n) => write!(f, "{n:.1}"),
            Value::Flag(b) => write!(f, "{b}"),
        }
    }
}

/// What was observed of a stream beyond what Plex lists.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Observed {
    /// Its measured figures, when a meter attributed traffic to it.
    pub measured: Option<Measured>,
    /// Seconds it has been seen paused (0 when it is not paused), when someone watched.
    pub paused_for_secs: Option<f64>,
    /// Seconds it has been throttled (0 when it is not), when a daemon keeps throttles.
    pub throttled_for_secs: Option<f64>,
}

/// The values for one stream. A variable absent from the map is unknown.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    values: BTreeMap<&'static str, Value>,
    /// The measured figures are estimates.
    pub estimated: bool,
}

impl Vars {
    /// Builds the values of `session`, seen among `all` sessions, with what was observed.
    pub fn for_session(session: &Session, all: &[Session], observed: &Observed) -> Self {
        let measured = observed.measured.as_ref();
        let mut v = Vars::default();
        let text = |v: &mut Vars, k: &'static str, x: &Option<String>| {
            if let Some(x) = x {
                v.values.insert(k, Value::Text(x.clone()));
            }
        };
        text(&mut v, "user", &session.user);
        text(&mut v, "username", &session.user);
        text(&mut v, "address", &session.address);
        text(&mut v, "player", &session.player);
        text(&mut v, "platform", &session.platform);
        text(&mut v, "product", &session.product);
        text(&mut v, "location", &session.location);
        text(
            &mut v,
            "state",
            &session.state.as_ref().map(|s| s.as_str().to_string()),
        );
        text(&mut v, "media_type", &session.media_type);
        text(&mut v, "title", &session.title);
        text(&mut v, "grandparent_title", &session.grandparent_title);
        text(&mut v, "library", &session.library);
        text(&mut v, "video_decision", &session.video_decision);
        text(&mut v, "audio_decision", &session.audio_decision);
        text(&mut v, "transcode_decision", &session.transcode_decision);
        text(&mut v, "video_resolution", &session.video_resolution);
        text(&mut v, "source_resolution", &session.source_resolution);
        let mut num = |k: &'static str, x: Option<f64>| {
            if let Some(x) = x {
                v.values.insert(k, Value::Number(x));
            }
        };
        num("user_id", session.user_id.map(|x| x as f64));
        num(
            "stream_bitrate",
            session.stream_bitrate_kbps.map(|x| x as f64),
        );
        num(
            "source_bitrate",
            session.source_bitrate_kbps.map(|x| x as f64),
        );
        num("bandwidth", session.bandwidth_kbps.map(|x| x as f64));
        let same_user = |s: &Session| match (&session.user_id, &s.user_id) {
            (Some(a), Some(b)) => a == b,
            _ => session.user.is_some() && s.user == session.user,
        };
        if session.user_id.is_some() || session.user.is_some() {
            num(
                "user_streams",
                Some(all.iter().filter(|s| same_user(s)).count().max(1) as f64),
            );
        }
        num("server_streams", Some(all.len().max(1) as f64));
        if session.user_id.is_some() || session.user.is_some() {
            let mut addresses: Vec<&str> = all
                .iter()
                .filter(|s| same_user(s))
                .filter_map(|s| s.address.as_deref())
                .collect();
            addresses.sort_unstable();
            addresses.dedup();
            num("user_addresses", Some(addresses.len().max(1) as f64));
        }
        num("paused_for", observed.paused_for_secs);
        num("throttled_for", observed.throttled_for_secs);
        if let Some(m) = measured {
            num("measured_kbps_10s", Some(m.kbps_10s));
            num("measured_kbps_1m", Some(m.kbps_1m));
            num("measured_kbps_5m", Some(m.kbps_5m));
            num("measured_kbps_10m", Some(m.kbps_10m));
            v.values
                .insert("rate_source", Value::Text(m.source.as_str().to_string()));
        }
        if let Some(b) = session.local {
            v.values.insert("local", Value::Flag(b));
        }
        if let Some(b) = session.relayed {
            v.values.insert("relayed", Value::Flag(b));
        }
        v.estimated = measured.is_some_and(|m| m.estimated);
        v
    }

    /// Sample values of the right type for every variable, for checking rules at load.
    pub fn samples() -> Self {
        let mut v = Vars::default();
        for (name, kind) in VARIABLES {
            let value = match kind {
                Kind::Text => Value::Text(String::new()),
                Kind::Number => Value::Number(1.0),
                Kind::Flag => Value::Flag(false),
            };
            v.values.insert(name, value);
        }
        v
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    pub fn set(&mut self, name: &'static str, value: Value) {
        self.values.insert(name, value);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        self.values.iter().map(|(k, v)| (*k, v))
    }

    /// Every variable a rule may name, in `VARIABLES` order, with its value (`None`:
    /// unknown).
    pub fn listing(&self) -> impl Iterator<Item = (&'static str, Option<&Value>)> {
        VARIABLES
            .iter()
            .map(|(name, _)| (*name, self.values.get(name)))
    }
}
