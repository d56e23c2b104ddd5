//! Slowing a stream down in the kernel: the `Shaper` trait a throttle goes through, and
//! Linux traffic control behind it.

/// One TCP connection of a throttled stream, as the server sends it: server (IP, port) ->
/// client (IP, port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conn {
    pub server: std::net::SocketAddr,
    pub client: std::net::SocketAddr,
}

/// A throttle's identity: one per throttled stream (becomes the HTB class minor number;
/// 1..=0xfffe).
pub type ThrottleId = u16;

/// Why a throttle could not be put on or lifted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("{0}")]
    Other(String),
}

/// What limits connections: Linux traffic control, or a test double.
pub trait Shaper: Send + Sync {
    /// Limits exactly these connections, together, to `rate` bytes per second.
    /// Idempotent: called again with a new set or rate, it adds filters for new
    /// connections, removes those no longer listed, and changes the class rate. Installs
    /// the root qdisc on first use.
    fn apply(
        &self,
        id: ThrottleId,
        rate_bytes_per_sec: u64,
        conns: &[Conn],
    ) -> Result<(), ShapeError>;
    /// Removes one throttle (its filters and class); when none is left, removes the root
    /// qdisc it added, leaving the interface as it was found.
    fn release(&self, id: ThrottleId) -> Result<(), ShapeError>;
    /// Removes everything this shaper added (shutdown).
    fn release_all(&self) -> Result<(), ShapeError>;
}

/// Opens Linux traffic control on `interface` for throttles.
pub fn open(interface: &str) -> Result<std::sync::Arc<dyn Shaper>, ShapeError> {
    Err(ShapeError::Other(format!("{interface}: TEMPORARY")))
}
