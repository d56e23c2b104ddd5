//! Slowing a stream down in the kernel: the `Shaper` trait a throttle goes through, and
//! Linux traffic control behind it (`tc`).

#[cfg(target_os = "linux")]
pub mod tc;

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

/// What to grant so that throttles work.
pub const GRANT: &str = "run as root, or grant CAP_NET_ADMIN: systemd AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN (and the same in CapabilityBoundingSet), Docker --cap-add NET_ADMIN, or setcap cap_net_raw,cap_net_admin=eip on the binary";

/// Why a throttle could not be put on or lifted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error(
        "{0}: throttling needs CAP_NET_ADMIN (traffic control), which this process does not hold: {GRANT}"
    )]
    NotPermitted(String),
    #[error("{0}: no such network interface to throttle on ([capture] interface)")]
    NoInterface(String),
    #[error(
        "{interface}: its root qdisc is the owner's ({kind} {handle}); streamwarden will not replace it to throttle. Remove it (tc qdisc del dev {interface} root) or do not use action = \"throttle\""
    )]
    ForeignRootQdisc {
        interface: String,
        kind: String,
        handle: String,
    },
    #[error("{interface}: cannot {what}: {why}")]
    Netlink {
        interface: String,
        what: String,
        why: String,
    },
    #[error("{0}")]
    Other(String),
}

impl ShapeError {
    /// A failed netlink request, from its errno.
    pub fn netlink(interface: &str, what: &str, errno: Option<i32>) -> Self {
        match errno {
            // EPERM
            Some(1) => ShapeError::NotPermitted(interface.to_string()),
            Some(e) => ShapeError::Netlink {
                interface: interface.to_string(),
                what: what.to_string(),
                why: std::io::Error::from_raw_os_error(e).to_string(),
            },
            None => ShapeError::Netlink {
                interface: interface.to_string(),
                what: what.to_string(),
                why: "no answer from the kernel".into(),
            },
        }
    }
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
    /// The interface it shapes, recorded with each throttle in the state so that a restart
    /// knows where to lift them.
    fn interface(&self) -> &str {
        "?"
    }
}

/// Opens Linux traffic control on `interface` for throttles (see [`tc::TcShaper::open`]).
#[cfg(target_os = "linux")]
pub fn open(interface: &str) -> Result<std::sync::Arc<dyn Shaper>, ShapeError> {
    Ok(std::sync::Arc::new(tc::TcShaper::open(interface)?))
}

/// Removes the throttle root (`5357:`) a previous run left on `interface`, whatever this
/// run's rules: true when there was one. Needs CAP_NET_ADMIN; an owner's own root qdisc is
/// left alone (false).
#[cfg(target_os = "linux")]
pub fn remove_leftover(interface: &str) -> Result<bool, ShapeError> {
    match tc::TcShaper::open(interface) {
        Ok(shaper) => Ok(shaper.removed_leftover()),
        Err(ShapeError::ForeignRootQdisc { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
pub fn remove_leftover(_interface: &str) -> Result<bool, ShapeError> {
    Ok(false)
}

/// Throttles need Linux traffic control.
#[cfg(not(target_os = "linux"))]
pub fn open(interface: &str) -> Result<std::sync::Arc<dyn Shaper>, ShapeError> {
    Err(ShapeError::Other(format!(
        "{interface}: throttling needs Linux traffic control"
    )))
}
