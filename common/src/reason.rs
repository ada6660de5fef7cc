//! Verdict reasons: why the XDP program passed or dropped a frame.
//!
//! Every frame gets exactly one reason; each reason has one slot in the
//! per-CPU counter array. The numeric values are the map indices, so they are
//! append-only: never renumber a released reason.

/// Why a frame was passed or dropped. `repr(u32)` = index in the counters map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not IP, not ARP (LLDP, a second VLAN tag, ...): left to the kernel.
    PassNonIp = 0,
    PassArp = 1,
    /// TCP to a service port (80, 443 by default).
    PassServicePort = 2,
    /// TCP or UDP to an allow-listed port (SSH, the admin port, ...).
    PassAllowedPort = 3,
    /// Reply traffic to the node's own outgoing connections (ephemeral range).
    PassEphemeral = 4,
    /// ICMP/ICMPv6 types the node needs (PMTU discovery, errors, echo, NDP).
    PassIcmp = 5,
    /// To a closed port, but the port policy is open (counted, not dropped).
    PassOpenPolicy = 6,
    /// A non-first IP fragment: no L4 header to judge.
    PassFragment = 7,
    /// Another IP protocol (GRE, SCTP, ESP, ...) or an unparsed IPv6 header chain.
    PassOtherProto = 8,
    /// A map lookup failed inside the program: fail open, and count it.
    PassInternal = 9,
    /// Shorter than the headers it announces (Ethernet, VLAN, IP, L4).
    DropTruncated = 10,
    /// IPv4 version, IHL or total length inconsistent with the frame.
    DropIpv4Header = 11,
    /// IPv6 version or payload length inconsistent with the frame.
    DropIpv6Header = 12,
    /// TCP data offset below 5 words or past the end of the segment.
    DropTcpDataOffset = 13,
    DropTcpSynFin = 14,
    DropTcpSynRst = 15,
    /// No TCP flag at all ("null scan").
    DropTcpNullFlags = 16,
    /// FIN, PSH or URG without ACK.
    DropTcpNoAck = 17,
    /// FIN+PSH+URG ("Xmas scan").
    DropTcpXmas = 18,
    /// UDP length field below 8 or past the end of the datagram.
    DropUdpHeader = 19,
    /// TCP or UDP source or destination port 0.
    DropPortZero = 20,
    /// Source address equals destination address (LAND).
    DropLand = 21,
    /// Source in the bogon/martian list.
    DropBogon = 22,
    /// Source in the operator's blocklist.
    DropBlocked = 23,
    /// TCP/UDP to a port that is neither a service nor allow-listed, policy closed.
    DropClosedPort = 24,
    /// SYN over the per-source rate.
    DropSynFlood = 25,
    /// ICMP type the node has no use for, policy closed (redirects, timestamps...).
    DropIcmpType = 26,
}

/// Number of reasons = length of the counters array.
pub const REASON_COUNT: u32 = 27;

impl Reason {
    pub const ALL: [Reason; REASON_COUNT as usize] = [
        Reason::PassNonIp,
        Reason::PassArp,
        Reason::PassServicePort,
        Reason::PassAllowedPort,
        Reason::PassEphemeral,
        Reason::PassIcmp,
        Reason::PassOpenPolicy,
        Reason::PassFragment,
        Reason::PassOtherProto,
        Reason::PassInternal,
        Reason::DropTruncated,
        Reason::DropIpv4Header,
        Reason::DropIpv6Header,
        Reason::DropTcpDataOffset,
        Reason::DropTcpSynFin,
        Reason::DropTcpSynRst,
        Reason::DropTcpNullFlags,
        Reason::DropTcpNoAck,
        Reason::DropTcpXmas,
        Reason::DropUdpHeader,
        Reason::DropPortZero,
        Reason::DropLand,
        Reason::DropBogon,
        Reason::DropBlocked,
        Reason::DropClosedPort,
        Reason::DropSynFlood,
        Reason::DropIcmpType,
    ];

    #[inline(always)]
    pub const fn is_drop(self) -> bool {
        self as u32 >= Reason::DropTruncated as u32
    }

    #[inline(always)]
    pub const fn index(self) -> u32 {
        self as u32
    }

    pub fn from_index(index: u32) -> Option<Reason> {
        Reason::ALL.get(index as usize).copied()
    }

    /// Stable snake_case name, used in metrics labels and `portier xdp stats`.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::PassNonIp => "pass_non_ip",
            Reason::PassArp => "pass_arp",
            Reason::PassServicePort => "pass_service_port",
            Reason::PassAllowedPort => "pass_allowed_port",
            Reason::PassEphemeral => "pass_ephemeral",
            Reason::PassIcmp => "pass_icmp",
            Reason::PassOpenPolicy => "pass_open_policy",
            Reason::PassFragment => "pass_fragment",
            Reason::PassOtherProto => "pass_other_proto",
            Reason::PassInternal => "pass_internal",
            Reason::DropTruncated => "drop_truncated",
            Reason::DropIpv4Header => "drop_ipv4_header",
            Reason::DropIpv6Header => "drop_ipv6_header",
            Reason::DropTcpDataOffset => "drop_tcp_data_offset",
            Reason::DropTcpSynFin => "drop_tcp_syn_fin",
            Reason::DropTcpSynRst => "drop_tcp_syn_rst",
            Reason::DropTcpNullFlags => "drop_tcp_null_flags",
            Reason::DropTcpNoAck => "drop_tcp_no_ack",
            Reason::DropTcpXmas => "drop_tcp_xmas",
            Reason::DropUdpHeader => "drop_udp_header",
            Reason::DropPortZero => "drop_port_zero",
            Reason::DropLand => "drop_land",
            Reason::DropBogon => "drop_bogon",
            Reason::DropBlocked => "drop_blocked",
            Reason::DropClosedPort => "drop_closed_port",
            Reason::DropSynFlood => "drop_syn_flood",
            Reason::DropIcmpType => "drop_icmp_type",
        }
    }

    pub fn from_name(name: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_table_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index() as usize, i, "{r:?}");
            assert_eq!(Reason::from_index(i as u32), Some(*r));
            assert_eq!(Reason::from_name(r.name()), Some(*r));
        }
        assert_eq!(Reason::from_index(REASON_COUNT), None);
    }

    #[test]
    fn pass_and_drop_split_at_truncated() {
        assert!(!Reason::PassInternal.is_drop());
        assert!(Reason::DropTruncated.is_drop());
        assert!(Reason::DropIcmpType.is_drop());
        let drops = Reason::ALL.iter().filter(|r| r.is_drop()).count();
        assert_eq!(drops, 17);
    }
}
