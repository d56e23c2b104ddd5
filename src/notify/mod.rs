//! Notifications: every kill, failed kill and zombie told to the owner where they already
//! look (`[[notify]]`: Discord, Slack, ntfy, Gotify, Telegram or any webhook), from the
//! daemon and from the hook alike.
//!
//! They are built from the audit [`Record`]s the enforcer writes: the [`Notifier`] is the
//! audit log's [`AuditSink`], and only queues each record there, so nothing on the kill path ever
//! waits for a service. A task per target sends (a few seconds' timeout, bounded retries with
//! backoff), keeps to the target's rate (a burst past it is folded into one summary), and
//! counts and logs what could not be sent. The URL of a target is a secret and the Plex token
//! is never in a record: neither shows in a payload, a log line or an error.

mod deliver;
pub mod format;
mod sample;
pub mod style;
mod worker;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::Failure;
use crate::config::{Config, ConfigError, NotifyKind};
use crate::enforce::{AuditSink, Record};
use crate::lock;
use crate::rules::Template;

pub use deliver::Delivery;
pub use sample::{Tried, send_samples};

/// How long the hook waits, after its kills, for notifications still being sent.
pub const HOOK_FINISH: Duration = Duration::from_secs(4);

/// How many records may wait for one target before more are dropped (and counted).
const QUEUE: usize = 256;

/// A checked `[[notify]]` target, ready to send to.
pub struct Target {
    pub name: String,
    pub kind: NotifyKind,
    /// The audit actions it is told of.
    pub on: Vec<crate::state::AuditAction>,
    url: reqwest::Url,
    title: Option<Template>,
    message: Option<Template>,
    chat_id: Option<String>,
    per_minute: u32,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("on", &self.on)
            .field("url", &"<secret>")
            .finish()
    }
}

impl Target {
    /// `text` with every part of the URL that may be secret (its path, query, credentials,
    /// and the whole) taken out.
    pub fn redact(&self, text: &str) -> String {
        let u = &self.url;
        let mut secrets: Vec<String> = vec![u.as_str().to_string()];
        if u.path().len() > 1 {
            secrets.push(u.path().to_string());
        }
        secrets.extend(
            u.path_segments()
                .into_iter()
                .flatten()
                .filter(|s| s.len() >= 6)
                .map(str::to_string),
        );
        secrets.extend(u.query().map(str::to_string));
        secrets.extend(u.password().map(str::to_string));
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut out = text.to_string();
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            out = out.replace(s.as_str(), "<redacted>");
        }
        out
    }

    /// Whether this target is told of `action`.
    pub fn wants(&self, action: crate::state::AuditAction) -> bool {
        self.on.contains(&action)
    }
}

/// Checks every `[[notify]]` of the configuration: its URL and its templates (the same
/// variables and checks as rule messages), each error located in the file.
pub fn targets(config: &Config) -> Result<Vec<Target>, Vec<ConfigError>> {
    let src = &config.source;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for t in &config.notify {
        let url = match t.checked_url(src) {
            Ok(u) => u,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let mut url = url;
        if t.kind == NotifyKind::Telegram && !url.path().ends_with("/sendMessage") {
            let path = format!("{}/sendMessage", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        let template = |m: &Option<toml::Spanned<String>>,
                        what: &str|
         -> Result<Option<Template>, ConfigError> {
            let Some(m) = m else { return Ok(None) };
            Template::parse(m.get_ref())
                .map(Some)
                .map_err(|e| ConfigError {
                    file: src.file.clone(),
                    position: Some(src.position(src.string_offset(
                        &m.span(),
                        m.get_ref(),
                        e.offset,
                    ))),
                    message: format!("[[notify]] {}: {what}: {}", t.name, e.message),
                })
        };
        let (title, message) = match (template(&t.title, "title"), template(&t.message, "message"))
        {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                errors.extend(a.err());
                errors.extend(b.err());
                continue;
            }
        };
        out.push(Target {
            name: t.name.clone(),
            kind: t.kind,
            on: t.on.clone(),
            url,
            title,
            message,
            chat_id: t.chat_id.clone(),
            per_minute: t.max_per_minute,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// What was sent to each target, and what could not be.
#[derive(Debug, Default)]
pub struct Stats {
    by_target: Mutex<BTreeMap<String, Counts>>,
}

/// One target's tally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

impl Stats {
    fn sent(&self, name: &str) {
        lock(&self.by_target)
            .entry(name.to_string())
            .or_default()
            .sent += 1;
    }

    fn failed(&self, name: &str, error: String) {
        let mut all = lock(&self.by_target);
        let c = all.entry(name.to_string()).or_default();
        c.failed += 1;
        c.last_error = Some(error);
    }
}

/// One target's queue, as the sink sees it.
struct Queue {
    name: String,
    on: Vec<crate::state::AuditAction>,
    tx: mpsc::Sender<Record>,
}

struct Inner {
    queues: Vec<Queue>,
    stats: Arc<Stats>,
    closing: watch::Sender<bool>,
    tasks: Mutex<Vec<(String, JoinHandle<()>)>>,
}

/// The running notifications: the audit log's sink, a task per target.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("targets", &self.names())
            .finish()
    }
}

impl Notifier {
    /// Starts a task per target on the current tokio runtime.
    pub fn start(targets: Vec<Target>, delivery: Delivery) -> Result<Notifier, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "notifications need the async runtime".to_string())?;
        let client = deliver::client()?;
        let stats = Arc::new(Stats::default());
        let (closing, closed) = watch::channel(false);
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for t in targets {
            let (tx, rx) = mpsc::channel(QUEUE);
            lock(&stats.by_target).insert(t.name.clone(), Counts::default());
            queues.push(Queue {
                name: t.name.clone(),
                on: t.on.clone(),
                tx,
            });
            let name = t.name.clone();
            let lane = worker::Lane {
                target: Arc::new(t),
                rx,
                stats: stats.clone(),
                client: client.clone(),
                delivery,
                closing: closed.clone(),
            };
            tasks.push((name, runtime.spawn(worker::run(lane))));
        }
        Ok(Notifier {
            inner: Arc::new(Inner {
                queues,
                stats,
                closing,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// The configuration's targets, started; `None` when it has none.
    pub fn from_config(config: &Config, delivery: Delivery) -> Result<Option<Notifier>, Failure> {
        let targets = targets(config).map_err(|e| crate::config::failure(&e))?;
        if targets.is_empty() {
            return Ok(None);
        }
        Notifier::start(targets, delivery)
            .map(Some)
            .map_err(Failure::Failed)
    }

    /// The targets' names, in the configuration's order.
    pub fn names(&self) -> Vec<String> {
        self.inner.queues.iter().map(|q| q.name.clone()).collect()
    }

    /// Each target's tally so far.
    pub fn counts(&self) -> BTreeMap<String, Counts> {
        lock(&self.inner.stats.by_target).clone()
    }

    /// The audit log's sink: every record, queued for the targets that want it.
    pub fn sink(&self) -> Arc<dyn AuditSink> {
        Arc::new(self.clone())
    }

    /// Sends what is queued (a burst as one summary, the rate aside) and stops, waiting at
    /// most `within`: a target still sending then is given up on.
    pub async fn finish(&self, within: Duration) -> Report {
        let _ = self.inner.closing.send(true);
        let deadline = tokio::time::Instant::now() + within;
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        let mut unfinished = Vec::new();
        for (name, mut task) in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                unfinished.push(name);
            }
        }
        Report {
            counts: self.counts(),
            unfinished,
            within,
        }
    }
}

impl AuditSink for Notifier {
    fn record(&self, record: &Record) {
        for q in &self.inner.queues {
            if !q.on.contains(&record.action) {
                continue;
            }
            match q.tx.try_send(record.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(
                        notify = %q.name,
                        "notification dropped: {QUEUE} are already waiting for this target"
                    );
                    self.inner
                        .stats
                        .failed(&q.name, "dropped: the queue was full".into());
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::debug!(notify = %q.name, "notifications have stopped: not queued");
                }
            }
        }
    }
}

/// What became of the notifications when they were finished.
#[derive(Debug, Clone)]
pub struct Report {
    pub counts: BTreeMap<String, Counts>,
    /// Targets still sending at the deadline.
    pub unfinished: Vec<String>,
    pub within: Duration,
}

impl Report {
    /// One sentence per target that did not get everything, for a command's stderr.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, c) in &self.counts {
            if c.failed > 0 {
                out.push(format!(
                    "[[notify]] {name}: {} notification{} not sent: {}",
                    c.failed,
                    if c.failed == 1 { "" } else { "s" },
                    c.last_error.as_deref().unwrap_or("unknown error")
                ));
            }
        }
        for name in &self.unfinished {
            out.push(format!(
                "[[notify]] {name}: still sending after {} s: given up",
                self.within.as_secs_f64()
            ));
        }
        out
    }
}
