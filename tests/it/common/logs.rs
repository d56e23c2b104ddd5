//! Capturing what the library logs while a test runs. The tests that use it run on a
//! single-threaded runtime, so every task's events reach the test's subscriber.

use std::sync::{Arc, Mutex};

/// Log lines written while a test runs.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Logs at INFO and above into this buffer until the guard drops.
    pub fn subscriber(&self) -> tracing::subscriber::DefaultGuard {
        self.subscriber_at(tracing::Level::INFO)
    }

    /// Logs at `level` and above into this buffer until the guard drops.
    pub fn subscriber_at(&self, level: tracing::Level) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || logs.clone())
            .with_ansi(false)
            .with_max_level(level)
            .finish();
        tracing::subscriber::set_default(sub)
    }
}
