use super::*;

fn complete(buf: &[u8]) -> (Header, usize) {
    match parse(buf) {
        Ok(Parsed::Complete { header, used }) => (header, used),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn tcp(header: Header) -> (SocketAddr, SocketAddr) {
    match header.addresses {
        Addresses::Tcp {
            source,
            destination,
        } => (source, destination),
        Addresses::Local => panic!("no addresses: {header:?}"),
    }
}

fn malformed(buf: &[u8]) -> &'static str {
    match parse(buf) {
        Err(ProxyError::PeerMalformed(why)) => why,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

/// Every strict prefix of a complete header asks for more (and for more
/// than it has); the header alone parses like the header with data after it.
fn assert_prefixes_incomplete(buf: &[u8]) {
    let (header, used) = complete(buf);
    for n in 0..used {
        match parse(&buf[..n]) {
            Ok(Parsed::Incomplete { want }) => assert!(want > n, "want {want} at {n}"),
            other => panic!("prefix of {n} bytes: {other:?}"),
        }
    }
    assert_eq!(complete(&buf[..used]), (header, used));
}

/// A v2 header: version/command byte, family/transport byte, then `body`.
fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(fam);
    out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn inet_body() -> Vec<u8> {
    let mut b = vec![192, 0, 2, 7, 10, 0, 0, 1];
    b.extend_from_slice(&51234u16.to_be_bytes());
    b.extend_from_slice(&443u16.to_be_bytes());
    b
}

fn inet6_body() -> Vec<u8> {
    let src: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut b = src.octets().to_vec();
    b.extend_from_slice(&dst.octets());
    b.extend_from_slice(&40000u16.to_be_bytes());
    b.extend_from_slice(&80u16.to_be_bytes());
    b
}

// ---- version 1 -------------------------------------------------------------

#[test]
fn v1_tcp4_gives_both_endpoints_and_its_length() {
    let buf = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
    let (h, used) = complete(buf);
    assert_eq!(h.version, Version::V1);
    assert_eq!(used, 41);
    assert_eq!(&buf[used..used + 3], b"GET");
    let (src, dst) = tcp(h);
    assert_eq!(src, "192.0.2.7:51234".parse().unwrap());
    assert_eq!(dst, "10.0.0.1:443".parse().unwrap());
}

#[test]
fn v1_tcp6_parses_compressed_and_full_forms() {
    let (h, _) = complete(b"PROXY TCP6 2001:db8::7 ::1 65535 0\r\n");
    let (src, dst) = tcp(h);
    assert_eq!(src, "[2001:db8::7]:65535".parse().unwrap());
    assert_eq!(dst, "[::1]:0".parse().unwrap());
    let full = b"PROXY TCP6 FFFF:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(full.len(), 104);
    complete(full);
}

#[test]
fn v1_unknown_ignores_the_rest_of_the_line() {
    for line in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
        b"PROXY UNKNOWN whatever the sender had\r\n",
    ] {
        let (h, used) = complete(line);
        assert_eq!(used, line.len());
        assert_eq!(h.addresses, Addresses::Local);
    }
}

#[test]
fn v1_the_longest_line_is_107_bytes() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(V1_MAX - 2, b'x');
    line.extend_from_slice(b"\r\n");
    assert_eq!(complete(&line).1, V1_MAX);
    // One more byte and the CRLF is past the limit.
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX - 1, b'x');
    long.extend_from_slice(b"\r\n");
    assert!(malformed(&long).contains("107"));
}

#[test]
fn v1_waits_for_the_crlf_and_every_prefix_is_incomplete() {
    assert_prefixes_incomplete(b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\n");
    assert_prefixes_incomplete(b"PROXY TCP6 2001:db8::7 ::1 1 2\r\nGET");
    assert_eq!(
        parse(b"PROXY TCP4 1.2.3.4"),
        Ok(Parsed::Incomplete { want: V1_MAX })
    );
    assert_eq!(
        parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"),
        Ok(Parsed::Incomplete { want: V1_MAX })
    );
}

#[test]
fn v1_rejects_lines_that_do_not_match_exactly() {
    for bad in [
        &b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\n"[..], // bare LF
        b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\rX\r\n", // bare CR
        b"PROXY TCP4 192.0.2.7\r10.0.0.1 51234 443\r\n",
        b"PROXY  TCP4 192.0.2.7 10.0.0.1 51234 443\r\n", // two spaces
        b"PROXY TCP4 192.0.2.7  10.0.0.1 51234 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443 \r\n", // trailing space
        b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443 9\r\n", // extra field
        b"PROXY TCP4 192.0.2.7 10.0.0.1 51234\r\n",      // missing field
        b"PROXY TCP4\r\n",
        b"PROXY\r\n",
        b"PROXYTCP4 192.0.2.7 10.0.0.1 51234 443\r\n",
        b"PROXY tcp4 192.0.2.7 10.0.0.1 51234 443\r\n", // case matters
        b"PROXY UDP4 192.0.2.7 10.0.0.1 51234 443\r\n",
        b"PROXY TCP4 2001:db8::7 10.0.0.1 51234 443\r\n", // family mismatch
        b"PROXY TCP6 192.0.2.7 ::1 51234 443\r\n",
        b"PROXY TCP4 192.0.2.07 10.0.0.1 51234 443\r\n", // leading zero (octal?)
        b"PROXY TCP4 192.0.2.256 10.0.0.1 51234 443\r\n",
        b"PROXY TCP4 192.0.2 10.0.0.1 51234 443\r\n",
        b"PROXY TCP6 fe80::1%eth0 ::1 51234 443\r\n", // zone id
        b"PROXY TCP4 192.0.2.7 10.0.0.1 051234 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 01 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 +80 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 -1 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 99999 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 1 \xff\r\n",
    ] {
        malformed(bad);
    }
    // Port 0 is a valid port number.
    complete(b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n");
}

#[test]
fn v1_without_crlf_in_107_bytes_is_refused_at_once() {
    let mut line = b"PROXY TCP4 ".to_vec();
    line.resize(200, b'1');
    assert!(malformed(&line).contains("107"));
    // Already at 107 bytes without a CRLF: no need to wait for more.
    assert!(malformed(&line[..V1_MAX]).contains("107"));
    assert_eq!(
        parse(&line[..V1_MAX - 1]),
        Ok(Parsed::Incomplete { want: V1_MAX })
    );
}

// ---- no header -------------------------------------------------------------

#[test]
fn other_protocols_are_missing_the_header_from_their_first_byte() {
    for buf in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"G",
        b"\x16\x03\x01\x02\x00", // a TLS ClientHello
        b"PRI * HTTP/2.0\r\n",
        b"proxy TCP4",
        b"\r\n\r\nX",
        b"PROX ",
    ] {
        assert_eq!(parse(buf), Err(ProxyError::PeerMissing), "{buf:?}");
    }
    assert_eq!(parse(b""), Ok(Parsed::Incomplete { want: V1_MAX }));
    assert_eq!(parse(b"PRO"), Ok(Parsed::Incomplete { want: V1_MAX }));
    assert_eq!(
        parse(b"\r\n\r\n\0"),
        Ok(Parsed::Incomplete { want: V1_MAX })
    );
}

// ---- version 2 -------------------------------------------------------------

#[test]
fn v2_tcp4_and_tcp6_give_both_endpoints() {
    let mut buf = v2(0x21, 0x11, &inet_body());
    buf.extend_from_slice(b"\x16\x03\x01"); // the ClientHello that follows
    let (h, used) = complete(&buf);
    assert_eq!((h.version, used), (Version::V2, 28));
    let (src, dst) = tcp(h);
    assert_eq!(src, "192.0.2.7:51234".parse().unwrap());
    assert_eq!(dst, "10.0.0.1:443".parse().unwrap());

    let (h, used) = complete(&v2(0x21, 0x21, &inet6_body()));
    assert_eq!(used, 16 + 36);
    let (src, dst) = tcp(h);
    assert_eq!(src, "[2001:db8::7]:40000".parse().unwrap());
    assert_eq!(dst, "[2001:db8::1]:80".parse().unwrap());
}

#[test]
fn v2_every_prefix_is_incomplete_and_asks_for_the_whole_header() {
    let mut body = inet6_body();
    body.extend_from_slice(&[0x04, 0x00, 0x02, 0, 0]); // NOOP TLV
    let buf = v2(0x21, 0x21, &body);
    assert_prefixes_incomplete(&buf);
    assert_eq!(
        parse(&buf[..20]),
        Ok(Parsed::Incomplete {
            want: 16 + body.len()
        })
    );
}

#[test]
fn v2_tlvs_are_skipped_when_they_fit_exactly() {
    let mut body = inet_body();
    body.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']); // ALPN
    body.extend_from_slice(&[0x20, 0x00, 0x00]); // empty SSL
    body.extend_from_slice(&[0x04, 0x00, 0x00]); // NOOP
    let (h, used) = complete(&v2(0x21, 0x11, &body));
    assert_eq!(used, 16 + body.len());
    assert_eq!(tcp(h).0, "192.0.2.7:51234".parse().unwrap());

    let mut overrun = inet_body();
    overrun.extend_from_slice(&[0x01, 0x00, 0x05, b'h', b'2']);
    assert!(malformed(&v2(0x21, 0x11, &overrun)).contains("TLV"));
    let mut stub = inet_body();
    stub.extend_from_slice(&[0x01, 0x00]);
    assert!(malformed(&v2(0x21, 0x11, &stub)).contains("TLV"));
}

#[test]
fn v2_local_keeps_the_real_endpoints_whatever_the_block_says() {
    for (fam, body) in [
        (0x00, Vec::new()),
        (0x11, inet_body()),
        (0xff, vec![1, 2, 3]), // the family is ignored for LOCAL
    ] {
        let buf = v2(0x20, fam, &body);
        let (h, used) = complete(&buf);
        assert_eq!(h.addresses, Addresses::Local, "{fam:#x}");
        assert_eq!(used, buf.len());
    }
}

#[test]
fn v2_unspec_unix_and_udp_fall_back_to_the_real_endpoints() {
    let unix = vec![0u8; 216];
    for (fam, body) in [
        (0x00, Vec::new()),
        (0x00, vec![9; 7]),
        (0x10, inet_body()), // INET + UNSPEC transport
        (0x12, inet_body()), // UDP over IPv4
        (0x22, inet6_body()),
        (0x31, unix.clone()),
        (0x32, unix),
    ] {
        let (h, _) = complete(&v2(0x21, fam, &body));
        assert_eq!(h.addresses, Addresses::Local, "{fam:#x}");
    }
}

#[test]
fn v2_rejects_bad_version_command_family_and_short_blocks() {
    let body = inet_body();
    assert!(malformed(&v2(0x11, 0x11, &body)).contains("version"));
    assert!(malformed(&v2(0x31, 0x11, &body)).contains("version"));
    assert!(malformed(&v2(0x22, 0x11, &body)).contains("command"));
    assert!(malformed(&v2(0x2f, 0x11, &body)).contains("command"));
    assert!(malformed(&v2(0x21, 0x41, &body)).contains("family"));
    assert!(malformed(&v2(0x21, 0x13, &body)).contains("transport"));
    assert!(malformed(&v2(0x21, 0x11, &body[..11])).contains("shorter"));
    assert!(malformed(&v2(0x21, 0x21, &inet_body())).contains("shorter"));
    assert!(malformed(&v2(0x21, 0x31, &[0; 215])).contains("shorter"));
    // A bad version is refused as soon as its byte arrives.
    let buf = v2(0x11, 0x11, &body);
    assert!(matches!(
        parse(&buf[..13]),
        Err(ProxyError::PeerMalformed(_))
    ));
}

#[test]
fn v2_accepts_the_longest_header() {
    let mut body = inet_body();
    let tlv = u16::MAX as usize - body.len() - 3;
    body.extend_from_slice(&[0x04]);
    body.extend_from_slice(&u16::try_from(tlv).unwrap().to_be_bytes());
    body.resize(u16::MAX as usize, 0);
    let buf = v2(0x21, 0x11, &body);
    assert_eq!(buf.len(), MAX_HEADER);
    assert_eq!(complete(&buf).1, MAX_HEADER);
    assert_eq!(
        parse(&buf[..100]),
        Ok(Parsed::Incomplete { want: MAX_HEADER })
    );
}

#[test]
fn reasons_have_stable_labels_and_indexes() {
    let labels: Vec<_> = Rejected::ALL.iter().map(|r| r.label()).collect();
    assert_eq!(
        labels,
        ["untrusted", "missing", "malformed", "truncated", "timeout"]
    );
    for (i, r) in Rejected::ALL.iter().enumerate() {
        assert_eq!(r.index(), i);
    }
    assert_eq!(Rejected::from(ProxyError::PeerMissing), Rejected::Missing);
    assert_eq!(
        Rejected::from(ProxyError::PeerMalformed("x")),
        Rejected::Malformed
    );
}

#[test]
fn arbitrary_bytes_never_panic_and_respect_the_contract() {
    // A small deterministic generator; biased towards both signatures.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let len = (next() % 140) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match next() % 3 {
            0 => {
                let sig = V2_SIGNATURE.len().min(buf.len());
                buf[..sig].copy_from_slice(&V2_SIGNATURE[..sig]);
                if buf.len() > 15 {
                    buf[12] = 0x20 | (buf[12] & 1);
                    buf[14] = 0;
                    buf[15] %= 64;
                }
            }
            1 => {
                let p = b"PROXY TCP4 ";
                let n = p.len().min(buf.len());
                buf[..n].copy_from_slice(&p[..n]);
            }
            _ => {}
        }
        match parse(&buf) {
            Ok(Parsed::Complete { used, header }) => {
                assert!(used <= buf.len());
                assert_eq!(parse(&buf[..used]), Ok(Parsed::Complete { header, used }));
            }
            Ok(Parsed::Incomplete { want }) => {
                assert!(want > buf.len() && want <= MAX_HEADER)
            }
            Err(_) => {}
        }
    }
}
