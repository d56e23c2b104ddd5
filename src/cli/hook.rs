//! `streamwarden hook`: Tautulli's script-notifier entry (see `crate::hook`).

use std::path::Path;

use crate::Failure;
use crate::enforce::Enforcer;
use crate::engine::setup;
use crate::hook::{self, Context, HookArgs, Outcome, Say, TautulliEnv};
use crate::notify::{Delivery, Notifier};

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
    let notify = Notifier::from_config(&config, Delivery::HOOK)?;
    let audit = setup::open_audit(&config)?.with_sink(notify.as_ref().map(Notifier::sink));
    let (state, note) = setup::hook_state(&config);
    if let Some(n) = note {
        eprintln!("warning: {n}");
    }
    let mut enforcer = Enforcer::new(client, &config.enforce, state, audit);
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
    .await;
    // [[notify]] has been sending since the first kill; what is left gets a few seconds,
    // so that a dead target cannot hold the hook near Tautulli's timeout.
    if let Some(n) = notify {
        for p in n.finish(crate::notify::HOOK_FINISH).await.problems() {
            eprintln!("warning: {p}");
        }
    }
    Ok(match outcome? {
        Outcome::Done => Done::Ok,
        Outcome::KillFailed => Done::Partly,
    })
}
