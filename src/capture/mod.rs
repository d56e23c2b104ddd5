//! Packet capture: live interfaces and savefiles behind one [`PacketSource`], and decoding of
//! captured frames into [`TcpSegment`]s.
//!
//! ```no_run
//! use streamwarden::capture::{decode, DecodeStats, Next, PacketSource};
//!
//! let mut source = PacketSource::open_file("capture.pcap", Some("tcp port 32400"))?;
//! let linktype = source.linktype();
//! let mut stats = DecodeStats::default();
//! while let Next::Packet(packet) = source.next_packet()? {
//!     if let Ok(segment) = stats.count(decode(linktype, packet.data)) {
//!         println!("{}:{} -> {}:{} {} bytes", segment.src, segment.sport,
//!                  segment.dst, segment.dport, segment.ip_len);
//!     }
//! }
//! // A file cut short (still being written) ends like any other, with a warning.
//! for warning in source.warnings() {
//!     eprintln!("warning: {warning}");
//! }
//! # Ok::<(), streamwarden::capture::CaptureError>(())
//! ```

pub mod decode;
#[cfg(feature = "capture")]
mod kernel;
pub mod packet;
pub mod pcapfile;
pub mod privileges;
pub mod pump;
pub mod route;
/// Packet sources through libpcap; a build without the `capture` feature (the static
/// binary) has a stand-in that says capture is not in this build.
#[cfg(feature = "capture")]
pub mod source;
#[cfg(not(feature = "capture"))]
#[path = "nopcap.rs"]
pub mod source;

use std::path::PathBuf;

pub use decode::{
    Skip, TcpSegment, check_linktype, decode, decode_ip, decode_ip_lax, linktype_name,
};
pub use packet::{CaptureStats, CaptureWarning, Next, Packet, Truncation};
pub use source::{PacketSource, default_interface};

pub use crate::config::capture::{CaptureConfig, DEFAULT_BUFFER_SIZE, DEFAULT_SNAPLEN, PLEX_PORT};

/// The BPF filter for a port list: `tcp` when `all_tcp` (or no ports are given), otherwise
/// `tcp and (port 32400 or port 443)`.
pub fn bpf_filter(ports: &[u16], all_tcp: bool) -> String {
    if all_tcp || ports.is_empty() {
        return "tcp".to_owned();
    }
    let alternatives: Vec<String> = ports.iter().map(|p| format!("port {p}")).collect();
    let plain = format!("tcp and ({})", alternatives.join(" or "));
    // Plex's traffic inside the tunnels the decoder peels off (overlay networks: VXLAN,
    // Geneve; GTP-U; GRE and IP in IP), whose inner ports the kernel cannot see: let them
    // through and let the decoder find Plex's ports inside.
    let any = format!("({plain}) or ({TUNNELS})");
    // PPPoE session frames by their EtherType, first: libpcap's "pppoes" shifts offsets in a
    // way the kernel refuses next to "vlan" (it then filters in user space: every packet of
    // the interface copied up). The decoder looks inside them. "vlan" shifts the offsets of
    // what follows it: the same test inside one and two tags.
    format!("{PPPOE_SESSION} or ({any}) or (vlan and ({any})) or (vlan and vlan and ({any}))")
}

/// PPPoE session frames (see [`bpf_filter`]).
const PPPOE_SESSION: &str = "ether proto 0x8864";

/// The packets that may carry Plex's traffic in a tunnel (see [`bpf_filter`]).
const TUNNELS: &str = "(udp and (port 4789 or port 6081 or port 2152)) or (ip and (ip proto 4 or ip proto 41 or ip proto 47)) or (ip6 and (ip6 proto 4 or ip6 proto 41 or ip6 proto 47))";

/// Errors opening or reading a packet source. All of them are fatal for the process and map
/// to exit code 2 (the command line decides).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// This build has no libpcap (the static binary).
    #[error(
        "{what} is not in this build of streamwarden (built without libpcap, for containers): use the standard build, or set [capture] enabled = false"
    )]
    NotInThisBuild { what: String },
    /// Capturing needs CAP_NET_RAW.
    #[error(
        "capture on {interface} is not permitted: run as root, or grant the capability with: \
         sudo setcap cap_net_raw=eip {} (in a container: --cap-add NET_RAW, or cap_add: \
         [NET_RAW] in compose)",
        exe.display()
    )]
    PermissionDenied {
        /// The interface that was refused.
        interface: String,
        /// This executable, for the setcap command.
        exe: PathBuf,
    },
    /// The interface does not exist.
    #[error("no such capture interface: {interface} ({reason})")]
    NoSuchDevice {
        /// The interface asked for.
        interface: String,
        /// libpcap's message.
        reason: String,
    },
    /// No interface was given and none could be found.
    #[error(
        "no capture interface given and no default-route interface found ({reason}): set capture.interface"
    )]
    NoDefaultInterface {
        /// Why the lookup failed.
        reason: String,
    },
    /// Opening or activating a live capture failed for another reason.
    #[error("cannot capture on {interface}: {reason}")]
    Open {
        /// The interface.
        interface: String,
        /// libpcap's message.
        reason: String,
    },
    /// A savefile could not be opened or read.
    #[error("cannot read capture file {}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The capture's link type cannot be decoded.
    #[error(
        "link type {name} ({linktype}) is not supported: streamwarden decodes Ethernet, \
         Linux cooked capture v1/v2, BSD loopback, raw IP, PPP, PPPoE, Cisco HDLC, \
         IP over InfiniBand and ARCNET"
    )]
    UnsupportedLinkType {
        /// The numeric link type.
        linktype: i32,
        /// libpcap's name for it.
        name: String,
    },
    /// The BPF filter did not compile or could not be installed.
    #[error("invalid capture filter {filter:?}: {reason}")]
    Filter {
        /// The filter expression.
        filter: String,
        /// libpcap's message.
        reason: String,
    },
    /// Reading a packet from a live capture failed.
    #[error("reading packets from {source_name} failed: {reason}")]
    Read {
        /// The interface.
        source_name: String,
        /// libpcap's message.
        reason: String,
    },
}

/// Counters of frames read and what became of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DecodeStats {
    /// Frames read from the source.
    pub read: u64,
    /// Frames decoded into TCP segments.
    pub decoded: u64,
    /// Frames skipped (sum of the reasons below).
    pub skipped: u64,
    /// Skipped: not IP.
    pub not_ip: u64,
    /// Skipped: IP but not TCP.
    pub not_tcp: u64,
    /// Skipped: IP fragments.
    pub fragment: u64,
    /// Skipped: truncated before the TCP ports.
    pub truncated: u64,
    /// Skipped: malformed headers.
    pub malformed: u64,
}

impl DecodeStats {
    /// Counts one decode result and hands it back.
    #[inline]
    pub fn count<'a>(
        &mut self,
        result: Result<TcpSegment<'a>, Skip>,
    ) -> Result<TcpSegment<'a>, Skip> {
        self.read += 1;
        match &result {
            Ok(_) => self.decoded += 1,
            Err(skip) => {
                self.skipped += 1;
                match skip {
                    Skip::NotIp => self.not_ip += 1,
                    Skip::NotTcp => self.not_tcp += 1,
                    Skip::Fragment => self.fragment += 1,
                    Skip::Truncated => self.truncated += 1,
                    Skip::Malformed => self.malformed += 1,
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_strings() {
        let one = format!("(tcp and (port 32400)) or ({TUNNELS})");
        assert_eq!(
            bpf_filter(&[32400], false),
            format!(
                "{PPPOE_SESSION} or ({one}) or (vlan and ({one})) or (vlan and vlan and ({one}))"
            )
        );
        let two = "tcp and (port 32400 or port 443)";
        assert!(
            bpf_filter(&[32400, 443], false)
                .starts_with(&format!("{PPPOE_SESSION} or (({two}) or"))
        );
    }

    #[cfg(feature = "capture")]
    #[test]
    fn the_bpf_filter_compiles() {
        {
            let lt = pcap::Linktype::ETHERNET;
            let dead = pcap::Capture::dead(lt).unwrap();
            let compiled = dead.compile(&bpf_filter(&[32400, 443], false), true);
            assert!(compiled.is_ok(), "{lt:?}: {:?}", compiled.err());
        }
        assert_eq!(bpf_filter(&[32400], true), "tcp");
        assert_eq!(bpf_filter(&[], false), "tcp");
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: CaptureConfig = serde_json::from_str(r#"{"interface":"eth0"}"#).unwrap();
        assert_eq!(c.interface.as_deref(), Some("eth0"));
        assert_eq!(c.ports, vec![32400]);
        assert_eq!(c.snaplen, 256);
        assert_eq!(c.buffer_size, 16 * 1024 * 1024);
        assert!(!c.immediate && !c.all_tcp);
        assert!(serde_json::from_str::<CaptureConfig>(r#"{"port":1}"#).is_err());
    }

    #[test]
    fn permission_message_names_the_fix() {
        let e = CaptureError::PermissionDenied {
            interface: "eth0".into(),
            exe: "/usr/bin/streamwarden".into(),
        };
        assert_eq!(
            e.to_string(),
            "capture on eth0 is not permitted: run as root, or grant the capability with: \
             sudo setcap cap_net_raw=eip /usr/bin/streamwarden (in a container: --cap-add \
             NET_RAW, or cap_add: [NET_RAW] in compose)"
        );
    }
}
