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
    /// Capture packets at all. Default true; false runs polling, rules (measured variables
    /// unknown), the HTTP endpoint and kills without any privilege.
    pub enabled: bool,
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
            enabled: true,
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

/// The smallest useful snaplen: link, IP and TCP headers.
pub const MIN_SNAPLEN: i32 = 96;
/// The smallest kernel buffer accepted: 64 KiB.
pub const MIN_BUFFER_SIZE: i32 = 64 << 10;

/// `[capture]` as written, with the places of the values that are checked.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapture {
    enabled: Option<bool>,
    interface: Option<String>,
    ports: Option<toml::Spanned<Vec<u16>>>,
    snaplen: Option<toml::Spanned<i32>>,
    buffer_size: Option<toml::Spanned<i32>>,
    immediate: Option<bool>,
    all_tcp: Option<bool>,
    user: Option<String>,
}

impl RawCapture {
    /// The settings, or a located error for a value that cannot work.
    pub(super) fn resolve(
        self,
        source: &super::SourceMap,
    ) -> Result<CaptureConfig, super::ConfigError> {
        let d = CaptureConfig::default();
        let all_tcp = self.all_tcp.unwrap_or(d.all_tcp);
        if let Some(p) = &self.ports
            && p.get_ref().is_empty()
            && !all_tcp
        {
            return Err(source.error(
                Some(p.span()),
                "ports: empty, so nothing would be captured: list Plex's port (32400), or set all_tcp = true",
            ));
        }
        if let Some(s) = &self.snaplen
            && *s.get_ref() < MIN_SNAPLEN
        {
            return Err(source.error(
                Some(s.span()),
                format!("snaplen: at least {MIN_SNAPLEN} bytes (the headers must fit; the default is {DEFAULT_SNAPLEN})"),
            ));
        }
        if let Some(b) = &self.buffer_size
            && *b.get_ref() < MIN_BUFFER_SIZE
        {
            return Err(source.error(
                Some(b.span()),
                format!("buffer_size: at least {MIN_BUFFER_SIZE} bytes (the default is {DEFAULT_BUFFER_SIZE})"),
            ));
        }
        Ok(CaptureConfig {
            enabled: self.enabled.unwrap_or(d.enabled),
            interface: self.interface.filter(|i| !i.trim().is_empty()),
            ports: self.ports.map_or(d.ports, toml::Spanned::into_inner),
            snaplen: self.snaplen.map_or(d.snaplen, toml::Spanned::into_inner),
            buffer_size: self
                .buffer_size
                .map_or(d.buffer_size, toml::Spanned::into_inner),
            immediate: self.immediate.unwrap_or(d.immediate),
            all_tcp,
            user: self.user,
        })
    }
}
