//! One daemon per state: `run` holds an exclusive lock on `<state>.lock` (which names its
//! pid) for as long as it runs; a second one refuses to start and names the first. The kernel
//! drops the lock when the process ends, a crash included, so nothing goes stale.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Held while the daemon runs.
#[derive(Debug)]
pub struct DaemonLock {
    _lock: Flock<File>,
    path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another streamwarden daemon (pid {pid}) is running on the state {state}: stop it first, or give this one its own [state] path"
    )]
    Held { pid: String, state: String },
    #[error("cannot lock the state {state} ({path}): {reason}")]
    Io {
        state: String,
        path: String,
        reason: String,
    },
}

impl DaemonLock {
    /// Takes the lock beside the state database `state`.
    pub fn take(state: &Path) -> Result<Self, LockError> {
        let mut name = state.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let io = |e: &dyn std::fmt::Display| LockError::Io {
            state: state.display().to_string(),
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io(&e))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.to_string()
                    },
                    state: state.display().to_string(),
                });
            }
            Err((_, e)) => return Err(io(&e)),
        };
        lock.set_len(0).map_err(|e| io(&e))?;
        lock.seek(SeekFrom::Start(0)).map_err(|e| io(&e))?;
        writeln!(lock, "{}", std::process::id()).map_err(|e| io(&e))?;
        lock.flush().map_err(|e| io(&e))?;
        Ok(Self { _lock: lock, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
