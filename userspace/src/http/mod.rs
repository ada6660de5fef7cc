//! HTTP message codecs, sans-IO: bytes in, values out.
//!
//! Owns: the [`Limits`] every parser enforces, the [`HttpError`] refusals
//! and their status/code mapping, the HTTP/1.1 codec ([`h1`]) and the
//! forwarding headers the proxy injects ([`forward`]).
//! Must not: touch sockets, clocks, threads or the reactor; allocate a whole
//! body. Fed by: the reactor (client and backend bytes). Emits: parsed heads,
//! body byte ranges, encoded heads, and `HttpError`s.
//!
//! # HTTP/1.1 data flow
//!
//! ```text
//!  client bytes ─► h1::parse_request_head ─► RequestHead ─┬─► h1::encode_request_head ─► backend
//!                  (limits, smuggling checks)             └─► forward::forward_headers (extra)
//!  client bytes ─► BodyDecoder::for_request(head.body) ─► raw framing or payload ranges ─► backend
//!  backend bytes ─► h1::parse_response_head ─► ResponseHead ─► h1::encode_response_head ─► client
//!  backend bytes ─► BodyDecoder::for_response(head.body) ─► raw or payload ranges ─► client
//!  any HttpError ─► answer::Answer::error(err, request_id) ─► h1 bytes | h2 HEADERS+DATA ─► client
//! ```
//!
//! * [`h1::parse_request_head`] returns `Ok(None)` while the head is
//!   incomplete and `Ok(Some((head, consumed)))` once it is; the next
//!   pipelined request (or the body) starts at `consumed`.
//! * [`h1::BodyDecoder::decode`] never buffers: it reports how many input
//!   bytes it consumed and which of them are payload, so the caller forwards
//!   either the raw bytes (H1 → H1) or only the payload (re-framing).
//! * Response-side errors are always `Upstream*` (502).
//!
//! # Error codes
//!
//! `HttpError::code()` is sent in the error header (`X-Portier-Error` by
//! default); `HttpError::status()` is the response status.
//!
//! | code                                    | status | meaning |
//! |-----------------------------------------|--------|---------|
//! | `invalid_request_line`                  | 400 | request line malformed (RFC 9112 §3) |
//! | `unsupported_version`                   | 505 | `HTTP/x.y` other than 1.0/1.1 (RFC 9112 §2.3) |
//! | `invalid_header_name`                   | 400 | field name not a token / space before colon (RFC 9112 §5.1) |
//! | `invalid_header_value`                  | 400 | bare CR, NUL or other CTL in a value (RFC 9110 §5.5) |
//! | `obs_fold`                              | 400 | obsolete line folding / whitespace-led line (RFC 9112 §5.2) |
//! | `conflicting_content_length`            | 400 | Content-Length repeated or a list, even if equal (RFC 9112 §6.3) |
//! | `invalid_content_length`                | 400 | Content-Length not 1*DIGIT or overflowing (RFC 9110 §8.6) |
//! | `content_length_with_transfer_encoding` | 400 | both framings present (RFC 9112 §6.3) |
//! | `unknown_transfer_coding`               | 400 | a coding other than `chunked` (RFC 9112 §6.3, §7) |
//! | `invalid_transfer_encoding`             | 400 | Transfer-Encoding repeated, empty or `chunked` twice (RFC 9112 §6.1) |
//! | `transfer_encoding_in_http10`           | 400 | Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1) |
//! | `missing_host`                          | 400 | HTTP/1.1 request without Host (RFC 9112 §3.2) |
//! | `multiple_host`                         | 400 | more than one Host line (RFC 9112 §3.2) |
//! | `invalid_host`                          | 400 | Host not `uri-host [":" port]` (RFC 9110 §7.2), or an empty absolute-form host (RFC 9110 §4.2.1) |
//! | `invalid_chunk_size`                    | 400 | chunk size empty, not hex, > 16 digits (RFC 9112 §7.1) |
//! | `invalid_chunk_framing`                 | 400 | missing CRLF / bare LF in chunked framing, bad extension bytes (RFC 9112 §7.1) |
//! | `incomplete_body`                       | 400 | client closed mid-body (RFC 9112 §8) |
//! | `header_section_too_large`              | 431 | head (or trailers) > `max_header_section` |
//! | `header_too_large`                      | 431 | one field line > `max_header_line` |
//! | `too_many_headers`                      | 431 | more than `max_headers` field lines |
//! | `uri_too_long`                          | 414 | request target > `max_header_line` |
//! | `body_too_large`                        | 413 | body > `max_body` (Content-Length up front, or streamed) |
//! | `chunk_extension_too_large`             | 400 | chunk extensions on one size line > 4 KiB |
//! | `upstream_invalid_response`             | 502 | backend status line / fields malformed, or a 101 to a request not forwarded as a WebSocket upgrade |
//! | `upstream_header_too_large`             | 502 | backend head over the limits |
//! | `upstream_invalid_framing`              | 502 | backend CL/TE ambiguous or unsupported |
//! | `upstream_invalid_chunk`                | 502 | backend chunked body malformed |
//! | `upstream_incomplete_body`              | 502 | backend closed mid-body |
//! | `header_timeout`                        | 408 | request head not whole within the header timeout |
//! | `unknown_host`                          | 404 | no app serves the host |
//! | `queue_full`                            | 503 | the app's queue is full |
//! | `queue_timeout`                         | 503 | waited in the queue past its timeout |
//! | `no_backend_available`                  | 503 | no healthy backend, or retries used up |
//! | `upstream_connect_timeout`              | 504 | backend did not accept in time |
//! | `upstream_read_timeout`                 | 504 | backend did not answer in time |
//! | `upstream_connection_failed`            | 502 | backend cut the connection after the request |
//!
//! Portier's own answers (these errors, and redirects) are written by
//! [`answer::Answer`] for both protocols.

pub mod answer;
pub mod error;
pub mod fields;
pub mod forward;
pub mod h1;
pub mod h2;

pub use error::HttpError;

/// Connection-specific header fields (lowercase): they describe one
/// HTTP/1.1 connection, so a proxy never forwards them (RFC 9110 §7.6.1;
/// `Proxy-Connection` is the legacy non-standard spelling of
/// `Connection`), and HTTP/2 forbids them: a request carrying one is
/// malformed and a response must not carry one (RFC 9113 §8.2.2). `TE` is
/// not here: HTTP/2 allows it with the value `trailers`.
pub const CONNECTION_SPECIFIC: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Size limits enforced while parsing (SPEC §3 "Limits"). Every number is a
/// setting; `Default` gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole header section, start line and final CRLF included (431).
    pub max_header_section: usize,
    /// One field line without its CRLF (431); also bounds the request
    /// target (414).
    pub max_header_line: usize,
    /// Request body, by Content-Length or while streaming (413).
    pub max_body: u64,
    /// Number of field lines in a head or a trailer section (431).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_section: 32 * 1024,
            max_header_line: 8 * 1024,
            max_body: 75_000_000,
            max_headers: 100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_match_spec() {
        let l = Limits::default();
        assert_eq!(l.max_header_section, 32768);
        assert_eq!(l.max_header_line, 8192);
        assert_eq!(l.max_body, 75_000_000);
        assert_eq!(l.max_headers, 100);
    }

    #[test]
    fn module_doc_table_lists_every_code() {
        let src = include_str!("mod.rs");
        for e in HttpError::ALL {
            let row = format!("| `{}`", e.code());
            assert!(
                src.contains(&row),
                "code {} missing from the table",
                e.code()
            );
            let row_status = src
                .lines()
                .find(|l| l.contains(&row))
                .map(|l| l.contains(&format!("| {} |", e.status())));
            assert_eq!(
                row_status,
                Some(true),
                "status of {} wrong in table",
                e.code()
            );
        }
    }
}
