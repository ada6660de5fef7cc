//! HTTP/2 stream → HTTP/1.1 request (RFC 9113 §8.3.1, RFC 9112): what a
//! backend sees of a request that arrived as HTTP/2.
//!
//! Owns: building the HTTP/1.1 head — `Host` from `:authority` (first, as
//! RFC 9112 §3.2 asks), the fields as received (cookie crumbs already
//! joined by the connection), and the body framing: none when the stream
//! ended with its HEADERS, the `content-length` when given, otherwise
//! chunked (the stream's DATA is re-framed as chunks).
//! Never an upgrade: `upgrade` and `connection` make an HTTP/2 request
//! malformed (RFC 9113 §8.2.2, refused by the connection), so the head has
//! `upgrade: None` and the backend cannot switch protocols. Field names
//! with `_` are kept here and dropped by `h1::encode_request_head`, the same
//! rule as HTTP/1.1 (see `h1::encode::is_underscored`).
//! Must not: encode bytes or route. Fed by: the reactor on `Event::Request`.

use super::H2Request;
use crate::http::HttpError;
use crate::http::h1::{BodyKind, RequestHead, host_of};

/// The HTTP/1.1 head for a request received on a stream; `end_stream`:
/// the stream carries no body. A `:authority` that is not a valid host is
/// refused (400 `invalid_host`).
pub fn to_h1(req: H2Request, end_stream: bool) -> Result<RequestHead, HttpError> {
    let body = match (end_stream, req.content_length) {
        (true, _) => BodyKind::None,
        (false, Some(n)) => BodyKind::Length(n),
        (false, None) => BodyKind::Chunked,
    };
    let mut headers = req.headers;
    headers.insert(0, "host", req.authority.as_bytes());
    let host = host_of(req.authority).map_err(|_| HttpError::PeerInvalidHost)?;
    Ok(RequestHead {
        method: req.method,
        target: req.path,
        version: 1,
        headers,
        body,
        keep_alive: true,
        expect_continue: false,
        upgrade: None,
        host: Some(host),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::h1::{encode_request_head, parse_request_head};

    fn req(authority: &str, content_length: Option<u64>) -> H2Request {
        H2Request {
            method: "POST".into(),
            scheme: "https".into(),
            authority: authority.into(),
            path: "/a?b=c".into(),
            headers: [("accept", "*/*"), ("cookie", "a=1; b=2")]
                .into_iter()
                .collect(),
            content_length,
        }
    }

    #[test]
    fn body_framing_follows_end_stream_and_content_length() {
        assert_eq!(
            to_h1(req("x.test", None), true).expect("ok").body,
            BodyKind::None
        );
        assert_eq!(
            to_h1(req("x.test", Some(5)), false).expect("ok").body,
            BodyKind::Length(5)
        );
        assert_eq!(
            to_h1(req("x.test", None), false).expect("ok").body,
            BodyKind::Chunked
        );
    }

    #[test]
    fn the_head_reparses_as_http11_with_host_first() {
        let head = to_h1(req("X.Test:8443", Some(3)), false).expect("ok");
        let host = head.host.as_ref().expect("host");
        assert_eq!((host.name.as_str(), host.port), ("x.test", Some(8443)));
        let mut wire = Vec::new();
        encode_request_head(&head, &[], &mut wire);
        let text = String::from_utf8_lossy(&wire).into_owned();
        assert!(
            text.starts_with("POST /a?b=c HTTP/1.1\r\nhost: X.Test:8443\r\n"),
            "{text}"
        );
        let (back, _) = parse_request_head(&wire, &Default::default())
            .expect("valid")
            .expect("whole");
        assert_eq!(back.body, BodyKind::Length(3));
        assert_eq!(back.header("cookie"), Some(&b"a=1; b=2"[..]));
    }

    #[test]
    fn underscored_names_never_reach_the_backend_and_nothing_upgrades() {
        let mut r = req("x.test", None);
        r.method = "GET".into();
        r.headers.extend([
            ("x_forwarded_for", "6.6.6.6"),
            ("transfer_encoding", "chunked"),
            ("content_length", "5"),
            ("x_request_id", "forged"),
        ]);
        let head = to_h1(r, true).expect("ok");
        assert!(head.upgrade.is_none() && !head.is_websocket_upgrade());
        let mut wire = Vec::new();
        encode_request_head(&head, &[("X-Forwarded-For", b"192.0.2.1")], &mut wire);
        assert_eq!(
            String::from_utf8_lossy(&wire),
            "GET /a?b=c HTTP/1.1\r\nhost: x.test\r\naccept: */*\r\ncookie: a=1; b=2\r\n\
             X-Forwarded-For: 192.0.2.1\r\n\r\n"
        );
    }

    #[test]
    fn a_bad_authority_is_refused() {
        assert_eq!(
            to_h1(req("bad host", None), true).map(|_| ()),
            Err(HttpError::PeerInvalidHost)
        );
    }
}
