//! Crafted frames with the verdict each must get, shared by the host unit
//! tests and the in-kernel veth test (which sends the very same bytes and
//! reads the counters), plus the policy they assume.
//!
//! Addresses: the node is 10.200.0.1 / fd00:200::1, the peer 10.200.0.9 /
//! fd00:200::9 — private addresses that only exist inside the test's network
//! namespaces.

use alloc::vec;
use alloc::vec::Vec;

use crate::classify::*;
use crate::gcra::gcra_params;
use crate::host::HostPolicy;
use crate::maps::{
    CFG_DROP_CLOSED_PORTS, PORT_TCP_ALLOW, PORT_TCP_SERVICE, PORT_UDP_ALLOW, XdpConfig,
};
use crate::prefix::{DEFAULT_BOGONS_V4, DEFAULT_BOGONS_V6, Prefix};
use crate::reason::Reason;

pub const NODE_V4: [u8; 4] = [10, 200, 0, 1];
pub const PEER_V4: [u8; 4] = [10, 200, 0, 9];
pub const NODE_V6: [u8; 16] = [0xfd, 0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const PEER_V6: [u8; 16] = [0xfd, 0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
/// In the standard policy's blocklist.
pub const BLOCKED_V4: [u8; 4] = [192, 168, 77, 5];
pub const BLOCKED_V6: [u8; 16] = [0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x09];
pub const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

pub const SERVICE_PORTS: [u16; 2] = [80, 443];
pub const ALLOW_TCP: [u16; 1] = [22];
pub const ALLOW_UDP: [u16; 1] = [5353];
pub const EPHEMERAL: (u16, u16) = (32768, 60999);
pub const SYN_RATE: u32 = 100;
pub const SYN_BURST: u32 = 50;

/// The policy the fixtures assume. The kernel test writes the same policy as
/// a portier config (see `userspace/tests/xdp_netns.rs`).
pub fn standard_policy() -> HostPolicy {
    let (interval, tolerance) = gcra_params(SYN_RATE, SYN_BURST);
    let mut p = HostPolicy::new(XdpConfig {
        flags: CFG_DROP_CLOSED_PORTS,
        ephemeral_lo: EPHEMERAL.0,
        ephemeral_hi: EPHEMERAL.1,
        syn_interval_ns: interval,
        syn_tolerance_ns: tolerance,
    });
    for port in SERVICE_PORTS {
        p.ports[port as usize] |= PORT_TCP_SERVICE;
    }
    for port in ALLOW_TCP {
        p.ports[port as usize] |= PORT_TCP_ALLOW;
    }
    for port in ALLOW_UDP {
        p.ports[port as usize] |= PORT_UDP_ALLOW;
    }
    p.bogon_v4 = DEFAULT_BOGONS_V4
        .iter()
        .filter_map(|&(a, l)| Prefix::new(a, l))
        .collect();
    p.bogon_v6 = DEFAULT_BOGONS_V6
        .iter()
        .filter_map(|&(a, l)| Prefix::new(a, l))
        .collect();
    p.block_v4 = vec![Prefix::new(BLOCKED_V4, 24).expect("valid")];
    p.block_v6 = vec![Prefix::new(BLOCKED_V6, 16).expect("valid")];
    p
}

/// A named frame and the verdict the standard policy must give it.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub name: &'static str,
    pub frame: Vec<u8>,
    pub expect: Reason,
}

// ---- frame builders -------------------------------------------------------

pub fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&NODE_MAC);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub fn vlan(vid: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(4 + payload.len());
    inner.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    inner.extend_from_slice(&ethertype.to_be_bytes());
    inner.extend_from_slice(payload);
    ethernet(ETH_P_8021Q, &inner)
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in bytes.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += word as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 header (IHL 5, valid checksum) + payload.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// IPv6 header + payload (payload length from `payload`).
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(next);
    h.push(64);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// TCP header without options; `data_offset` in 32-bit words.
pub fn tcp(src_port: u16, dst_port: u16, flags: u8, data_offset: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&src_port.to_be_bytes());
    t[2..4].copy_from_slice(&dst_port.to_be_bytes());
    t[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    t[12] = data_offset << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t
}

pub fn udp(src_port: u16, dst_port: u16, data: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&src_port.to_be_bytes());
    u[2..4].copy_from_slice(&dst_port.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(data);
    u
}

pub fn icmp(icmp_type: u8, code: u8) -> Vec<u8> {
    vec![icmp_type, code, 0, 0, 0, 0, 0, 0]
}

pub fn v4_frame(src: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    ethernet(ETH_P_IPV4, &ipv4(src, NODE_V4, proto, l4))
}

pub fn v6_frame(src: [u8; 16], next: u8, l4: &[u8]) -> Vec<u8> {
    ethernet(ETH_P_IPV6, &ipv6(src, NODE_V6, next, l4))
}

/// A bare SYN from `src` to `port` (the flood test sends these).
pub fn syn_v4(src: [u8; 4], src_port: u16, port: u16) -> Vec<u8> {
    v4_frame(src, IPPROTO_TCP, &tcp(src_port, port, TCP_SYN, 5))
}

fn arp_request() -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0, 6, 4, 0, 1];
    a.extend_from_slice(&PEER_MAC);
    a.extend_from_slice(&PEER_V4);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&NODE_V4);
    let mut f = ethernet(ETH_P_ARP, &a);
    f[0..6].copy_from_slice(&[0xff; 6]);
    f
}

fn set(mut frame: Vec<u8>, offset: usize, byte: u8) -> Vec<u8> {
    if let Some(b) = frame.get_mut(offset) {
        *b = byte;
    }
    frame
}

/// Every verdict the program can reach with the standard policy and a fresh
/// limiter, one frame or more each. (`DropSynFlood`, `PassOpenPolicy` and
/// `PassInternal` depend on state or another policy: see the unit tests.)
pub fn table() -> Vec<Fixture> {
    use Reason::*;
    let syn80 = tcp(40001, 80, TCP_SYN, 5);
    let mut t: Vec<Fixture> = Vec::new();
    let mut add = |name: &'static str, frame: Vec<u8>, expect: Reason| {
        t.push(Fixture {
            name,
            frame,
            expect,
        })
    };

    add("arp request", arp_request(), PassArp);
    add("lldp frame", ethernet(0x88cc, &[0u8; 46]), PassNonIp);
    add(
        "double vlan tag",
        vlan(10, ETH_P_8021Q, &[0u8; 46]),
        PassNonIp,
    );
    add(
        "runt ethernet",
        ethernet(ETH_P_IPV4, &[])[..10].to_vec(),
        DropTruncated,
    );
    add(
        "truncated vlan tag",
        ethernet(ETH_P_8021Q, &[0, 10]),
        DropTruncated,
    );
    add(
        "truncated ipv4 header",
        ethernet(ETH_P_IPV4, &[0x45; 12]),
        DropTruncated,
    );

    let good = v4_frame(PEER_V4, IPPROTO_TCP, &syn80);
    add(
        "ipv4 version 5",
        set(good.clone(), 14, 0x55),
        DropIpv4Header,
    );
    add("ipv4 ihl 4", set(good.clone(), 14, 0x44), DropIpv4Header);
    add(
        "ipv4 ihl past total length",
        set(good.clone(), 14, 0x4f),
        DropIpv4Header,
    );
    let mut long = good.clone();
    long[16..18].copy_from_slice(&200u16.to_be_bytes());
    add("ipv4 total length past frame", long, DropIpv4Header);
    let mut short = good.clone();
    short[16..18].copy_from_slice(&16u16.to_be_bytes());
    add("ipv4 total length below ihl", short, DropIpv4Header);

    let truncated_tcp = &syn80[..12];
    add(
        "truncated tcp header",
        v4_frame(PEER_V4, IPPROTO_TCP, truncated_tcp),
        DropTruncated,
    );
    // The frame carries 20 TCP bytes but the IP header says only 10 of them are the segment.
    let mut padded = v4_frame(PEER_V4, IPPROTO_TCP, &syn80);
    padded[16..18].copy_from_slice(&30u16.to_be_bytes());
    add("tcp header in ethernet padding", padded, DropTruncated);
    add(
        "tcp data offset 4",
        v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 80, TCP_SYN, 4)),
        DropTcpDataOffset,
    );
    add(
        "tcp data offset past segment",
        v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 80, TCP_SYN, 8)),
        DropTcpDataOffset,
    );
    add(
        "tcp syn+fin",
        v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 80, TCP_SYN | TCP_FIN, 5)),
        DropTcpSynFin,
    );
    add(
        "tcp syn+rst",
        v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 80, TCP_SYN | TCP_RST, 5)),
        DropTcpSynRst,
    );
    add(
        "tcp no flags",
        v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 80, 0, 5)),
        DropTcpNullFlags,
    );
    add(
        "tcp fin without ack",
        v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 80, TCP_FIN, 5)),
        DropTcpNoAck,
    );
    add(
        "tcp psh without ack",
        v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 80, TCP_PSH, 5)),
        DropTcpNoAck,
    );
    add(
        "tcp urg without ack",
        v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 80, TCP_URG, 5)),
        DropTcpNoAck,
    );
    add(
        "tcp xmas",
        v4_frame(
            PEER_V4,
            IPPROTO_TCP,
            &tcp(40001, 80, TCP_FIN | TCP_PSH | TCP_URG, 5),
        ),
        DropTcpXmas,
    );
    add(
        "tcp xmas with ack",
        v4_frame(
            PEER_V4,
            IPPROTO_TCP,
            &tcp(40001, 80, TCP_FIN | TCP_PSH | TCP_URG | TCP_ACK, 5),
        ),
        DropTcpXmas,
    );
    let mut bad_udp = udp(40001, 5353, &[1, 2, 3, 4]);
    bad_udp[4..6].copy_from_slice(&40u16.to_be_bytes());
    add(
        "udp length past datagram",
        v4_frame(PEER_V4, IPPROTO_UDP, &bad_udp),
        DropUdpHeader,
    );
    let mut tiny_udp = udp(40001, 5353, &[]);
    tiny_udp[4..6].copy_from_slice(&4u16.to_be_bytes());
    add(
        "udp length below header",
        v4_frame(PEER_V4, IPPROTO_UDP, &tiny_udp),
        DropUdpHeader,
    );
    add(
        "truncated udp header",
        v4_frame(PEER_V4, IPPROTO_UDP, &[0, 1, 0, 2]),
        DropTruncated,
    );
    add(
        "tcp to port 0",
        v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 0, TCP_SYN, 5)),
        DropPortZero,
    );
    add(
        "tcp from port 0",
        v4_frame(PEER_V4, IPPROTO_TCP, &tcp(0, 80, TCP_SYN, 5)),
        DropPortZero,
    );
    add(
        "udp from port 0",
        v4_frame(PEER_V4, IPPROTO_UDP, &udp(0, 5353, &[0; 4])),
        DropPortZero,
    );
    add(
        "land attack",
        v4_frame(NODE_V4, IPPROTO_TCP, &syn80),
        DropLand,
    );
    add(
        "loopback source",
        v4_frame([127, 0, 0, 1], IPPROTO_TCP, &syn80),
        DropBogon,
    );
    add(
        "multicast source",
        v4_frame([224, 1, 2, 3], IPPROTO_TCP, &syn80),
        DropBogon,
    );
    add(
        "documentation source",
        v4_frame([203, 0, 113, 7], IPPROTO_UDP, &udp(40001, 5353, &[0; 4])),
        DropBogon,
    );
    add(
        "blocked source",
        v4_frame(BLOCKED_V4, IPPROTO_TCP, &syn80),
        DropBlocked,
    );
    add(
        "syn to closed port",
        v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 9999, TCP_SYN, 5)),
        DropClosedPort,
    );
    add(
        "udp to closed port",
        v4_frame(PEER_V4, IPPROTO_UDP, &udp(40001, 9999, &[0; 4])),
        DropClosedPort,
    );
    add(
        "bare syn to ephemeral port",
        v4_frame(PEER_V4, IPPROTO_TCP, &tcp(443, 40000, TCP_SYN, 5)),
        DropClosedPort,
    );
    add(
        "syn to port 80",
        v4_frame(PEER_V4, IPPROTO_TCP, &syn80),
        PassServicePort,
    );
    add(
        "ack to port 443",
        v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 443, TCP_ACK | TCP_PSH, 5)),
        PassServicePort,
    );
    add(
        "syn to allowed ssh",
        v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 22, TCP_SYN, 5)),
        PassAllowedPort,
    );
    add(
        "udp to allowed port",
        v4_frame(PEER_V4, IPPROTO_UDP, &udp(40001, 5353, &[0; 4])),
        PassAllowedPort,
    );
    add(
        "syn-ack to ephemeral port",
        v4_frame(PEER_V4, IPPROTO_TCP, &tcp(443, 40000, TCP_SYN | TCP_ACK, 5)),
        PassEphemeral,
    );
    add(
        "dns reply to ephemeral port",
        v4_frame(PEER_V4, IPPROTO_UDP, &udp(53, 40000, &[0; 12])),
        PassEphemeral,
    );
    add(
        "icmp echo request",
        v4_frame(PEER_V4, IPPROTO_ICMP, &icmp(8, 0)),
        PassIcmp,
    );
    add(
        "icmp fragmentation needed",
        v4_frame(PEER_V4, IPPROTO_ICMP, &icmp(3, 4)),
        PassIcmp,
    );
    add(
        "icmp redirect",
        v4_frame(PEER_V4, IPPROTO_ICMP, &icmp(5, 1)),
        DropIcmpType,
    );
    add(
        "icmp timestamp",
        v4_frame(PEER_V4, IPPROTO_ICMP, &icmp(13, 0)),
        DropIcmpType,
    );
    add(
        "truncated icmp",
        v4_frame(PEER_V4, IPPROTO_ICMP, &[8, 0, 0]),
        DropTruncated,
    );
    let mut frag = v4_frame(PEER_V4, IPPROTO_TCP, &tcp(40001, 9999, 0, 5));
    frag[20..22].copy_from_slice(&0x00b9u16.to_be_bytes());
    add("ipv4 non-first fragment", frag, PassFragment);
    add(
        "gre packet",
        v4_frame(PEER_V4, 47, &[0u8; 8]),
        PassOtherProto,
    );
    add(
        "vlan syn to port 80",
        vlan(10, ETH_P_IPV4, &ipv4(PEER_V4, NODE_V4, IPPROTO_TCP, &syn80)),
        PassServicePort,
    );
    add(
        "vlan xmas",
        vlan(
            10,
            ETH_P_IPV4,
            &ipv4(PEER_V4, NODE_V4, IPPROTO_TCP, &tcp(1, 80, 0x29, 5)),
        ),
        DropTcpXmas,
    );

    // IPv6
    let good6 = v6_frame(PEER_V6, IPPROTO_TCP, &syn80);
    add("ipv6 syn to port 80", good6.clone(), PassServicePort);
    add(
        "truncated ipv6 header",
        ethernet(ETH_P_IPV6, &[0x60; 30]),
        DropTruncated,
    );
    add(
        "ipv6 version 4",
        set(good6.clone(), 14, 0x40),
        DropIpv6Header,
    );
    let mut long6 = good6.clone();
    long6[18..20].copy_from_slice(&300u16.to_be_bytes());
    add("ipv6 payload past frame", long6, DropIpv6Header);
    add(
        "ipv6 land attack",
        v6_frame(NODE_V6, IPPROTO_TCP, &syn80),
        DropLand,
    );
    let mut lo6 = [0u8; 16];
    lo6[15] = 1;
    add(
        "ipv6 loopback source",
        v6_frame(lo6, IPPROTO_TCP, &syn80),
        DropBogon,
    );
    add(
        "ipv6 blocked source",
        v6_frame(BLOCKED_V6, IPPROTO_TCP, &syn80),
        DropBlocked,
    );
    add(
        "ipv6 tcp xmas",
        v6_frame(PEER_V6, IPPROTO_TCP, &tcp(40001, 80, 0x29, 5)),
        DropTcpXmas,
    );
    add(
        "ipv6 udp to closed port",
        v6_frame(PEER_V6, IPPROTO_UDP, &udp(40001, 9999, &[0; 4])),
        DropClosedPort,
    );
    add(
        "icmpv6 packet too big",
        v6_frame(PEER_V6, IPPROTO_ICMPV6, &icmp(2, 0)),
        PassIcmp,
    );
    add(
        "icmpv6 neighbour solicitation",
        v6_frame(PEER_V6, IPPROTO_ICMPV6, &icmp(135, 0)),
        PassIcmp,
    );
    add(
        "icmpv6 router renumbering",
        v6_frame(PEER_V6, IPPROTO_ICMPV6, &icmp(138, 0)),
        DropIcmpType,
    );
    let mut dstopts = vec![IPPROTO_TCP, 0, 1, 4, 0, 0, 0, 0];
    dstopts.extend_from_slice(&tcp(40001, 9999, TCP_SYN, 5));
    add(
        "ipv6 syn behind destination options",
        v6_frame(PEER_V6, IPV6_DSTOPTS, &dstopts),
        DropClosedPort,
    );
    let mut hop_short = vec![IPPROTO_TCP, 4, 1, 4, 0, 0, 0, 0];
    hop_short.extend_from_slice(&tcp(40001, 80, TCP_SYN, 5));
    add(
        "ipv6 extension header past payload",
        v6_frame(PEER_V6, IPV6_HOPOPTS, &hop_short),
        DropIpv6Header,
    );
    let mut frag6 = vec![IPPROTO_TCP, 0, 0x05, 0xc8, 0, 0, 0, 1];
    frag6.extend_from_slice(&[0u8; 16]);
    add(
        "ipv6 non-first fragment",
        v6_frame(PEER_V6, IPV6_FRAGMENT, &frag6),
        PassFragment,
    );
    let mut frag6_first = vec![IPPROTO_TCP, 0, 0, 1, 0, 0, 0, 1];
    frag6_first.extend_from_slice(&tcp(40001, 443, TCP_SYN, 5));
    add(
        "ipv6 first fragment syn to 443",
        v6_frame(PEER_V6, IPV6_FRAGMENT, &frag6_first),
        PassServicePort,
    );
    add(
        "ipv6 sctp",
        v6_frame(PEER_V6, 132, &[0u8; 12]),
        PassOtherProto,
    );
    t
}
