//! `run`'s wiring: the live capture, the real Plex, the process's signals and the wall
//! clock plugged into the daemon.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::Failure;
use crate::capture::pump::Feeder;
use crate::capture::{PacketSource, privileges};
use crate::config::Config;
use crate::enforce::shape::Shaper;
use crate::engine::open::{compile, open_audit, plex_client};
use crate::meter::Metering;
use crate::notify::{Delivery, Notifier};
use crate::rules::{Action, RuleSet};

use super::{Feed, Reload, Reloaded, Setup, Summary, SystemClock, View};

/// Everything `run` needs, loaded and checked.
pub struct Live {
    pub config: Config,
    pub rules: RuleSet,
    /// The file to re-read on SIGHUP (as found at start).
    pub config_path: Option<PathBuf>,
    /// `--dry-run`: stays on across reloads.
    pub dry_run: bool,
    pub view: View,
}

/// Opens the capture, drops privileges, and runs the daemon until a signal stops it.
pub async fn run(live: Live) -> Result<Summary, Failure> {
    let Live {
        config,
        rules,
        config_path,
        dry_run,
        view,
    } = live;
    crate::engine::open::warn(&config);
    let raised = privileges::raise_permitted();
    if !raised.is_empty() {
        tracing::debug!("made the binary's permitted capabilities effective: {raised:?}");
    }
    let plex = plex_client(&config)?;
    let audit = open_audit(&config)?;
    let notify = Notifier::from_config(&config, Delivery::DAEMON)?;
    let http = match config.http.listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Failure::Usage(format!("cannot listen on [http] listen = \"{addr}\": {e}"))
        })?),
        None => None,
    };
    // A throttle root a crashed run left is lifted whatever this run's settings (no throttle
    // rule, a dry run, capture off), while the privilege to do it is still held.
    let cleaned = lift_leftover_throttles(&config);
    hand_state_over(&config)?;
    let source = config.measure.source;
    let (feed, feeder, shaper) = if config.capture.enabled && source.packets() {
        let source =
            PacketSource::open_live(&config.capture).map_err(|e| Failure::Usage(e.to_string()))?;
        let shaper = open_shaper(&config, &rules)?;
        let keep = if shaper.is_ok() {
            privileges::Keep::NetAdmin
        } else {
            privileges::Keep::Nothing
        };
        let done = privileges::drop_privileges(config.capture.user.as_deref(), keep)
            .map_err(Failure::Usage)?;
        tracing::info!("capture open; {done}");
        let feed = Feed::new(Metering::new(
            source.linktype(),
            (!config.capture.all_tcp).then(|| config.capture.ports.clone()),
        ));
        let feeder = Feeder::spawn(source, feed.clone())
            .map_err(|e| Failure::Failed(format!("cannot start the capture thread: {e}")))?;
        (feed, Some(feeder), shaper)
    } else {
        let done =
            privileges::drop_privileges(config.capture.user.as_deref(), privileges::Keep::Nothing)
                .map_err(Failure::Usage)?;
        if source.plex() {
            tracing::info!(
                "capture off: measuring from Plex's own counters only ([measure] source = \"{}\"); {done}",
                source.as_str()
            );
        } else {
            tracing::info!(
                "capture off ([capture] enabled = false): measured variables are unknown; {done}"
            );
        }
        let feed = Feed::new(Metering::new(
            crate::capture::decode::LINKTYPE_ETHERNET,
            Some(config.capture.ports.clone()),
        ));
        let no: Result<Arc<dyn Shaper>, String> =
            Err("the capture is off ([capture] enabled = false): nothing to throttle".into());
        (feed, None, no)
    };
    // The state after the privilege drop, so that its files belong to the user that runs.
    let (state, _lock) = open_daemon_state(&config, &cleaned)?;
    if config.enforce.dry_run {
        tracing::info!("dry run: decisions are audited, nothing is killed");
    }
    let control =
        super::signals().map_err(|e| Failure::Failed(format!("cannot watch signals: {e}")))?;
    let summary = super::run(
        Setup {
            rules,
            enforce: config.enforce.clone(),
            plex: Arc::new(plex),
            state,
            audit,
            notify,
            ports: config.capture.ports.clone(),
            poll_interval: config.plex.poll_interval,
            events: config.plex.events,
            fallback_interval: config.plex.poll_interval_fallback,
            usage: config.usage.clone(),
            feed: feed.with_source(source),
            clock: Arc::new(SystemClock),
            view,
            http,
            http_token: config.http.token.clone(),
            http_hosts: config.http.hosts.clone(),
            webhook: Some(super::webhook::Webhook {
                plex: config
                    .plex_settings()
                    .map_err(|e| Failure::Usage(e.to_string()))?,
                config_file: config.source.file.clone(),
            }),
            reload: Some(reloader(config.clone(), config_path, dry_run)),
            tick: Duration::from_secs(1),
            shaper,
        },
        control,
    )
    .await;
    if let Some(f) = feeder {
        f.stop();
    }
    Ok(summary)
}

/// Started as root with a `[capture] user` to switch to: the state's folder and files go to
/// that user first, so that it can write them after the switch.
fn hand_state_over(config: &Config) -> Result<(), Failure> {
    let (Some(name), true) = (
        config.capture.user.as_deref(),
        nix::unistd::Uid::effective().is_root(),
    ) else {
        return Ok(());
    };
    let Some(path) = config.state_path() else {
        return Ok(());
    };
    let Ok(Some(user)) = nix::unistd::User::from_name(name) else {
        // drop_privileges says what is wrong with the user.
        return Ok(());
    };
    crate::state::hand_over(&path, user.uid.as_raw(), user.gid.as_raw())
        .map_err(|e| Failure::Usage(format!("the state database {}: {e}", path.display())))
}

/// The interfaces on which a throttle root a previous run left was looked for and is gone.
fn lift_leftover_throttles(config: &Config) -> Vec<String> {
    if !crate::capture::privileges::has_net_admin() {
        return Vec::new();
    }
    let interface = match &config.capture.interface {
        Some(i) => i.clone(),
        None => match crate::capture::default_interface() {
            Ok(i) => i,
            Err(_) => return Vec::new(),
        },
    };
    match crate::enforce::shape::remove_leftover(&interface) {
        Ok(removed) => {
            if removed {
                tracing::warn!(interface = %interface, "lifted the throttles a previous run left on {interface}");
            }
            vec![interface]
        }
        Err(e) => {
            tracing::error!("cannot look for throttles a previous run left on {interface}: {e}");
            Vec::new()
        }
    }
}

/// Opens the state database and takes the one-daemon lock beside it; throttles the state
/// says were in force on an interface that was not cleaned are reported at ERROR.
fn open_daemon_state(
    config: &Config,
    cleaned: &[String],
) -> Result<(crate::state::State, crate::state::DaemonLock), Failure> {
    let mut state = crate::engine::open::open_state(config)?;
    let path = state.path().map(Path::to_path_buf).unwrap_or_default();
    let lock = crate::state::DaemonLock::take(&path).map_err(|e| Failure::Usage(e.to_string()))?;
    tracing::info!(path = %path.display(), "state database open");
    let left = state.throttles().unwrap_or_default();
    for interface in cleaned {
        if left.iter().any(|t| &t.interface == interface)
            && let Err(e) = state.throttles_cleared(interface)
        {
            tracing::error!("{e}");
        }
    }
    for t in left.iter().filter(|t| !cleaned.contains(&t.interface)) {
        tracing::error!(
            interface = %t.interface,
            rule = %t.rule,
            "a throttle a previous run put on may still be on {}: streamwarden cannot remove it without CAP_NET_ADMIN (run `tc qdisc del dev {} root` as root)",
            t.interface,
            t.interface
        );
    }
    Ok((state, lock))
}

/// Opens traffic control on the interface Plex sends on when a rule throttles (and this is
/// not a dry run); why there is no shaper otherwise. A throttle rule that cannot work is
/// an error at start, said plainly with what to grant.
fn open_shaper(
    config: &Config,
    rules: &RuleSet,
) -> Result<Result<Arc<dyn Shaper>, String>, Failure> {
    if !rules.rules.iter().any(|r| r.action == Action::Throttle) {
        return Ok(Err(
            "no rule throttled when streamwarden started: restart it to throttle (it keeps CAP_NET_ADMIN only for throttle rules)".into(),
        ));
    }
    if config.enforce.dry_run {
        return Ok(Err(
            "streamwarden started in dry run: restart it to throttle".into(),
        ));
    }
    let interface = match &config.capture.interface {
        Some(i) => i.clone(),
        None => crate::capture::default_interface().map_err(|e| Failure::Usage(e.to_string()))?,
    };
    let shaper =
        crate::enforce::shape::open(&interface).map_err(|e| Failure::Usage(e.to_string()))?;
    tracing::info!(interface = %interface, "throttles will shape {interface}'s egress");
    Ok(Ok(shaper))
}

/// Re-reads the same config file (and PLEX_URL/PLEX_TOKEN) on SIGHUP; `--dry-run` stays.
/// What changed in settings a reload cannot apply is named against `running`.
fn reloader(running: Config, path: Option<PathBuf>, dry_run: bool) -> Reload {
    Box::new(move || {
        let mut config = Config::load_settled(path.as_deref()).map_err(|e| e.to_string())?;
        if dry_run {
            config.enforce.dry_run = true;
        }
        let rules = compile(&config).map_err(|f| f.to_string())?;
        Ok(Reloaded {
            rules,
            restart_needed: running.restart_needed(&config),
            enforce: config.enforce,
        })
    })
}
