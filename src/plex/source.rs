//! Where the daemon and the hook read sessions from: the Plex client, or a stand-in.

use std::future::Future;
use std::sync::Arc;

use super::bandwidth::Bandwidth;
use super::events::Notifications;
use super::{PlexClient, PlexError, Session};

/// A source of the server's current sessions.
pub trait SessionSource: Send + Sync {
    /// Every session, with its source file facts filled in where known.
    fn sessions(&self) -> impl Future<Output = Result<Vec<Session>, PlexError>> + Send;

    /// Plex's per-second byte counters from `since` (unix seconds) on. A source without
    /// them answers as a server without Plex Pass does (404).
    fn bandwidth(&self, since: i64) -> impl Future<Output = Result<Bandwidth, PlexError>> + Send {
        let _ = since;
        async {
            Err(PlexError::Status {
                endpoint: "/statistics/bandwidth".into(),
                status: 404,
                detail: String::new(),
            })
        }
    }

    /// Plex's event stream (see [`super::events`]). A source without one answers as a
    /// server that does not serve it (404), and is polled.
    fn events(&self) -> impl Future<Output = Result<Notifications, PlexError>> + Send {
        async {
            Err(PlexError::Status {
                endpoint: super::events::ENDPOINT.into(),
                status: 404,
                detail: String::new(),
            })
        }
    }
}

impl SessionSource for PlexClient {
    fn sessions(&self) -> impl Future<Output = Result<Vec<Session>, PlexError>> + Send {
        self.sessions_with_sources()
    }

    fn events(&self) -> impl Future<Output = Result<Notifications, PlexError>> + Send {
        self.notifications()
    }

    fn bandwidth(&self, since: i64) -> impl Future<Output = Result<Bandwidth, PlexError>> + Send {
        PlexClient::bandwidth(self, since)
    }
}

impl<T: SessionSource> SessionSource for Arc<T> {
    fn sessions(&self) -> impl Future<Output = Result<Vec<Session>, PlexError>> + Send {
        (**self).sessions()
    }

    fn events(&self) -> impl Future<Output = Result<Notifications, PlexError>> + Send {
        (**self).events()
    }

    fn bandwidth(&self, since: i64) -> impl Future<Output = Result<Bandwidth, PlexError>> + Send {
        (**self).bandwidth(since)
    }
}
