//! The audit log: one JSON object per line, appended and flushed as each decision is made,
//! and handed to a [`Sink`] (the notifier) as it is written.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::rules::Vars;

/// One audit line.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub ts: String,
    /// "enforce" or "dry-run".
    pub mode: &'static str,
    /// kill, would-kill, log, kill-failed, kill-skipped, zombie, transcode-stopped,
    /// throttle, would-throttle, throttle-failed, throttle-skipped or unthrottle.
    pub action: &'static str,
    pub rule: String,
    pub session_id: Option<String>,
    pub session_key: Option<String>,
    pub user: Option<String>,
    pub address: Option<String>,
    pub title: Option<String>,
    pub message: String,
    /// The values the rule read; null where unknown.
    pub values: Map<String, Json>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// The measured figures were estimates (several streams behind one address).
    pub estimated: bool,
    /// Why a kill failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The rate of a throttle ("5 Mbps").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Every variable's value for the stream (player, rates, ...), for notifications; not
    /// part of the audit line.
    #[serde(skip)]
    pub vars: Vars,
}

/// Told of every record as it is written: the notifier. It runs on the kill path, so it
/// must return at once (queue the record, never send it there).
pub trait Sink: Send + Sync {
    fn record(&self, record: &Record);
}

/// Where audit lines go.
#[derive(Default)]
pub struct AuditLog {
    file: Option<(PathBuf, File)>,
    sink: Option<Arc<dyn Sink>>,
    recent: Recent,
}

/// The latest records written through one [`AuditLog`] (at most [`RECENT`]), oldest first:
/// what the daemon's page shows when no audit file is configured.
pub type Recent = Arc<Mutex<VecDeque<super::history::Entry>>>;

/// How many records [`Recent`] keeps.
pub const RECENT: usize = 500;

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path())
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

/// What an existing audit log says about past kills (so separate hook runs share the
/// kill budget and never kill the same session twice).
#[derive(Debug, Default)]
pub struct History {
    pub killed_sessions: HashSet<String>,
    pub kills_last_minute: u32,
}

impl AuditLog {
    /// No file: records go to the tracing log only.
    pub fn none() -> Self {
        Self::default()
    }

    /// Opens (creating) the file for appending. Its directory must exist: creating one
    /// here would leave it owned by root when the daemon starts as root.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Some((path.to_path_buf(), file)),
            sink: None,
            recent: Recent::default(),
        })
    }

    /// The records written from now on, as they are written.
    pub fn recent(&self) -> Recent {
        self.recent.clone()
    }

    /// Also hands every record to `sink` (when given) as it is written.
    pub fn with_sink(mut self, sink: Option<Arc<dyn Sink>>) -> Self {
        self.sink = sink;
        self
    }

    /// The sink records are handed to, to share with another log of the same process.
    pub fn sink(&self) -> Option<Arc<dyn Sink>> {
        self.sink.clone()
    }

    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Writes one record as a line and flushes it.
    pub fn write(&mut self, record: &Record) -> std::io::Result<()> {
        // Failed and skipped kills are logged as errors and warnings by the enforcer;
        // the rest is logged here, once.
        if !matches!(record.action, "kill-failed" | "kill-skipped") {
            tracing::info!(
                target: "streamwarden::audit",
                action = record.action,
                rule = %record.rule,
                user = record.user.as_deref().unwrap_or("-"),
                session_id = record.session_id.as_deref().unwrap_or("-"),
                "{}",
                super::escape(&record.message)
            );
        }
        if let Some(sink) = &self.sink {
            sink.record(record);
        }
        if let Ok(entry) = serde_json::to_value(record).and_then(serde_json::from_value) {
            let mut recent = crate::lock(&self.recent);
            if recent.len() >= RECENT {
                recent.pop_front();
            }
            recent.push_back(entry);
        }
        if let Some((_, f)) = &mut self.file {
            let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
            line.push(b'\n');
            f.write_all(&line)?;
            f.flush()?;
        }
        Ok(())
    }

    /// Reads the tail of the log for past kills. A missing or unreadable log is empty.
    pub fn history(&self, now: time::OffsetDateTime) -> History {
        let mut h = History::default();
        let Some((path, _)) = &self.file else {
            return h;
        };
        let Ok(mut f) = File::open(path) else {
            return h;
        };
        const TAIL: u64 = 512 * 1024;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len > TAIL && f.seek(SeekFrom::Start(len - TAIL)).is_err() {
            return h;
        }
        let mut text = String::new();
        if f.read_to_string(&mut text).is_err() {
            let mut bytes = Vec::new();
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
            let _ = f.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Json>(line) else {
                continue;
            };
            if v.get("action").and_then(Json::as_str) != Some("kill") {
                continue;
            }
            if let Some(id) = v.get("session_id").and_then(Json::as_str) {
                h.killed_sessions.insert(id.to_string());
            }
            let recent = v
                .get("ts")
                .and_then(Json::as_str)
                .and_then(|ts| {
                    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .is_some_and(|ts| (now - ts) < time::Duration::seconds(60) && ts <= now);
            if recent {
                h.kills_last_minute += 1;
            }
        }
        h
    }
}

/// The current time as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
