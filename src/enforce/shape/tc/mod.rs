//! Linux traffic control over rtnetlink: the [`Shaper`] `run` uses.
//!
//! While something is throttled, the interface's root qdisc is an HTB with handle
//! [`MAJOR`]`:` ("SW", recognisable after a crash) whose unclassified traffic goes out through
//! HTB's direct queue, unshaped; each throttle is an HTB class `5357:<id>` (rate = ceil) with an
//! byte-limited FIFO leaf, and each of its connections one u32 filter (TCP, source address
//! and port, destination address and port) sending it to that class. (u32 rather than flower:
//! every kernel with HTB has it; flower is often left out.) When the last throttle is lifted
//! the root qdisc is deleted and the kernel puts its default back. A root qdisc the owner
//! configured is never replaced.
//!
//! HTB's options are not in netlink-packet-route; they are encoded here from the kernel's
//! `include/uapi/linux/pkt_sched.h`: `struct tc_htb_glob` (TCA_HTB_INIT), `struct tc_htb_opt`
//! with two `struct tc_ratespec` (TCA_HTB_PARMS), and TCA_HTB_DIRECT_QLEN.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use netlink_packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{
    TcAttribute, TcFilterU32Option, TcHandle, TcHeader, TcMessage, TcOption, TcU32Key,
    TcU32Selector, TcU32SelectorFlags,
};
use netlink_sys::{Socket, SocketAddr as NlAddr, protocols::NETLINK_ROUTE};

use super::{Conn, ShapeError, Shaper, ThrottleId};

mod apply;
use apply::{class_handle, filter_info};

/// The major number of streamwarden's root qdisc: "SW".
pub const MAJOR: u16 = 0x5357;

const TC_H_ROOT: u32 = 0xFFFF_FFFF;
/// include/uapi/linux/rtnetlink.h
const TCA_OPTIONS: u16 = 2;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
/// Filter priorities: one per protocol (filters of one priority share their protocol).
const PRIO_V4: u32 = 1;
const PRIO_V6: u32 = 2;

// include/uapi/linux/pkt_sched.h
const TCA_HTB_PARMS: u16 = 1;
const TCA_HTB_INIT: u16 = 2;
const TCA_HTB_DIRECT_QLEN: u16 = 5;
const TC_HTB_PROTOVER: u32 = 3;
const TC_LINKLAYER_ETHERNET: u8 = 1;
/// HTB's buffer is in psched ticks of 64 ns (PSCHED_SHIFT = 6).
const PSCHED_TICK_NS: u64 = 64;
/// Packets the direct (unshaped) queue holds: traffic that is not throttled.
const DIRECT_QLEN: u32 = 1000;

/// What the kernel was told and what it answered, for one request.
type Reply = Result<Vec<TcMessage>, ShapeError>;

/// Linux traffic control on one interface.
pub struct TcShaper {
    interface: String,
    ifindex: i32,
    state: Mutex<State>,
    /// Opening removed a root a previous run left.
    removed_leftover: bool,
}

struct State {
    socket: Socket,
    seq: u32,
    /// The root HTB is ours and in place.
    installed: bool,
    classes: BTreeMap<ThrottleId, Class>,
}

struct Class {
    rate: u64,
    filters: BTreeMap<Conn, u32>,
}

impl std::fmt::Debug for TcShaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcShaper")
            .field("interface", &self.interface)
            .finish()
    }
}

/// The root qdisc found on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub kind: String,
    pub handle: u32,
}

impl Root {
    fn is_ours(&self) -> bool {
        self.kind == "htb" && self.handle >> 16 == u32::from(MAJOR)
    }
    /// The kernel's own (handle 0: noqueue, pfifo_fast, fq_codel, mq...).
    fn is_default(&self) -> bool {
        self.handle == 0
    }
}

impl TcShaper {
    /// Opens traffic control on `interface`: checks the privilege, removes what a crashed
    /// run left (a root HTB `5357:`), and refuses an interface whose root qdisc the owner
    /// configured.
    pub fn open(interface: &str) -> Result<Self, ShapeError> {
        let ifindex = nix::net::if_::if_nametoindex(interface)
            .map_err(|_| ShapeError::NoInterface(interface.to_string()))?;
        let ifindex =
            i32::try_from(ifindex).map_err(|_| ShapeError::NoInterface(interface.to_string()))?;
        if !crate::capture::privileges::has_net_admin() {
            return Err(ShapeError::NotPermitted(interface.to_string()));
        }
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| {
            ShapeError::netlink(interface, "open a netlink socket", e.raw_os_error())
        })?;
        socket.bind_auto().map_err(|e| {
            ShapeError::netlink(interface, "bind the netlink socket", e.raw_os_error())
        })?;
        socket.connect(&NlAddr::new(0, 0)).map_err(|e| {
            ShapeError::netlink(interface, "connect the netlink socket", e.raw_os_error())
        })?;
        let shaper = TcShaper {
            interface: interface.to_string(),
            ifindex,
            state: Mutex::new(State {
                socket,
                seq: 0,
                installed: false,
                classes: BTreeMap::new(),
            }),
            removed_leftover: false,
        };
        let mut shaper = shaper;
        match shaper.root()? {
            Some(root) if root.is_ours() => {
                tracing::warn!(
                    interface,
                    "removing the throttle qdisc a previous run left behind (root htb {MAJOR:x}:)"
                );
                shaper.delete_root()?;
                shaper.removed_leftover = true;
            }
            Some(root) if !root.is_default() => {
                return Err(ShapeError::ForeignRootQdisc {
                    interface: interface.to_string(),
                    kind: root.kind,
                    handle: format!("{:x}:", root.handle >> 16),
                });
            }
            _ => {}
        }
        Ok(shaper)
    }

    /// Whether opening removed a root a previous run left.
    pub fn removed_leftover(&self) -> bool {
        self.removed_leftover
    }

    /// The interface's root qdisc, when it has one listed.
    pub fn root(&self) -> Result<Option<Root>, ShapeError> {
        let mut msg = TcMessage::with_index(0);
        msg.header.index = 0;
        let all = self.request(
            RouteNetlinkMessage::GetQueueDiscipline(msg),
            NLM_F_REQUEST | NLM_F_DUMP,
            true,
            "list qdiscs",
        )?;
        Ok(all
            .into_iter()
            .filter(|m| m.header.index == self.ifindex && u32::from(m.header.parent) == TC_H_ROOT)
            .map(|m| Root {
                kind: m
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        TcAttribute::Kind(k) => Some(k.clone()),
                        _ => None,
                    })
                    .unwrap_or_default(),
                handle: u32::from(m.header.handle),
            })
            .next())
    }

    fn header(&self, handle: u32, parent: u32, info: u32) -> TcHeader {
        TcHeader {
            index: self.ifindex,
            handle: TcHandle::from(handle),
            parent: TcHandle::from(parent),
            info,
            ..TcHeader::default()
        }
    }

    fn message(
        &self,
        handle: u32,
        parent: u32,
        info: u32,
        attributes: Vec<TcAttribute>,
    ) -> TcMessage {
        TcMessage::from_parts(self.header(handle, parent, info), attributes)
    }

    /// Sends one request and reads its answer: the messages of a dump, or the ack.
    /// (NLM_F_DUMP shares its bits with NLM_F_EXCL: a dump is said by `dump`.)
    fn request(&self, msg: RouteNetlinkMessage, flags: u16, dump: bool, what: &str) -> Reply {
        let mut state = self
            .state
            .lock()
            .map_err(|_| ShapeError::netlink(&self.interface, what, None))?;
        state.seq = state.seq.wrapping_add(1);
        let seq = state.seq;
        let mut header = NetlinkHeader::default();
        header.flags = flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        state
            .socket
            .send(&buf, 0)
            .map_err(|e| ShapeError::netlink(&self.interface, what, e.raw_os_error()))?;
        let mut out = Vec::new();
        loop {
            let (data, _) = state
                .socket
                .recv_from_full()
                .map_err(|e| ShapeError::netlink(&self.interface, what, e.raw_os_error()))?;
            let mut offset = 0;
            while offset < data.len() {
                let bytes = &data[offset..];
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).map_err(|e| {
                        ShapeError::Netlink {
                            interface: self.interface.clone(),
                            what: what.to_string(),
                            why: format!("an answer that does not parse: {e}"),
                        }
                    })?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Err(ShapeError::Netlink {
                        interface: self.interface.clone(),
                        what: what.to_string(),
                        why: "an empty netlink message".into(),
                    });
                }
                offset += (len + 3) & !3;
                if reply.header.sequence_number != seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(ShapeError::netlink(
                                &self.interface,
                                what,
                                Some(-code.get()),
                            )),
                        };
                    }
                    NetlinkPayload::InnerMessage(
                        RouteNetlinkMessage::NewQueueDiscipline(m)
                        | RouteNetlinkMessage::NewTrafficClass(m)
                        | RouteNetlinkMessage::NewTrafficFilter(m),
                    ) => out.push(m),
                    _ => {}
                }
            }
        }
    }

    fn change(&self, msg: RouteNetlinkMessage, flags: u16, what: &str) -> Result<(), ShapeError> {
        self.request(msg, NLM_F_REQUEST | flags, false, what)
            .map(|_| ())
    }

    fn install_root(&self) -> Result<(), ShapeError> {
        let mut glob = Vec::with_capacity(20);
        // struct tc_htb_glob { version, rate2quantum, defcls, debug, direct_pkts }: defcls 0
        // sends unclassified traffic to the direct queue, unshaped.
        for v in [TC_HTB_PROTOVER, 10, 0, 0, 0] {
            glob.extend_from_slice(&v.to_ne_bytes());
        }
        let options = vec![
            TcOption::Other(DefaultNla::new(TCA_HTB_INIT, glob)),
            TcOption::Other(DefaultNla::new(
                TCA_HTB_DIRECT_QLEN,
                DIRECT_QLEN.to_ne_bytes().to_vec(),
            )),
        ];
        let msg = self.message(
            u32::from(MAJOR) << 16,
            TC_H_ROOT,
            0,
            vec![
                TcAttribute::Kind("htb".into()),
                TcAttribute::Options(options),
            ],
        );
        self.change(
            RouteNetlinkMessage::NewQueueDiscipline(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            "add the root htb qdisc",
        )
    }

    fn delete_root(&self) -> Result<(), ShapeError> {
        let msg = self.message(u32::from(MAJOR) << 16, TC_H_ROOT, 0, Vec::new());
        self.change(
            RouteNetlinkMessage::DelQueueDiscipline(msg),
            0,
            "delete the root htb qdisc",
        )
    }

    fn set_class(&self, id: ThrottleId, rate: u64, new: bool) -> Result<(), ShapeError> {
        let rate = u32::try_from(rate.max(1)).unwrap_or(u32::MAX);
        // Room for a full segmentation-offload packet, and at least 20 ms at the rate.
        let burst = u64::from(rate / 50).max(64 * 1024 + 1600);
        let buffer_ticks = u32::try_from(burst * 1_000_000_000 / u64::from(rate) / PSCHED_TICK_NS)
            .unwrap_or(u32::MAX);
        // struct tc_ratespec { cell_log u8, linklayer u8, overhead u16, cell_align i16,
        // mpu u16, rate u32 }: linklayer ethernet, so no rate table is needed.
        let ratespec = |out: &mut Vec<u8>| {
            out.push(0);
            out.push(TC_LINKLAYER_ETHERNET);
            out.extend_from_slice(&0u16.to_ne_bytes());
            out.extend_from_slice(&0i16.to_ne_bytes());
            out.extend_from_slice(&0u16.to_ne_bytes());
            out.extend_from_slice(&rate.to_ne_bytes());
        };
        // struct tc_htb_opt { rate, ceil, buffer, cbuffer, quantum, level, prio }.
        let mut opt = Vec::with_capacity(44);
        ratespec(&mut opt);
        ratespec(&mut opt);
        for v in [buffer_ticks, buffer_ticks, 0, 0, 0] {
            opt.extend_from_slice(&v.to_ne_bytes());
        }
        let msg = self.message(
            class_handle(id),
            u32::from(MAJOR) << 16,
            0,
            vec![
                TcAttribute::Kind("htb".into()),
                TcAttribute::Options(vec![TcOption::Other(DefaultNla::new(TCA_HTB_PARMS, opt))]),
            ],
        );
        let (flags, what) = if new {
            (NLM_F_CREATE | NLM_F_EXCL, "add a throttle class")
        } else {
            (NLM_F_REPLACE, "change a throttle's rate")
        };
        self.change(RouteNetlinkMessage::NewTrafficClass(msg), flags, what)?;
        if new {
            // A byte-limited FIFO under the class (HTB's default leaf counts packets by the
            // interface's txqueuelen): about 200 ms at the rate, and room for offloaded
            // segments. struct tc_fifo_qopt { limit u32 } is TCA_OPTIONS itself, not nested.
            let limit = u32::try_from((u64::from(rate) / 5).max(3 * 65_536)).unwrap_or(u32::MAX);
            let leaf = self.message(
                0,
                class_handle(id),
                0,
                vec![
                    TcAttribute::Kind("bfifo".into()),
                    TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, limit.to_ne_bytes().to_vec())),
                ],
            );
            // Replaces the class's default leaf.
            self.change(
                RouteNetlinkMessage::NewQueueDiscipline(leaf),
                NLM_F_CREATE | NLM_F_REPLACE,
                "add a throttle class's queue",
            )?;
        }
        Ok(())
    }

    fn delete_class(&self, id: ThrottleId) -> Result<(), ShapeError> {
        let msg = self.message(class_handle(id), u32::from(MAJOR) << 16, 0, Vec::new());
        self.change(
            RouteNetlinkMessage::DelTrafficClass(msg),
            0,
            "delete a throttle class",
        )
    }

    /// A u32 filter (the classifier every kernel has) for one connection: the protocol, both
    /// addresses and both ports, at their fixed offsets (an IPv4 header without options, an
    /// IPv6 header without extension headers, as Plex's TCP sends them). Returns the handle the
    /// kernel gave it.
    fn add_filter(&self, id: ThrottleId, conn: &Conn) -> Result<u32, ShapeError> {
        let key = |off: i32, mask: u32, val: u32| {
            let mut k = TcU32Key::default();
            k.mask = mask;
            k.val = val;
            k.off = off;
            k
        };
        let ports = (u32::from(conn.server.port()) << 16) | u32::from(conn.client.port());
        let (prio, proto, keys) = match (conn.server, conn.client) {
            (SocketAddr::V4(s), SocketAddr::V4(c)) => (
                PRIO_V4,
                ETH_P_IP,
                vec![
                    key(8, 0x00ff_0000, u32::from(IPPROTO_TCP) << 16),
                    key(12, u32::MAX, u32::from(*s.ip())),
                    key(16, u32::MAX, u32::from(*c.ip())),
                    key(20, u32::MAX, ports),
                ],
            ),
            (SocketAddr::V6(s), SocketAddr::V6(c)) => {
                let mut keys = vec![key(4, 0x0000_ff00, u32::from(IPPROTO_TCP) << 8)];
                for (base, ip) in [(8, s.ip()), (24, c.ip())] {
                    for (i, word) in ip.octets().chunks_exact(4).enumerate() {
                        let w = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
                        keys.push(key(base + 4 * i as i32, u32::MAX, w));
                    }
                }
                keys.push(key(40, u32::MAX, ports));
                (PRIO_V6, ETH_P_IPV6, keys)
            }
            (s, c) => {
                return Err(ShapeError::Netlink {
                    interface: self.interface.clone(),
                    what: "add a connection filter".into(),
                    why: format!("{s} and {c} are not of one IP version"),
                });
            }
        };
        let mut selector = TcU32Selector::default();
        selector.flags = TcU32SelectorFlags::Terminal;
        selector.nkeys = u8::try_from(keys.len()).unwrap_or(u8::MAX);
        selector.keys = keys;
        let msg = self.message(
            0,
            u32::from(MAJOR) << 16,
            filter_info(prio, proto),
            vec![
                TcAttribute::Kind("u32".into()),
                TcAttribute::Options(vec![
                    TcOption::U32(TcFilterU32Option::ClassId(TcHandle::from(class_handle(id)))),
                    TcOption::U32(TcFilterU32Option::Selector(selector)),
                ]),
            ],
        );
        // NLM_F_ECHO: the kernel answers with the filter as made, and so its handle.
        let made = self.request(
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
            false,
            "add a connection filter",
        )?;
        made.iter()
            .map(|m| u32::from(m.header.handle))
            .find(|h| *h != 0)
            .ok_or_else(|| ShapeError::Netlink {
                interface: self.interface.clone(),
                what: "add a connection filter".into(),
                why: "the kernel did not say which handle it gave the filter".into(),
            })
    }

    fn delete_filter(&self, conn: &Conn, handle: u32) -> Result<(), ShapeError> {
        let (prio, proto) = match conn.server.ip() {
            IpAddr::V4(_) => (PRIO_V4, ETH_P_IP),
            IpAddr::V6(_) => (PRIO_V6, ETH_P_IPV6),
        };
        let msg = self.message(
            handle,
            u32::from(MAJOR) << 16,
            filter_info(prio, proto),
            vec![TcAttribute::Kind("u32".into())],
        );
        self.change(
            RouteNetlinkMessage::DelTrafficFilter(msg),
            0,
            "delete a connection filter",
        )
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, ShapeError> {
        self.state
            .lock()
            .map_err(|_| ShapeError::netlink(&self.interface, "use the shaper", None))
    }
}

impl Drop for TcShaper {
    fn drop(&mut self) {
        if let Err(e) = self.release_all() {
            tracing::error!("cannot restore {}'s queueing: {e}", self.interface);
        }
    }
}
