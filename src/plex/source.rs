//! Where the daemon and the hook read sessions from: the Plex client, or a stand-in.

use std::future::Future;
use std::sync::Arc;

use super::{PlexClient, PlexError, Session};

/// A source of the server's current sessions.
pub trait SessionSource: Send + Sync {
    /// Every session, with its source file facts filled in where known.
    fn sessions(&self) -> impl Future<Output = Result<Vec<Session>, PlexError>> + Send;
}

impl SessionSource for PlexClient {
    fn sessions(&self) -> impl Future<Output = Result<Vec<Session>, PlexError>> + Send {
        self.sessions_with_sources()
    }
}

impl<T: SessionSource> SessionSource for Arc<T> {
    fn sessions(&self) -> impl Future<Output = Result<Vec<Session>, PlexError>> + Send {
        (**self).sessions()
    }
}
