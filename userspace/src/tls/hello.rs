//! What a client put in the `server_name` extension of its ClientHello
//! (RFC 6066 §3), read from the first bytes of a TLS connection.
//!
//! Owns: [`HelloSni`] and [`classify`], a bounds-checked reader of TLS
//! records (RFC 8446 §5.1) carrying a ClientHello (RFC 8446 §4.1.2), down to
//! the SNI host name, classified the way rustls classifies it: a DNS name,
//! an IP address (illegal in SNI; rustls ignores it and serves the default
//! certificate), or invalid (rustls refuses the handshake).
//! Must not: decide anything about the handshake (rustls does), allocate
//! beyond the reassembled handshake message, or read sockets.
//! Fed by: `session.rs`, with the bytes received so far.
//! Emits: `None` (need more bytes) or a [`HelloSni`].
//!
//! Why: rustls reports the last two cases only as a WARN log line per
//! connection; Portier counts them in a metric instead and keeps the log
//! quiet (see `portier::init_logging`).

use std::net::IpAddr;

/// The `server_name` of a ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloSni {
    /// No `server_name` extension (or no `host_name` entry).
    Absent,
    /// A DNS host name.
    DnsName,
    /// An IPv4 or IPv6 literal sent as a host name (RFC 6066 §3: "Literal
    /// IPv4 and IPv6 addresses are not permitted in HostName").
    IpAddress,
    /// Not a valid host name, or a malformed extension.
    Invalid,
    /// Not a ClientHello, or one too large to look at: not classified.
    Unknown,
}

/// Largest ClientHello looked at (one full record; real ones are < 2 KiB,
/// or a few KiB with post-quantum key shares).
pub const MAX_HELLO: usize = 16 * 1024;

/// Classify the SNI of the ClientHello at the start of `buf` (the raw bytes
/// the client sent). `None`: incomplete, call again with more bytes.
pub fn classify(buf: &[u8]) -> Option<HelloSni> {
    let mut message = Vec::new();
    let mut pos = 0;
    // The handshake message may span several records (RFC 8446 §5.1).
    loop {
        let &[content_type, major, _, hi, lo] = buf.get(pos..pos + 5)? else {
            return None;
        };
        if content_type != 22 || major != 3 {
            return Some(HelloSni::Unknown);
        }
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let fragment = buf.get(pos + 5..pos + 5 + len)?;
        message.extend_from_slice(fragment);
        pos += 5 + len;
        if let [kind, a, b, c, ..] = message[..] {
            if kind != 1 {
                return Some(HelloSni::Unknown);
            }
            let body_len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
            if body_len > MAX_HELLO {
                return Some(HelloSni::Unknown);
            }
            if let Some(body) = message.get(4..4 + body_len) {
                return Some(client_hello_sni(body).unwrap_or(HelloSni::Invalid));
            }
        }
        if message.len() > MAX_HELLO {
            return Some(HelloSni::Unknown);
        }
    }
}

/// A cursor over a byte slice: every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        match *self.take(2)? {
            [a, b] => Some(u16::from_be_bytes([a, b])),
            _ => None,
        }
    }

    /// A vector with a one- or two-byte length prefix.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// RFC 8446 §4.1.2: legacy_version, random, legacy_session_id,
/// cipher_suites, legacy_compression_methods, extensions. `None`: malformed.
fn client_hello_sni(body: &[u8]) -> Option<HelloSni> {
    let mut r = Reader(body);
    r.take(2 + 32)?;
    r.vec8()?;
    r.vec16()?;
    r.vec8()?;
    if r.0.is_empty() {
        // No extensions at all (an old TLS 1.2 client).
        return Some(HelloSni::Absent);
    }
    let mut extensions = Reader(r.vec16()?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        if kind == 0 {
            return server_name(data);
        }
    }
    Some(HelloSni::Absent)
}

/// RFC 6066 §3: `ServerName server_name_list<1..2^16-1>`, read as rustls
/// reads it: the first entry must be a `host_name` (type 0), a second
/// `host_name` is illegal, entries of unknown types end the list.
fn server_name(data: &[u8]) -> Option<HelloSni> {
    let mut list = Reader(Reader(data).vec16()?);
    if list.u8() != Some(0) {
        return Some(HelloSni::Invalid);
    }
    let name = list.vec16()?;
    if list.u8() == Some(0) {
        return Some(HelloSni::Invalid);
    }
    Some(host_name(name))
}

fn host_name(name: &[u8]) -> HelloSni {
    let Ok(text) = std::str::from_utf8(name) else {
        return HelloSni::Invalid;
    };
    if text.parse::<IpAddr>().is_ok() {
        HelloSni::IpAddress
    } else if rustls::pki_types::DnsName::try_from(text).is_ok() {
        HelloSni::DnsName
    } else {
        HelloSni::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The first flight of a real rustls client (whose SNI is a DNS name
    /// or, for an IP `ServerName`, absent: rustls never sends an IP).
    fn rustls_hello(name: &str) -> Vec<u8> {
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let mut c = rustls::ClientConnection::new(
            Arc::new(cfg),
            name.to_string().try_into().expect("name"),
        )
        .expect("client");
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).expect("hello");
        }
        out
    }

    /// A minimal ClientHello record whose only extension is `server_name`
    /// carrying `name` (or none).
    fn hello_with(name: Option<&[u8]>) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]); // one suite
        body.extend([1, 0]); // null compression
        let mut ext = Vec::new();
        if let Some(name) = name {
            let mut list = vec![0u8];
            list.extend((name.len() as u16).to_be_bytes());
            list.extend(name);
            let mut data = (list.len() as u16).to_be_bytes().to_vec();
            data.extend(list);
            ext.extend([0, 0]);
            ext.extend((data.len() as u16).to_be_bytes());
            ext.extend(data);
        }
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut msg = vec![1, 0];
        msg.extend((body.len() as u16).to_be_bytes());
        msg.extend(body);
        let mut rec = vec![22, 3, 1];
        rec.extend((msg.len() as u16).to_be_bytes());
        rec.extend(msg);
        rec
    }

    #[test]
    fn classifies_dns_names_ip_literals_and_garbage() {
        assert_eq!(
            classify(&hello_with(Some(b"a.test"))),
            Some(HelloSni::DnsName)
        );
        assert_eq!(
            classify(&hello_with(Some(b"127.0.0.1"))),
            Some(HelloSni::IpAddress)
        );
        assert_eq!(
            classify(&hello_with(Some(b"::1"))),
            Some(HelloSni::IpAddress)
        );
        assert_eq!(classify(&hello_with(Some(b"a b"))), Some(HelloSni::Invalid));
        assert_eq!(
            classify(&hello_with(Some(b"\xff"))),
            Some(HelloSni::Invalid)
        );
        assert_eq!(classify(&hello_with(None)), Some(HelloSni::Absent));
    }

    #[test]
    fn reads_a_real_client_hello() {
        assert_eq!(
            classify(&rustls_hello("www.example.test")),
            Some(HelloSni::DnsName)
        );
        assert_eq!(classify(&rustls_hello("192.0.2.1")), Some(HelloSni::Absent));
    }

    #[test]
    fn waits_for_the_whole_hello_across_records_and_splits() {
        let whole = hello_with(Some(b"10.0.0.1"));
        for cut in 0..whole.len() {
            assert_eq!(classify(&whole[..cut]), None, "cut at {cut}");
        }
        // The same handshake message in two records.
        let msg = &whole[5..];
        let (a, b) = msg.split_at(10);
        let mut two = vec![22, 3, 1, 0, a.len() as u8];
        two.extend(a);
        two.extend([22, 3, 1]);
        two.extend((b.len() as u16).to_be_bytes());
        two.extend(b);
        assert_eq!(classify(&two), Some(HelloSni::IpAddress));
    }

    #[test]
    fn anything_else_is_unknown_or_invalid_never_a_panic() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n\r\n"), Some(HelloSni::Unknown));
        assert_eq!(
            classify(&[22, 3, 1, 0, 4, 2, 0, 0, 0]),
            Some(HelloSni::Unknown)
        );
        let whole = hello_with(Some(b"a.test"));
        let mut state = 0x2545_f491_u32;
        for _ in 0..2000 {
            let mut b = whole.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let i = 5 + (state as usize) % (b.len() - 5);
                b[i] = (state >> 8) as u8;
            }
            let _ = classify(&b);
        }
    }
}
