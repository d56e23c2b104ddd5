//! `POST /api/tautulli`: Tautulli's Webhook agent drives the hook inside the daemon, so
//! nothing has to run inside Tautulli's container.
//!
//! The body is a JSON object whose keys are kill_stream.py's option names (`jbop`,
//! `sessionId`, `userId`, `username`, `killMessage`, `delay`, `interval`, `limit`, `notify`,
//! `richMessage`, ...), plus `dryRun`; without `jbop` it is rules mode for `sessionId`.
//! Tautulli fills values in as strings ("7"), so numbers may come as strings. The request is
//! turned into the hook's own arguments and planned and run as `streamwarden hook` would,
//! except that every decision is applied by the loop's one enforcer (a request on its
//! channel): one never-twice, one budget, one audit with the loop's rules and "Kill now".

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use clap::Parser;
use serde_json::{Map, Value, json};

use tokio::sync::oneshot;

use crate::config::{EnforceConfig, Secret};
use crate::enforce::Applied;
use crate::hook::{self, Act, Context, HookArgs, Mode, Outcome, Say};
use crate::lock;
use crate::plex::{PlexClient, PlexSettings};
use crate::rules::{Decision, RuleSet};
use crate::state::AuditAction;

use super::manual::{Request, Requests};

/// What the endpoint needs to run the hook.
pub struct Webhook {
    /// The Plex client's settings (a client is made per request).
    pub plex: PlexSettings,
    /// The config file, to name it in errors.
    pub config_file: Option<PathBuf>,
}

/// The daemon's current rules and enforcement settings, replaced on a reload.
pub type Current = Arc<Mutex<(Arc<RuleSet>, EnforceConfig)>>;

/// Everything a request uses.
#[derive(Clone)]
pub struct Hooks {
    pub setup: Arc<Webhook>,
    pub current: Current,
    /// The daemon's own endpoint and token, for rules mode's measured figures.
    pub daemon: Option<SocketAddr>,
    pub token: Option<Secret>,
    /// The loop's enforcer, which applies every decision.
    pub requests: Requests,
}

/// The hook's way to act inside the daemon: sessions read with its own client, decisions
/// sent to the loop's enforcer.
struct ViaLoop {
    plex: PlexClient,
    requests: Requests,
    dry_run: bool,
}

impl Act for ViaLoop {
    fn plex(&self) -> &PlexClient {
        &self.plex
    }

    fn dry_run(&self) -> bool {
        self.dry_run
    }

    async fn apply(&mut self, d: &Decision) -> Applied {
        let (reply, answer) = oneshot::channel();
        let asked = Request::Apply {
            decision: Box::new(d.clone()),
            dry_run: self.dry_run,
            reply,
        };
        if self.requests.send(asked).await.is_err() {
            return Applied::Failed("the daemon is stopping".into());
        }
        answer
            .await
            .unwrap_or_else(|_| Applied::Failed("the daemon is stopping".into()))
    }

    async fn note(&mut self, d: &Decision, action: AuditAction, reason: Option<String>) {
        let (reply, done) = oneshot::channel();
        let asked = Request::Note {
            decision: Box::new(d.clone()),
            action,
            reason,
            reply,
        };
        if self.requests.send(asked).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// The hook's arguments parsed as the command line would.
#[derive(Parser)]
#[command(name = "hook", no_binary_name = false)]
struct Cli {
    #[command(flatten)]
    args: HookArgs,
}

/// The option each JSON key stands for; `None` for a flag (a true boolean).
fn option(key: &str, rules_mode: bool) -> Option<(&'static str, bool)> {
    Some(match key {
        "jbop" => ("--jbop", false),
        "sessionId" if rules_mode => ("--session-id", false),
        "sessionId" => ("--sessionId", false),
        "userId" => ("--userId", false),
        "username" => ("--username", false),
        "killMessage" => ("--killMessage", false),
        "delay" => ("--delay", false),
        "limit" => ("--limit", false),
        "interval" => ("--interval", false),
        "notify" => ("--notify", false),
        "richMessage" => ("--richMessage", false),
        "serverName" => ("--serverName", false),
        "plexUrl" => ("--plexUrl", false),
        "posterUrl" => ("--posterUrl", false),
        "richColor" => ("--richColor", false),
        "debug" => ("--debug", true),
        "dryRun" => ("--dry-run", true),
        _ => return None,
    })
}

/// A JSON value as the text of one argument; `None` for null or an empty string (Tautulli
/// leaves `{session_id}` empty for synced content).
fn text(v: &Value) -> Result<Option<String>, String> {
    Ok(match v {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => return Err(format!("{other} is not a string or a number")),
    })
}

/// The hook's arguments for a request body, or why not.
pub fn args_of(body: &[u8]) -> Result<HookArgs, String> {
    let map: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err("the body must be a JSON object of kill_stream.py's options".into()),
        Err(e) => return Err(format!("the body is not JSON: {e}")),
    };
    let rules_mode = !map.contains_key("jbop");
    let mut argv = vec!["hook".to_string()];
    for (key, value) in &map {
        let Some((opt, flag)) = option(key, rules_mode) else {
            return Err(format!(
                "unknown key {key:?}: use kill_stream.py's option names (jbop, sessionId, userId, username, killMessage, delay, limit, interval, notify, richMessage, serverName, plexUrl, posterUrl, richColor, debug) or dryRun"
            ));
        };
        if flag {
            let on = match value {
                Value::Bool(b) => *b,
                v => matches!(
                    text(v).map_err(|e| format!("{key}: {e}"))?.as_deref(),
                    Some("true" | "1" | "yes")
                ),
            };
            if on {
                argv.push(opt.to_string());
            }
            continue;
        }
        let values = match value {
            Value::Array(items) => items
                .iter()
                .map(text)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{key}: {e}"))?
                .into_iter()
                .flatten()
                .collect(),
            v => text(v)
                .map_err(|e| format!("{key}: {e}"))?
                .into_iter()
                .collect::<Vec<_>>(),
        };
        for v in values {
            // `--opt=value` keeps a value that starts with "-" a value.
            argv.push(format!("{opt}={v}"));
        }
    }
    Cli::try_parse_from(&argv).map(|c| c.args).map_err(|e| {
        e.to_string()
            .lines()
            .next()
            .unwrap_or("invalid options")
            .trim_start_matches("error: ")
            .to_string()
    })
}

/// Handles one request: the status and the JSON reply.
pub async fn handle(hooks: Hooks, body: &[u8]) -> (StatusCode, Value) {
    let args = match args_of(body) {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_REQUEST, json!({"error": e})),
    };
    let (rules, mut enforce) = {
        let c = lock(&hooks.current);
        (c.0.clone(), c.1.clone())
    };
    if args.dry_run {
        enforce.dry_run = true;
    }
    let plan = match args.plan(!rules.is_empty(), hooks.setup.config_file.as_deref()) {
        Ok(p) => p,
        Err(f) => return (StatusCode::BAD_REQUEST, json!({"error": f.to_string()})),
    };
    let warnings = args.warnings(&plan);
    // A wait (--delay, paused) outlasts any webhook timeout: accepted, then done in the
    // background, its lines logged.
    let long = plan.delay.is_some_and(|d| !d.is_zero()) || matches!(plan.mode, Mode::Paused { .. });
    let job = move || -> (Result<Outcome, crate::Failure>, Vec<Say>) {
        let mut said: Vec<Say> = warnings.into_iter().map(Say::Warn).collect();
        let result = tokio::runtime::Handle::current().block_on(async {
            let client = PlexClient::new(hooks.setup.plex.clone())
                .map_err(|e| crate::Failure::Usage(e.to_string()))?;
            let mut enforcer = ViaLoop {
                plex: client,
                requests: hooks.requests.clone(),
                dry_run: enforce.dry_run,
            };
            let cx = Context {
                enforcer: &mut enforcer,
                rules: &rules,
                daemon: hooks.daemon,
                daemon_token: hooks.token.clone(),
                tautulli: hook::TautulliEnv::from_env(),
            };
            hook::run(&plan, cx, &mut |s| said.push(s)).await
        });
        (result, said)
    };
    if long {
        tokio::task::spawn_blocking(move || {
            let (result, said) = job();
            for s in said {
                match s {
                    Say::Info(t) => tracing::info!(target: "streamwarden::webhook", "{t}"),
                    Say::Warn(t) => tracing::warn!(target: "streamwarden::webhook", "{t}"),
                    Say::Error(t) => tracing::error!(target: "streamwarden::webhook", "{t}"),
                }
            }
            if let Err(f) = result {
                tracing::error!(target: "streamwarden::webhook", "{f}");
            }
        });
        return (
            StatusCode::ACCEPTED,
            json!({"accepted": true, "note": "waiting (delay or paused): what happens is logged and audited"}),
        );
    }
    let (result, said) = match tokio::task::spawn_blocking(job).await {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": format!("the hook stopped: {e}")}),
            );
        }
    };
    let lines: Vec<Value> = said
        .into_iter()
        .map(|s| match s {
            Say::Info(t) => json!({"level": "info", "text": t}),
            Say::Warn(t) => json!({"level": "warning", "text": t}),
            Say::Error(t) => json!({"level": "error", "text": t}),
        })
        .collect();
    match result {
        Ok(Outcome::Done) => (StatusCode::OK, json!({"outcome": "done", "lines": lines})),
        Ok(Outcome::KillFailed) => (
            StatusCode::OK,
            json!({"outcome": "kill-failed", "lines": lines}),
        ),
        Err(crate::Failure::Usage(e)) => {
            (StatusCode::BAD_REQUEST, json!({"error": e, "lines": lines}))
        }
        Err(crate::Failure::Failed(e)) => {
            (StatusCode::BAD_GATEWAY, json!({"error": e, "lines": lines}))
        }
    }
}
