//! Plex's own byte counters: `GET /statistics/bandwidth?timespan=6` (Plex Pass, undocumented).
//!
//! The answer is a `<MediaContainer>` of `<Device id name platform clientIdentifier
//! createdAt>`, `<Account id key name ...>` and `<StatisticsBandwidth accountID deviceID
//! timespan at lan bytes>` rows: the bytes the server sent to one account on one device, on
//! the LAN or not, in the `timespan` bucket starting at `at` (unix seconds; timespan 6 is one
//! second, 4 an hour, 3 a day). The finest grain is account x device x LAN/WAN: two streams of
//! one device cannot be told apart.
//!
//! A session joins a device by its Player's `machineIdentifier` (the device's
//! `clientIdentifier`) and an account by its User `id` (the server owner is 1 in both).
//!
//! Per-second rows arrive some seconds late, so only seconds at least [`LAG_SECS`] older
//! than the latest successful read are taken as complete; a rate over `W` seconds covers the
//! `W` complete seconds up to that point ([`Counters::through`]).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::Session;

/// The timespan code of one-second rows.
pub const TIMESPAN_SECONDS: u32 = 6;
/// How many seconds behind the read a second must be before it counts as complete.
pub const LAG_SECS: i64 = 5;
/// How many seconds of rows are kept (the longest window, 10 minutes).
pub const KEEP_SECS: i64 = 600;
/// Figures are unknown once the newest complete second is older than this (reads failing).
pub const STALE_SECS: i64 = 60;
/// The windows, in seconds, as the meter's.
const WINDOWS: [i64; 4] = [10, 60, 300, 600];

/// One `<StatisticsBandwidth>` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub account_id: i64,
    pub device_id: i64,
    pub lan: bool,
    /// Unix seconds at the start of the row's span.
    pub at: i64,
    pub timespan: u32,
    pub bytes: u64,
}

/// One `<Device>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: i64,
    pub client_identifier: Option<String>,
    pub name: Option<String>,
    pub platform: Option<String>,
}

/// A parsed answer. Rows with a missing or malformed field are skipped and counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bandwidth {
    pub devices: Vec<Device>,
    pub rows: Vec<Row>,
    pub skipped: usize,
}

#[derive(Debug, Default, Deserialize)]
struct RawContainer {
    #[serde(rename = "$value", default)]
    items: Vec<RawItem>,
}

#[derive(Debug, Deserialize)]
enum RawItem {
    Device(RawDevice),
    StatisticsBandwidth(RawRow),
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
struct RawDevice {
    #[serde(rename = "@id")]
    id: Option<String>,
    #[serde(rename = "@clientIdentifier")]
    client_identifier: Option<String>,
    #[serde(rename = "@name")]
    name: Option<String>,
    #[serde(rename = "@platform")]
    platform: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRow {
    #[serde(rename = "@accountID")]
    account_id: Option<String>,
    #[serde(rename = "@deviceID")]
    device_id: Option<String>,
    #[serde(rename = "@timespan")]
    timespan: Option<String>,
    #[serde(rename = "@at")]
    at: Option<String>,
    #[serde(rename = "@lan")]
    lan: Option<String>,
    #[serde(rename = "@bytes")]
    bytes: Option<String>,
}

fn flag(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

impl RawRow {
    fn row(&self) -> Option<Row> {
        let num = |v: &Option<String>| v.as_deref().and_then(|s| s.trim().parse::<i64>().ok());
        Some(Row {
            account_id: num(&self.account_id)?,
            device_id: num(&self.device_id)?,
            lan: self.lan.as_deref().and_then(flag)?,
            at: num(&self.at)?,
            timespan: u32::try_from(num(&self.timespan)?).ok()?,
            bytes: u64::try_from(num(&self.bytes)?).ok()?,
        })
    }
}

/// Parses a `/statistics/bandwidth` body.
pub fn parse(body: &str) -> Result<Bandwidth, quick_xml::DeError> {
    // The same root check as the sessions (an HTML error page is not an answer).
    super::session::parse_container(body)?;
    let raw: RawContainer = quick_xml::de::from_str(body)?;
    let mut out = Bandwidth::default();
    for item in raw.items {
        match item {
            RawItem::Device(d) => match d.id.as_deref().and_then(|s| s.trim().parse().ok()) {
                Some(id) => out.devices.push(Device {
                    id,
                    client_identifier: d.client_identifier.filter(|c| !c.is_empty()),
                    name: d.name,
                    platform: d.platform,
                }),
                None => out.skipped += 1,
            },
            RawItem::StatisticsBandwidth(r) => match r.row() {
                Some(row) => out.rows.push(row),
                None => out.skipped += 1,
            },
            RawItem::Other => {}
        }
    }
    Ok(out)
}

/// One account on one device, on the LAN or not: Plex's finest grain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub account_id: i64,
    pub device_id: i64,
    pub lan: bool,
}

/// A stream's bytes in each complete second, from `first` on.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The first second of `bytes`.
    pub first: i64,
    pub bytes: Vec<u64>,
}

impl Series {
    /// The last second covered.
    pub fn last(&self) -> i64 {
        self.first + self.bytes.len() as i64 - 1
    }

    /// Bytes of second `sec` (0 outside the series).
    pub fn at(&self, sec: i64) -> u64 {
        usize::try_from(sec - self.first)
            .ok()
            .and_then(|i| self.bytes.get(i))
            .copied()
            .unwrap_or(0)
    }
}

/// The per-second rows read so far, kept for [`KEEP_SECS`], and the devices they name.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    devices: HashMap<String, i64>,
    rows: HashMap<Key, BTreeMap<i64, u64>>,
    /// The newest complete second, once a read succeeded.
    through: Option<i64>,
    /// The first second the reads cover: nothing is known before it.
    covered_from: Option<i64>,
}

impl Counters {
    /// Takes a successful read made at `read_sec` (unix seconds) that asked for the rows
    /// from `since` on. A row read again replaces the earlier value of its second.
    pub fn absorb(&mut self, answer: &Bandwidth, since: i64, read_sec: i64) {
        for d in &answer.devices {
            if let Some(c) = &d.client_identifier {
                self.devices.insert(c.clone(), d.id);
            }
        }
        for r in answer
            .rows
            .iter()
            .filter(|r| r.timespan == TIMESPAN_SECONDS)
        {
            let key = Key {
                account_id: r.account_id,
                device_id: r.device_id,
                lan: r.lan,
            };
            self.rows.entry(key).or_default().insert(r.at, r.bytes);
        }
        let through = read_sec - LAG_SECS;
        self.through = Some(self.through.map_or(through, |t| t.max(through)));
        self.covered_from = Some(self.covered_from.map_or(since, |c| c.min(since)));
        let oldest = through - KEEP_SECS;
        for series in self.rows.values_mut() {
            *series = series.split_off(&oldest);
        }
        self.rows.retain(|_, s| !s.is_empty());
        if let Some(c) = &mut self.covered_from {
            *c = (*c).max(oldest);
        }
    }

    /// The newest complete second.
    pub fn through(&self) -> Option<i64> {
        self.through
    }

    /// Where the next read should start: a margin before the newest complete second, so
    /// rows that arrived late are read again; everything kept on the first read.
    pub fn next_since(&self, now_sec: i64) -> i64 {
        match self.through {
            Some(t) => t - 2 * LAG_SECS,
            None => now_sec - KEEP_SECS,
        }
    }

    /// The device Plex knows by this client identifier.
    pub fn device(&self, client_identifier: &str) -> Option<i64> {
        self.devices.get(client_identifier).copied()
    }

    /// Whether `sessions[i]` is the only session of its account on its device: only then
    /// can Plex's counters be its own.
    fn sole(sessions: &[Session], i: usize) -> bool {
        let s = &sessions[i];
        sessions.iter().enumerate().all(|(j, o)| {
            j == i || o.user_id != s.user_id || o.machine_identifier != s.machine_identifier
        })
    }

    /// `sessions[i]`'s bytes in each complete second Plex's counters cover, up to
    /// `through` and at most [`KEEP_SECS`] back; `None` when the stream does not map to one
    /// (account, device) alone, the device is unknown to Plex, or the counters are stale
    /// as of `now_sec`.
    pub fn series(&self, sessions: &[Session], i: usize, now_sec: i64) -> Option<Series> {
        let s = sessions.get(i)?;
        let through = self.through.filter(|t| now_sec - t <= STALE_SECS)?;
        let account = s.user_id?;
        let device = self.device(s.machine_identifier.as_deref()?)?;
        if !Self::sole(sessions, i) {
            return None;
        }
        let lan = match s.location.as_deref() {
            Some("lan") => Some(true),
            Some("wan") => Some(false),
            _ => None,
        };
        let keys: Vec<Key> = [true, false]
            .into_iter()
            .filter(|l| lan.is_none_or(|x| x == *l))
            .map(|l| Key {
                account_id: account,
                device_id: device,
                lan: l,
            })
            .collect();
        let mut first_row: Option<i64> = None;
        for k in &keys {
            if let Some((at, _)) = self
                .rows
                .get(k)
                .and_then(|r| r.iter().find(|(_, b)| **b > 0))
            {
                first_row = Some(first_row.map_or(*at, |f| f.min(*at)));
            }
        }
        // The stream starts at its first counted second, or where the reads start.
        let first = first_row?
            .max(self.covered_from?)
            .max(through - KEEP_SECS + 1);
        if first > through {
            return None;
        }
        let mut bytes = vec![0u64; (through - first + 1) as usize];
        for k in &keys {
            if let Some(rows) = self.rows.get(k) {
                for (at, b) in rows.range(first..=through) {
                    if let Some(slot) = usize::try_from(at - first)
                        .ok()
                        .and_then(|i| bytes.get_mut(i))
                    {
                        *slot = slot.saturating_add(*b);
                    }
                }
            }
        }
        Some(Series { first, bytes })
    }

    /// `sessions[i]`'s rates in kbps over 10 s, 1, 5 and 10 minutes of complete seconds
    /// (divided by the stream's age when it is younger), as [`Counters::series`] allows.
    pub fn kbps(&self, sessions: &[Session], i: usize, now_sec: i64) -> Option<[f64; 4]> {
        let series = self.series(sessions, i, now_sec)?;
        let age = series.bytes.len() as i64;
        Some(WINDOWS.map(|w| {
            let n = w.min(age);
            if n <= 0 {
                return 0.0;
            }
            let total: u64 = series.bytes[(age - n) as usize..].iter().sum();
            total as f64 * 8.0 / n as f64 / 1000.0
        }))
    }
}
