//! The packet classifier: one frame in, one [`Reason`] out.
//!
//! Runs in the kernel (XDP) and on the host (tests, fuzzing) as the same code.
//! Reads only through [`PacketCursor`]; asks the [`Policy`] (BPF maps in the
//! kernel, plain collections on the host) for configuration, lists and the SYN
//! limiter. Order of checks:
//!
//! ```text
//! Ethernet [+ one 802.1Q/802.1ad tag]
//!   ├─ ARP ───────────────────────────────► PassArp
//!   ├─ other ethertype ───────────────────► PassNonIp
//!   └─ IPv4 / IPv6 header sane? ──no──────► DropTruncated / DropIpv{4,6}Header
//!        land? ───────────────────────────► DropLand
//!        IPv6 extension header chain bad? ► DropTruncated / DropIpv6Header
//!        TCP, not a later fragment: header, data offset, ports,
//!          flags ─bad─► Drop* (before the lists: no map lookup for a
//!          malformed flood frame)
//!        bogon? blocked? ──yes────────────► DropBogon / DropBlocked
//!        non-first fragment ──────────────► PassFragment
//!             port policy ────────────────► Pass{ServicePort,AllowedPort,Ephemeral,OpenPolicy}
//!                                           / DropClosedPort
//!             bare SYN over its rate ─────► DropSynFlood
//!        UDP: length, ports, port policy
//!        ICMP/ICMPv6: type policy ────────► PassIcmp / DropIcmpType
//!        other protocol ──────────────────► PassOtherProto
//! ```
//!
//! Lengths come from the IP header and are checked against the frame once;
//! L4 checks are then made against the IP payload length, so padding after
//! the datagram is never mistaken for header bytes.

use crate::cursor::PacketCursor;
use crate::maps::{
    CFG_DROP_CLOSED_PORTS, PORT_TCP_ALLOW, PORT_TCP_SERVICE, PORT_UDP_ALLOW, XdpConfig,
};
use crate::reason::Reason;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPV6_HOPOPTS: u8 = 0;
pub const IPV6_ROUTING: u8 = 43;
pub const IPV6_FRAGMENT: u8 = 44;
pub const IPV6_DSTOPTS: u8 = 60;
/// Extension headers walked before giving up (`PassOtherProto`).
pub const IPV6_MAX_EXT_HEADERS: usize = 4;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_URG: u8 = 0x20;

/// Source address, as seen by the lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceAddr {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// What the classifier asks of its environment. The kernel answers from BPF
/// maps, the host from memory. `None` from a lookup means the map failed,
/// which the classifier turns into `PassInternal` (fail open, counted).
pub trait Policy {
    fn config(&self) -> Option<XdpConfig>;
    /// `PORT_*` flags of a destination port.
    fn port_flags(&self, port: u16) -> Option<u8>;
    fn is_bogon_v4(&self, src: [u8; 4]) -> bool;
    fn is_bogon_v6(&self, src: [u8; 16]) -> bool;
    fn is_blocked_v4(&self, src: [u8; 4]) -> bool;
    fn is_blocked_v6(&self, src: [u8; 16]) -> bool;
    /// Take one SYN from the bucket of `source` (IPv4-mapped address or IPv6
    /// /64, see [`limiter_key`]); false when over the rate.
    fn admit_syn(&mut self, source: [u8; 16], config: &XdpConfig) -> bool;
}

#[inline(always)]
fn be16(hi: u8, lo: u8) -> u16 {
    ((hi as u16) << 8) | lo as u16
}

/// Key of the SYN limiter for a source: IPv4 as `::ffff:a.b.c.d`, IPv6 by its
/// /64 (one subscriber's allocation, so address rotation does not help).
#[inline(always)]
pub fn limiter_key(src: SourceAddr) -> [u8; 16] {
    let mut key = [0u8; 16];
    match src {
        SourceAddr::V4(a) => {
            key[10] = 0xff;
            key[11] = 0xff;
            key[12] = a[0];
            key[13] = a[1];
            key[14] = a[2];
            key[15] = a[3];
        }
        SourceAddr::V6(a) => {
            key[..8].copy_from_slice(&a[..8]);
        }
    }
    key
}

/// Classify one frame.
#[inline(always)]
pub fn classify<C: PacketCursor, P: Policy>(pkt: &C, policy: &mut P) -> Reason {
    let Some(eth) = pkt.read::<ETH_HLEN>(0) else {
        return Reason::DropTruncated;
    };
    let mut ethertype = be16(eth[12], eth[13]);
    let mut l3 = ETH_HLEN;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let Some(tag) = pkt.read::<4>(ETH_HLEN) else {
            return Reason::DropTruncated;
        };
        ethertype = be16(tag[2], tag[3]);
        l3 = ETH_HLEN + 4;
    }
    match ethertype {
        ETH_P_IPV4 => ipv4(pkt, l3, policy),
        ETH_P_IPV6 => ipv6(pkt, l3, policy),
        ETH_P_ARP => Reason::PassArp,
        _ => Reason::PassNonIp,
    }
}

#[inline(always)]
fn ipv4<C: PacketCursor, P: Policy>(pkt: &C, l3: usize, policy: &mut P) -> Reason {
    let Some(h) = pkt.read::<20>(l3) else {
        return Reason::DropTruncated;
    };
    if h[0] >> 4 != 4 {
        return Reason::DropIpv4Header;
    }
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    let total = be16(h[2], h[3]) as usize;
    let available = pkt.len().saturating_sub(l3);
    if ihl < 20 || total < ihl || total > available {
        return Reason::DropIpv4Header;
    }
    let src = [h[12], h[13], h[14], h[15]];
    let dst = [h[16], h[17], h[18], h[19]];
    // Loopback talks to itself; everywhere else src == dst is a LAND attack
    // (and 127/8 from a wire is a bogon).
    if src == dst && src[0] != 127 {
        return Reason::DropLand;
    }
    let fragment = be16(h[6], h[7]) & 0x1fff != 0;
    let l4 = L4 {
        proto: h[9],
        off: l3 + ihl,
        len: total - ihl,
    };
    after_ip(pkt, SourceAddr::V4(src), fragment, l4, policy)
}

/// Where the transport header is: its protocol, offset and the IP payload
/// length left for it.
#[derive(Clone, Copy)]
struct L4 {
    proto: u8,
    off: usize,
    len: usize,
}

/// Everything after a sane IP header, for both families: a malformed TCP
/// header is dropped whoever sent it, judged before the source lists
/// (their two trie lookups would otherwise be most of what a frame of a
/// malformed flood costs, ~80 -> ~40 ns); then the lists; a later fragment
/// passes only after them; then the transport's own policy.
#[inline(always)]
fn after_ip<C: PacketCursor, P: Policy>(
    pkt: &C,
    src: SourceAddr,
    fragment: bool,
    l4: L4,
    policy: &mut P,
) -> Reason {
    if !fragment
        && l4.proto == IPPROTO_TCP
        && let Some(bad) = tcp_header_verdict(pkt, l4.off, l4.len)
    {
        return bad;
    }
    let (bogon, v6) = match src {
        SourceAddr::V4(a) => (policy.is_bogon_v4(a), false),
        SourceAddr::V6(a) => (policy.is_bogon_v6(a), true),
    };
    if bogon {
        return Reason::DropBogon;
    }
    let blocked = match src {
        SourceAddr::V4(a) => policy.is_blocked_v4(a),
        SourceAddr::V6(a) => policy.is_blocked_v6(a),
    };
    if blocked {
        return Reason::DropBlocked;
    }
    if fragment {
        return Reason::PassFragment;
    }
    let icmp_proto = if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
    match l4.proto {
        IPPROTO_TCP => tcp(pkt, l4.off, limiter_key(src), policy),
        IPPROTO_UDP => udp(pkt, l4.off, l4.len, policy),
        p if p == icmp_proto => icmp(pkt, l4.off, l4.len, v6, policy),
        _ => Reason::PassOtherProto,
    }
}

#[inline(always)]
fn ipv6<C: PacketCursor, P: Policy>(pkt: &C, l3: usize, policy: &mut P) -> Reason {
    let Some(h) = pkt.read::<40>(l3) else {
        return Reason::DropTruncated;
    };
    if h[0] >> 4 != 6 {
        return Reason::DropIpv6Header;
    }
    let payload = be16(h[4], h[5]) as usize;
    let available = pkt.len().saturating_sub(l3 + 40);
    if payload > available {
        return Reason::DropIpv6Header;
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&h[24..40]);
    if src == dst && !is_v6_loopback(&src) {
        return Reason::DropLand;
    }
    // Walk the extension header chain so a TCP SYN wrapped in destination
    // options still meets the port policy and the limiter. What is wrong
    // with the chain or a TCP header on its own is dropped before the
    // source lists (no trie lookup for a malformed flood frame); a later
    // fragment passes only after them.
    let mut next = h[6];
    let mut off = l3 + 40;
    let mut remaining = payload;
    let mut fragment = false;
    for _ in 0..IPV6_MAX_EXT_HEADERS {
        match next {
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS => {
                let Some(e) = pkt.read::<2>(off) else {
                    return Reason::DropTruncated;
                };
                let len = (e[1] as usize + 1) * 8;
                if len > remaining {
                    return Reason::DropIpv6Header;
                }
                next = e[0];
                off += len;
                remaining -= len;
            }
            IPV6_FRAGMENT => {
                let Some(e) = pkt.read::<8>(off) else {
                    return Reason::DropTruncated;
                };
                if remaining < 8 {
                    return Reason::DropIpv6Header;
                }
                if be16(e[2], e[3]) & 0xfff8 != 0 {
                    fragment = true;
                    break;
                }
                next = e[0];
                off += 8;
                remaining -= 8;
            }
            _ => break,
        }
    }
    let l4 = L4 {
        proto: next,
        off,
        len: remaining,
    };
    after_ip(pkt, SourceAddr::V6(src), fragment, l4, policy)
}

#[inline(always)]
fn is_v6_loopback(a: &[u8; 16]) -> bool {
    let mut i = 0;
    while i < 15 {
        if a[i] != 0 {
            return false;
        }
        i += 1;
    }
    a[15] == 1
}

/// Flag sets no conforming TCP sends (RFC 9293 §3.1 and the scans that abuse them).
#[inline(always)]
pub fn tcp_flags_verdict(flags: u8) -> Option<Reason> {
    if flags & 0x3f == 0 {
        return Some(Reason::DropTcpNullFlags);
    }
    if flags & (TCP_FIN | TCP_PSH | TCP_URG) == TCP_FIN | TCP_PSH | TCP_URG {
        return Some(Reason::DropTcpXmas);
    }
    if flags & (TCP_SYN | TCP_FIN) == TCP_SYN | TCP_FIN {
        return Some(Reason::DropTcpSynFin);
    }
    if flags & (TCP_SYN | TCP_RST) == TCP_SYN | TCP_RST {
        return Some(Reason::DropTcpSynRst);
    }
    if flags & TCP_ACK == 0 && flags & (TCP_FIN | TCP_PSH | TCP_URG) != 0 {
        return Some(Reason::DropTcpNoAck);
    }
    None
}

#[inline(always)]
fn in_ephemeral(port: u16, config: &XdpConfig) -> bool {
    port >= config.ephemeral_lo && port <= config.ephemeral_hi
}

#[inline(always)]
fn tcp<C: PacketCursor, P: Policy>(pkt: &C, l4: usize, key: [u8; 16], policy: &mut P) -> Reason {
    // The header itself was judged (`tcp_header_verdict`) before the
    // source lists, by both callers.
    let Some(t) = pkt.read::<20>(l4) else {
        return Reason::DropTruncated;
    };
    let dst_port = be16(t[2], t[3]);
    let flags = t[13];
    // A bare SYN opens a connection; anything with ACK belongs to one.
    let bare_syn = flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    let Some(config) = policy.config() else {
        return Reason::PassInternal;
    };
    let config = &config;
    let Some(ports) = policy.port_flags(dst_port) else {
        return Reason::PassInternal;
    };
    let pass = if ports & PORT_TCP_SERVICE != 0 {
        Reason::PassServicePort
    } else if ports & PORT_TCP_ALLOW != 0 {
        Reason::PassAllowedPort
    } else if !bare_syn && in_ephemeral(dst_port, config) {
        Reason::PassEphemeral
    } else if config.flags & CFG_DROP_CLOSED_PORTS != 0 {
        return Reason::DropClosedPort;
    } else {
        Reason::PassOpenPolicy
    };
    if bare_syn && config.syn_interval_ns != 0 && !policy.admit_syn(key, config) {
        return Reason::DropSynFlood;
    }
    pass
}

/// What is wrong with a TCP header on its own (no policy, no map): too
/// short, a bad data offset, a zero port, an impossible flag combination.
#[inline(always)]
fn tcp_header_verdict<C: PacketCursor>(pkt: &C, l4: usize, l4_len: usize) -> Option<Reason> {
    let Some(t) = pkt.read::<20>(l4) else {
        return Some(Reason::DropTruncated);
    };
    if l4_len < 20 {
        return Some(Reason::DropTruncated);
    }
    let data_offset = ((t[12] >> 4) as usize) * 4;
    if data_offset < 20 || data_offset > l4_len {
        return Some(Reason::DropTcpDataOffset);
    }
    if be16(t[0], t[1]) == 0 || be16(t[2], t[3]) == 0 {
        return Some(Reason::DropPortZero);
    }
    tcp_flags_verdict(t[13])
}

#[inline(always)]
fn udp<C: PacketCursor, P: Policy>(pkt: &C, l4: usize, l4_len: usize, policy: &mut P) -> Reason {
    let Some(u) = pkt.read::<8>(l4) else {
        return Reason::DropTruncated;
    };
    if l4_len < 8 {
        return Reason::DropTruncated;
    }
    let length = be16(u[4], u[5]) as usize;
    if length < 8 || length > l4_len {
        return Reason::DropUdpHeader;
    }
    let src_port = be16(u[0], u[1]);
    let dst_port = be16(u[2], u[3]);
    if src_port == 0 || dst_port == 0 {
        return Reason::DropPortZero;
    }
    let Some(config) = policy.config() else {
        return Reason::PassInternal;
    };
    let config = &config;
    let Some(ports) = policy.port_flags(dst_port) else {
        return Reason::PassInternal;
    };
    if ports & PORT_UDP_ALLOW != 0 {
        Reason::PassAllowedPort
    } else if in_ephemeral(dst_port, config) {
        Reason::PassEphemeral
    } else if config.flags & CFG_DROP_CLOSED_PORTS != 0 {
        Reason::DropClosedPort
    } else {
        Reason::PassOpenPolicy
    }
}

/// ICMP types a front node needs: echo, errors (with "fragmentation needed" /
/// "packet too big" for PMTU discovery), and for ICMPv6 neighbour discovery
/// and MLD. Everything else (redirects, timestamps, router renumbering...) is
/// dropped when the port policy is closed.
#[inline(always)]
pub fn icmp_type_needed(icmp_type: u8, v6: bool) -> bool {
    if v6 {
        matches!(icmp_type, 1..=4 | 128..=137 | 143)
    } else {
        matches!(icmp_type, 0 | 3 | 8 | 11 | 12)
    }
}

#[inline(always)]
fn icmp<C: PacketCursor, P: Policy>(
    pkt: &C,
    l4: usize,
    l4_len: usize,
    v6: bool,
    policy: &P,
) -> Reason {
    let Some(i) = pkt.read::<8>(l4) else {
        return Reason::DropTruncated;
    };
    if l4_len < 8 {
        return Reason::DropTruncated;
    }
    if icmp_type_needed(i[0], v6) {
        return Reason::PassIcmp;
    }
    let Some(config) = policy.config() else {
        return Reason::PassInternal;
    };
    if config.flags & CFG_DROP_CLOSED_PORTS == 0 {
        Reason::PassIcmp
    } else {
        Reason::DropIcmpType
    }
}
