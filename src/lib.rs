//! streamwarden: measure what each Plex stream really sends, judge it against the
//! owner's rules, and stop offending streams through Plex's API.
//!
//! The pipeline reads as the folders: `capture` → `meter` → `attribute` → `rules` →
//! `enforce`, with `plex` (the client) and `config` beside it, and `engine` joining
//! measurements and sessions to the rules for every subcommand.

pub mod attribute;
pub mod capture;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod enforce;
pub mod engine;
pub mod fakeplex;
pub mod hook;
pub mod meter;
pub mod micros;
pub mod notify;
pub mod plex;
pub mod rules;
pub mod state;

/// Locks a mutex, taking the data even when another thread panicked while holding it: every
/// value kept behind these locks stays consistent between statements.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Exit codes scripts can rely on.
pub mod exit {
    /// Done (nothing to do counts).
    pub const OK: i32 = 0;
    /// A kill failed, or Plex could not be read.
    pub const FAILED: i32 = 1;
    /// Usage or configuration error.
    pub const USAGE: i32 = 2;
}

/// Why a command could not do its work; the command line turns it into an exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Usage or configuration: nothing was tried.
    Usage(String),
    /// Plex could not be read, or a kill failed.
    Failed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Failed(m) => f.write_str(m),
        }
    }
}
