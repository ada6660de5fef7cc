//! The forwarding fields Portier adds to every request it sends to a
//! backend (SPEC §3 "Headers added to every forwarded request").
//!
//! Owns: `X-Forwarded-For`, `X-Real-Ip`, `X-Forwarded-Proto`,
//! `X-Forwarded-Port`, `X-Request-ID`, `X-Request-Start`, and the
//! request-id sanity rule.
//! Must not: read the clock, generate randomness, or know about sockets —
//! the caller passes the peer address, a fresh id and the arrival time.
//! Fed by: the reactor, per request. Emits: [`ForwardHeaders`], ready to
//! pass as `extra` to `h1::encode_request_head` (which drops the incoming
//! fields of the same names).
//!
//! Trust model: only the *direct* peer is judged. When it is a trusted proxy
//! (e.g. a CDN range), its `X-Forwarded-For` is kept and the peer appended;
//! `X-Real-Ip` is then the right-most valid address of the incoming chain —
//! the client address the trusted proxy itself saw. The left-most entry is
//! whatever the end user typed and is never trusted. When the peer is not
//! trusted, the incoming chain is discarded and both fields are the peer.

use core::fmt::Write;
use core::net::IpAddr;

use super::h1::head::list_elements;

/// Scheme the client used to reach Portier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What the caller knows about one request.
#[derive(Debug, Clone, Copy)]
pub struct ForwardInput<'a> {
    /// Address of the TCP peer (after PROXY protocol, if any).
    pub peer_ip: IpAddr,
    /// The peer is a trusted proxy whose `X-Forwarded-For` may be kept.
    pub peer_trusted: bool,
    /// Every incoming `X-Forwarded-For` value, in order (they form one
    /// list, RFC 9110 §5.3).
    pub incoming_xff: &'a [&'a [u8]],
    /// Scheme of the client connection.
    pub scheme: Scheme,
    /// Public port the client connected to.
    pub port: u16,
    /// Incoming `X-Request-ID` value, if any.
    pub incoming_request_id: Option<&'a [u8]>,
    /// A fresh id, used when the incoming one is absent or not sane.
    pub generated_id: uuid::Uuid,
    /// When the request arrived: Unix seconds and milliseconds (0..=999;
    /// larger values are clamped).
    pub start: (u64, u32),
}

/// The six forwarding fields, as values, in one buffer (one allocation
/// per request instead of one per field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardHeaders {
    /// The values of `X-Forwarded-For`, `X-Real-Ip`, `X-Forwarded-Port`,
    /// `X-Request-ID` and `X-Request-Start`, back to back.
    values: String,
    /// Where each of them ends in `values`.
    ends: [usize; 5],
    /// `X-Forwarded-Proto`.
    pub proto: &'static str,
}

impl ForwardHeaders {
    fn value(&self, i: usize) -> &str {
        let end = |i: usize| self.ends.get(i).copied().unwrap_or(0);
        let start = i.checked_sub(1).map_or(0, end);
        self.values.get(start..end(i)).unwrap_or_default()
    }

    /// `X-Forwarded-For`.
    pub fn forwarded_for(&self) -> &str {
        self.value(0)
    }

    /// `X-Real-Ip`.
    pub fn real_ip(&self) -> &str {
        self.value(1)
    }

    /// `X-Forwarded-Port`.
    pub fn port(&self) -> &str {
        self.value(2)
    }

    /// `X-Request-ID`; also to be returned on the response.
    pub fn request_id(&self) -> &str {
        self.value(3)
    }

    /// `X-Request-Start`.
    pub fn request_start(&self) -> &str {
        self.value(4)
    }

    /// Name/value pairs for `encode_request_head`'s `extra`.
    pub fn fields(&self) -> [(&'static str, &[u8]); 6] {
        [
            ("X-Forwarded-For", self.forwarded_for().as_bytes()),
            ("X-Real-Ip", self.real_ip().as_bytes()),
            ("X-Forwarded-Proto", self.proto.as_bytes()),
            ("X-Forwarded-Port", self.port().as_bytes()),
            ("X-Request-ID", self.request_id().as_bytes()),
            ("X-Request-Start", self.request_start().as_bytes()),
        ]
    }
}

/// Longest `X-Request-ID` kept.
pub const MAX_REQUEST_ID: usize = 200;

/// A client-sent request id is kept when it is 1..=200 bytes of
/// `[A-Za-z0-9._~:+/=-]` (covers UUIDs, ULIDs, base64 and Heroku-style ids,
/// and nothing that could confuse a log line or a header).
pub fn is_sane_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"._~:+/=-".contains(&b))
}

/// Build the forwarding fields for one request.
pub fn forward_headers(input: &ForwardInput<'_>) -> ForwardHeaders {
    let peer = canonical(input.peer_ip);
    let incoming = || {
        input
            .incoming_xff
            .iter()
            .filter(|_| input.peer_trusted)
            .flat_map(|v| list_elements(v))
            .filter(|e| !e.is_empty())
    };
    let incoming_len: usize = incoming().map(|e| e.len() + 2).sum();
    let mut values = String::with_capacity(160 + incoming_len);
    let mut ends = [0; 5];
    for element in incoming() {
        // Values came through the head parser (no CTLs); keep them as they
        // are, lossily for non-UTF-8 obs-text.
        values.push_str(&String::from_utf8_lossy(element));
        values.push_str(", ");
    }
    push_ip(&mut values, peer);
    ends[0] = values.len();
    let real_ip = incoming()
        .last()
        .and_then(parse_xff_ip)
        .map_or(peer, canonical);
    push_ip(&mut values, real_ip);
    ends[1] = values.len();
    push_decimal(&mut values, u64::from(input.port));
    ends[2] = values.len();
    match input.incoming_request_id {
        Some(id) if is_sane_request_id(id) => values.push_str(&String::from_utf8_lossy(id)),
        _ => {
            let mut buf = uuid::Uuid::encode_buffer();
            values.push_str(input.generated_id.hyphenated().encode_lower(&mut buf));
        }
    }
    ends[3] = values.len();
    let (secs, millis) = input.start;
    values.push_str("t=");
    push_decimal(&mut values, secs);
    values.push('.');
    let millis = millis.min(999);
    for digit in [millis / 100, millis / 10 % 10, millis % 10] {
        values.push(char::from(b'0' + digit as u8));
    }
    ends[4] = values.len();
    ForwardHeaders {
        values,
        ends,
        proto: input.scheme.as_str(),
    }
}

/// `n` in decimal, without the formatting machinery (this runs for every
/// request).
fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    for &d in digits.get(at..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

/// An address as text: IPv4 by hand (the usual case), IPv6 by `Display`.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(out, u64::from(octet));
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

/// An IPv4-mapped IPv6 peer (dual-stack listener) is shown as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` element: an address, optionally as `[v6]`,
/// `v4:port` or `[v6]:port` (forms some proxies emit).
fn parse_xff_ip(element: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(element).ok()?;
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, _) = rest.split_once(']')?;
        return inner.parse().ok();
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<core::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses_are_written_as_display_would() {
        for n in [0u64, 7, 10, 99, 255, 65535, 1_790_000_000, u64::MAX] {
            let mut s = String::new();
            push_decimal(&mut s, n);
            assert_eq!(s, n.to_string());
        }
        for ip in ["0.0.0.0", "10.0.0.1", "203.0.113.255", "2001:db8::5", "::1"] {
            let ip: IpAddr = ip.parse().expect("ip");
            let mut s = String::new();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
    }

    const ID: uuid::Uuid = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

    fn input<'a>(peer: &str, trusted: bool, xff: &'a [&'a [u8]]) -> ForwardInput<'a> {
        ForwardInput {
            peer_ip: peer.parse().unwrap(),
            peer_trusted: trusted,
            incoming_xff: xff,
            scheme: Scheme::Https,
            port: 443,
            incoming_request_id: None,
            generated_id: ID,
            start: (1_693_406_590, 527),
        }
    }

    #[test]
    fn untrusted_peer_replaces_the_chain() {
        let h = forward_headers(&input("203.0.113.7", false, &[b"1.1.1.1, 2.2.2.2"]));
        assert_eq!(h.forwarded_for(), "203.0.113.7");
        assert_eq!(h.real_ip(), "203.0.113.7");
    }

    #[test]
    fn trusted_peer_appends_and_real_ip_is_rightmost_incoming() {
        let xff: &[&[u8]] = &[b"6.6.6.6, 198.51.100.1", b" 192.0.2.9 "];
        let h = forward_headers(&input("10.0.0.1", true, xff));
        assert_eq!(
            h.forwarded_for(),
            "6.6.6.6, 198.51.100.1, 192.0.2.9, 10.0.0.1"
        );
        assert_eq!(h.real_ip(), "192.0.2.9");
    }

    #[test]
    fn trusted_peer_without_chain_is_the_client() {
        let h = forward_headers(&input("10.0.0.1", true, &[]));
        assert_eq!((h.forwarded_for(), h.real_ip()), ("10.0.0.1", "10.0.0.1"));
    }

    #[test]
    fn unparsable_rightmost_entry_falls_back_to_peer() {
        let h = forward_headers(&input("10.0.0.1", true, &[b"1.2.3.4, unknown"]));
        assert_eq!(h.forwarded_for(), "1.2.3.4, unknown, 10.0.0.1");
        assert_eq!(h.real_ip(), "10.0.0.1");
    }

    #[test]
    fn parses_xff_element_forms() {
        for (e, want) in [
            ("192.0.2.1", "192.0.2.1"),
            ("192.0.2.1:1234", "192.0.2.1"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
        ] {
            assert_eq!(
                parse_xff_ip(e.as_bytes()),
                Some(want.parse().unwrap()),
                "{e}"
            );
        }
        for e in ["", "unknown", "1.2.3", "1.2.3.4:x", "[::1"] {
            assert_eq!(parse_xff_ip(e.as_bytes()), None, "{e}");
        }
    }

    #[test]
    fn maps_v4_mapped_peer_to_v4_and_keeps_v6() {
        assert_eq!(
            forward_headers(&input("::ffff:192.0.2.3", false, &[])).real_ip(),
            "192.0.2.3"
        );
        assert_eq!(
            forward_headers(&input("2001:db8::5", false, &[])).forwarded_for(),
            "2001:db8::5"
        );
    }

    #[test]
    fn sets_proto_port_and_start() {
        let h = forward_headers(&input("192.0.2.1", false, &[]));
        assert_eq!((h.proto, h.port()), ("https", "443"));
        assert_eq!(h.request_start(), "t=1693406590.527");
        let mut i = input("192.0.2.1", false, &[]);
        i.scheme = Scheme::Http;
        i.port = 80;
        i.start = (7, 5);
        let h = forward_headers(&i);
        assert_eq!(
            (h.proto, h.port(), h.request_start()),
            ("http", "80", "t=7.005")
        );
        i.start = (7, 1500);
        assert_eq!(forward_headers(&i).request_start(), "t=7.999");
    }

    #[test]
    fn keeps_sane_request_id_else_generates() {
        let mut i = input("192.0.2.1", false, &[]);
        i.incoming_request_id = Some(b"abc-123_x.y~z:+/=");
        assert_eq!(forward_headers(&i).request_id(), "abc-123_x.y~z:+/=");
        for bad in [
            &b""[..],
            b"has space",
            b"semi;colon",
            b"quote\"",
            b"\xc3\xa9",
        ] {
            i.incoming_request_id = Some(bad);
            assert_eq!(
                forward_headers(&i).request_id(),
                "01234567-89ab-cdef-0123-456789abcdef",
                "{:?}",
                bad.escape_ascii()
            );
        }
        i.incoming_request_id = None;
        assert_eq!(
            forward_headers(&i).request_id(),
            "01234567-89ab-cdef-0123-456789abcdef"
        );
    }

    #[test]
    fn request_id_length_bounds() {
        assert!(is_sane_request_id(&[b'a'; 200]));
        assert!(!is_sane_request_id(&[b'a'; 201]));
        assert!(is_sane_request_id(b"a"));
        assert!(!is_sane_request_id(b""));
    }

    #[test]
    fn fields_name_all_six_headers() {
        let h = forward_headers(&input("192.0.2.1", false, &[]));
        let names: Vec<_> = h.fields().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "X-Forwarded-For",
                "X-Real-Ip",
                "X-Forwarded-Proto",
                "X-Forwarded-Port",
                "X-Request-ID",
                "X-Request-Start"
            ]
        );
        assert_eq!(h.fields()[4].1, b"01234567-89ab-cdef-0123-456789abcdef");
    }
}
