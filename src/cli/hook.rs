//! `streamwarden hook`: Tautulli's script-notifier entry (see `crate::hook`).

use std::path::Path;

use crate::Failure;
use crate::enforce::Enforcer;
use crate::engine::setup;
use crate::hook::{self, Context, HookArgs, Outcome, Say, TautulliEnv};

use super::Done;

pub async fn run(args: HookArgs, config_path: Option<&Path>) -> Result<Done, Failure> {
    let mut config = setup::load(config_path)?;
    if args.dry_run {
        config.enforce.dry_run = true;
    }
    let rules = setup::compile(&config)?;
    let plan = args.plan(!rules.is_empty(), config.source.file.as_deref())?;
    for w in args.warnings(&plan) {
        eprintln!("warning: {w}");
    }
    setup::warn(&config);
    let client = setup::plex_client(&config)?;
    let audit = setup::open_audit(&config)?;
    let mut enforcer = Enforcer::new(client, &config.enforce, audit);
    let cx = Context {
        enforcer: &mut enforcer,
        rules: &rules,
        daemon: config.http.listen,
        daemon_token: config.http.token.clone(),
        tautulli: TautulliEnv::from_env(),
    };
    let outcome = hook::run(&plan, cx, &mut |said| match said {
        Say::Info(s) => println!("{s}"),
        Say::Warn(s) => eprintln!("warning: {s}"),
        Say::Error(s) => eprintln!("error: {s}"),
    })
    .await?;
    Ok(match outcome {
        Outcome::Done => Done::Ok,
        Outcome::KillFailed => Done::Partly,
    })
}
