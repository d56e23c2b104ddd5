//! `streamwarden run`: the daemon on the live capture and the real Plex.

use std::path::Path;

use crate::Failure;
use crate::daemon::View;
use crate::daemon::live::{self, Live};
use crate::engine::open;

use super::Done;

pub async fn run(config_path: Option<&Path>, dry_run: bool, view: View) -> Result<Done, Failure> {
    let mut config = open::load(config_path)?;
    if dry_run {
        config.enforce.dry_run = true;
    }
    let rules = open::compile(&config)?;
    let summary = live::run(Live {
        config,
        rules,
        config_path: config_path.map(Path::to_path_buf),
        dry_run,
        view,
    })
    .await?;
    tracing::info!(
        kills = summary.kills.len(),
        would_kills = summary.would_kills.len(),
        failures = summary.failures.len(),
        "stopped"
    );
    Ok(Done::Ok)
}
