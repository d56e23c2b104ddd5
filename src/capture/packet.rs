//! What a packet source hands out, whichever reads it: packets, end of input, statistics
//! and warnings about the file.

use std::path::PathBuf;

/// Something about a savefile worth telling the user that did not stop the reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureWarning {
    /// The file ends in the middle of a record (it may still be being written): every
    /// complete record before it was read, then the read ended as [`Next::Eof`].
    Truncated(Truncation),
    /// libpcap refused part of the file; streamwarden's own pcap reader read it, from
    /// `record` on.
    Fallback {
        /// The file.
        path: PathBuf,
        /// The first record (counting from 1) read by the built-in reader.
        record: u64,
        /// Why libpcap could not read it.
        reason: String,
    },
}

/// Where a savefile was cut short.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// The file.
    pub path: PathBuf,
    /// The number (counting from 1) of the record that is cut short: the complete records
    /// plus one.
    pub record: u64,
    /// The complete records before the cut (all of them were read).
    pub complete: u64,
    /// Byte offset where the cut record starts, when known.
    pub offset: Option<u64>,
    /// What is missing.
    pub detail: String,
}

impl std::fmt::Display for Truncation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "capture file {} is cut short", self.path.display())?;
        if let Some(offset) = self.offset {
            write!(f, " at byte {offset}")?;
        }
        write!(
            f,
            ": {}; the {} complete records before it were read (is the file still being \
             written?)",
            self.detail, self.complete
        )
    }
}

impl std::fmt::Display for CaptureWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureWarning::Truncated(t) => t.fmt(f),
            CaptureWarning::Fallback {
                path,
                record,
                reason,
            } => write!(
                f,
                "capture file {}: {reason}; read with streamwarden's own pcap reader from \
                 record {record} on",
                path.display()
            ),
        }
    }
}

/// One captured packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Capture timestamp in microseconds since the Unix epoch, from the packet header (so
    /// replay and live agree). Nanosecond savefiles are read at nanosecond precision and
    /// truncated to microseconds.
    pub ts_micros: i64,
    /// The packet's length on the wire (may exceed `data.len()` when the snaplen cut it).
    pub orig_len: u32,
    /// The captured bytes, starting at the link-layer header.
    pub data: &'a [u8],
}

/// The result of one read from a [`PacketSource`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next<'a> {
    /// A packet.
    Packet(Packet<'a>),
    /// Live capture only: no packet is waiting (the read slept briefly, see
    /// [`MAX_IDLE_SLEEP`]); call again.
    Idle,
    /// Savefile only: the end of the file.
    Eof,
}

/// Packet counters of a live capture, as libpcap reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureStats {
    /// Packets received by the filter.
    pub received: u32,
    /// Packets dropped because the capture buffer was full.
    pub dropped: u32,
    /// Packets dropped by the interface or its driver.
    pub if_dropped: u32,
}
