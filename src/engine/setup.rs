//! What every command starts from: the configuration, its rules, the Plex client and the
//! audit log, each refused with a located, readable error.

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
            .map_err(|e| Failure::Usage(format!("cannot open the audit log {}: {e}", p.display()))),
        None => Ok(AuditLog::none()),
    }
}
