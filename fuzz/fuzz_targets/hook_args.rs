//! The hook's argument handling, both ways it arrives: command-line words (as Tautulli's
//! script agent splits them; here the input split on NUL bytes) parsed and planned as
//! `streamwarden hook` does, and a webhook body turned into the same arguments. Either may
//! refuse; neither may panic.

#![no_main]

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use streamwarden::daemon::webhook::args_of;
use streamwarden::hook::HookArgs;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: HookArgs,
}

fuzz_target!(|data: &[u8]| {
    let words = std::iter::once("hook".to_string()).chain(
        data.split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned()),
    );
    if let Ok(cli) = Cli::try_parse_from(words) {
        if let Ok(plan) = cli.args.plan(true, None) {
            let _ = cli.args.warnings(&plan);
        }
    }
    if let Ok(args) = args_of(data) {
        let _ = args.plan(false, None);
    }
});
