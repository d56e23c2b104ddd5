//! `streamwarden hook`: Tautulli's script-notifier entry (see `crate::hook`).

use std::path::Path;

use crate::Failure;
use crate::engine::open;
use crate::hook::{self, HookArgs, Outcome, Say};

use super::Done;

pub async fn run(args: HookArgs, config_path: Option<&Path>) -> Result<Done, Failure> {
    let config = open::load(config_path)?;
    let outcome = hook::command(&args, config, &mut |said| match said {
        Say::Info(s) => println!("{s}"),
        Say::Warn(s) => eprintln!("warning: {s}"),
        Say::Error(s) => eprintln!("error: {s}"),
    })
    .await;
    Ok(match outcome? {
        Outcome::Done => Done::Ok,
        Outcome::KillFailed => Done::Partly,
    })
}
