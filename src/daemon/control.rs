//! The daemon's controls: stop and reload, from the process's signals or from a caller.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// What the daemon can be told while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Re-read the configuration (SIGHUP).
    Reload,
    /// Stop (SIGINT, SIGTERM).
    Stop,
}

/// The process's signals as controls: SIGINT and SIGTERM stop, SIGHUP reloads.
pub fn signals() -> std::io::Result<mpsc::Receiver<Control>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let c = tokio::select! {
                _ = term.recv() => { tracing::info!("terminated: stopping"); Control::Stop }
                _ = int.recv() => { tracing::info!("interrupted: stopping"); Control::Stop }
                _ = hup.recv() => Control::Reload,
            };
            if tx.send(c).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
