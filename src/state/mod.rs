//! The durable state: one SQLite database (`[state] path`) holding what must survive a
//! restart and be shared between every path that acts on a stream: the audit records, the
//! kills and their confirmation, the budget's window (the kills themselves) and the throttles
//! in force. WAL mode, a schema version with migrations, one transaction per decision; other
//! processes on the same file (the hook, `history`) meet SQLite's own locking.
//!
//! Who writes: the one `Enforcer` of a process (through `enforce`); who reads: `history`, the
//! page and `/api/history` (a reader connection of their own). A new kind of record gets a
//! table in a new migration below and its functions in a file of this module.

mod audit;
mod kills;
mod lock;
mod throttles;
pub mod usage;
pub mod vocab;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use audit::{ActionCount, AuditFilter, AuditRow};
pub use kills::{Begin, KillIntent, KillOutcome};
pub use lock::{DaemonLock, LockError};
pub use throttles::ThrottleRow;
pub use vocab::{AuditAction, Mode, Severity};

/// Why the state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot open the state database {path}: {reason}")]
    Open { path: String, reason: String },
    #[error(
        "the state database {path} is schema version {found}, newer than this streamwarden knows ({known}): upgrade streamwarden"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("the state database cannot be written: {0}")]
    Write(String),
    #[error("the state database cannot be read: {0}")]
    Read(String),
}

impl StateError {
    fn write(e: rusqlite::Error) -> Self {
        StateError::Write(e.to_string())
    }
    fn read(e: rusqlite::Error) -> Self {
        StateError::Read(e.to_string())
    }
}

/// How long a write waits for another process's transaction before it counts as failed.
const BUSY: Duration = Duration::from_secs(5);

/// The schema, one migration per version (index + 1). Never edit a released one: add one.
const MIGRATIONS: &[&str] = &[
    // 1: audit records, kills, throttles.
    "CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        ts TEXT NOT NULL,
        mode TEXT NOT NULL,
        action TEXT NOT NULL,
        rule TEXT NOT NULL,
        session_id TEXT,
        session_key TEXT,
        user TEXT,
        address TEXT,
        title TEXT,
        message TEXT NOT NULL,
        reason TEXT,
        rate TEXT,
        estimated INTEGER NOT NULL,
        vals TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit (at);
    CREATE INDEX audit_user_at ON audit (user COLLATE NOCASE, at);
    CREATE INDEX audit_action_at ON audit (action, at);
    CREATE TABLE kills (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL,
        mode TEXT NOT NULL,
        rule TEXT NOT NULL,
        at INTEGER NOT NULL,
        state TEXT NOT NULL,
        answered_at INTEGER,
        pid INTEGER NOT NULL
    );
    CREATE INDEX kills_session ON kills (session_id, mode);
    CREATE INDEX kills_at ON kills (mode, at);
    CREATE TABLE throttles (
        identity TEXT PRIMARY KEY,
        session_id TEXT,
        rule TEXT NOT NULL,
        rate_bps INTEGER NOT NULL,
        interface TEXT NOT NULL,
        since INTEGER NOT NULL
    );",
    // 2: usage, a row per stream and minute (hours once rolled up); docs/usage.md.
    "CREATE TABLE usage (
        start INTEGER NOT NULL,
        span INTEGER NOT NULL,
        user TEXT NOT NULL,
        stream TEXT NOT NULL,
        title TEXT,
        player TEXT,
        location TEXT,
        decision TEXT,
        video_resolution TEXT,
        source_resolution TEXT,
        rate_source TEXT,
        estimated INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        seconds INTEGER NOT NULL,
        PRIMARY KEY (start, span, stream)
    );
    CREATE INDEX usage_user_start ON usage (user COLLATE NOCASE, start);",
];

/// The state of one process: a connection to the database (or to one in memory, for a replay
/// or a test, where nothing must outlive the run).
pub struct State {
    conn: Connection,
    path: Option<PathBuf>,
    /// The schema was made by this open (a new database).
    created: bool,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("path", &self.path).finish()
    }
}

impl State {
    /// Opens (creating) the database at `path` and brings its schema up to date. The folder
    /// is made when missing (owner only).
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let shown = path.display().to_string();
        let open_err = |reason: String| StateError::Open {
            path: shown.clone(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| open_err(format!("cannot make {}: {e}", dir.display())))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
            }
        }
        if path.is_dir() {
            return Err(open_err("it is a folder".into()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_err(e.to_string()))?;
        let mut state = Self {
            conn,
            path: Some(path.to_path_buf()),
            created: false,
        };
        state.prepare().map_err(|e| match e {
            StateError::TooNew { found, known, .. } => StateError::TooNew {
                path: shown.clone(),
                found,
                known,
            },
            other => open_err(other.to_string()),
        })?;
        Ok(state)
    }

    /// A database in memory: a replay's, or a run that must leave nothing behind.
    pub fn memory() -> Self {
        let conn = match Connection::open_in_memory() {
            Ok(c) => c,
            // SQLite cannot fail to open memory short of the allocator failing.
            Err(e) => panic!("SQLite cannot open a database in memory: {e}"),
        };
        let mut state = Self {
            conn,
            path: None,
            created: false,
        };
        if let Err(e) = state.prepare() {
            panic!("SQLite cannot create the schema in memory: {e}");
        }
        state
    }

    /// Another connection to the same file, for readers on other tasks (the page, history).
    /// None for a database in memory.
    pub fn reader(&self) -> Option<Result<State, StateError>> {
        self.path.as_deref().map(State::open_read_only)
    }

    /// Opens an existing database for reading only (`history`, the page's readers).
    pub fn open_read_only(path: &Path) -> Result<Self, StateError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StateError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        conn.busy_timeout(BUSY).map_err(StateError::read)?;
        Ok(Self {
            conn,
            path: Some(path.to_path_buf()),
            created: false,
        })
    }

    /// Whether this open made the database (so older records may be brought in).
    pub fn created(&self) -> bool {
        self.created
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// WAL, the busy timeout, and the migrations up to the newest.
    fn prepare(&mut self) -> Result<(), StateError> {
        self.conn.busy_timeout(BUSY).map_err(StateError::write)?;
        if self.path.is_some() {
            let mode: String = self
                .conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(StateError::write)?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!("the state database is in {mode} journal mode, not WAL");
            }
            // Each transaction is on disk when it commits (a kill's intent above all).
            self.conn
                .execute_batch("PRAGMA synchronous = FULL")
                .map_err(StateError::write)?;
        }
        self.conn
            .execute_batch("PRAGMA foreign_keys = ON")
            .map_err(StateError::write)?;
        self.migrate()
    }

    /// The schema version this database is at.
    pub fn version(&self) -> Result<i64, StateError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(StateError::read)
    }

    fn migrate(&mut self) -> Result<(), StateError> {
        let known = MIGRATIONS.len() as i64;
        let mut created = false;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StateError::write)?;
        let found: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(StateError::read)?;
        if found > known {
            return Err(StateError::TooNew {
                path: String::new(),
                found,
                known,
            });
        }
        created |= found == 0;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.execute_batch(sql).map_err(StateError::write)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .map_err(StateError::write)?;
        }
        tx.commit().map_err(StateError::write)?;
        self.created = created;
        Ok(())
    }
}

/// Where the state lives when `[state] path` is not set: `$STATE_DIRECTORY` (systemd's
/// `StateDirectory=`), else `$XDG_STATE_HOME/streamwarden`, else, for root (a system
/// daemon), `/var/lib/streamwarden`, else `~/.local/state/streamwarden`.
pub fn default_path() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = env("STATE_DIRECTORY") {
        // systemd may list several, separated by colons: the first is ours.
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .map(PathBuf::from)
            .unwrap_or(dir);
        return Some(first.join("state.db"));
    }
    if let Some(dir) = env("XDG_STATE_HOME") {
        return Some(dir.join("streamwarden/state.db"));
    }
    if nix::unistd::Uid::effective().is_root() {
        return Some(PathBuf::from("/var/lib/streamwarden/state.db"));
    }
    env("HOME").map(|home| home.join(".local/state/streamwarden/state.db"))
}

/// Before a daemon started as root switches to `uid`/`gid`: makes the state's folder when
/// missing and hands it, and the database files already there, to that user, so that the
/// user that runs can write them. A folder that exists is left as it is.
pub fn hand_over(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    use nix::unistd::{Gid, Uid, chown};
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        chown(dir, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(|e| format!("cannot give {} to uid {uid}: {e}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        if file.exists() {
            chown(&file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(|e| format!("cannot give {} to uid {uid}: {e}", file.display()))?;
        }
    }
    Ok(())
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    crate::micros::Micros::now().0
}
