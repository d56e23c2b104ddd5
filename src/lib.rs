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
pub mod demo;
pub mod enforce;
pub mod engine;
pub mod http;
pub mod meter;
pub mod plex;
pub mod rules;

/// Exit codes scripts can rely on.
pub mod exit {
    /// Done (nothing to do counts).
    pub const OK: i32 = 0;
    /// A kill failed, or Plex could not be read.
    pub const FAILED: i32 = 1;
    /// Usage or configuration error.
    pub const USAGE: i32 = 2;
}
