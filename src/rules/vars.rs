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
    /// A list of text (`groups`).
    List,
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
    ("user_wan_streams", Kind::Number),
    ("user_lan_streams", Kind::Number),
    ("server_streams", Kind::Number),
    ("user_addresses", Kind::Number),
    ("paused_for", Kind::Number),
    ("throttled_for", Kind::Number),
    ("measured_kbps_10s", Kind::Number),
    ("measured_kbps_1m", Kind::Number),
    ("measured_kbps_5m", Kind::Number),
    ("measured_kbps_10m", Kind::Number),
    ("rate_source", Kind::Text),
    ("hour", Kind::Number),
    ("minute", Kind::Number),
    ("weekday", Kind::Text),
    ("date", Kind::Text),
    ("groups", Kind::List),
    ("user_gb_today", Kind::Number),
    ("user_gb_week", Kind::Number),
    ("user_gb_month", Kind::Number),
    ("user_gb_7d", Kind::Number),
    ("user_gb_30d", Kind::Number),
    ("user_hours_today", Kind::Number),
    ("user_hours_week", Kind::Number),
    ("user_hours_month", Kind::Number),
    ("user_transcodes_today", Kind::Number),
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
    List(Vec<String>),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => write!(f, "{}", *n as i64),
            Value::Number(n) => write!(f, "{n:.1}"),
            Value::Flag(b) => write!(f, "{b}"),
            Value::List(l) => write!(f, "{}", l.join(", ")),
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
    /// What its user streamed, when a daemon records usage.
    pub usage: Option<UserUsage>,
    /// The time it was judged at (microseconds since the Unix epoch), for `hour`,
    /// `minute`, `weekday` and `date`.
    pub now_micros: Option<i64>,
}

/// What one user streamed, as the `user_gb_*`, `user_hours_*` and `user_transcodes_today`
/// variables read it (GB are 10^9 bytes; today, week and month are calendar periods in
/// `[usage] timezone`; 7d and 30d are rolling).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UserUsage {
    pub gb_today: f64,
    pub gb_week: f64,
    pub gb_month: f64,
    pub gb_7d: f64,
    pub gb_30d: f64,
    pub hours_today: f64,
    pub hours_week: f64,
    pub hours_month: f64,
    pub transcodes_today: f64,
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
        Self::for_session_among(session, &Population::of(all), observed)
    }

    /// As [`Vars::for_session`], with the counts over every stream made once
    /// (`Population::of`), so that a round over n streams costs n, not n².
    pub fn for_session_among(session: &Session, all: &Population<'_>, observed: &Observed) -> Self {
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
        if let Some((wan, lan)) = all.by_location(session) {
            num("user_wan_streams", Some(wan as f64));
            num("user_lan_streams", Some(lan as f64));
        }
        if let Some((streams, addresses)) = all.user(session) {
            num("user_streams", Some(streams.max(1) as f64));
            num("user_addresses", Some(addresses.max(1) as f64));
        }
        num("server_streams", Some(all.len.max(1) as f64));
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
        if let Some(u) = &observed.usage {
            for (k, x) in [
                ("user_gb_today", u.gb_today),
                ("user_gb_week", u.gb_week),
                ("user_gb_month", u.gb_month),
                ("user_gb_7d", u.gb_7d),
                ("user_gb_30d", u.gb_30d),
                ("user_hours_today", u.hours_today),
                ("user_hours_week", u.hours_week),
                ("user_hours_month", u.hours_month),
                ("user_transcodes_today", u.transcodes_today),
            ] {
                v.values.insert(k, Value::Number(x));
            }
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

    /// Sets `hour`, `minute`, `weekday` and `date` for `now_micros` in `zone`.
    pub fn set_clock(&mut self, now_micros: i64, zone: &jiff::tz::TimeZone) {
        let Ok(t) = jiff::Timestamp::from_microsecond(now_micros) else {
            return;
        };
        let z = t.to_zoned(zone.clone());
        let weekday = crate::config::usage::weekday_name(z.weekday());
        self.set("hour", Value::Number(f64::from(z.hour())));
        self.set("minute", Value::Number(f64::from(z.minute())));
        self.set("weekday", Value::Text(weekday.into()));
        self.set("date", Value::Text(z.date().to_string()));
    }

    /// Sample values of the right type for every variable, for checking rules at load.
    pub fn samples() -> Self {
        let mut v = Vars::default();
        for (name, kind) in VARIABLES {
            let value = match kind {
                Kind::Text => Value::Text(String::new()),
                Kind::Number => Value::Number(1.0),
                Kind::Flag => Value::Flag(false),
                Kind::List => Value::List(Vec::new()),
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

/// Every stream's user, counted once for a round: how many streams each user has and from
/// how many addresses. Two streams are the same user's when both carry Plex user ids and
/// they are equal; otherwise when their user names are equal.
#[derive(Debug, Default)]
pub struct Population<'a> {
    len: usize,
    by_id: std::collections::HashMap<i64, Tally<'a>>,
    /// Streams without a user id, by name.
    by_name_without_id: std::collections::HashMap<&'a str, Tally<'a>>,
    /// Every stream, by name.
    by_name: std::collections::HashMap<&'a str, Tally<'a>>,
}

#[derive(Debug, Default)]
struct Tally<'a> {
    streams: usize,
    addresses: std::collections::HashSet<&'a str>,
    /// Video and music streams (not photos) by location.
    wan: usize,
    lan: usize,
}

impl<'a> Tally<'a> {
    fn add(&mut self, s: &'a Session) {
        self.streams += 1;
        if s.media_type.as_deref() != Some("photo") {
            match s.location.as_deref() {
                Some("wan" | "cellular") => self.wan += 1,
                Some("lan") => self.lan += 1,
                _ => {}
            }
        }
        if let Some(a) = s.address.as_deref() {
            self.addresses.insert(a);
        }
    }
}

impl<'a> Population<'a> {
    pub fn of(all: &'a [Session]) -> Self {
        let mut p = Population {
            len: all.len(),
            ..Population::default()
        };
        for s in all {
            if let Some(id) = s.user_id {
                p.by_id.entry(id).or_default().add(s);
            }
            if let Some(name) = s.user.as_deref() {
                if s.user_id.is_none() {
                    p.by_name_without_id.entry(name).or_default().add(s);
                }
                p.by_name.entry(name).or_default().add(s);
            }
        }
        p
    }

    /// The streams and distinct addresses of `session`'s user, or None without a user.
    fn user(&self, session: &Session) -> Option<(usize, usize)> {
        let empty = Tally::default();
        let name = session.user.as_deref();
        match (session.user_id, name) {
            (Some(id), _) => {
                let with_id = self.by_id.get(&id).unwrap_or(&empty);
                let without = name
                    .and_then(|n| self.by_name_without_id.get(n))
                    .unwrap_or(&empty);
                let addresses = with_id.addresses.union(&without.addresses).count();
                Some((with_id.streams + without.streams, addresses))
            }
            (None, Some(n)) => {
                let t = self.by_name.get(n).unwrap_or(&empty);
                Some((t.streams, t.addresses.len()))
            }
            (None, None) => None,
        }
    }

    /// The user's remote and local video and music streams (photos left out), or None
    /// without a user.
    fn by_location(&self, session: &Session) -> Option<(usize, usize)> {
        let empty = Tally::default();
        let name = session.user.as_deref();
        match (session.user_id, name) {
            (Some(id), _) => {
                let a = self.by_id.get(&id).unwrap_or(&empty);
                let b = name
                    .and_then(|n| self.by_name_without_id.get(n))
                    .unwrap_or(&empty);
                Some((a.wan + b.wan, a.lan + b.lan))
            }
            (None, Some(n)) => {
                let t = self.by_name.get(n).unwrap_or(&empty);
                Some((t.wan, t.lan))
            }
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod population_tests {
    use super::*;

    /// The definition, stream by stream (what `Population` computes once for all).
    fn naive(session: &Session, all: &[Session]) -> Option<(usize, usize)> {
        if session.user_id.is_none() && session.user.is_none() {
            return None;
        }
        let same = |s: &Session| match (&session.user_id, &s.user_id) {
            (Some(a), Some(b)) => a == b,
            _ => session.user.is_some() && s.user == session.user,
        };
        let streams = all.iter().filter(|s| same(s)).count();
        let mut addresses: Vec<&str> = all
            .iter()
            .filter(|s| same(s))
            .filter_map(|s| s.address.as_deref())
            .collect();
        addresses.sort_unstable();
        addresses.dedup();
        Some((streams, addresses.len()))
    }

    #[test]
    fn counts_equal_the_definition_on_every_mix_of_ids_names_and_addresses() {
        let ids = [None, Some(1), Some(2)];
        let names = [None, Some("a"), Some("b")];
        let addrs = [None, Some("10.0.0.1"), Some("10.0.0.2")];
        let mut seed: u64 = 0x5eed;
        for round in 0..300 {
            let n = round % 12;
            let all: Vec<Session> = (0..n)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let r = (seed >> 33) as usize;
                    Session {
                        user_id: ids[r % 3],
                        user: names[(r / 3) % 3].map(str::to_string),
                        address: addrs[(r / 9) % 3].map(str::to_string),
                        ..Session::default()
                    }
                })
                .collect();
            let population = Population::of(&all);
            for s in &all {
                assert_eq!(population.user(s), naive(s, &all), "{s:?} among {all:?}");
            }
        }
    }
}
