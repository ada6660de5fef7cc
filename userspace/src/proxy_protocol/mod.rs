//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1
//! and 2) that an outer balancer puts before anything else on a
//! connection, carrying the address of the client it relays.
//!
//! Owns: telling v1 from v2 from neither, parsing and validating either,
//! saying how many bytes the header took (everything after it belongs to
//! TLS or HTTP), and the names of the reasons a connection is refused.
//! Must not: read sockets, read the clock, decide trust (the reactor
//! refuses untrusted peers before reading a byte, and enforces the
//! deadline). Fed by: the bytes at the start of a connection, as many as
//! have arrived. Emits: [`Parsed`] or a [`ProxyError`].
//!
//! ```text
//!  bytes ──► parse ──┬─ Incomplete { want }   read until `want` bytes are there, then parse again
//!                    ├─ Complete { header, used }   drop `used` bytes; the rest is TLS / HTTP
//!                    └─ Err(PeerMissing | PeerMalformed)   close the connection
//! ```
//!
//! The parser is stateless: it is given the whole prefix each time (the
//! reactor peeks it from the socket). A prefix of a valid header is always
//! `Incomplete`, never an error, and a complete header parses the same
//! whatever follows it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature (§2.2); v1 starts with `PROXY` (§2.1).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8; 5] = b"PROXY";
/// Longest v1 line, CRLF included (§2.1: `PROXY UNKNOWN` with two full
/// IPv6 addresses and ports).
pub const V1_MAX: usize = 107;
/// Fixed part of a v2 header; its last two bytes give the length of the rest.
pub const V2_FIXED: usize = 16;
/// Longest possible header (v2 with a full 16-bit length).
pub const MAX_HEADER: usize = V2_FIXED + u16::MAX as usize;

/// Address lengths of the v2 families (§2.2).
const V2_INET_LEN: usize = 12;
const V2_INET6_LEN: usize = 36;
const V2_UNIX_LEN: usize = 216;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn label(self) -> &'static str {
        match self {
            Version::V1 => "1",
            Version::V2 => "2",
        }
    }

    /// Index in [`Version::ALL`] (and in the counters).
    pub fn index(self) -> usize {
        self as usize
    }

    pub const ALL: [Version; 2] = [Version::V1, Version::V2];
}

/// Whose addresses the connection should be known by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addresses {
    /// A relayed TCP connection (v1 `TCP4`/`TCP6`, v2 PROXY over
    /// `AF_INET`/`AF_INET6` + `STREAM`): the client and the address it
    /// connected to at the outer balancer.
    Tcp {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// Keep the connection's own endpoints: v2 LOCAL (the balancer's own
    /// health check), v1 `UNKNOWN`, and v2 PROXY with an address family or
    /// transport that carries no TCP endpoint (UNSPEC, UNIX, UDP) — the
    /// spec lets a receiver fall back to the real endpoints for those.
    Local,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub addresses: Addresses,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The header took the first `used` bytes.
    Complete { header: Header, used: usize },
    /// Not enough bytes yet: call again once `want` bytes (always more
    /// than were given) have arrived. For v1 `want` is the longest line:
    /// the CRLF may come sooner, so call again on any new byte.
    Incomplete { want: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The connection starts with neither signature (a client talking
    /// HTTP or TLS straight to a PROXY-protocol listener).
    #[error("the connection does not start with a PROXY protocol header")]
    PeerMissing,
    /// It starts like a header but breaks a rule of the spec.
    #[error("malformed PROXY protocol header: {0}")]
    PeerMalformed(&'static str),
}

/// Why a connection on a PROXY-protocol listener was closed before
/// anything else happened (the `reason` label of
/// `portier_proxy_protocol_rejected_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The peer is not in `server.trusted_proxies`.
    Untrusted,
    /// No header: the first bytes match neither signature.
    Missing,
    /// A header that breaks the spec.
    Malformed,
    /// The peer closed in the middle of the header.
    Truncated,
    /// The header did not arrive whole within the header timeout.
    Timeout,
}

impl Rejected {
    pub const ALL: [Rejected; 5] = [
        Rejected::Untrusted,
        Rejected::Missing,
        Rejected::Malformed,
        Rejected::Truncated,
        Rejected::Timeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Rejected::Untrusted => "untrusted",
            Rejected::Missing => "missing",
            Rejected::Malformed => "malformed",
            Rejected::Truncated => "truncated",
            Rejected::Timeout => "timeout",
        }
    }

    /// Index in [`Rejected::ALL`] (and in the counters).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<ProxyError> for Rejected {
    fn from(e: ProxyError) -> Rejected {
        match e {
            ProxyError::PeerMissing => Rejected::Missing,
            ProxyError::PeerMalformed(_) => Rejected::Malformed,
        }
    }
}

/// Parse the header at the start of `buf` (§2.2 "identifying the
/// protocol version": the v2 signature, else `PROXY`, else no header).
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if is_prefix_either_way(buf, &V2_SIGNATURE) {
        if buf.len() < V2_SIGNATURE.len() {
            return Ok(Parsed::Incomplete { want: V1_MAX });
        }
        return parse_v2(buf);
    }
    if is_prefix_either_way(buf, V1_PREFIX) {
        return parse_v1(buf);
    }
    Err(ProxyError::PeerMissing)
}

/// `a` starts with `b`, or `a` (shorter) is the start of `b`.
fn is_prefix_either_way(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

// ---- version 1 (§2.1) ------------------------------------------------------

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    use ProxyError::PeerMalformed as Bad;
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if window.contains(&b'\r') && !window.ends_with(b"\r") {
            return Err(Bad("v1: CR without LF"));
        }
        if window.len() >= V1_MAX {
            return Err(Bad("v1: no CRLF in the first 107 bytes"));
        }
        return Ok(Parsed::Incomplete { want: V1_MAX });
    };
    // The line ends at the first LF, which must follow a CR; no other CR.
    let line = match lf.checked_sub(1).map(|cr| (cr, window[cr])) {
        Some((cr, b'\r')) => &window[..cr],
        _ => return Err(Bad("v1: LF without CR")),
    };
    if line.contains(&b'\r') {
        return Err(Bad("v1: CR without LF"));
    }
    let used = lf + 1;
    let mut fields = line.split(|&b| b == b' ');
    if fields.next() != Some(&V1_PREFIX[..]) {
        return Err(Bad("v1: `PROXY` not followed by one space"));
    }
    let family = fields.next().ok_or(Bad("v1: no protocol"))?;
    let v4 = match family {
        b"TCP4" => true,
        b"TCP6" => false,
        // "The receiver must ignore anything presented before the CRLF."
        b"UNKNOWN" => {
            return Ok(Parsed::Complete {
                header: Header {
                    version: Version::V1,
                    addresses: Addresses::Local,
                },
                used,
            });
        }
        _ => return Err(Bad("v1: protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let mut next = || fields.next().ok_or(Bad("v1: missing field"));
    let (src, dst) = (v1_ip(next()?, v4)?, v1_ip(next()?, v4)?);
    let (sport, dport) = (v1_port(next()?)?, v1_port(next()?)?);
    if fields.next().is_some() {
        return Err(Bad("v1: extra field"));
    }
    Ok(Parsed::Complete {
        header: Header {
            version: Version::V1,
            addresses: Addresses::Tcp {
                source: SocketAddr::new(src, sport),
                destination: SocketAddr::new(dst, dport),
            },
        },
        used,
    })
}

/// An address of the announced family in its canonical text form (the
/// standard library refuses leading zeros in IPv4 octets, as §2.1 asks).
fn v1_ip(field: &[u8], v4: bool) -> Result<IpAddr, ProxyError> {
    let text = std::str::from_utf8(field).map_err(|_| ProxyError::PeerMalformed("v1: address"))?;
    let ip = if v4 {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    } else {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    };
    ip.map_err(|_| ProxyError::PeerMalformed("v1: address"))
}

/// A decimal port, 0..=65535, no sign and no leading zero (§2.1).
fn v1_port(field: &[u8]) -> Result<u16, ProxyError> {
    let bad = ProxyError::PeerMalformed("v1: port");
    if field.is_empty()
        || field.len() > 5
        || !field.iter().all(u8::is_ascii_digit)
        || (field.len() > 1 && field[0] == b'0')
    {
        return Err(bad);
    }
    let n = field.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).map_err(|_| bad)
}

// ---- version 2 (§2.2) ------------------------------------------------------

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    use ProxyError::PeerMalformed as Bad;
    // The version and command byte is judged as soon as it arrives.
    let Some(&ver_cmd) = buf.get(V2_SIGNATURE.len()) else {
        return Ok(Parsed::Incomplete { want: V1_MAX });
    };
    if ver_cmd >> 4 != 2 {
        return Err(Bad("v2: version is not 2"));
    }
    let local = match ver_cmd & 0x0f {
        0x0 => true,
        0x1 => false,
        _ => return Err(Bad("v2: command is neither LOCAL nor PROXY")),
    };
    let Some(&[.., fam, len_hi, len_lo]) = buf.get(..V2_FIXED) else {
        return Ok(Parsed::Incomplete { want: V1_MAX });
    };
    let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    // §2.2: never parse a partial address block.
    let used = V2_FIXED + len;
    let Some(block) = buf.get(V2_FIXED..used) else {
        return Ok(Parsed::Incomplete { want: used });
    };
    let complete = |addresses| {
        Ok(Parsed::Complete {
            header: Header {
                version: Version::V2,
                addresses,
            },
            used,
        })
    };
    // LOCAL: "discard the protocol block including the family".
    if local {
        return complete(Addresses::Local);
    }
    let (family, transport) = (fam >> 4, fam & 0x0f);
    if family > 3 {
        return Err(Bad("v2: unknown address family"));
    }
    if transport > 2 {
        return Err(Bad("v2: unknown transport"));
    }
    let addr_len = match family {
        // UNSPEC: the receiver "should ignore address information".
        0 => return complete(Addresses::Local),
        1 => V2_INET_LEN,
        2 => V2_INET6_LEN,
        _ => V2_UNIX_LEN,
    };
    if transport == 0 {
        return complete(Addresses::Local);
    }
    let (addrs, tlvs) = block
        .split_at_checked(addr_len)
        .ok_or(Bad("v2: address block shorter than its family"))?;
    check_tlvs(tlvs)?;
    // Only TCP over IP is a client we can name; UDP and UNIX fall back to
    // the real endpoints (§2.2: receivers may).
    if transport != 1 || family == 3 {
        return complete(Addresses::Local);
    }
    let endpoints = match family {
        1 => endpoints::<4>(addrs),
        _ => endpoints::<16>(addrs),
    };
    let Some((source, destination)) = endpoints else {
        return Err(Bad("v2: address block shorter than its family"));
    };
    complete(Addresses::Tcp {
        source,
        destination,
    })
}

/// Source and destination of a v2 IP address block: two `N`-byte
/// addresses, then two ports, all in network byte order.
fn endpoints<const N: usize>(block: &[u8]) -> Option<(SocketAddr, SocketAddr)>
where
    IpAddr: From<[u8; N]>,
{
    let (src, rest) = block.split_first_chunk::<N>()?;
    let (dst, rest) = rest.split_first_chunk::<N>()?;
    let (sport, rest) = rest.split_first_chunk::<2>()?;
    let (dport, _) = rest.split_first_chunk::<2>()?;
    Some((
        SocketAddr::new(IpAddr::from(*src), u16::from_be_bytes(*sport)),
        SocketAddr::new(IpAddr::from(*dst), u16::from_be_bytes(*dport)),
    ))
}

/// The TLVs after the addresses (§2.2.1..): skipped, but each must fit
/// exactly — type (1 byte), length (2, big-endian), value.
fn check_tlvs(mut rest: &[u8]) -> Result<(), ProxyError> {
    while !rest.is_empty() {
        let [_, hi, lo, ..] = *rest else {
            return Err(ProxyError::PeerMalformed("v2: truncated TLV"));
        };
        let end = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        rest = rest
            .get(end..)
            .ok_or(ProxyError::PeerMalformed("v2: TLV longer than the header"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
