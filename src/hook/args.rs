//! kill_stream.py's arguments, as Tautulli passes them, and the plan they make.

use std::path::Path;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::Failure;
use crate::rules::DEFAULT_MESSAGE;

use super::message::Look;
use super::notify::{self, Spec};
use super::{Mode, Plan};

/// The longest `--killMessage`, in characters: Plex shows the viewer a short message.
pub const MAX_MESSAGE_CHARS: usize = 1024;
/// The longest `--delay`, in seconds.
pub const MAX_DELAY_SECS: u64 = 3600;
/// The longest paused `--limit`, in seconds (a day).
pub const MAX_LIMIT_SECS: u64 = 86_400;
/// The longest paused `--interval`, in seconds.
pub const MAX_INTERVAL_SECS: u64 = 3600;

/// kill_stream.py's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Jbop {
    /// Kill the one session given by --sessionId.
    #[value(name = "stream")]
    Stream,
    /// Kill every session of --userId (refuses without it).
    #[value(name = "allStreams", alias = "allstreams")]
    AllStreams,
    /// Watch --sessionId; kill it once paused for --limit seconds.
    #[value(name = "paused")]
    Paused,
}

#[derive(Debug, Args)]
pub struct HookArgs {
    /// kill_stream.py mode: stream, allStreams or paused.
    #[arg(long, value_enum)]
    pub jbop: Option<Jbop>,
    /// The Session id to act on (Tautulli's {session_id}).
    #[arg(long = "sessionId", value_name = "ID")]
    pub session_id_jbop: Option<String>,
    /// The user whose streams allStreams kills (Tautulli's {user_id}).
    #[arg(long = "userId", value_name = "N")]
    pub user_id: Option<String>,
    /// The user's name (Tautulli's {username}); allStreams also accepts it instead of --userId.
    #[arg(long = "username", value_name = "NAME")]
    pub username: Option<String>,
    /// The message the viewer sees, at most 1024 characters; several words are joined
    /// with single spaces. Like kill_stream.py's argparse, the words stop at the next
    /// option, so `--killMessage Bye now. --dry-run` is a dry run.
    #[arg(long = "killMessage", value_name = "WORDS", num_args = 1..)]
    pub kill_message: Vec<String>,
    /// Seconds to wait before acting, at most 3600; the session is re-checked after the wait.
    #[arg(long, value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(..=MAX_DELAY_SECS))]
    pub delay: Option<u64>,
    /// paused: seconds a stream may stay paused, at most 86400.
    #[arg(long, value_name = "SECONDS", default_value_t = 1200,
        value_parser = clap::value_parser!(u64).range(..=MAX_LIMIT_SECS))]
    pub limit: u64,
    /// paused: seconds between checks, at most 3600.
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(..=MAX_INTERVAL_SECS))]
    pub interval: u64,
    /// Tautulli notifier ids to tell of each kill, through Tautulli's API (TAUTULLI_URL and
    /// TAUTULLI_APIKEY, which Tautulli sets for its scripts); one notification per killed
    /// stream and id.
    #[arg(long, value_name = "ID", num_args = 1..)]
    pub notify: Vec<String>,
    /// With --notify: send kill_stream.py's rich message, discord (an embed) or slack (an
    /// attachment), as the body, for a Tautulli Webhook notifier.
    #[arg(long = "richMessage", value_name = "KIND", num_args = 1..)]
    pub rich_message: Vec<String>,
    /// Rich message: the server name in the footer (default "Plex Server").
    #[arg(long = "serverName", value_name = "NAME")]
    pub server_name: Option<String>,
    /// Rich message: where its title links (default https://app.plex.tv).
    #[arg(long = "plexUrl", value_name = "URL")]
    pub plex_url: Option<String>,
    /// Rich message: its thumbnail (default Tautulli's logo).
    #[arg(long = "posterUrl", value_name = "URL")]
    pub poster_url: Option<String>,
    /// Rich message: its colour, as hex (default #E5A00D).
    #[arg(long = "richColor", value_name = "COLOR")]
    pub rich_color: Option<String>,
    /// Debug logging.
    #[arg(long)]
    pub debug: bool,
    /// Decide and audit, but kill nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rules mode: apply the configured rules to this live session (Tautulli's {session_id}).
    #[arg(long = "session-id", value_name = "ID", conflicts_with = "jbop")]
    pub session_id: Option<String>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl HookArgs {
    /// Works out what to do before touching Plex. `has_rules` and `config_file` tell rules
    /// mode whether there is anything to apply.
    pub fn plan(&self, has_rules: bool, config_file: Option<&Path>) -> Result<Plan, Failure> {
        let session_id = non_empty(&self.session_id_jbop);
        let mode = match (self.jbop, non_empty(&self.session_id)) {
            (None, None) => {
                return Err(Failure::Usage(
                    "nothing to do: give --jbop stream|allStreams|paused (kill_stream.py's modes) or --session-id ID to apply the configured rules".into(),
                ));
            }
            (None, Some(id)) => {
                if !has_rules {
                    let whence = config_file.map_or_else(
                        || "no config file was found (see the search order in --help)".to_string(),
                        |f| format!("{} has no [[rules]]", f.display()),
                    );
                    return Err(Failure::Usage(format!(
                        "--session-id applies the configured rules, but {whence}"
                    )));
                }
                Mode::Rules(id)
            }
            (Some(Jbop::AllStreams), _) => {
                let user_id = non_empty(&self.user_id);
                let username = non_empty(&self.username);
                if user_id.is_none() && username.is_none() {
                    return Err(Failure::Usage(
                        "refusing --jbop allStreams without --userId: it would kill every stream on the server. Pass --userId {user_id}".into(),
                    ));
                }
                Mode::AllStreams { user_id, username }
            }
            (Some(jbop), _) => match session_id {
                Some(id) if jbop == Jbop::Stream => Mode::Stream(id),
                Some(id) => Mode::Paused {
                    id,
                    limit: Duration::from_secs(self.limit),
                    interval: Duration::from_secs(self.interval.max(1)),
                },
                None => {
                    return Err(Failure::Failed(
                        "No sessionId provided! Is this synced content? (Plex gives synced content no Session id, so it cannot be stopped)".into(),
                    ));
                }
            },
        };
        let message = if self.kill_message.is_empty() {
            DEFAULT_MESSAGE.to_string()
        } else {
            self.kill_message.join(" ")
        };
        let length = message.chars().count();
        if length > MAX_MESSAGE_CHARS {
            return Err(Failure::Usage(format!(
                "--killMessage is {length} characters long; at most {MAX_MESSAGE_CHARS} are allowed (Plex shows the viewer a short message)"
            )));
        }
        Ok(Plan {
            mode,
            message,
            delay: self.delay.map(Duration::from_secs),
            notify: self.notify_spec(&mut Vec::new()),
        })
    }

    /// Whom to notify of kills, and how; `warn` gets what is ignored.
    fn notify_spec(&self, warn: &mut Vec<String>) -> Spec {
        let mut ids: Vec<String> = Vec::new();
        for v in &self.notify {
            match notify::notifier_id(v) {
                Some(id) if !ids.contains(&id) => ids.push(id),
                Some(_) => {}
                None => warn.push(format!(
                    "--notify {v:?} is not a Tautulli notifier id (a whole number from 1); no notification goes to it"
                )),
            }
        }
        let kind = notify::rich_kind(&self.rich_message, warn);
        if kind.is_some() && self.notify.is_empty() {
            warn.push(
                "--richMessage changes nothing without --notify, the Tautulli notifier to send it through".into(),
            );
        }
        let look = kind.map(|k| {
            Look::new(
                k,
                self.server_name.as_deref(),
                self.rich_color.as_deref(),
                self.plex_url.as_deref(),
                self.poster_url.as_deref(),
            )
        });
        Spec {
            ids,
            username: non_empty(&self.username),
            look,
        }
    }

    /// Warnings about arguments that are accepted but change nothing.
    pub fn warnings(&self, plan: &Plan) -> Vec<String> {
        let mut out = Vec::new();
        if matches!(plan.mode, Mode::Rules(_)) && !self.kill_message.is_empty() {
            out.push(
                "--killMessage is ignored with --session-id: each rule's message is used".into(),
            );
        }
        self.notify_spec(&mut out);
        out
    }
}
