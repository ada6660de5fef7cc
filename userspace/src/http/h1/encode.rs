//! Writing HTTP/1.1 heads, router error responses and chunked framing.
//!
//! Owns: request heads toward a backend, response heads toward a client,
//! complete short error responses, chunk re-framing, hop-by-hop field
//! removal (RFC 9110 §7.6.1) and the reason-phrase table (RFC 9110 §15).
//! Must not: parse, decide routing or persistence (the caller says whether
//! the client connection closes), or touch the body beyond chunk framing.
//! Fed by: parsed heads plus the proxy's extra fields. Emits: bytes
//! appended to a caller-owned `Vec<u8>` (no allocation beyond its growth).
//!
//! Framing fields are never copied from the received head: they are
//! re-emitted from `head.body` (`Content-Length: n` or
//! `Transfer-Encoding: chunked`), so a caller that re-frames a body (e.g.
//! compression, HTTP/2) only changes `body` before encoding. Values written
//! here are sanitized: a CR, LF, NUL or other CTL in a caller-supplied name or
//! value becomes a space (`-` in names), so no input can split a message.

use std::fmt::Write as _;

use super::body::BodyKind;
use super::head::{Headers, is_tchar, list_elements};
use super::request::RequestHead;
use super::response::ResponseHead;
use crate::http::CONNECTION_SPECIFIC;

/// Dropped when forwarding, besides [`CONNECTION_SPECIFIC`]: the other
/// hop-by-hop fields (`TE`, `Trailer`: RFC 9110 §7.6.1), `HTTP2-Settings`
/// (connection-specific, meaningful only with the `h2c` upgrade Portier
/// never forwards, RFC 7540 §3.2.1) and `Content-Length`, which is
/// re-emitted from `body` (RFC 9112 §6).
const ALSO_HOP_BY_HOP: &[&str] = &["te", "trailer", "http2-settings", "content-length"];

/// A field never copied from the received head.
fn hop_by_hop(name: &str) -> bool {
    CONNECTION_SPECIFIC
        .iter()
        .chain(ALSO_HOP_BY_HOP)
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// Write the request head toward a backend: always `HTTP/1.1`, persistent
/// (no `Connection` field) unless this is a WebSocket upgrade, in which case
/// `Connection: upgrade` and `Upgrade: websocket` are sent (RFC 9110 §7.8).
/// Any other upgrade (`h2c`, `TLS/1.0`...) is not forwarded: `Upgrade` is
/// hop-by-hop and the `upgrade` token goes with the rest of `Connection`,
/// so the backend sees a plain request it cannot switch protocols on.
/// Hop-by-hop fields and every field named in `Connection` are dropped (RFC
/// 9110 §7.6.1) — except `Host`, which a client cannot make disappear.
/// Field names containing `_` are dropped (see [`is_underscored`]). An
/// absolute-form target is sent in origin-form with `Host` set to its
/// authority, first (RFC 9112 §3.2.2: a proxy "MUST generate a new Host
/// field value based on the received request-target rather than forward the
/// received Host field value"). Fields in `extra` replace same-named
/// incoming ones (ASCII case-insensitive) and come last.
pub fn encode_request_head(head: &RequestHead, extra: &[(&str, &[u8])], out: &mut Vec<u8>) {
    push_sanitized(out, head.method.as_bytes(), true);
    out.push(b' ');
    push_sanitized(out, head.origin_form().as_bytes(), false);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let authority = head
        .host
        .as_ref()
        .filter(|_| head.is_absolute_form())
        .map(|h| h.raw.as_bytes());
    if let Some(authority) = authority {
        push_field(out, "Host", authority);
    }
    let fields = forwarded_fields(&head.headers, extra, &["host"])
        .filter(|(name, _)| !is_underscored(name))
        .filter(|(name, _)| authority.is_none() || !name.eq_ignore_ascii_case("host"));
    for (name, value) in fields {
        push_field(out, name, value);
    }
    push_framing(out, head.body);
    if head.is_websocket_upgrade() {
        push_field(out, "Connection", b"upgrade");
        push_field(out, "Upgrade", b"websocket");
    }
    for (name, value) in extra {
        push_field(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

/// A request field whose name contains `_` is never forwarded, whatever
/// the name (nginx's `underscores_in_headers off`). CGI-style gateways
/// (Rack, WSGI, PHP, most app servers) map both `-` and `_` to `_`, so
/// `X_Forwarded_For` or `Transfer_Encoding` reaches the app as the same
/// variable as the field Portier set or framed by; the same holds for any
/// name an app trusts from its edge (`X-Auth-User`...), which Portier
/// cannot know, hence all of them rather than a list of sensitive names.
/// `-` is the only separator in registered field names.
pub fn is_underscored(name: &str) -> bool {
    name.contains('_')
}

/// Write the response head toward a client: always `HTTP/1.1` (RFC 9110
/// §6.2), hop-by-hop fields stripped like requests, framing from
/// `head.body`. `close`: the client connection will close after this
/// response (`Connection: close` is added; a close-delimited body forces it).
/// `client_version`: the client's minor version; a persistent HTTP/1.0
/// client gets `Connection: keep-alive`. An HTTP/1.0 client cannot receive
/// chunked: the caller must set `head.body` to `CloseDelimited` (and strip
/// the chunk framing) for it.
///
/// Interim 1xx heads get no `Connection` field; a `101` keeps
/// `Connection: upgrade` and `Upgrade`. For bodiless responses to HEAD and
/// for 304 the received `Content-Length` is kept (RFC 9110 §8.6); for 1xx and
/// 204 it is dropped.
pub fn encode_response_head(
    head: &ResponseHead,
    extra: &[(&str, &[u8])],
    client_version: u8,
    close: bool,
    out: &mut Vec<u8>,
) {
    let reason = if head.reason.is_empty() {
        reason_phrase(head.status)
    } else {
        &head.reason
    };
    // One allocation for the whole head: a client's write buffer is freed
    // whenever it empties, so it would otherwise regrow field by field.
    let fields: usize = head
        .headers
        .iter()
        .map(|(n, v)| n.len() + v.len() + 4)
        .chain(extra.iter().map(|(n, v)| n.len() + v.len() + 4))
        .sum();
    out.reserve(reason.len() + fields + 64);
    let _ = write!(ByteWriter(out), "HTTP/1.1 {:03} ", head.status);
    push_sanitized(out, reason.as_bytes(), false);
    out.extend_from_slice(b"\r\n");
    for (name, value) in forwarded_fields(&head.headers, extra, &[]) {
        push_field(out, name, value);
    }
    let informational = head.status < 200;
    match head.body {
        BodyKind::None if !informational && head.status != 204 => {
            if let Some((_, v)) = head
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            {
                push_field(out, "Content-Length", v);
            }
        }
        kind => push_framing(out, kind),
    }
    if head.is_switching_protocols() {
        push_field(out, "Connection", b"upgrade");
        if let Some(upgrade) = head.header("upgrade") {
            push_field(out, "Upgrade", upgrade);
        }
    } else if !informational {
        if close || head.body == BodyKind::CloseDelimited {
            push_field(out, "Connection", b"close");
        } else if client_version == 0 {
            push_field(out, "Connection", b"keep-alive");
        }
    }
    for (name, value) in extra {
        push_field(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

/// Write a complete short response: status line with the standard reason
/// phrase, `fields`, `Content-Length` of `body`, `Connection: close` if
/// `close`, then `body` unless `head_only` (the answer to HEAD).
pub fn encode_plain_response(
    status: u16,
    fields: &[(&str, &[u8])],
    body: &[u8],
    close: bool,
    head_only: bool,
    out: &mut Vec<u8>,
) {
    let _ = write!(
        ByteWriter(out),
        "HTTP/1.1 {status:03} {}\r\n",
        reason_phrase(status)
    );
    for (name, value) in fields {
        push_field(out, name, value);
    }
    let _ = write!(ByteWriter(out), "Content-Length: {}\r\n", body.len());
    if close {
        push_field(out, "Connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// The one-line body of a short answer: `503 Service Unavailable: queue_full\n`
/// (`what` is a reason code or a location; control bytes are dropped).
pub fn short_body(status: u16, what: &str) -> Vec<u8> {
    let mut body = format!("{status:03} {}: ", reason_phrase(status)).into_bytes();
    push_sanitized(&mut body, what.as_bytes(), false);
    body.push(b'\n');
    body
}

/// A short error response (the demo backend's, and tests'): `Content-Type:
/// text/plain`, `<error_header>: <code>`, the `extra` fields and a one-line
/// body such as `431 Request Header Fields Too Large: header_section_too_large\n`.
/// Portier's own answers go through `http::answer`. Returns the length of
/// the head within the appended bytes.
pub fn error_response(
    status: u16,
    code: &str,
    error_header: &str,
    extra: &[(&str, &str)],
    close: bool,
    out: &mut Vec<u8>,
) -> usize {
    let body = short_body(status, code);
    let mut fields: Vec<(&str, &[u8])> = vec![
        ("Content-Type", b"text/plain; charset=utf-8"),
        (error_header, code.as_bytes()),
    ];
    fields.extend(extra.iter().map(|(n, v)| (*n, v.as_bytes())));
    let start = out.len();
    encode_plain_response(status, &fields, &body, close, false, out);
    out.len() - start - body.len()
}

/// Append one chunk (RFC 9112 §7.1). Empty `data` writes nothing: an empty
/// chunk would be read as the last chunk.
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    let _ = write!(ByteWriter(out), "{:X}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Append the last chunk and an empty trailer section (RFC 9112 §7.1).
pub fn encode_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Standard reason phrase (RFC 9110 §15; 429/431 from RFC 6585); empty
/// for unknown codes.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Incoming fields that survive forwarding: not hop-by-hop, not named in
/// `Connection` (unless `protected`), not replaced by `extra`.
fn forwarded_fields<'a>(
    headers: &'a Headers,
    extra: &'a [(&str, &[u8])],
    protected: &'a [&str],
) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
    // The tokens `Connection` lists, gathered once (a walk over every
    // field for each field otherwise); past eight of them, the walk.
    let mut listed: [&[u8]; 8] = [&[]; 8];
    let mut count = 0;
    for token in headers.values_of("connection").flat_map(list_elements) {
        if let Some(slot) = listed.get_mut(count) {
            *slot = token;
        }
        count += 1;
    }
    let connection_named = move |name: &str| match listed.get(..count) {
        Some(tokens) => tokens
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name.as_bytes())),
        None => headers
            .values_of("connection")
            .flat_map(list_elements)
            .any(|t| t.eq_ignore_ascii_case(name.as_bytes())),
    };
    headers.iter().filter_map(move |(name, value)| {
        let dropped = hop_by_hop(name)
            || extra.iter().any(|(e, _)| name.eq_ignore_ascii_case(e))
            || (!protected.iter().any(|p| name.eq_ignore_ascii_case(p)) && connection_named(name));
        (!dropped).then_some((name, value))
    })
}

fn push_framing(out: &mut Vec<u8>, body: BodyKind) {
    match body {
        BodyKind::Length(n) => {
            let _ = write!(ByteWriter(out), "Content-Length: {n}\r\n");
        }
        BodyKind::Chunked => push_field(out, "Transfer-Encoding", b"chunked"),
        BodyKind::None | BodyKind::CloseDelimited => {}
    }
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    push_sanitized(out, name.as_bytes(), true);
    out.extend_from_slice(b": ");
    push_sanitized(out, value, false);
    out.extend_from_slice(b"\r\n");
}

/// Copy bytes, neutralising anything that could end a line or a field.
/// Parsed heads are clean already: one read-only pass, then one copy.
fn push_sanitized(out: &mut Vec<u8>, bytes: &[u8], token: bool) {
    let clean = if token {
        bytes.iter().all(|&b| is_tchar(b))
    } else {
        bytes
            .iter()
            .all(|&b| (b >= 0x20 || b == b'\t') && b != 0x7f)
    };
    let start = out.len();
    out.extend_from_slice(bytes);
    if clean {
        return;
    }
    if token {
        if let Some(tail) = out.get_mut(start..) {
            for b in tail.iter_mut().filter(|b| !is_tchar(**b)) {
                *b = b'-';
            }
        }
    } else if let Some(tail) = out.get_mut(start..) {
        sanitize_in_place(tail);
    }
}

fn sanitize_in_place(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        if (*b < 0x20 && *b != b'\t') || *b == 0x7f {
            *b = b' ';
        }
    }
}

/// `fmt::Write` into a byte vector (numbers without a temporary String).
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Limits;
    use crate::http::h1::{BodyDecoder, Host, parse_request_head, parse_response_head};

    fn request(buf: &[u8]) -> RequestHead {
        parse_request_head(buf, &Limits::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn response(buf: &[u8]) -> ResponseHead {
        parse_response_head(buf, &Limits::default(), false)
            .unwrap()
            .unwrap()
            .0
    }

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn strips_hop_by_hop_request_fields() {
        let head = request(
            b"POST /a?b HTTP/1.0\r\nHost: x\r\nConnection: keep-alive, X-Secret, Host\r\n\
              Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
              Trailer: X-T\r\nUpgrade: h2c\r\nX-Secret: s\r\nContent-Length: 3\r\nAccept: */*\r\n\r\n",
        );
        let mut out = Vec::new();
        encode_request_head(&head, &[], &mut out);
        assert_eq!(
            text(&out),
            "POST /a?b HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nContent-Length: 3\r\n\r\n"
        );
    }

    #[test]
    fn extra_fields_replace_incoming_ones() {
        let head = request(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nx-request-id: abc\r\nA: 1\r\n\r\n",
        );
        let mut out = Vec::new();
        encode_request_head(
            &head,
            &[("X-Forwarded-For", b"1.2.3.4"), ("X-Request-ID", b"abc")],
            &mut out,
        );
        assert_eq!(
            text(&out),
            "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nX-Forwarded-For: 1.2.3.4\r\nX-Request-ID: abc\r\n\r\n"
        );
    }

    #[test]
    fn reemits_chunked_framing_once() {
        let head = request(b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n");
        let mut out = Vec::new();
        encode_request_head(&head, &[], &mut out);
        assert_eq!(
            text(&out),
            "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn keeps_upgrade_for_upgrade_requests() {
        let head = request(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: k\r\n\r\n",
        );
        let mut out = Vec::new();
        encode_request_head(&head, &[], &mut out);
        assert_eq!(
            text(&out),
            "GET /ws HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Key: k\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        );
    }

    #[test]
    fn strips_upgrades_other_than_websocket() {
        for (upgrade, connection) in [
            ("h2c", "Upgrade, HTTP2-Settings"),
            ("TLS/1.2", "upgrade"),
            ("websocketx", "upgrade"),
        ] {
            let head = request(
                format!(
                    "GET / HTTP/1.1\r\nHost: x\r\nConnection: {connection}\r\nUpgrade: {upgrade}\r\n\
                     HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nA: 1\r\n\r\n"
                )
                .as_bytes(),
            );
            assert!(!head.is_websocket_upgrade(), "{upgrade}");
            let mut out = Vec::new();
            encode_request_head(&head, &[], &mut out);
            assert_eq!(
                text(&out),
                "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\n\r\n",
                "{upgrade}"
            );
        }
    }

    #[test]
    fn forwards_only_websocket_from_a_list_of_upgrades() {
        let head = request(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\
              Upgrade: h2c, WebSocket\r\n\r\n",
        );
        let mut out = Vec::new();
        encode_request_head(&head, &[], &mut out);
        assert_eq!(
            text(&out),
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        );
    }

    #[test]
    fn absolute_form_goes_in_origin_form_with_its_authority_as_host() {
        for (target, origin) in [
            ("http://Demo.Test:8080/p?q=1", "/p?q=1"),
            ("https://Demo.Test:8080", "/"),
            ("HTTP://Demo.Test:8080?q=1", "/?q=1"),
            ("http://Demo.Test:8080/p#frag", "/p"),
        ] {
            let head = request(
                format!("GET {target} HTTP/1.1\r\nA: 1\r\nHost: evil.test\r\nB: 2\r\n\r\n")
                    .as_bytes(),
            );
            let mut out = Vec::new();
            encode_request_head(&head, &[("X-Request-ID", b"r")], &mut out);
            assert_eq!(
                text(&out),
                format!(
                    "GET {origin} HTTP/1.1\r\nHost: Demo.Test:8080\r\nA: 1\r\nB: 2\r\nX-Request-ID: r\r\n\r\n"
                ),
                "{target}"
            );
            // What the backend parses is what Portier routed on.
            let back = request(&out);
            assert_eq!(
                back.host,
                head.host.map(|h| Host {
                    raw: "Demo.Test:8080".into(),
                    ..h
                })
            );
        }
    }

    #[test]
    fn drops_every_field_name_with_an_underscore() {
        let head = request(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer_Encoding: chunked\r\nContent_Length: 9\r\n\
              X_Forwarded_For: 6.6.6.6\r\nX_Real_Ip: 6.6.6.6\r\nX_Request_Id: forged\r\n\
              X_Forwarded_Proto: https\r\nHost_: evil\r\nMy_Custom: 1\r\nX-Kept: 2\r\n\
              Content-Length: 3\r\n\r\n",
        );
        let mut out = Vec::new();
        encode_request_head(&head, &[("X-Forwarded-For", b"1.2.3.4")], &mut out);
        assert_eq!(
            text(&out),
            "POST / HTTP/1.1\r\nHost: x\r\nX-Kept: 2\r\nContent-Length: 3\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n"
        );
        assert!(is_underscored("x_y") && !is_underscored("x-y"));
    }

    #[test]
    fn encoded_request_reparses_to_same_head() {
        let head =
            request(b"POST /p HTTP/1.1\r\nHost: a.example\r\nX: y\r\nContent-Length: 7\r\n\r\n");
        let mut out = Vec::new();
        encode_request_head(&head, &[], &mut out);
        assert_eq!(request(&out), head);
    }

    #[test]
    fn encodes_response_with_close_and_keep_alive() {
        let head = response(b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nContent-Length: 2\r\nServer: s\r\n\r\n");
        let mut out = Vec::new();
        encode_response_head(&head, &[("X-Request-ID", b"r1")], 1, true, &mut out);
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\nConnection: close\r\nX-Request-ID: r1\r\n\r\n"
        );
        out.clear();
        encode_response_head(&head, &[], 1, false, &mut out);
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\n\r\n"
        );
        out.clear();
        encode_response_head(&head, &[], 0, false, &mut out);
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn close_delimited_response_forces_close() {
        let head = response(b"HTTP/1.0 200 OK\r\n\r\n");
        let mut out = Vec::new();
        encode_response_head(&head, &[], 1, false, &mut out);
        assert_eq!(text(&out), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    }

    #[test]
    fn keeps_content_length_of_head_and_304_responses() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n";
        let (head, _) = parse_response_head(buf, &Limits::default(), true)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        encode_response_head(&head, &[], 1, false, &mut out);
        assert_eq!(text(&out), "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n");
        out.clear();
        encode_response_head(
            &response(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"),
            &[],
            1,
            false,
            &mut out,
        );
        assert_eq!(text(&out), "HTTP/1.1 204 No Content\r\n\r\n");
    }

    #[test]
    fn encodes_interim_and_switching_protocols() {
        let mut out = Vec::new();
        encode_response_head(
            &response(b"HTTP/1.1 100 Continue\r\n\r\n"),
            &[],
            1,
            true,
            &mut out,
        );
        assert_eq!(text(&out), "HTTP/1.1 100 Continue\r\n\r\n");
        out.clear();
        let head = response(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\n\r\n");
        encode_response_head(&head, &[], 1, false, &mut out);
        assert_eq!(
            text(&out),
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        );
    }

    #[test]
    fn fills_missing_reason_phrase() {
        let mut out = Vec::new();
        encode_response_head(
            &response(b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n"),
            &[],
            1,
            false,
            &mut out,
        );
        assert_eq!(
            text(&out),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn builds_error_response() {
        let mut out = b"previous".to_vec();
        let head_len = error_response(
            431,
            "header_section_too_large",
            "X-Portier-Error",
            &[("X-Request-ID", "abc")],
            true,
            &mut out,
        );
        let body = "431 Request Header Fields Too Large: header_section_too_large\n";
        let want = format!(
            "previousHTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n\
             X-Portier-Error: header_section_too_large\r\nX-Request-ID: abc\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(text(&out), want);
        assert_eq!(&out[8 + head_len..], body.as_bytes());
        // And it parses as a response with exactly that body.
        let (h, n) = parse_response_head(&out[8..], &Limits::default(), false)
            .unwrap()
            .unwrap();
        assert_eq!(h.status, 431);
        assert_eq!(
            h.header("x-portier-error"),
            Some(&b"header_section_too_large"[..])
        );
        assert_eq!(h.body, BodyKind::Length(body.len() as u64));
        assert_eq!(n, head_len);
    }

    #[test]
    fn error_response_without_close_has_no_connection_field() {
        let mut out = Vec::new();
        error_response(503, "no_backend", "X-Portier-Error", &[], false, &mut out);
        assert!(text(&out).starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(!text(&out).contains("Connection"));
        assert!(text(&out).ends_with("\r\n\r\n503 Service Unavailable: no_backend\n"));
    }

    #[test]
    fn sanitizes_injected_crlf() {
        let mut out = Vec::new();
        error_response(
            400,
            "x\r\nSet-Cookie: a=b",
            "X-E\r\nrr",
            &[("A", "b\r\nc")],
            false,
            &mut out,
        );
        let s = text(&out);
        assert!(!s.contains("\r\nSet-Cookie"), "{s}");
        assert!(s.contains("X-E--rr: x  Set-Cookie: a=b\r\n"), "{s}");
        assert!(s.contains("A: b  c\r\n"), "{s}");
    }

    #[test]
    fn encodes_chunks_that_decode_back() {
        let mut out = Vec::new();
        encode_chunk(b"hello", &mut out);
        encode_chunk(b"", &mut out);
        encode_chunk(&[b'x'; 26], &mut out);
        encode_last_chunk(&mut out);
        assert!(out.starts_with(b"5\r\nhello\r\n1A\r\n"));
        assert!(out.ends_with(b"\r\n0\r\n\r\n"));
        let mut dec = BodyDecoder::for_request(BodyKind::Chunked, &Limits::default());
        let mut pos = 0;
        let mut payload = Vec::new();
        loop {
            let d = dec.decode(&out[pos..]).unwrap();
            if let Some(r) = d.data {
                payload.extend_from_slice(&out[pos + r.start..pos + r.end]);
            }
            pos += d.consumed;
            if d.done {
                break;
            }
        }
        assert_eq!(pos, out.len());
        assert_eq!(payload.len(), 31);
    }

    #[test]
    fn every_error_has_a_reason_phrase() {
        for e in crate::http::HttpError::ALL {
            assert!(!reason_phrase(e.status()).is_empty(), "{e:?}");
        }
        assert_eq!(reason_phrase(599), "");
    }
}
