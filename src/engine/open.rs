//! Opening what a command works with: the configuration, its rules, the Plex client, the
//! audit log and the state database, each refused with a located, readable error.

use std::path::Path;

use crate::Failure;
use crate::config::Config;
use crate::enforce::AuditLog;
use crate::plex::PlexClient;
use crate::rules::RuleSet;

pub use crate::config::failure as config_failure;

/// Loads the configuration (`--config`, or the search order).
pub fn load(path: Option<&Path>) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| config_failure(&[e]))
}

/// Logs what the configuration sets that does nothing (check prints it instead).
pub fn warn(config: &Config) {
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
}

/// Compiles the configuration's rules.
pub fn compile(config: &Config) -> Result<RuleSet, Failure> {
    RuleSet::compile(config).map_err(|errors| config_failure(&errors))
}

/// The Plex client the config describes.
pub fn plex_client(config: &Config) -> Result<PlexClient, Failure> {
    let settings = config
        .plex_settings()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    PlexClient::new(settings).map_err(|e| Failure::Usage(e.to_string()))
}

/// The configured audit log (or none); an unopenable log is a configuration error.
pub fn open_audit(config: &Config) -> Result<AuditLog, Failure> {
    match &config.enforce.audit_log {
        Some(p) => AuditLog::open(p)
            .map_err(|e| Failure::Usage(format!("cannot use the audit log {}: {e}", p.display()))),
        None => Ok(AuditLog::none()),
    }
}

/// Opens the state database the configuration names (made when missing), refusing with
/// the path and the reason when it cannot.
pub fn open_state(config: &Config) -> Result<crate::state::State, Failure> {
    let Some(path) = config.state_path() else {
        return Err(Failure::Usage(
            "no place for the state database: set [state] path (no HOME, XDG_STATE_HOME or STATE_DIRECTORY here)".into(),
        ));
    };
    let mut state = crate::state::State::open(&path).map_err(|e| Failure::Usage(e.to_string()))?;
    if state.created()
        && let Some(log) = config.enforce.audit_log.as_deref().filter(|l| l.exists())
    {
        match crate::enforce::history::import(&mut state, log) {
            Ok(n) => tracing::info!(
                "brought {n} records of the audit log {} into the new state database {}",
                log.display(),
                path.display()
            ),
            Err(e) => tracing::warn!("cannot bring the audit log into the state database: {e}"),
        }
    }
    Ok(state)
}

/// The hook's state: the daemon's database when it can be opened (SQLite's locking keeps the
/// two apart), else one in memory for this run, with a warning saying what that costs.
pub fn hook_state(config: &Config) -> Result<crate::state::State, Failure> {
    open_state(config)
}

/// What `check` says of the state database: where it is and who will use it.
pub fn state_line(config: &Config) -> String {
    let Some(path) = config.state_path() else {
        return "state: no place for it (no HOME, XDG_STATE_HOME or STATE_DIRECTORY): set [state] path; `run` refuses to start, the hook keeps never-twice and the budget for its own run only".into();
    };
    let shown = path.display();
    if path.exists() {
        return match crate::state::State::open_read_only(&path).and_then(|s| s.version()) {
            Ok(v) => format!("state: {shown} (schema {v}): run, history and the hook share it"),
            Err(e) => format!(
                "state: {e}: `run` refuses to start; the hook keeps never-twice and the budget for its own run only"
            ),
        };
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut probe = dir;
    while !probe.exists() {
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p,
            _ => break,
        }
    }
    let refuse = |why: String| {
        format!(
            "state: {shown} cannot be made ({why}): `run` refuses to start; the hook keeps never-twice and the budget for its own run only"
        )
    };
    if !probe.is_dir() {
        return refuse(format!("{} is not a folder", probe.display()));
    }
    let writable = nix::unistd::access(probe, nix::unistd::AccessFlags::W_OK).is_ok();
    if writable {
        format!("state: {shown} (made by the first run): run, history and the hook will share it")
    } else {
        refuse(format!("{} is not writable by this user", probe.display()))
    }
}

/// The state database as it stands, read-only, for a query of what was recorded; `None`
/// when no state was ever written (no file at the configured path).
pub fn recorded(config: &Config) -> Result<Option<crate::state::State>, Failure> {
    match config.state_path().filter(|p| p.exists()) {
        Some(path) => crate::state::State::open_read_only(&path)
            .map(Some)
            .map_err(|e| Failure::Failed(e.to_string())),
        None => Ok(None),
    }
}

/// Why a query of recorded usage has nothing to read.
pub fn nothing_recorded() -> Failure {
    Failure::Usage(
        "nothing was recorded yet: no state database (`streamwarden run` records usage there; see [state] path)".into(),
    )
}
