//! Packets in, flows metered: the same for a live capture, a file and generated traffic.

use crate::capture::{DecodeStats, Packet, decode};

use super::Meter;

/// A meter fed with raw frames of one link type, counting what it could not decode.
#[derive(Debug)]
pub struct Metering {
    pub meter: Meter,
    pub stats: DecodeStats,
    linktype: i32,
    /// Only connections with one of these ports on either side are metered; `None`
    /// meters every TCP connection.
    ports: Option<Vec<u16>>,
}

impl Metering {
    pub fn new(linktype: i32, ports: Option<Vec<u16>>) -> Self {
        Self {
            meter: Meter::new(),
            stats: DecodeStats::default(),
            linktype,
            ports,
        }
    }

    /// Decodes one frame and meters it; undecodable frames are counted and skipped.
    /// The port check happens here, after decoding, so VLAN-tagged and cooked frames are
    /// filtered exactly like plain Ethernet ones.
    #[inline]
    pub fn ingest(&mut self, p: &Packet<'_>) {
        if let Ok(seg) = self.stats.count(decode(self.linktype, p.data)) {
            let wanted = match &self.ports {
                None => true,
                Some(ports) => ports.contains(&seg.sport) || ports.contains(&seg.dport),
            };
            if wanted {
                self.meter.record(p.ts_micros, &seg);
            }
        }
    }
}
