//! Parsing an HTTP/1.1 response head from a backend (RFC 9112 §4, §6.3).
//!
//! Owns: [`ResponseHead`], [`parse_response_head`] and the response rules:
//! which responses have no body, chunked vs Content-Length vs
//! close-delimited framing (RFC 9112 §6.3), persistence (RFC 9112 §9.3),
//! interim 1xx and `101 Switching Protocols` (RFC 9110 §15.2).
//! Must not: decode the body (see `body.rs`) or decide what the client sees.
//! Fed by: the bytes a backend sent after a request. Emits: `Ok(None)`
//! (need more), the head and its length, or an `Upstream*` `HttpError`
//! (502) — a backend's garbage is never blamed on the client.
//!
//! Strictness: the same line and size checks as requests (obs-fold, bare
//! CR, CTLs refused); Transfer-Encoding must be exactly `chunked` and may
//! not come with Content-Length; equal duplicate Content-Length values are
//! tolerated (RFC 9110 §8.6) but different ones are not.

use super::body::BodyKind;
use super::head::{
    Framing, Headers, Scan, framing, list_elements, lists_token, own_headers, scan_head,
    tokenizer_slots,
};
use crate::http::{HttpError, Limits};

/// A parsed response head. Field names keep their received case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// HTTP minor version: 0 or 1.
    pub version: u8,
    /// Status code, 100..=599.
    pub status: u16,
    /// Reason phrase as received (empty if absent or not plain ASCII).
    pub reason: std::borrow::Cow<'static, str>,
    /// Field lines in order: name as received, value with OWS trimmed.
    pub headers: Headers,
    /// Body framing (RFC 9112 §6.3).
    pub body: BodyKind,
    /// The backend connection can be reused after this response's body
    /// (RFC 9112 §9.3); always false for close-delimited bodies and 101.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// First value of `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.find(name)
    }

    /// An interim 1xx other than 101 (e.g. `100 Continue`): forward it and
    /// keep reading for the final response (RFC 9110 §15.2).
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// `101 Switching Protocols`: after this head the connection is a
    /// tunnel (RFC 9110 §15.2.2).
    pub fn is_switching_protocols(&self) -> bool {
        self.status == 101
    }

    /// A `101` whose `Upgrade` names `websocket`, the only protocol Portier
    /// offers a backend (RFC 9110 §7.8: the server names the protocol it
    /// switches to, one the client offered).
    pub fn switches_to_websocket(&self) -> bool {
        self.is_switching_protocols()
            && self
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("upgrade"))
                .flat_map(|(_, v)| list_elements(v))
                .any(|p| p.eq_ignore_ascii_case(b"websocket"))
    }
}

/// Parse a backend response head at the start of `buf`.
///
/// `request_method_is_head`: the request was `HEAD`, so the response has no
/// body whatever its fields say (RFC 9112 §6.3 item 1).
/// `Ok(None)`: incomplete. `Ok(Some((head, n)))`: head is `buf[..n]`.
pub fn parse_response_head(
    buf: &[u8],
    limits: &Limits,
    request_method_is_head: bool,
) -> Result<Option<(ResponseHead, usize)>, HttpError> {
    let (slice, capacity, complete) = match scan_head(buf, limits, false) {
        Ok(Scan::Complete { len, fields }) => (buf.get(..len).unwrap_or(buf), fields, true),
        Ok(Scan::Partial { fields }) => (buf, fields + 1, false),
        Err(e) => return Err(e.to_upstream()),
    };
    let (mut stack, mut heap) = ([httparse::EMPTY_HEADER; 32], Vec::new());
    let fields = tokenizer_slots(capacity, &mut stack, &mut heap);
    let mut res = httparse::Response::new(fields);
    let len = match res.parse(slice) {
        Ok(httparse::Status::Complete(n)) if complete && n == slice.len() => n,
        Ok(httparse::Status::Partial) if !complete => return Ok(None),
        Ok(_) | Err(_) => return Err(HttpError::UpstreamInvalidResponse),
    };
    let version = res.version.unwrap_or_default();
    let status = res.code.unwrap_or_default();
    let reason = res.reason.unwrap_or_default();
    let headers = &*res.headers;
    if !(100..=599).contains(&status) {
        // RFC 9110 §15: status codes are 100..599.
        return Err(HttpError::UpstreamInvalidResponse);
    }
    if version == 0
        && headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        // RFC 9112 §6.1: faulty framing from an HTTP/1.0 sender.
        return Err(HttpError::UpstreamInvalidFraming);
    }
    // Validated for every response, even bodiless ones, so that framing
    // fields forwarded with a HEAD/304 response are never contradictory.
    let framing = framing(headers, true).map_err(HttpError::to_upstream)?;
    let bodiless =
        request_method_is_head || (100..200).contains(&status) || status == 204 || status == 304;
    let body = match framing {
        _ if bodiless => BodyKind::None,
        Framing::Chunked => BodyKind::Chunked,
        Framing::Length(n) => BodyKind::Length(n),
        Framing::Absent => BodyKind::CloseDelimited,
    };
    let close = lists_token(headers, "connection", "close");
    let persistent = if version == 1 {
        !close
    } else {
        !close && lists_token(headers, "connection", "keep-alive")
    };
    let keep_alive = persistent && body != BodyKind::CloseDelimited && status != 101;
    let head = ResponseHead {
        version,
        status,
        // The usual phrase is not copied.
        reason: match super::encode::reason_phrase(status) {
            usual if usual == reason => usual.into(),
            _ => reason.to_owned().into(),
        },
        headers: own_headers(headers),
        body,
        keep_alive,
    };
    Ok(Some((head, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, HttpError> {
        parse_response_head(buf, &Limits::default(), false)
    }

    fn ok(buf: &[u8]) -> ResponseHead {
        match parse(buf) {
            Ok(Some((head, n))) => {
                assert_eq!(n, buf.len());
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

    #[test]
    fn parses_simple_response() {
        let h = ok(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((h.version, h.status, &*h.reason), (1, 200, "OK"));
        assert_eq!(h.body, BodyKind::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.header("content-type"), Some(&b"text/plain"[..]));
        assert!(!h.is_interim() && !h.is_switching_protocols());
    }

    #[test]
    fn accepts_missing_reason() {
        let h = ok(b"HTTP/1.1 204\r\n\r\n");
        assert_eq!((h.status, &*h.reason), (204, ""));
    }

    #[test]
    fn incomplete_head_is_none_at_every_split_point() {
        let buf = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nX: y\r\n\r\n";
        for cut in 0..buf.len() {
            assert_eq!(parse(&buf[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(ok(buf).status, 404);
    }

    #[test]
    fn body_kinds_follow_rfc9112_6_3() {
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").body,
            BodyKind::Chunked
        );
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\n\r\n").body,
            BodyKind::CloseDelimited
        );
        for status in [
            "100 Continue",
            "103 Early Hints",
            "204 No Content",
            "304 Not Modified",
        ] {
            let buf = format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\n");
            assert_eq!(ok(buf.as_bytes()).body, BodyKind::None, "{status}");
        }
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        let (h, _) = parse_response_head(buf, &Limits::default(), true)
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyKind::None);
        assert!(h.keep_alive);
    }

    #[test]
    fn recognises_interim_and_switching_protocols() {
        let buf = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let (h, n) = parse(buf).unwrap().unwrap();
        assert!(h.is_interim());
        let (h, _) = parse(&buf[n..]).unwrap().unwrap();
        assert_eq!(h.status, 200);
        let h = ok(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(h.is_switching_protocols() && !h.is_interim());
        assert_eq!(h.body, BodyKind::None);
        assert!(!h.keep_alive);
    }

    #[test]
    fn only_a_101_naming_websocket_switches_to_websocket() {
        assert!(ok(b"HTTP/1.1 101 X\r\nUpgrade: WebSocket\r\n\r\n").switches_to_websocket());
        assert!(ok(b"HTTP/1.1 101 X\r\nUpgrade: h2c, websocket\r\n\r\n").switches_to_websocket());
        for buf in [
            &b"HTTP/1.1 101 X\r\nUpgrade: h2c\r\n\r\n"[..],
            b"HTTP/1.1 101 X\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
        ] {
            assert!(!ok(buf).switches_to_websocket(), "{:?}", buf.escape_ascii());
        }
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        assert!(
            !ok(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive
        );
        assert!(!ok(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(
            ok(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
                .keep_alive
        );
        assert!(
            !ok(b"HTTP/1.1 200 OK\r\n\r\n").keep_alive,
            "close-delimited"
        );
    }

    #[test]
    fn tolerates_equal_duplicate_content_length_only() {
        let h = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(3));
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            HttpError::UpstreamInvalidFraming
        );
    }

    #[test]
    fn rejects_ambiguous_upstream_framing() {
        for fields in [
            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Content-Length: abc\r\n",
        ] {
            let buf = format!("HTTP/1.1 200 OK\r\n{fields}\r\n");
            let e = err(buf.as_bytes());
            assert_eq!(e, HttpError::UpstreamInvalidFraming, "{fields}");
            assert_eq!(e.status(), 502);
        }
        assert_eq!(
            err(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HttpError::UpstreamInvalidFraming
        );
    }

    #[test]
    fn rejects_upstream_garbage() {
        for buf in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 600 High\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX Y: a\r\n\r\n",
            b"<html>oops</html>",
            b"HTTP/1.1 200 O\x01K\r\n\r\n",
        ] {
            let e = err(buf);
            assert_eq!(
                e,
                HttpError::UpstreamInvalidResponse,
                "{:?}",
                buf.escape_ascii()
            );
            assert_eq!(e.code(), "upstream_invalid_response");
        }
    }

    #[test]
    fn upstream_head_limits_are_502() {
        let limits = Limits {
            max_header_line: 10,
            ..Limits::default()
        };
        let e = parse_response_head(b"HTTP/1.1 200 OK\r\nX: 12345678\r\n\r\n", &limits, false)
            .unwrap_err();
        assert_eq!((e, e.status()), (HttpError::UpstreamHeaderTooLarge, 502));
        let big = vec![b'a'; 40 * 1024];
        assert_eq!(parse(&big), Err(HttpError::UpstreamHeaderTooLarge));
    }
}
