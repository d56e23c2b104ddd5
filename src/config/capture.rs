//! The `[capture]` table.

/// The default Plex Media Server port.
pub const PLEX_PORT: u16 = 32400;
/// Default snaplen: link, IP and TCP headers plus the start of a plaintext HTTP request.
pub const DEFAULT_SNAPLEN: i32 = 256;
/// Default kernel capture buffer: 16 MiB.
pub const DEFAULT_BUFFER_SIZE: i32 = 16 << 20;

/// The `[capture]` table of the configuration file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Interface to capture on; `None` picks the interface of the default route. `"any"`
    /// captures on every interface (Linux cooked capture).
    pub interface: Option<String>,
    /// TCP ports to capture (either direction). Default `[32400]`.
    pub ports: Vec<u16>,
    /// Bytes captured per packet. Default 256: headers plus the start of HTTP requests; sizes
    /// are taken from the IP headers, so this does not limit the byte counts.
    pub snaplen: i32,
    /// Kernel capture buffer in bytes. Default 16 MiB.
    pub buffer_size: i32,
    /// Deliver every packet as it arrives instead of in blocks the kernel hands over at
    /// least every 100 ms. Default false: immediate mode costs a wake-up per packet (about
    /// ten times the CPU at 1 Gbit/s), and the engine evaluates once a second anyway.
    pub immediate: bool,
    /// Capture all TCP rather than only `ports`. Default false.
    pub all_tcp: bool,
    /// When started as root: the user to switch to once the capture is open.
    pub user: Option<String>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interface: None,
            ports: vec![PLEX_PORT],
            snaplen: DEFAULT_SNAPLEN,
            buffer_size: DEFAULT_BUFFER_SIZE,
            immediate: false,
            all_tcp: false,
            user: None,
        }
    }
}
