//! One packet source for live captures and savefiles.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap::{Active, BpfProgram, Capture, Linktype, Offline, Precision};

use super::packet::{CaptureStats, CaptureWarning, Next, Packet, Truncation};
use super::pcapfile::{self, ClassicReader, Cut, Format, Step};
use super::{CaptureConfig, CaptureError, bpf_filter, check_linktype};

/// libpcap's packet buffer timeout for live captures, in milliseconds (batches packets when
/// immediate mode is off).
pub const LIVE_BUFFER_TIMEOUT_MS: i32 = 100;
/// The longest a live read sleeps when no packet is waiting before it reports [`Next::Idle`].
///
/// Live captures are read in non-blocking mode: on Linux, libpcap's read timeout does not fire
/// while no packet arrives, so a blocking read could wait forever. An empty read sleeps
/// 1 ms, doubling on each consecutive empty read up to this cap, then reports `Idle`; a busy
/// capture never sleeps. The kernel buffer absorbs what arrives meanwhile.
pub const MAX_IDLE_SLEEP: Duration = Duration::from_millis(10);

/// The longest a live read waits in poll(2) for packets before reporting [`Next::Idle`], so a
/// caller checks its stop flag several times a second.
const POLL_WAIT: Duration = Duration::from_millis(100);

/// Where packets come from: a live interface or a savefile, read through the same API so
/// replaying a capture gives the same figures as watching it live.
pub enum PacketSource {
    /// A live capture on an interface.
    Live {
        /// The libpcap handle (in non-blocking mode).
        capture: Capture<Active>,
        /// The interface name.
        interface: String,
        /// Consecutive empty reads, for the idle back-off.
        idle_streak: u32,
    },
    /// A pcap or pcapng savefile.
    File(Savefile),
}

/// A savefile being read: by libpcap, or by streamwarden's own classic pcap reader when
/// libpcap refuses sound records (see [`PacketSource::open_file`]).
pub struct Savefile {
    /// The libpcap handle; `None` once the built-in reader has taken over.
    libpcap: Option<Capture<Offline>>,
    /// Everything else (kept apart so a packet borrowed from `libpcap` leaves it usable).
    state: FileState,
}

struct FileState {
    path: PathBuf,
    linktype: i32,
    format: Format,
    /// The built-in reader, once it has taken over from libpcap.
    builtin: Option<Box<ClassicReader>>,
    /// The filter, compiled for the built-in reader.
    filter: Option<BpfProgram>,
    /// Packets handed out so far.
    delivered: u64,
    /// Matching records the built-in reader still has to pass over: those libpcap had
    /// already handed out when it gave up.
    skip: u64,
    /// Why libpcap gave up mid-file, until the built-in reader hands out a packet.
    libpcap_failure: Option<String>,
    /// The end was reached (or an error was reported): every later read is [`Next::Eof`].
    ended: bool,
    warnings: Vec<CaptureWarning>,
}

impl PacketSource {
    /// Opens a live capture as configured: the interface (default: that of the default route),
    /// snaplen, kernel buffer size, immediate mode, and a kernel BPF filter from
    /// [`bpf_filter`]. Needs CAP_NET_RAW; without it the error names the `setcap` fix.
    pub fn open_live(config: &CaptureConfig) -> Result<Self, CaptureError> {
        let interface = match &config.interface {
            Some(name) => name.clone(),
            None => default_interface()?,
        };
        let open_err = |e: pcap::Error| classify_open_error(&interface, e);
        let capture = Capture::from_device(interface.as_str())
            .map_err(open_err)?
            .snaplen(config.snaplen)
            .buffer_size(config.buffer_size)
            .immediate_mode(config.immediate)
            .timeout(LIVE_BUFFER_TIMEOUT_MS)
            .open()
            .map_err(open_err)?
            .setnonblock()
            .map_err(open_err)?;
        check_linktype(capture.get_datalink().0)?;
        let mut source = PacketSource::Live {
            capture,
            interface: interface.clone(),
            idle_streak: 0,
        };
        source.set_filter(&bpf_filter(&config.ports, config.all_tcp))?;
        tracing::info!(
            interface = %interface,
            filter = %bpf_filter(&config.ports, config.all_tcp),
            linktype = source.linktype(),
            "live capture opened"
        );
        Ok(source)
    }

    /// Opens a pcap or pcapng savefile, optionally with a BPF filter. Timestamps are read at
    /// nanosecond precision whatever the file's own precision.
    ///
    /// libpcap reads the file. A classic pcap that libpcap refuses, or whose first records
    /// hold more bytes than its header's snaplen (libpcap cuts such records to the snaplen, or
    /// refuses them), is read by streamwarden's own reader instead, which also takes over when
    /// libpcap gives up in the middle of a classic pcap; either is reported in
    /// [`PacketSource::warnings`]. With a filter, the built-in reader filters on the captured
    /// bytes (a filter on the wire length, `len` or `greater`, sees the captured length).
    pub fn open_file(path: impl AsRef<Path>, filter: Option<&str>) -> Result<Self, CaptureError> {
        let path = path.as_ref();
        let file_err = |reason: String| CaptureError::File {
            path: path.to_path_buf(),
            reason,
        };
        let metadata = std::fs::metadata(path).map_err(|e| file_err(e.to_string()))?;
        // Only a regular file can be read twice: a pipe or a FIFO goes to libpcap untouched.
        let format = if metadata.is_file() {
            pcapfile::sniff(path).map_err(|e| file_err(e.to_string()))?
        } else {
            Format::Other
        };
        let over_snaplen = match format {
            Format::Classic(header) => pcapfile::snaplen_exceeded(path).map(|(record, caplen)| {
                format!(
                    "record {record} holds {caplen} captured bytes, more than the file's \
                     snaplen of {} (libpcap cuts or refuses such records)",
                    header.snaplen
                )
            }),
            _ => None,
        };
        let mut warnings = Vec::new();
        let (libpcap, builtin, linktype) = match over_snaplen {
            Some(reason) => {
                let reader = ClassicReader::open(path).map_err(file_err)?;
                let linktype = reader.header().linktype();
                warnings.push(fallback_warning(path, 1, reason));
                (None, Some(Box::new(reader)), linktype)
            }
            None => match Capture::from_file_with_precision(path, Precision::Nano) {
                Ok(capture) => {
                    let linktype = capture.get_datalink().0;
                    (Some(capture), None, linktype)
                }
                Err(e) => {
                    let reason = pcap_reason(e);
                    let reader = match format {
                        Format::Classic(_) => ClassicReader::open(path).ok(),
                        Format::Pcapng | Format::Other => None,
                    };
                    // libpcap's reason when neither reader can open the file.
                    let reader = reader.ok_or_else(|| file_err(reason.clone()))?;
                    let linktype = reader.header().linktype();
                    let reason = format!("libpcap cannot open it ({reason})");
                    warnings.push(fallback_warning(path, 1, reason));
                    (None, Some(Box::new(reader)), linktype)
                }
            },
        };
        check_linktype(linktype)?;
        let mut source = PacketSource::File(Savefile {
            libpcap,
            state: FileState {
                path: path.to_path_buf(),
                linktype,
                format,
                builtin,
                filter: None,
                delivered: 0,
                skip: 0,
                libpcap_failure: None,
                ended: false,
                warnings,
            },
        });
        if let Some(filter) = filter {
            source.set_filter(filter)?;
        }
        Ok(source)
    }

    /// Installs a BPF filter (compiled with optimisation; in the kernel for live captures).
    pub fn set_filter(&mut self, filter: &str) -> Result<(), CaptureError> {
        let filter_err = |e| CaptureError::Filter {
            filter: filter.to_owned(),
            reason: pcap_reason(e),
        };
        match self {
            PacketSource::Live {
                capture, interface, ..
            } => {
                capture.filter(filter, true).map_err(filter_err)?;
                super::kernel::warn_if_refused(capture.as_raw_fd(), interface, filter);
                Ok(())
            }
            PacketSource::File(file) => {
                // Compiled for the built-in reader too, which may take over at any record.
                let program = Capture::dead(Linktype(file.state.linktype))
                    .and_then(|dead| dead.compile(filter, true))
                    .map_err(filter_err)?;
                if let Some(capture) = file.libpcap.as_mut() {
                    capture.filter(filter, true).map_err(filter_err)?;
                }
                file.state.filter = Some(program);
                Ok(())
            }
        }
    }

    /// For a live capture, how many instructions the kernel runs as its filter: 0 when it
    /// refused the filter (libpcap then filters in user space). `None` for a file, or unknown.
    pub fn kernel_filter_length(&self) -> Option<u32> {
        match self {
            PacketSource::Live { capture, .. } => {
                super::kernel::filter_length(capture.as_raw_fd()).ok()
            }
            PacketSource::File(_) => None,
        }
    }

    /// The source's link type (the value to pass to [`super::decode`]).
    pub fn linktype(&self) -> i32 {
        match self {
            PacketSource::Live { capture, .. } => capture.get_datalink().0,
            PacketSource::File(file) => file.state.linktype,
        }
    }

    /// Whether this is a live capture.
    pub fn is_live(&self) -> bool {
        matches!(self, PacketSource::Live { .. })
    }

    /// Reads the next packet. Live captures give [`Next::Idle`] when no packet is waiting
    /// (after a short sleep, see [`MAX_IDLE_SLEEP`]); savefiles give [`Next::Eof`] at their
    /// end, and keep giving it.
    ///
    /// A savefile cut off in the middle of a record (a file still being written) gives every
    /// complete record, then [`Next::Eof`]; the cut is a warning, not an error: see
    /// [`PacketSource::truncated`]. A damaged savefile gives a [`CaptureError::File`] naming
    /// the record where one is known, then [`Next::Eof`].
    #[inline]
    pub fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        match self {
            PacketSource::File(file) => file.next_packet(),
            PacketSource::Live {
                capture,
                interface,
                idle_streak,
            } => next_live(capture, interface, idle_streak),
        }
    }

    /// What did not stop the reading of a savefile but should be told: a cut-short end, or
    /// records read with streamwarden's own reader because libpcap refused them. Empty for
    /// live captures. Each warning is also logged (`tracing::warn!`) when it happens; a
    /// caller printing a report should print these after [`Next::Eof`].
    pub fn warnings(&self) -> &[CaptureWarning] {
        match self {
            PacketSource::Live { .. } => &[],
            PacketSource::File(file) => &file.state.warnings,
        }
    }

    /// Where the savefile was cut short, once the read has reached that point.
    pub fn truncated(&self) -> Option<&Truncation> {
        self.warnings().iter().find_map(|w| match w {
            CaptureWarning::Truncated(t) => Some(t),
            CaptureWarning::Fallback { .. } => None,
        })
    }

    /// Live captures: packets received and dropped so far, as libpcap counts them.
    /// `None` for savefiles or when libpcap cannot tell.
    pub fn stats(&mut self) -> Option<CaptureStats> {
        match self {
            PacketSource::Live { capture, .. } => capture.stats().ok().map(|s| CaptureStats {
                received: s.received,
                dropped: s.dropped,
                if_dropped: s.if_dropped,
            }),
            PacketSource::File(_) => None,
        }
    }
}

impl Savefile {
    /// The next packet: from libpcap while it reads, then from the built-in reader.
    #[inline]
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        if self.state.builtin.is_some() || self.state.ended {
            if self.libpcap.is_some() {
                self.libpcap = None;
            }
            return self.state.next_builtin();
        }
        let Some(capture) = self.libpcap.as_mut() else {
            return Ok(Next::Eof);
        };
        match capture.next_packet() {
            Ok(p) => {
                self.state.delivered += 1;
                Ok(Next::Packet(Packet {
                    ts_micros: ts_micros(p.header, true),
                    orig_len: p.header.len,
                    data: p.data,
                }))
            }
            Err(e) => self.state.libpcap_stopped(e),
        }
    }
}

impl FileState {
    fn error(&self, reason: String) -> CaptureError {
        CaptureError::File {
            path: self.path.clone(),
            reason,
        }
    }

    /// libpcap gave no packet: the end, a cut-short end, or a failure the built-in reader
    /// may read past (classic pcap only).
    #[cold]
    #[inline(never)]
    fn libpcap_stopped(&mut self, e: pcap::Error) -> Result<Next<'_>, CaptureError> {
        let reason = match e {
            pcap::Error::NoMorePackets => {
                self.ended = true;
                return Ok(Next::Eof);
            }
            pcap::Error::TimeoutExpired => return Ok(Next::Idle),
            e => pcap_reason(e),
        };
        match self.format {
            Format::Classic(_) => {
                // Read again from the start with the built-in reader, passing over what
                // libpcap handed out: it finds the cut, names the damaged record, or reads on.
                let reader = ClassicReader::open(&self.path).map_err(|again| {
                    self.ended = true;
                    self.error(format!("{reason} (and reading it again: {again})"))
                })?;
                tracing::debug!(
                    path = %self.path.display(),
                    packets = self.delivered,
                    "libpcap stopped ({reason}); reading on with the built-in pcap reader"
                );
                self.builtin = Some(Box::new(reader));
                self.skip = self.delivered;
                self.libpcap_failure = Some(format!(
                    "libpcap stopped after {} packets: {reason}",
                    self.delivered
                ));
                self.next_builtin()
            }
            Format::Pcapng | Format::Other => {
                self.ended = true;
                if matches!(self.format, Format::Pcapng)
                    && let Ok(Some(cut)) = pcapfile::pcapng_cut(&self.path)
                {
                    record_cut(&self.path, &mut self.warnings, cut);
                    return Ok(Next::Eof);
                }
                Err(self.error(format!("after {} packets: {reason}", self.delivered)))
            }
        }
    }

    /// The next packet from the built-in reader.
    fn next_builtin(&mut self) -> Result<Next<'_>, CaptureError> {
        let FileState {
            path,
            builtin,
            filter,
            delivered,
            skip,
            libpcap_failure,
            ended,
            warnings,
            ..
        } = self;
        if *ended {
            return Ok(Next::Eof);
        }
        let Some(reader) = builtin.as_mut() else {
            *ended = true;
            return Ok(Next::Eof);
        };
        loop {
            let step = match reader.next_record() {
                Ok(step) => step,
                Err(reason) => {
                    *ended = true;
                    return Err(CaptureError::File {
                        path: path.clone(),
                        reason,
                    });
                }
            };
            match step {
                Step::Record(header) => {
                    if let Some(program) = filter.as_ref()
                        && !program.filter(reader.data())
                    {
                        continue;
                    }
                    if *skip > 0 {
                        *skip -= 1;
                        continue;
                    }
                    if let Some(reason) = libpcap_failure.take() {
                        warnings.push(fallback_warning(path, reader.records(), reason));
                    }
                    *delivered += 1;
                    return Ok(Next::Packet(Packet {
                        ts_micros: header.ts_micros,
                        orig_len: header.orig_len,
                        data: reader.data(),
                    }));
                }
                Step::End => {
                    *ended = true;
                    return Ok(Next::Eof);
                }
                Step::Cut(cut) => {
                    *ended = true;
                    record_cut(path, warnings, cut);
                    return Ok(Next::Eof);
                }
            }
        }
    }
}

/// Logs and keeps a [`CaptureWarning::Truncated`].
#[cold]
fn record_cut(path: &Path, warnings: &mut Vec<CaptureWarning>, cut: Cut) {
    let truncation = Truncation {
        path: path.to_path_buf(),
        record: cut.complete + 1,
        complete: cut.complete,
        offset: Some(cut.offset),
        detail: cut.detail,
    };
    tracing::warn!(
        path = %path.display(),
        record = truncation.record,
        offset = cut.offset,
        "{truncation}"
    );
    warnings.push(CaptureWarning::Truncated(truncation));
}

/// Logs a [`CaptureWarning::Fallback`] and hands it back.
#[cold]
fn fallback_warning(path: &Path, record: u64, reason: String) -> CaptureWarning {
    let warning = CaptureWarning::Fallback {
        path: path.to_path_buf(),
        record,
        reason,
    };
    tracing::warn!(path = %path.display(), record, "{warning}");
    warning
}

/// A live read: a packet, or [`Next::Idle`] after the back-off sleep.
#[inline(never)]
fn next_live<'a>(
    capture: &'a mut Capture<Active>,
    interface: &str,
    idle_streak: &mut u32,
) -> Result<Next<'a>, CaptureError> {
    let raw = std::os::fd::AsRawFd::as_raw_fd(capture);
    match capture.next_packet() {
        Ok(p) => {
            *idle_streak = 0;
            Ok(Next::Packet(Packet {
                ts_micros: ts_micros(p.header, false),
                orig_len: p.header.len,
                data: p.data,
            }))
        }
        Err(pcap::Error::TimeoutExpired) => {
            // Nothing buffered: wait in poll(2) until the kernel hands over a block of
            // packets (at most the buffer timeout with immediate mode off), rather than
            // spinning. Fall back to a short sleep where the descriptor cannot be polled.
            use std::os::fd::{AsFd, BorrowedFd};
            // SAFETY: the descriptor belongs to `capture`, which outlives this call.
            let fd = unsafe { BorrowedFd::borrow_raw(raw) };
            let mut fds = [nix::poll::PollFd::new(
                fd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let wait =
                nix::poll::PollTimeout::try_from(POLL_WAIT).unwrap_or(nix::poll::PollTimeout::NONE);
            if nix::poll::poll(&mut fds, wait).is_err() {
                let sleep = Duration::from_millis(1 << (*idle_streak).min(8)).min(MAX_IDLE_SLEEP);
                *idle_streak = idle_streak.saturating_add(1);
                std::thread::sleep(sleep);
            }
            Ok(Next::Idle)
        }
        Err(pcap::Error::NoMorePackets) => Ok(Next::Eof),
        Err(e) => Err(CaptureError::Read {
            source_name: interface.to_owned(),
            reason: pcap_reason(e),
        }),
    }
}

/// A packet header's timestamp in microseconds. `tv_usec` holds nanoseconds when the handle
/// was opened with nanosecond precision.
// time_t and suseconds_t are 32 bits on some platforms: keep the widening conversions.
#[allow(clippy::useless_conversion)]
#[inline(always)]
fn ts_micros(header: &pcap::PacketHeader, nanos: bool) -> i64 {
    let sec = i64::from(header.ts.tv_sec);
    let frac = i64::from(header.ts.tv_usec);
    let frac_micros = if nanos { frac / 1000 } else { frac };
    crate::micros::Micros::from_parts(sec, frac_micros).0
}

/// The interface of the default route (lowest metric in `/proc/net/route`), falling back to
/// libpcap's default device.
pub fn default_interface() -> Result<String, CaptureError> {
    if let Ok(table) = std::fs::read_to_string("/proc/net/route")
        && let Some(name) = super::route::default_route_interface(&table)
    {
        return Ok(name);
    }
    match pcap::Device::lookup() {
        Ok(Some(device)) => Ok(device.name),
        Ok(None) => Err(CaptureError::NoDefaultInterface {
            reason: "no default route and libpcap found no device".to_owned(),
        }),
        Err(e) => Err(CaptureError::NoDefaultInterface {
            reason: pcap_reason(e),
        }),
    }
}

fn pcap_reason(e: pcap::Error) -> String {
    match e {
        pcap::Error::PcapError(s) => s,
        other => other.to_string(),
    }
}

fn classify_open_error(interface: &str, e: pcap::Error) -> CaptureError {
    let reason = pcap_reason(e);
    let lower = reason.to_ascii_lowercase();
    if lower.contains("permission") || lower.contains("not permitted") {
        CaptureError::PermissionDenied {
            interface: interface.to_owned(),
            exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("streamwarden")),
        }
    } else if lower.contains("no such device") {
        CaptureError::NoSuchDevice {
            interface: interface.to_owned(),
            reason,
        }
    } else {
        CaptureError::Open {
            interface: interface.to_owned(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_error_classification() {
        let e = classify_open_error(
            "eth0",
            pcap::Error::PcapError(
                "eth0: You don't have permission to perform this capture on that device \
                 (socket: Operation not permitted)"
                    .into(),
            ),
        );
        assert!(matches!(e, CaptureError::PermissionDenied { .. }));
        let e = classify_open_error(
            "nope0",
            pcap::Error::PcapError("nope0: No such device exists".into()),
        );
        assert!(matches!(e, CaptureError::NoSuchDevice { .. }));
    }
}
