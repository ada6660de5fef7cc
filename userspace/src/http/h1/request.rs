//! Parsing an HTTP/1.1 request head from a client (RFC 9112 §3, §5, §6),
//! refusing every request-smuggling shape.
//!
//! Owns: [`RequestHead`], [`Host`], [`parse_request_head`] and the request
//! rules: Host (RFC 9112 §3.2, RFC 9110 §7.2), framing (RFC 9112 §6.1,
//! §6.3), persistence (RFC 9112 §9.3), `Expect: 100-continue`
//! (RFC 9110 §10.1.1) and `Upgrade` (RFC 9110 §7.8).
//! Must not: decode the body (see `body.rs`), route, or rewrite headers.
//! Fed by: the bytes a client sent, from the start of a request.
//! Emits: `Ok(None)` (need more bytes), the head and its length, or an
//! `HttpError` (`Peer*` / `Limit*`).
//!
//! Order of checks: size limits on the raw lines first (so a huge head is
//! 431/414 before anything else), then `httparse` tokenizing (errors
//! classified precisely), then field semantics.

use super::body::BodyKind;
use super::head::{
    Framing, Headers, Scan, classify_request_error, find_header, framing, lists_token, own_headers,
    scan_head,
};
use crate::http::{HttpError, Limits};

/// The `Host` of a request, from the absolute-form target if there is one
/// (RFC 9112 §3.2.2), else from the Host field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Lowercased host without port, one trailing dot removed; IPv6
    /// literals keep their brackets (`[::1]`). Empty if the field was empty.
    pub name: String,
    /// Port, if one was given.
    pub port: Option<u16>,
    /// The value as received.
    pub raw: String,
}

/// A parsed request head. Field names keep their received case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Method token, case-sensitive (RFC 9110 §9.1).
    pub method: String,
    /// Request target as received (origin-, absolute-, authority- or
    /// asterisk-form, RFC 9112 §3.2).
    pub target: String,
    /// HTTP minor version: 0 or 1.
    pub version: u8,
    /// Field lines in order: name as received, value with OWS trimmed.
    pub headers: Headers,
    /// Body framing (never `CloseDelimited` for a request, RFC 9112 §6.3).
    pub body: BodyKind,
    /// Connection persists after this exchange, as far as the client is
    /// concerned (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` in an HTTP/1.1 request (RFC 9110 §10.1.1).
    pub expect_continue: bool,
    /// The `Upgrade` value when `Connection` lists `upgrade` (HTTP/1.1).
    pub upgrade: Option<String>,
    /// Host; `None` only for an HTTP/1.0 request without one.
    pub host: Option<Host>,
}

impl RequestHead {
    /// First value of `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }

    /// Every value of `name`, in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// `HEAD` request: its response has no body (RFC 9110 §9.3.2).
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Parse a request head at the start of `buf`.
///
/// `Ok(None)`: incomplete, read more. `Ok(Some((head, n)))`: the head is
/// `buf[..n]`; the body or the next pipelined request starts at `n`.
/// `Err`: refuse the request with `err.status()` and close.
pub fn parse_request_head(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let (slice, capacity, complete) = match scan_head(buf, limits, true)? {
        Scan::Complete { len, fields } => (buf.get(..len).unwrap_or(buf), fields, true),
        Scan::Partial { fields } => (buf, fields + 1, false),
    };
    let mut fields = vec![httparse::EMPTY_HEADER; capacity];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(slice) {
        Ok(httparse::Status::Complete(n)) if complete && n == slice.len() => n,
        Ok(httparse::Status::Partial) if !complete => return Ok(None),
        // The line scanner and the tokenizer disagree: refuse, never guess.
        Ok(_) => return Err(HttpError::PeerInvalidRequestLine),
        Err(e) => return Err(classify_request_error(slice, e)),
    };
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    let version = req.version.unwrap_or_default();
    let headers = &*req.headers;

    check_target_form(method, target)?;
    let host = request_host(headers, target, version)?;

    if version == 0
        && headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        // RFC 9112 §6.1: TE in HTTP/1.0 means faulty framing.
        return Err(HttpError::PeerTransferEncodingInHttp10);
    }
    let body = match framing(headers, false)? {
        Framing::Absent => BodyKind::None,
        Framing::Chunked => BodyKind::Chunked,
        Framing::Length(n) if n > limits.max_body => return Err(HttpError::LimitBody),
        Framing::Length(n) => BodyKind::Length(n),
    };

    let close = lists_token(headers, "connection", "close");
    let keep_alive = if version == 1 {
        !close
    } else {
        !close && lists_token(headers, "connection", "keep-alive")
    };
    // RFC 9110 §10.1.1: ignore 100-continue from HTTP/1.0 clients.
    let expect_continue = version == 1
        && headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("expect")
                && h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue")
        });
    // RFC 9110 §7.8: Upgrade counts only when listed in Connection, and
    // is ignored in HTTP/1.0.
    let upgrade = if version == 1 && lists_token(headers, "connection", "upgrade") {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("upgrade"))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    } else {
        None
    };

    let head = RequestHead {
        method: method.to_owned(),
        target: target.to_owned(),
        version,
        headers: own_headers(headers),
        body,
        keep_alive,
        expect_continue,
        upgrade,
        host,
    };
    Ok(Some((head, len)))
}

/// RFC 9112 §3.2: origin-form (`/...`), absolute-form (`http(s)://...`),
/// authority-form (CONNECT only) or asterisk-form (OPTIONS only).
fn check_target_form(method: &str, target: &str) -> Result<(), HttpError> {
    let ok = if method == "CONNECT" {
        !target.starts_with('/') && target != "*"
    } else if target == "*" {
        method == "OPTIONS"
    } else {
        target.starts_with('/') || absolute_authority(target).is_some()
    };
    if ok {
        Ok(())
    } else {
        Err(HttpError::PeerInvalidRequestLine)
    }
}

/// The authority of an `http`/`https` absolute-form target.
fn absolute_authority(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest.get(..end)
}

/// Exactly one Host in HTTP/1.1, at most one in 1.0 (RFC 9112 §3.2); the
/// absolute-form authority wins over the field (RFC 9112 §3.2.2).
fn request_host(
    headers: &[httparse::Header<'_>],
    target: &str,
    version: u8,
) -> Result<Option<Host>, HttpError> {
    let mut hosts = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    let field = hosts.next();
    if hosts.next().is_some() {
        return Err(HttpError::PeerMultipleHost);
    }
    let from_field = match field {
        Some(h) => Some(parse_host(h.value)?),
        None if version == 1 => return Err(HttpError::PeerMissingHost),
        None => None,
    };
    match absolute_authority(target) {
        Some(authority) => parse_host(authority.as_bytes()).map(Some),
        None => Ok(from_field),
    }
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2). No
/// userinfo; reg-name limited to unreserved / pct-encoded / sub-delims.
pub fn parse_host(raw: &[u8]) -> Result<Host, HttpError> {
    let invalid = HttpError::PeerInvalidHost;
    let raw_str = std::str::from_utf8(raw).map_err(|_| invalid)?;
    let (name, port) = if let Some(rest) = raw_str.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or(invalid)?;
        let literal_ok = !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !literal_ok {
            return Err(invalid);
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(invalid)?),
        };
        (raw_str.get(..inner.len() + 2).ok_or(invalid)?, port)
    } else {
        match raw_str.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (raw_str, None),
        }
    };
    let reg_name_ok = name.starts_with('[')
        || name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b));
    if !reg_name_ok {
        return Err(invalid);
    }
    let port = match port {
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| invalid)?)
        }
        Some(_) => return Err(invalid),
    };
    let mut name = name.to_ascii_lowercase();
    if name.ends_with('.') {
        name.pop();
    }
    Ok(Host {
        name,
        port,
        raw: raw_str.to_owned(),
    })
}

#[cfg(test)]
mod tests {
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
        let h =
            ok(b"GET /index.html?q=1 HTTP/1.1\r\nHost: Example.COM.:8080\r\nAccept: */*\r\n\r\n");
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
        assert_eq!(h.headers[0].0, "Host");
        assert!(!h.is_head());
    }

    #[test]
    fn keeps_header_order_case_and_trims_ows() {
        let h = ok(b"GET / HTTP/1.1\r\nhOsT: x\r\nX-A:  1 \t\r\nx-a: 2\r\nEmpty:\r\n\r\n");
        let names: Vec<_> = h.headers.iter().map(|(n, _)| n.as_str()).collect();
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
        let buf =
            b"POST /upload HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\nX-Y: z\r\n\r\nabc";
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
        let buf = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: y\r\n\r\nGET /c HTTP/1.1\r\n";
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
            !ok(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: a\r\nConnection: close\r\n\r\n")
                .keep_alive
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
}
