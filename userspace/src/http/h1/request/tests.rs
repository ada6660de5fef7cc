//! Unit tests of HTTP/1.1 request head parsing (`request.rs`): request
//! lines and target forms, Host rules, framing and smuggling refusals,
//! persistence, `Expect`, `Upgrade`, and the size limits.

use super::*;

fn parse(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HttpError> {
    parse_request_head(buf, &Limits::default())
}

fn ok(buf: &[u8]) -> RequestHead {
    match parse(buf) {
        Ok(Some((head, n))) => {
            assert_eq!(n, buf.len(), "head length");
            head
        }
        other => panic!("{:?} -> {other:?}", buf.escape_ascii()),
    }
}

fn err(buf: &[u8]) -> HttpError {
    match parse(buf) {
        Err(e) => e,
        other => panic!("{:?} accepted: {other:?}", buf.escape_ascii()),
    }
}

fn req(fields: &str) -> Vec<u8> {
    format!("POST /p HTTP/1.1\r\nHost: a.example\r\n{fields}\r\n").into_bytes()
}

#[test]
fn parses_simple_get() {
    let h = ok(b"GET /index.html?q=1 HTTP/1.1\r\nHost: Example.COM.:8080\r\nAccept: */*\r\n\r\n");
    assert_eq!(h.method, "GET");
    assert_eq!(h.target, "/index.html?q=1");
    assert_eq!(h.version, 1);
    assert_eq!(h.body, BodyKind::None);
    assert!(h.keep_alive);
    assert!(!h.expect_continue);
    assert_eq!(h.upgrade, None);
    let host = h.host.clone().unwrap();
    assert_eq!(host.name, "example.com");
    assert_eq!(host.port, Some(8080));
    assert_eq!(host.raw, "Example.COM.:8080");
    assert_eq!(h.header("accept"), Some(&b"*/*"[..]));
    assert_eq!(h.headers.get(0).map(|(n, _)| n), Some("Host"));
    assert!(!h.is_head());
}

#[test]
fn keeps_header_order_case_and_trims_ows() {
    let h = ok(b"GET / HTTP/1.1\r\nhOsT: x\r\nX-A:  1 \t\r\nx-a: 2\r\nEmpty:\r\n\r\n");
    let names: Vec<_> = h.headers.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["hOsT", "X-A", "x-a", "Empty"]);
    assert_eq!(
        h.header_values("X-a").collect::<Vec<_>>(),
        [&b"1"[..], b"2"]
    );
    assert_eq!(h.header("empty"), Some(&b""[..]));
}

#[test]
fn incomplete_head_is_none() {
    assert_eq!(parse(b""), Ok(None));
    assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
    assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r"), Ok(None));
}

#[test]
fn parses_at_every_split_point() {
    let buf = b"POST /upload HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\nX-Y: z\r\n\r\nabc";
    let head_len = buf.len() - 3;
    for cut in 0..buf.len() {
        match parse(&buf[..cut]) {
            Ok(None) => assert!(cut < head_len, "cut {cut}"),
            Ok(Some((h, n))) => {
                assert!(cut >= head_len);
                assert_eq!(n, head_len);
                assert_eq!(h.body, BodyKind::Length(3));
            }
            Err(e) => panic!("cut {cut}: {e:?}"),
        }
    }
}

#[test]
fn returns_consumed_length_for_pipelined_requests() {
    let buf =
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: y\r\n\r\nGET /c HTTP/1.1\r\n";
    let (a, n) = parse(buf).unwrap().unwrap();
    assert_eq!(a.target, "/a");
    let (b, m) = parse(&buf[n..]).unwrap().unwrap();
    assert_eq!(b.target, "/b");
    assert_eq!(b.host.unwrap().name, "y");
    assert_eq!(parse(&buf[n + m..]), Ok(None));
}

#[test]
fn skips_leading_empty_lines_and_accepts_bare_lf() {
    let h = ok(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(h.target, "/");
    let h = ok(b"GET / HTTP/1.1\nHost: x\n\n");
    assert_eq!(h.host.unwrap().name, "x");
}

#[test]
fn http10_defaults_to_close() {
    let h = ok(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(h.version, 0);
    assert!(!h.keep_alive);
    assert_eq!(h.host, None);
    assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    assert!(!ok(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
}

#[test]
fn http11_close_token_ends_keep_alive() {
    assert!(!ok(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, CLOSE\r\n\r\n").keep_alive);
    assert!(
        !ok(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: a\r\nConnection: close\r\n\r\n").keep_alive
    );
    assert!(ok(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: closed\r\n\r\n").keep_alive);
}

#[test]
fn detects_expect_continue_only_in_http11() {
    assert!(ok(&req("Content-Length: 1\r\nExpect: 100-Continue\r\n")).expect_continue);
    assert!(!ok(&req("Expect: something\r\n")).expect_continue);
    assert!(!ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
}

#[test]
fn detects_upgrade_only_with_connection_upgrade() {
    let h = ok(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(h.upgrade.as_deref(), Some("websocket"));
    let h = ok(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(h.upgrade, None);
    let h = ok(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n");
    assert_eq!(h.upgrade, None);
    let h = ok(b"GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(h.upgrade, None);
}

#[test]
fn reads_body_framing() {
    assert_eq!(ok(&req("Content-Length: 0\r\n")).body, BodyKind::Length(0));
    assert_eq!(
        ok(&req("Content-Length: 42\r\n")).body,
        BodyKind::Length(42)
    );
    assert_eq!(
        ok(&req("Transfer-Encoding: chunked\r\n")).body,
        BodyKind::Chunked
    );
    assert_eq!(
        ok(&req("Transfer-Encoding:  ChUnKeD \t\r\n")).body,
        BodyKind::Chunked
    );
    assert_eq!(ok(&req("")).body, BodyKind::None);
}

#[test]
fn rejects_conflicting_content_length() {
    for f in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5,6\r\n",
        "content-length: 5\r\nCONTENT-LENGTH: 5\r\n",
    ] {
        assert_eq!(err(&req(f)), HttpError::PeerConflictingContentLength, "{f}");
    }
}

#[test]
fn rejects_invalid_content_length() {
    for f in [
        "Content-Length: -1\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: 0x10\r\n",
        "Content-Length: 5 5\r\n",
        "Content-Length:\r\n",
        "Content-Length: 99999999999999999999999\r\n",
    ] {
        assert_eq!(err(&req(f)), HttpError::PeerInvalidContentLength, "{f}");
    }
}

#[test]
fn rejects_cl_with_te() {
    for f in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Transfer-Encoding: gzip\r\nContent-Length: 0\r\n",
    ] {
        assert_eq!(
            err(&req(f)),
            HttpError::PeerContentLengthWithTransferEncoding,
            "{f}"
        );
    }
}

#[test]
fn rejects_unknown_transfer_coding() {
    for f in [
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: identity\r\n",
        "Transfer-Encoding: chunked, gzip\r\n",
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: chunked;q=1\r\n",
        "Transfer-Encoding: \"chunked\"\r\n",
    ] {
        assert_eq!(err(&req(f)), HttpError::PeerUnknownTransferCoding, "{f}");
    }
}

#[test]
fn rejects_repeated_chunked_and_repeated_te_lines() {
    for f in [
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\ntransfer-encoding: identity\r\n",
        "Transfer-Encoding:\r\n",
        "Transfer-Encoding: chunked,\r\n",
        "Transfer-Encoding: , chunked\r\n",
    ] {
        assert_eq!(err(&req(f)), HttpError::PeerInvalidTransferEncoding, "{f}");
    }
}

#[test]
fn rejects_te_in_http10() {
    assert_eq!(
        err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        HttpError::PeerTransferEncodingInHttp10
    );
}

#[test]
fn rejects_obs_fold() {
    assert_eq!(err(&req("X-A: b\r\n c\r\n")), HttpError::PeerObsFold);
    assert_eq!(err(&req("X-A: b\r\n\tc\r\n")), HttpError::PeerObsFold);
    assert_eq!(
        err(b"GET / HTTP/1.1\r\n Host: x\r\n\r\n"),
        HttpError::PeerObsFold
    );
    // Detected before the head is complete.
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: x\r\n c"),
        HttpError::PeerObsFold
    );
}

#[test]
fn rejects_bare_cr() {
    assert_eq!(
        err(&req("X-A: b\rc\r\n")),
        HttpError::PeerInvalidHeaderValue
    );
    assert_eq!(err(&req("X-A: b\r\r\n")), HttpError::PeerInvalidHeaderValue);
    assert_eq!(
        err(&req("X-A: b\rX-B: c\r\n")),
        HttpError::PeerInvalidHeaderValue
    );
    assert_eq!(
        err(b"GET / HTTP/1.1\rHost: x\r\n\r\n"),
        HttpError::PeerInvalidRequestLine
    );
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: x\r\n\r\r\n"),
        HttpError::PeerInvalidHeaderName
    );
}

#[test]
fn rejects_nul_and_ctls_in_values() {
    for f in [
        "X-A: b\0c\r\n",
        "X-A: \x01\r\n",
        "X-A: a\x7f\r\n",
        "X-A: a\x1bb\r\n",
    ] {
        assert_eq!(err(&req(f)), HttpError::PeerInvalidHeaderValue, "{f:?}");
    }
    // obs-text and HTAB are fine.
    let h = ok(&req("X-A: caf\u{e9}\tb\r\n"));
    assert_eq!(h.header("x-a"), Some("caf\u{e9}\tb".as_bytes()));
}

#[test]
fn rejects_invalid_header_names() {
    for f in [
        "Host : x\r\n",
        "X A: b\r\n",
        "X\0A: b\r\n",
        ": b\r\n",
        "X(A): b\r\n",
        "X\"A\": b\r\n",
        "X-\u{e9}: b\r\n",
        "NoColon\r\n",
        "X/A: b\r\n",
    ] {
        assert_eq!(err(&req(f)), HttpError::PeerInvalidHeaderName, "{f:?}");
    }
}

#[test]
fn rejects_invalid_request_lines() {
    for line in [
        &b"GET  / HTTP/1.1\r\n\r\n"[..],
        b"GET /  HTTP/1.1\r\n\r\n",
        b"GET\t/ HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 \r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET / http/1.1\r\n\r\n",
        b"G\0T / HTTP/1.1\r\n\r\n",
        b"GET /a\0b HTTP/1.1\r\n\r\n",
        b"GET /a b HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET foo HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        assert_eq!(
            err(line),
            HttpError::PeerInvalidRequestLine,
            "{:?}",
            line.escape_ascii()
        );
    }
}

#[test]
fn rejects_unsupported_versions_with_505() {
    for line in [
        &b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"[..],
        b"GET / HTTP/1.2\r\n\r\n",
        b"GET / HTTP/0.9\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / HTTP/3",
    ] {
        let e = err(line);
        assert_eq!(
            e,
            HttpError::PeerUnsupportedVersion,
            "{:?}",
            line.escape_ascii()
        );
        assert_eq!(e.status(), 505);
    }
}

#[test]
fn accepts_asterisk_authority_and_absolute_forms() {
    assert_eq!(ok(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").target, "*");
    let h = ok(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n");
    assert_eq!(h.target, "a.example:443");
    let h = ok(b"GET HTTP://Abs.Example:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n");
    let host = h.host.unwrap();
    assert_eq!((host.name.as_str(), host.port), ("abs.example", Some(81)));
}

#[test]
fn absolute_form_yields_origin_form_and_refuses_an_empty_authority() {
    let h = ok(b"GET http://a.example/p?q HTTP/1.1\r\nHost: b.example\r\n\r\n");
    assert!(h.is_absolute_form());
    assert_eq!(h.origin_form(), "/p?q");
    assert_eq!(h.host.unwrap().name, "a.example", "the authority wins");
    let h = ok(b"GET /p?q HTTP/1.1\r\nHost: b.example\r\n\r\n");
    assert!(!h.is_absolute_form());
    assert_eq!(h.origin_form(), "/p?q");
    assert_eq!(origin_form("*"), "/");
    assert_eq!(origin_form("https://a?x=1"), "/?x=1");
    for target in ["http:///p", "http://", "https://?q"] {
        let line = format!("GET {target} HTTP/1.1\r\nHost: b.example\r\n\r\n");
        assert_eq!(err(line.as_bytes()), HttpError::PeerInvalidHost, "{target}");
    }
}

#[test]
fn only_websocket_counts_as_a_websocket_upgrade() {
    let with =
        |conn: &str, upgrade: &str| {
            ok(format!(
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: {conn}\r\nUpgrade: {upgrade}\r\n\r\n"
            )
            .as_bytes())
        };
    assert!(with("Upgrade", "websocket").is_websocket_upgrade());
    assert!(with("keep-alive, upgrade", "h2c, WebSocket").is_websocket_upgrade());
    let h2c = with("Upgrade, HTTP2-Settings", "h2c");
    assert_eq!(
        h2c.upgrade.as_deref(),
        Some("h2c"),
        "what the client asked for"
    );
    assert!(!h2c.is_websocket_upgrade());
    assert!(
        !with("keep-alive", "websocket").is_websocket_upgrade(),
        "not in Connection"
    );
}

#[test]
fn requires_exactly_one_host_in_http11() {
    assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), HttpError::PeerMissingHost);
    assert_eq!(
        err(b"GET http://x/ HTTP/1.1\r\n\r\n"),
        HttpError::PeerMissingHost
    );
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        HttpError::PeerMultipleHost
    );
    assert_eq!(
        err(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
        HttpError::PeerMultipleHost
    );
    // An empty Host is allowed (RFC 9112 §3.2) and yields an empty name.
    assert_eq!(
        ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").host.unwrap().name,
        ""
    );
}

#[test]
fn normalizes_host() {
    for (raw, name, port) in [
        ("A.Example.", "a.example", None),
        ("a.example:", "a.example", None),
        ("a.example:65535", "a.example", Some(65535)),
        ("[::1]:8080", "[::1]", Some(8080)),
        ("[2001:DB8::1]", "[2001:db8::1]", None),
        ("127.0.0.1:80", "127.0.0.1", Some(80)),
    ] {
        let h = parse_host(raw.as_bytes()).unwrap();
        assert_eq!((h.name.as_str(), h.port), (name, port), "{raw}");
        assert_eq!(h.raw, raw);
    }
}

#[test]
fn rejects_invalid_host() {
    for raw in [
        "a b",
        "user@a.example",
        "a.example:99999",
        "a.example:8o",
        "a:1:2",
        "[::1",
        "[]",
        "[::1]x",
        "[zz::1]",
        "a/b",
        "a.example:123456",
    ] {
        assert_eq!(
            parse_host(raw.as_bytes()),
            Err(HttpError::PeerInvalidHost),
            "{raw}"
        );
    }
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n"),
        HttpError::PeerInvalidHost
    );
    assert_eq!(
        err(b"GET http://u@x/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        HttpError::PeerInvalidHost
    );
}

#[test]
fn rejects_content_length_over_max_body_up_front() {
    let limits = Limits {
        max_body: 100,
        ..Limits::default()
    };
    let at = req("Content-Length: 100\r\n");
    assert!(parse_request_head(&at, &limits).unwrap().is_some());
    let over = req("Content-Length: 101\r\n");
    assert_eq!(
        parse_request_head(&over, &limits),
        Err(HttpError::LimitBody)
    );
    // Default: 75 MB.
    assert_eq!(
        err(&req("Content-Length: 75000001\r\n")),
        HttpError::LimitBody
    );
    assert_eq!(
        ok(&req("Content-Length: 75000000\r\n")).body,
        BodyKind::Length(75_000_000)
    );
}

/// A request whose head is exactly `len` bytes long.
fn head_of_len(len: usize) -> Vec<u8> {
    let base = b"GET / HTTP/1.1\r\nHost: x\r\nX: \r\n\r\n".len();
    let mut v = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    // Split the padding over lines of at most 100 bytes.
    let mut pad = len - base;
    while pad > 100 {
        let n = 100 - b"P: \r\n".len();
        v.extend_from_slice(b"P: ");
        v.extend(std::iter::repeat_n(b'p', n));
        v.extend_from_slice(b"\r\n");
        pad -= 100;
    }
    v.extend_from_slice(b"X: ");
    v.extend(std::iter::repeat_n(b'x', pad));
    v.extend_from_slice(b"\r\n\r\n");
    assert_eq!(v.len(), len);
    v
}

#[test]
fn header_section_limit_exact_and_one_over() {
    let limits = Limits {
        max_headers: 1000,
        ..Limits::default()
    };
    let at = head_of_len(32 * 1024);
    assert!(parse_request_head(&at, &limits).unwrap().is_some());
    let over = head_of_len(32 * 1024 + 1);
    let e = parse_request_head(&over, &limits).unwrap_err();
    assert_eq!(e, HttpError::LimitHeaderSection);
    assert_eq!((e.status(), e.code()), (431, "header_section_too_large"));
    // Incomplete but already over the limit: refused without waiting.
    assert_eq!(
        parse_request_head(&over[..32 * 1024 + 1], &limits),
        Err(HttpError::LimitHeaderSection)
    );
    assert_eq!(parse_request_head(&over[..32 * 1024], &limits), Ok(None));
}

#[test]
fn header_line_limit_exact_and_one_over() {
    let line = |n: usize| format!("X: {}\r\n", "v".repeat(n - 3));
    let at = req(&line(8192));
    assert!(parse(&at).unwrap().is_some());
    let over = req(&line(8193));
    let e = err(&over);
    assert_eq!(
        (e, e.status(), e.code()),
        (HttpError::LimitHeaderLine, 431, "header_too_large")
    );
    // Refused as soon as the line outgrows the limit.
    let cut = over.len() - 4;
    assert_eq!(parse(&over[..cut]), Err(HttpError::LimitHeaderLine));
}

#[test]
fn header_count_limit_exact_and_one_over() {
    let fields = |n: usize| (1..n).map(|i| format!("X-{i}: v\r\n")).collect::<String>();
    // Host + 99 others = 100 field lines.
    assert_eq!(ok(&req(&fields(100))).headers.len(), 100);
    let e = err(&req(&fields(101)));
    assert_eq!(
        (e, e.status(), e.code()),
        (HttpError::LimitTooManyHeaders, 431, "too_many_headers")
    );
}

#[test]
fn uri_limit_exact_and_one_over() {
    let target = |n: usize| format!("/{}", "a".repeat(n - 1));
    let at = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", target(8192));
    assert!(parse(at.as_bytes()).unwrap().is_some());
    let over = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", target(8193));
    let e = err(over.as_bytes());
    assert_eq!(
        (e, e.status(), e.code()),
        (HttpError::LimitUriTooLong, 414, "uri_too_long")
    );
    // Refused before the request line is complete.
    assert_eq!(
        parse(&over.as_bytes()[..8200]),
        Err(HttpError::LimitUriTooLong)
    );
}
