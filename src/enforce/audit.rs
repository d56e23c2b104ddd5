//! The audit log: one JSON object per line, appended and flushed as each decision is made,
//! and handed to a [`AuditSink`] (the notifier) as it is written.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::rules::Vars;
use crate::state::{AuditAction, Mode};

/// One audit line.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub ts: String,
    pub mode: Mode,
    pub action: AuditAction,
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
pub trait AuditSink: Send + Sync {
    fn record(&self, record: &Record);
}

/// Where audit lines go.
#[derive(Default)]
pub struct AuditLog {
    file: Option<(PathBuf, File)>,
    sink: Option<Arc<dyn AuditSink>>,
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

impl AuditLog {
    /// No file: records go to the tracing log only.
    pub fn none() -> Self {
        Self::default()
    }

    /// Opens (creating) the file for appending. Its directory must exist: creating one
    /// here would leave it owned by root when the daemon starts as root. A last line cut
    /// short (a crash mid-write) is ended first, so the next record starts on a line of its
    /// own (the fragment stays, unreadable, and is counted as such by `history`).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        probe(path).map_err(std::io::Error::other)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                tracing::warn!(path = %path.display(), "the audit log's last line was cut short (a crash mid-write?): ending it so the next record stays readable");
                file.write_all(b"\n")?;
            }
        }
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
    pub fn with_sink(mut self, sink: Option<Arc<dyn AuditSink>>) -> Self {
        self.sink = sink;
        self
    }

    /// The sink records are handed to, to share with another log of the same process.
    pub fn sink(&self) -> Option<Arc<dyn AuditSink>> {
        self.sink.clone()
    }

    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Writes one record as a line and flushes it.
    pub fn write(&mut self, record: &Record) -> std::io::Result<()> {
        // Failed and skipped kills are logged as errors and warnings by the enforcer;
        // the rest is logged here, once.
        if !matches!(
            record.action,
            AuditAction::KillFailed | AuditAction::KillSkipped
        ) {
            tracing::info!(
                target: "streamwarden::audit",
                action = record.action.as_str(),
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
            // One write of the whole line (O_APPEND): a reader never sees half of it, and a
            // write cut short is an error rather than a second write after the first part.
            let n = f.write(&line)?;
            if n != line.len() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("only {n} of {} bytes of the line were written", line.len()),
                ));
            }
        }
        Ok(())
    }

    /// Hands a record to the sink only (the notifier), not to the file: what the state
    /// could not keep is still told.
    pub fn tell(&self, record: &Record) {
        if let Some(sink) = &self.sink {
            sink.record(record);
        }
    }
}

/// Whether `path` can be the audit log, checked the same way by `check` and `run`: an
/// existing one must be a regular file this user can append to (not a FIFO, a device such as
/// /dev/full, nor a file of /proc or of a read-only mount), opened without blocking; a missing
/// one needs a folder this user can write. Why not, otherwise.
pub fn probe(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_fifo() => Err(
            "is a FIFO (a pipe): name a regular file, e.g. /var/log/streamwarden/audit.jsonl"
                .into(),
        ),
        Ok(m) if m.file_type().is_char_device() || m.file_type().is_block_device() => Err(
            "is a device, not a file: name a regular file, e.g. /var/log/streamwarden/audit.jsonl"
                .into(),
        ),
        Ok(m) if m.is_dir() => Err("is a directory: name a file in it, e.g. audit.jsonl".into()),
        Ok(m) if !m.is_file() => Err("is not a regular file".into()),
        Ok(_) => {
            if path.starts_with("/proc") || path.starts_with("/sys") {
                return Err("is in a kernel filesystem (/proc, /sys): name a regular file".into());
            }
            OpenOptions::new()
                .append(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(path)
                .map(drop)
                .map_err(|e| format!("cannot be opened for appending: {e}"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(format!(
                    "the directory {} does not exist: create it, owned by the user streamwarden runs as",
                    dir.display()
                ));
            }
            nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK)
                .map_err(|e| format!("cannot be made in {}: {e}", dir.display()))
        }
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

/// A time in microseconds since the Unix epoch as RFC 3339 UTC.
pub fn rfc3339(micros: i64) -> String {
    crate::micros::Micros(micros).rfc3339().unwrap_or_default()
}

impl Record {
    /// The record as the state database keeps it.
    pub fn row(&self, at: i64) -> crate::state::AuditRow {
        crate::state::AuditRow {
            at,
            ts: self.ts.clone(),
            mode: self.mode.as_str().to_string(),
            action: self.action.as_str().to_string(),
            rule: self.rule.clone(),
            session_id: self.session_id.clone(),
            session_key: self.session_key.clone(),
            user: self.user.clone(),
            address: self.address.clone(),
            title: self.title.clone(),
            message: self.message.clone(),
            reason: self.reason.clone(),
            rate: self.rate.clone(),
            estimated: self.estimated,
            values: Json::Object(self.values.clone()).to_string(),
        }
    }

    /// What the notify targets are told when the state cannot be written.
    pub fn state_down(reason: &str, mode: Mode) -> Record {
        Record {
            ts: now_rfc3339(),
            mode,
            action: AuditAction::KillSkipped,
            rule: "state".into(),
            session_id: None,
            session_key: None,
            user: None,
            address: None,
            title: None,
            message: String::new(),
            values: Map::new(),
            missing: Vec::new(),
            estimated: false,
            reason: Some(format!(
                "{reason}: no kill is sent until the state database can be written"
            )),
            rate: None,
            vars: Vars::default(),
        }
    }
}

/// The current time as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
