//! `streamwarden hook`: Tautulli's script-notifier entry.
//!
//! Accepts kill_stream.py's arguments unchanged (`--jbop stream|allStreams|paused` …),
//! or, with `--session-id ID`, applies the configured rules to that live session.
//! Every kill goes through the same enforcer as the daemon: dry run, audit, exemptions,
//! the kill budget and never-twice all apply.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use crate::config::Config;
use crate::enforce::{Applied, Decision, Enforcer};
use crate::engine;
use crate::exit;
use crate::plex::{PlexClient, Session};
use crate::rules::{Action, DEFAULT_MESSAGE, Measured, Outcome, RuleSet, Vars};

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
    /// The message the viewer sees; several words are joined with single spaces.
    /// Like kill_stream.py's argparse, the words stop at the next option, so
    /// `--killMessage Bye now. --dry-run` is a dry run.
    #[arg(long = "killMessage", value_name = "WORDS", num_args = 1..)]
    pub kill_message: Vec<String>,
    /// Seconds to wait before acting; the session is re-checked after the wait.
    #[arg(long, value_name = "SECONDS")]
    pub delay: Option<u64>,
    /// paused: seconds a stream may stay paused.
    #[arg(long, value_name = "SECONDS", default_value_t = 1200)]
    pub limit: u64,
    /// paused: seconds between checks.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub interval: u64,
    /// Accepted for kill_stream.py compatibility; not implemented (ignored with a warning).
    #[arg(long, value_name = "ID", num_args = 1..)]
    pub notify: Vec<String>,
    /// Accepted for kill_stream.py compatibility; not implemented (ignored with a warning).
    #[arg(long = "richMessage", value_name = "KIND", num_args = 1..)]
    pub rich_message: Vec<String>,
    /// Accepted for kill_stream.py compatibility; not implemented (ignored with a warning).
    #[arg(long = "serverName", value_name = "NAME")]
    pub server_name: Option<String>,
    /// Accepted for kill_stream.py compatibility; not implemented (ignored with a warning).
    #[arg(long = "plexUrl", value_name = "URL")]
    pub plex_url: Option<String>,
    /// Accepted for kill_stream.py compatibility; not implemented (ignored with a warning).
    #[arg(long = "posterUrl", value_name = "URL")]
    pub poster_url: Option<String>,
    /// Accepted for kill_stream.py compatibility; not implemented (ignored with a warning).
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

/// Builds the Plex client from the config, or reports why not (exit 2).
pub(crate) fn client(config: &Config) -> Result<PlexClient, i32> {
    let settings = config.plex_settings().map_err(|e| {
        eprintln!("error: {e}");
        exit::USAGE
    })?;
    PlexClient::new(settings).map_err(|e| {
        eprintln!("error: {e}");
        exit::USAGE
    })
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub async fn run(args: HookArgs, config_path: Option<&Path>) -> i32 {
    let mut config = match super::load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.dry_run {
        config.enforce.dry_run = true;
    }
    warn_unimplemented(&args);
    let rules = match RuleSet::compile(&config) {
        Ok(r) => r,
        Err(errors) => {
            super::report_config(&errors);
            return exit::USAGE;
        }
    };
    // Work out what to do before touching Plex: usage errors are exit 2.
    let session_id = non_empty(&args.session_id_jbop);
    let mode = match (args.jbop, non_empty(&args.session_id)) {
        (None, None) => {
            eprintln!(
                "error: nothing to do: give --jbop stream|allStreams|paused (kill_stream.py's modes) or --session-id ID to apply the configured rules"
            );
            return exit::USAGE;
        }
        (None, Some(id)) => Mode::Rules(id),
        (Some(Jbop::AllStreams), _) => {
            let user_id = non_empty(&args.user_id);
            let username = non_empty(&args.username);
            if user_id.is_none() && username.is_none() {
                eprintln!(
                    "error: refusing --jbop allStreams without --userId: it would kill every stream on the server. Pass --userId {{user_id}}"
                );
                return exit::USAGE;
            }
            Mode::AllStreams { user_id, username }
        }
        (Some(jbop), _) => match session_id {
            Some(id) if jbop == Jbop::Stream => Mode::Stream(id),
            Some(id) => Mode::Paused(id),
            None => {
                eprintln!(
                    "error: No sessionId provided! Is this synced content? (Plex gives synced content no Session id, so it cannot be stopped)"
                );
                return exit::FAILED;
            }
        },
    };
    if matches!(mode, Mode::Rules(_)) {
        if rules.is_empty() {
            let whence = config.source.file.as_ref().map_or_else(
                || "no config file was found (see the search order in --help)".to_string(),
                |f| format!("{} has no [[rules]]", f.display()),
            );
            eprintln!("error: --session-id applies the configured rules, but {whence}");
            return exit::USAGE;
        }
        if !args.kill_message.is_empty() {
            eprintln!(
                "warning: --killMessage is ignored with --session-id: each rule's message is used"
            );
        }
    }
    let client = match client(&config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let audit = match super::open_audit(&config) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut enforcer = Enforcer::new(client, &config.enforce, audit);
    let message = if args.kill_message.is_empty() {
        DEFAULT_MESSAGE.to_string()
    } else {
        args.kill_message.join(" ")
    };
    let delay = args.delay.map(Duration::from_secs);
    match mode {
        Mode::Rules(id) => rules_mode(&mut enforcer, &rules, &id, delay, config.http.listen).await,
        Mode::Stream(id) => stream_mode(&mut enforcer, &id, &message, delay).await,
        Mode::AllStreams { user_id, username } => {
            all_streams(
                &mut enforcer,
                user_id.as_deref(),
                username.as_deref(),
                &message,
                delay,
            )
            .await
        }
        Mode::Paused(id) => {
            let limit = Duration::from_secs(args.limit);
            let interval = Duration::from_secs(args.interval.max(1));
            paused_mode(&mut enforcer, &id, &message, limit, interval).await
        }
    }
}

enum Mode {
    Rules(String),
    Stream(String),
    AllStreams {
        user_id: Option<String>,
        username: Option<String>,
    },
    Paused(String),
}

fn warn_unimplemented(a: &HookArgs) {
    let ignored = [
        ("--notify", !a.notify.is_empty()),
        ("--richMessage", !a.rich_message.is_empty()),
        ("--serverName", a.server_name.is_some()),
        ("--plexUrl", a.plex_url.is_some()),
        ("--posterUrl", a.poster_url.is_some()),
        ("--richColor", a.rich_color.is_some()),
    ];
    for (flag, given) in ignored {
        if given {
            eprintln!(
                "warning: {flag} is accepted for kill_stream.py compatibility but not implemented; it changes nothing"
            );
        }
    }
}

async fn read_sessions(enforcer: &Enforcer<PlexClient>) -> Result<Vec<Session>, i32> {
    enforcer.terminator().sessions().await.map_err(|e| {
        eprintln!("error: {e}");
        exit::FAILED
    })
}

async fn wait(delay: Option<Duration>) {
    if let Some(d) = delay.filter(|d| !d.is_zero()) {
        println!("waiting {}s before acting", d.as_secs());
        tokio::time::sleep(d).await;
    }
}

/// Applies decisions, prints what happened; exit 1 when any kill failed.
async fn apply_all(enforcer: &mut Enforcer<PlexClient>, decisions: &[Decision]) -> i32 {
    let mut code = exit::OK;
    for d in decisions {
        let applied = enforcer.apply(d).await;
        report(d, &applied);
        if applied.is_failure() {
            code = exit::FAILED;
        }
    }
    code
}

fn report(d: &Decision, applied: &Applied) {
    let who = format!(
        "session {} ({}, {})",
        d.session.session_id.as_deref().unwrap_or("-"),
        d.session.user.as_deref().unwrap_or("?"),
        d.session.display_title()
    );
    match applied {
        Applied::Killed => println!("killed {who} [{}]: {}", d.rule, d.message),
        Applied::WouldKill => println!("dry run: would kill {who} [{}]: {}", d.rule, d.message),
        Applied::Logged => println!("rule {} matched {who}: {}", d.rule, d.message),
        Applied::Failed(r) => eprintln!("error: could not kill {who} [{}]: {r}", d.rule),
        Applied::Skipped(r) => println!("not killing {who} [{}]: {r}", d.rule),
        Applied::AlreadyKilled => println!("{who} was already killed"),
    }
}

fn manual_decision(rule: &str, session: &Session, all: &[Session], message: &str) -> Decision {
    let vars = Vars::for_session(session, all, None);
    Decision {
        rule: rule.to_string(),
        action: Action::Kill,
        session: session.clone(),
        message: message.to_string(),
        values: [
            "user",
            "transcode_decision",
            "video_decision",
            "state",
            "stream_bitrate",
        ]
        .into_iter()
        .map(|k| (k, vars.get(k).cloned()))
        .collect(),
        estimated: false,
    }
}

async fn stream_mode(
    enforcer: &mut Enforcer<PlexClient>,
    id: &str,
    message: &str,
    delay: Option<Duration>,
) -> i32 {
    wait(delay).await;
    let sessions = match read_sessions(enforcer).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let Some(session) = sessions
        .iter()
        .find(|s| s.session_id.as_deref() == Some(id))
    else {
        if delay.is_some() {
            println!("session {id} ended during the delay: nothing to do");
            return exit::OK;
        }
        eprintln!(
            "error: could not kill session {id}: Plex lists no such session (it ended, or the id is wrong)"
        );
        return exit::FAILED;
    };
    let d = manual_decision("jbop:stream", session, &sessions, message);
    apply_all(enforcer, &[d]).await
}

async fn all_streams(
    enforcer: &mut Enforcer<PlexClient>,
    user_id: Option<&str>,
    username: Option<&str>,
    message: &str,
    delay: Option<Duration>,
) -> i32 {
    wait(delay).await;
    let sessions = match read_sessions(enforcer).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let wanted: Vec<&Session> = sessions
        .iter()
        .filter(|s| match user_id {
            Some(id) => s.user_id.map(|u| u.to_string()).as_deref() == Some(id.trim()),
            None => s
                .user
                .as_deref()
                .zip(username)
                .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b.trim())),
        })
        .collect();
    if wanted.is_empty() {
        println!(
            "no streams of user {}: nothing to do",
            user_id.or(username).unwrap_or("?")
        );
        return exit::OK;
    }
    let decisions: Vec<Decision> = wanted
        .iter()
        .map(|s| manual_decision("jbop:allStreams", s, &sessions, message))
        .collect();
    apply_all(enforcer, &decisions).await
}

async fn paused_mode(
    enforcer: &mut Enforcer<PlexClient>,
    id: &str,
    message: &str,
    limit: Duration,
    interval: Duration,
) -> i32 {
    let mut paused_since: Option<Instant> = None;
    loop {
        let sessions = match read_sessions(enforcer).await {
            Ok(s) => s,
            Err(code) => return code,
        };
        let Some(session) = sessions
            .iter()
            .find(|s| s.session_id.as_deref() == Some(id))
        else {
            println!("session {id} ended: stopped watching");
            return exit::OK;
        };
        if session.state.as_deref() != Some("paused") {
            let state = session.state.as_deref().unwrap_or("in an unknown state");
            if paused_since.is_some() {
                println!("session {id} resumed ({state}): stopped watching");
            } else {
                println!("session {id} is {state}, not paused: nothing to do");
            }
            return exit::OK;
        }
        let since = *paused_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= limit {
            let d = manual_decision("jbop:paused", session, &sessions, message);
            return apply_all(enforcer, &[d]).await;
        }
        let left = limit - since.elapsed();
        tokio::time::sleep(interval.min(left)).await;
    }
}

/// A running daemon's measured figures for a session, from its `/api/streams`.
async fn measured_from_daemon(listen: Option<std::net::SocketAddr>, id: &str) -> Option<Measured> {
    let addr = listen?;
    let host = if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let rows: serde_json::Value = match client
        .get(format!("http://{host}/api/streams"))
        .send()
        .await
    {
        Ok(r) => serde_json::from_str(&r.text().await.ok()?).ok()?,
        Err(e) => {
            tracing::debug!("no daemon at {host}: {}", e.without_url());
            return None;
        }
    };
    let row = rows.as_array()?.iter().find(|r| r["session_id"] == id)?;
    let f = |k: &str| row[k].as_f64();
    Some(Measured {
        kbps_10s: f("measured_kbps_10s")?,
        kbps_1m: f("measured_kbps_1m")?,
        kbps_5m: f("measured_kbps_5m")?,
        kbps_10m: f("measured_kbps_10m")?,
        estimated: row["estimated"] == true,
    })
}

async fn rules_mode(
    enforcer: &mut Enforcer<PlexClient>,
    rules: &RuleSet,
    id: &str,
    delay: Option<Duration>,
    daemon: Option<std::net::SocketAddr>,
) -> i32 {
    wait(delay).await;
    let plex = enforcer.terminator();
    let mut sessions = match plex.sessions().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILED;
        }
    };
    let Some(pos) = sessions
        .iter()
        .position(|s| s.session_id.as_deref() == Some(id))
    else {
        println!("session {id} is not playing: nothing to do");
        return exit::OK;
    };
    plex.fill_source(&mut sessions[pos]).await;
    // With a daemon running, rules see its real measured bandwidth too.
    let measured = measured_from_daemon(daemon, id).await;
    if measured.is_some() {
        println!(
            "measured figures from the daemon at {}",
            daemon.map(|a| a.to_string()).unwrap_or_default()
        );
    }
    let evals = [engine::evaluate_one(
        rules,
        &sessions,
        pos,
        measured.as_ref(),
    )];
    let mut decisions = Vec::new();
    for e in &evals {
        for ev in &e.evaluations {
            let verdict = match &ev.outcome {
                Outcome::Match => "matches".to_string(),
                Outcome::NoMatch => "does not match".to_string(),
                Outcome::Unknown { missing } => {
                    format!("does not match: unknown {}", missing.join(", "))
                }
                Outcome::Error(m) => format!("could not be evaluated: {m}"),
            };
            println!("rule {:?} {verdict}", ev.rule.name);
        }
        decisions.extend(e.decisions());
    }
    apply_all(enforcer, &decisions).await
}
