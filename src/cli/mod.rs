//! The command line: thin subcommands over the library.

mod backtest;
mod check;
mod demo;
mod history;
mod hook;
mod notify_test;
mod replay;
mod run;
mod sessions;
mod usage;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use std::time::Duration;

use crate::daemon::View;
use crate::{Failure, exit};

#[derive(Debug, Parser)]
#[command(
    name = "streamwarden",
    version,
    about = "Measure what each Plex stream really sends, check it against your rules, stop offenders.",
    after_help = "Config file search order (without --config): $STREAMWARDEN_CONFIG, ./streamwarden.toml, \
$XDG_CONFIG_HOME/streamwarden/config.toml (~/.config/streamwarden/config.toml), /etc/streamwarden/config.toml.\n\
PLEX_URL and PLEX_TOKEN override [plex] url and token."
)]
pub struct Cli {
    /// The configuration file (TOML).
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More detail in logs (-v: debug, -vv: trace).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config: every rule compiled, every template checked. Exit 0 valid, 2 invalid.
    Check,
    /// List the server's current streams.
    Sessions {
        /// A JSON array instead of a table, with every rule variable (unknown: null).
        #[arg(long)]
        json: bool,
    },
    /// Tautulli's script-notifier entry; accepts kill_stream.py's arguments unchanged.
    Hook(Box<crate::hook::HookArgs>),
    /// The whole pipeline against a simulated Plex server and simulated traffic: no
    /// server, no privileges needed.
    Demo {
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        duration: u64,
        /// Also serve the owner's page and the HTTP endpoint on this address (e.g.
        /// 127.0.0.1:9090); STREAMWARDEN_HTTP_TOKEN, when set, is required as its token.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// The daemon: capture, measure, evaluate and kill continuously.
    Run {
        /// Decide and audit, but kill nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the measurement engine over a capture file and print what it measured. Never kills.
    Replay(replay::ReplayArgs),
    /// Send a sample notification to every [[notify]] target. Exit 0 all sent, 1 some
    /// failed, 2 configuration error.
    NotifyTest,
    /// What the audit log says was killed (or would have been, or failed, or survived),
    /// newest first, with per-user counts.
    History(history::HistoryArgs),
    /// What each user streamed (GB sent, hours played, streams, transcodes), from the
    /// state database `run` records it in.
    Usage(usage::UsageArgs),
    /// What the configured rules would have done over the recorded usage (minute by
    /// minute), to whom and when, beside what was actually done. Never kills.
    Backtest(backtest::BacktestArgs),
}

/// Runs the program; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    let (hook, debug) = match &cli.command {
        Command::Hook(h) => (true, h.debug),
        _ => (false, false),
    };
    init_tracing(cli.log_format, cli.verbose.max(u8::from(debug)), hook);
    // Commands whose output is read by other programs end quietly when the reader goes
    // away (`replay ... | head`), as command-line tools do; the daemon keeps ignoring it.
    if matches!(
        cli.command,
        Command::Check
            | Command::Sessions { .. }
            | Command::Replay(_)
            | Command::History(_)
            | Command::Usage(_)
            | Command::Backtest(_)
    ) {
        // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            )
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> i32 {
    let config = cli.config.as_deref();
    let view = match cli.log_format {
        LogFormat::Json => View::Logs,
        LogFormat::Text => View::detect(),
    };
    let done = match cli.command {
        Command::Check => check::run(config),
        Command::Sessions { json } => sessions::run(config, json).await,
        Command::Hook(args) => hook::run(*args, config).await,
        Command::Demo { duration, listen } => {
            demo::run(Duration::from_secs(duration.max(1)), listen, view).await
        }
        Command::Run { dry_run } => run::run(config, dry_run, view).await,
        Command::Replay(args) => replay::run(args, config).await,
        Command::NotifyTest => notify_test::run(config).await,
        Command::History(args) => history::run(args, config),
        Command::Usage(args) => usage::run(args, config),
        Command::Backtest(args) => backtest::run(args, config),
    };
    exit_code(done)
}

/// How a command ended.
pub enum Done {
    /// All done (nothing to do counts).
    Ok,
    /// Some of the work failed (a kill); what failed was already said.
    Partly,
}

/// The one place exit codes are decided: 0 done, 1 a kill failed or Plex could not be read,
/// 2 usage or configuration.
fn exit_code(done: Result<Done, Failure>) -> i32 {
    match done {
        Ok(Done::Ok) => exit::OK,
        Ok(Done::Partly) => exit::FAILED,
        Err(f) => {
            eprintln!("error: {f}");
            match f {
                Failure::Usage(_) => exit::USAGE,
                Failure::Failed(_) => exit::FAILED,
            }
        }
    }
}
/// Logs to stderr. The hook runs inside Tautulli, which logs a script's stderr as errors: there
/// only warnings and errors go to stderr, INFO and finer (with `--debug`) to stdout, and INFO is
/// off unless `--debug` (the hook's own lines already say what it did).
fn init_tracing(format: LogFormat, verbose: u8, hook: bool) {
    use tracing::Level;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let default = match (hook, verbose) {
        (true, 0) => "warn",
        (_, 0) => "warn,streamwarden=info",
        (_, 1) => "warn,streamwarden=debug",
        _ => "info,streamwarden=trace",
    };
    let filter =
        EnvFilter::try_from_env("STREAMWARDEN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let writer = std::io::stderr
        .with_max_level(if hook { Level::WARN } else { Level::TRACE })
        .and(
            std::io::stdout
                .with_min_level(Level::INFO)
                .with_filter(move |_| hook),
        );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(!hook && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
