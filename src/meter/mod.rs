//! Per-connection flow metering: packet and IP byte totals, exact sliding-window rates and
//! HTTP request hints for every directional TCP 4-tuple.
//!
//! Rates follow the definition in [`window`]: over a window of `W` seconds at time `now`,
//! the IP bytes of the `W` complete seconds before `now`'s second, divided by `W` (or by the
//! flow's age in complete seconds when it is younger), in kbps of 1000 bits/s.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use streamwarden::capture::TcpSegment;
//! use streamwarden::meter::{FlowKey, Meter};
//!
//! let server = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
//! let client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
//! let mut meter = Meter::new();
//! for i in 0..20_000i64 {
//!     // 1000 packets of 125 bytes per second for 20 s: 1000 kbps
//!     let seg = TcpSegment { src: server, dst: client, sport: 32400, dport: 50000,
//!         ip_len: 125, payload_len: 73, payload: &[], syn: false, fin: false, rst: false };
//!     meter.record(i * 1000, &seg);
//! }
//! let key = FlowKey { src: server, sport: 32400, dst: client, dport: 50000 };
//! let rates = meter.rates(&key, 20_000_000).unwrap();
//! assert_eq!(rates.kbps_10s, 1000.0);
//! assert_eq!(rates.kbps_1m, 1000.0);
//! ```

pub mod hints;
pub mod metering;
pub mod window;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::capture::TcpSegment;

pub use hints::{RequestHints, parse_request};
pub use metering::Metering;
pub use window::{MAX_BUCKETS, SecondWindows, WINDOWS_SECS, second_of};

/// What the measurement engine knows of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Measured {
    pub kbps_10s: f64,
    pub kbps_1m: f64,
    pub kbps_5m: f64,
    pub kbps_10m: f64,
    /// The stream shared an address with others and could not be told apart:
    /// the figures are its share by Plex's reported bitrates.
    pub estimated: bool,
    /// Where the figures come from.
    #[serde(default)]
    pub source: RateSource,
}

/// Where a stream's measured figures come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateSource {
    /// Packets captured on the wire.
    #[default]
    Packets,
    /// Plex's own per-second counters (`/statistics/bandwidth`).
    Plex,
}

impl RateSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RateSource::Packets => "packets",
            RateSource::Plex => "plex",
        }
    }
}

/// Default hard cap on the number of flows tracked.
pub const DEFAULT_MAX_FLOWS: usize = 65_536;
/// Default idle time after which [`Meter::expire`] drops a flow: 15 minutes, past the longest
/// window, so an expired flow would contribute 0 to every figure anyway.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(15 * 60);

/// One direction of a TCP connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize)]
pub struct FlowKey {
    /// Sender address.
    pub src: IpAddr,
    /// Sender port.
    pub sport: u16,
    /// Receiver address.
    pub dst: IpAddr,
    /// Receiver port.
    pub dport: u16,
}

impl FlowKey {
    /// The key of a segment's direction.
    #[inline]
    pub fn of(seg: &TcpSegment<'_>) -> Self {
        FlowKey {
            src: seg.src,
            sport: seg.sport,
            dst: seg.dst,
            dport: seg.dport,
        }
    }

    /// The opposite direction of the same connection.
    pub fn reversed(&self) -> Self {
        FlowKey {
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }
}

/// Rates of one flow over the standard windows, in kbps (1000 bits/s of IP bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Rates {
    /// Last 10 complete seconds.
    pub kbps_10s: f64,
    /// Last 60 complete seconds.
    pub kbps_1m: f64,
    /// Last 300 complete seconds.
    pub kbps_5m: f64,
    /// Last 600 complete seconds.
    pub kbps_10m: f64,
}

/// Totals, windows and hints of one flow.
#[derive(Clone, Debug)]
#[repr(C)] // what every packet updates first, in one cache line (see `Entry`)
pub struct FlowStats {
    /// Packets seen.
    pub packets: u64,
    /// IP bytes seen (sum of the IP headers' lengths).
    pub bytes: u64,
    /// TCP payload bytes seen (from the IP lengths, whatever was captured).
    pub payload_bytes: u64,
    /// Timestamp of the latest packet, microseconds since the Unix epoch.
    pub last_seen_micros: i64,
    /// A SYN was seen.
    pub syn: bool,
    /// A FIN was seen.
    pub fin: bool,
    /// A RST was seen.
    pub rst: bool,
    windows: SecondWindows,
    /// Timestamp of the first packet, microseconds since the Unix epoch.
    pub first_seen_micros: i64,
    /// HTTP requests seen that carried at least one hint.
    pub hinted_requests: u32,
    /// The latest value of each request hint seen on this flow (client to server direction).
    pub hints: RequestHints,
}

/// One flow in the meter's vector, aligned so that the fields a packet updates (the head of
/// [`FlowStats`]) share one cache line.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
struct Entry {
    stats: FlowStats,
    key: FlowKey,
}

impl FlowStats {
    fn new(ts_micros: i64) -> Self {
        FlowStats {
            packets: 0,
            bytes: 0,
            payload_bytes: 0,
            first_seen_micros: ts_micros,
            last_seen_micros: ts_micros,
            syn: false,
            fin: false,
            rst: false,
            hinted_requests: 0,
            hints: RequestHints::default(),
            windows: SecondWindows::new(second_of(ts_micros)),
        }
    }

    /// The flow's rates at `now_micros` (see [`window`] for the definition).
    pub fn rates(&self, now_micros: i64) -> Rates {
        let [kbps_10s, kbps_1m, kbps_5m, kbps_10m] = self.windows.kbps(second_of(now_micros));
        Rates {
            kbps_10s,
            kbps_1m,
            kbps_5m,
            kbps_10m,
        }
    }

    /// IP bytes in each window of [`WINDOWS_SECS`] at `now_micros`.
    pub fn window_bytes(&self, now_micros: i64) -> [u64; 4] {
        self.windows.window_bytes(second_of(now_micros))
    }

    /// The per-second ring (for finer queries).
    pub fn windows(&self) -> &SecondWindows {
        &self.windows
    }
}

/// A small, fast, non-cryptographic hasher (multiply-rotate, in the style of FxHash) for flow
/// keys. Flow keys come from the network, but the cap on flows bounds what a flood can cost.
#[derive(Clone, Copy, Default)]
pub struct FlowHasher {
    hash: u64,
}

const SEED: u64 = 0xf135_7aea_2e62_a9c5;

impl FlowHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = self.hash.wrapping_add(word).wrapping_mul(SEED);
    }
}

impl Hasher for FlowHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // hashbrown takes the bucket from the low bits and the tag from the top 7 bits:
        // the rotation brings the well-mixed high bits down.
        self.hash.rotate_left(26)
    }
}

type FlowIndex = HashMap<FlowKey, u32, BuildHasherDefault<FlowHasher>>;

/// A flow key whose addresses are both IPv4, packed into one integer: source address,
/// destination address, source port, destination port from the high bits down. Packing is
/// one-to-one, so it compares and hashes as cheaply as an integer.
type V4Key = u128;

type V4Index = HashMap<V4Key, u32, BuildHasherDefault<FlowHasher>>;

#[inline]
fn pack_v4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> V4Key {
    (u128::from(src.to_bits()) << 64)
        | (u128::from(dst.to_bits()) << 32)
        | (u128::from(sport) << 16)
        | u128::from(dport)
}

impl FlowKey {
    /// The packed key of a flow between two IPv4 addresses.
    #[inline]
    fn v4(&self) -> Option<V4Key> {
        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Some(pack_v4(src, self.sport, dst, self.dport)),
            _ => None,
        }
    }
}

/// Meters every directional TCP flow seen.
///
/// Flows live in a dense vector indexed by a hash map, with the last flow used cached (a
/// stream is a run of packets of one flow). Recording never allocates except when a flow is
/// new, its window ring grows, or an HTTP request carries a hint.
///
/// Time never goes backwards in the meter's view: a timestamp older than the latest one seen is
/// taken as the latest. Memory is bounded by a cap on the number of flows: when full, the
/// longest-idle sixteenth of the flows is evicted in one batch.
#[derive(Clone, Debug)]
pub struct Meter {
    /// Flows whose addresses are both IPv4, by their packed key ([`V4Key`]).
    index_v4: V4Index,
    /// Every other flow.
    index: FlowIndex,
    flows: Vec<Entry>,
    /// The last IPv4 flow used.
    cached_v4: Option<(V4Key, u32)>,
    /// The last other flow used.
    cached: Option<(FlowKey, u32)>,
    latest_micros: Option<i64>,
    max_flows: usize,
    evicted: u64,
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

impl Meter {
    /// A meter with the default flow cap ([`DEFAULT_MAX_FLOWS`]).
    pub fn new() -> Self {
        Self::with_max_flows(DEFAULT_MAX_FLOWS)
    }

    /// A meter tracking at most `max_flows` flows (at least 1).
    pub fn with_max_flows(max_flows: usize) -> Self {
        let max_flows = max_flows.clamp(1, u32::MAX as usize);
        Meter {
            index_v4: V4Index::default(),
            index: FlowIndex::default(),
            flows: Vec::new(),
            cached_v4: None,
            cached: None,
            latest_micros: None,
            max_flows,
            evicted: 0,
        }
    }

    /// Records one segment seen at `ts_micros`.
    #[inline]
    pub fn record(&mut self, ts_micros: i64, seg: &TcpSegment<'_>) {
        let ts = match self.latest_micros {
            Some(latest) if ts_micros < latest => latest,
            _ => {
                self.latest_micros = Some(ts_micros);
                ts_micros
            }
        };
        let idx = match (&seg.src, &seg.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let key = pack_v4(*src, seg.sport, *dst, seg.dport);
                match self.cached_v4 {
                    Some((k, i)) if k == key => i as usize,
                    _ => self.lookup_or_insert_v4(key, seg, ts),
                }
            }
            _ => {
                let key = FlowKey::of(seg);
                match self.cached {
                    Some((k, i)) if k == key => i as usize,
                    _ => self.lookup_or_insert(key, ts),
                }
            }
        };
        let flow = &mut self.flows[idx].stats;
        flow.packets += 1;
        flow.bytes += u64::from(seg.ip_len);
        flow.payload_bytes += u64::from(seg.payload_len);
        flow.last_seen_micros = ts;
        flow.syn |= seg.syn;
        flow.fin |= seg.fin;
        flow.rst |= seg.rst;
        flow.windows.add(second_of(ts), seg.ip_len);
        if hints::looks_like_request(seg.payload)
            && let Some(h) = hints::parse_request(seg.payload)
        {
            flow.hints.merge(h);
            flow.hinted_requests = flow.hinted_requests.saturating_add(1);
        }
    }

    #[inline(never)]
    fn lookup_or_insert_v4(&mut self, key: V4Key, seg: &TcpSegment<'_>, ts: i64) -> usize {
        let idx = match self.index_v4.get(&key) {
            Some(&i) => i as usize,
            None => self.insert(FlowKey::of(seg), ts),
        };
        self.cached_v4 = Some((key, idx as u32));
        idx
    }

    #[inline(never)]
    fn lookup_or_insert(&mut self, key: FlowKey, ts: i64) -> usize {
        let idx = match self.index.get(&key) {
            Some(&i) => i as usize,
            None => self.insert(key, ts),
        };
        self.cached = Some((key, idx as u32));
        idx
    }

    /// Adds a new flow (evicting first when full) and returns its index.
    fn insert(&mut self, key: FlowKey, ts: i64) -> usize {
        if self.flows.len() >= self.max_flows {
            self.evict_idle_batch();
        }
        let i = self.flows.len();
        self.flows.push(Entry {
            stats: FlowStats::new(ts),
            key,
        });
        // i < max_flows <= u32::MAX
        self.index_insert(key, i as u32);
        i
    }

    fn index_insert(&mut self, key: FlowKey, i: u32) {
        match key.v4() {
            Some(packed) => self.index_v4.insert(packed, i),
            None => self.index.insert(key, i),
        };
    }

    /// Evicts the longest-idle sixteenth of the flows (at least one).
    fn evict_idle_batch(&mut self) {
        let count = (self.flows.len() / 16).max(1);
        let mut last_seen: Vec<i64> = self
            .flows
            .iter()
            .map(|e| e.stats.last_seen_micros)
            .collect();
        let (_, cutoff, _) = last_seen.select_nth_unstable(count - 1);
        let cutoff = *cutoff;
        let mut removed = 0;
        self.flows.retain(|e| {
            if removed < count && e.stats.last_seen_micros <= cutoff {
                removed += 1;
                false
            } else {
                true
            }
        });
        self.evicted += removed as u64;
        self.reindex();
    }

    fn reindex(&mut self) {
        self.index_v4.clear();
        self.index.clear();
        for i in 0..self.flows.len() {
            let key = self.flows[i].key;
            self.index_insert(key, i as u32);
        }
        self.cached_v4 = None;
        self.cached = None;
    }

    /// Drops the flows whose last packet is more than `idle` before `now_micros` (clamped to
    /// the latest time seen). Returns how many were dropped.
    pub fn expire(&mut self, now_micros: i64, idle: Duration) -> usize {
        let now = self.latest_micros.map_or(now_micros, |l| now_micros.max(l));
        let idle = i64::try_from(idle.as_micros()).unwrap_or(i64::MAX);
        let before = self.flows.len();
        self.flows
            .retain(|e| now.saturating_sub(e.stats.last_seen_micros) <= idle);
        let dropped = before - self.flows.len();
        if dropped > 0 {
            self.reindex();
        }
        dropped
    }

    /// Every flow and its stats, in no particular order.
    pub fn flows(&self) -> impl Iterator<Item = (&FlowKey, &FlowStats)> {
        self.flows.iter().map(|e| (&e.key, &e.stats))
    }

    /// One flow's stats.
    pub fn get(&self, key: &FlowKey) -> Option<&FlowStats> {
        let i = match key.v4() {
            Some(packed) => *self.index_v4.get(&packed)?,
            None => *self.index.get(key)?,
        };
        self.flows.get(i as usize).map(|e| &e.stats)
    }

    /// One flow's rates at `now_micros`; `None` for an unknown flow.
    pub fn rates(&self, key: &FlowKey, now_micros: i64) -> Option<Rates> {
        self.get(key).map(|f| f.rates(now_micros))
    }

    /// The number of flows tracked.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The latest timestamp seen (the meter's "now"), if any packet was recorded.
    pub fn latest_micros(&self) -> Option<i64> {
        self.latest_micros
    }

    /// Flows evicted so far because the flow cap was reached.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The flow cap.
    pub fn max_flows(&self) -> usize {
        self.max_flows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn seg(sport: u16, ip_len: u32) -> TcpSegment<'static> {
        TcpSegment {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            sport,
            dport: 80,
            ip_len,
            payload_len: ip_len.saturating_sub(40),
            payload: &[],
            syn: false,
            fin: false,
            rst: false,
        }
    }

    #[test]
    fn cap_evicts_longest_idle() {
        let mut m = Meter::with_max_flows(32);
        for p in 0..32u16 {
            m.record(i64::from(p) * 1_000_000, &seg(p, 100));
        }
        assert_eq!(m.len(), 32);
        m.record(100_000_000, &seg(1000, 100));
        assert_eq!(m.len(), 32 - 2 + 1);
        assert_eq!(m.evicted(), 2);
        let ports: Vec<u16> = m.flows().map(|(k, _)| k.sport).collect();
        assert!(!ports.contains(&0) && !ports.contains(&1) && ports.contains(&2));
        // index still consistent
        for (k, f) in m.flows() {
            assert_eq!(m.get(k).unwrap().packets, f.packets);
        }
    }

    #[test]
    fn time_is_clamped_and_flows_expire() {
        let mut m = Meter::new();
        m.record(10_000_000, &seg(1, 100));
        m.record(5_000_000, &seg(2, 100));
        let k2 = FlowKey::of(&seg(2, 100));
        assert_eq!(m.get(&k2).unwrap().first_seen_micros, 10_000_000);
        m.record(20_000_000, &seg(1, 100));
        assert_eq!(m.expire(20_000_000, Duration::from_secs(5)), 1);
        assert!(m.get(&k2).is_none());
        assert_eq!(m.get(&FlowKey::of(&seg(1, 100))).unwrap().packets, 2);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn hasher_spreads_keys() {
        use std::hash::BuildHasher;
        let b = BuildHasherDefault::<FlowHasher>::default();
        let mut tops = std::collections::HashSet::new();
        for p in 0..1000u16 {
            tops.insert(b.hash_one(FlowKey::of(&seg(p, 1))) >> 57);
        }
        assert!(tops.len() > 100, "{}", tops.len());
    }
}
