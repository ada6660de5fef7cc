//! `HttpError`: every way an HTTP/1.1 message can be refused, and the one
//! place that maps a refusal to a response status and a stable reason code.
//!
//! Owns: the error enum, [`HttpError::status`] (the ONLY error → status
//! mapping in Portier), [`HttpError::code`] (the snake_case reason the proxy
//! puts in its error header), and [`HttpError::to_upstream`] (re-blaming a
//! parse error on the backend when the bytes came from a backend).
//! Must not: format responses (see `h1::encode::error_response`) or log.
//! Fed by: the h1 head parsers and the body decoder. Emits: values only.
//!
//! Variants say whose fault it is: `Peer*` (the client sent something
//! malformed or dangerous, 4xx/505), `Limit*` (the client exceeded a
//! configured limit, 413/414/431) and `Upstream*` (the backend sent garbage,
//! 502). Errors are `Copy` so that a failed machine can keep returning the
//! same error.

use thiserror::Error;

/// Why a message was refused. See the table in the [`crate::http`] module doc.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HttpError {
    /// Request line is not `method SP request-target SP HTTP-version CRLF`
    /// (RFC 9112 §3), or the start line contains bare CR / NUL / CTLs.
    #[error("invalid request line")]
    PeerInvalidRequestLine,
    /// HTTP version is well-formed but not 1.0 or 1.1 (RFC 9112 §2.3).
    #[error("unsupported HTTP version")]
    PeerUnsupportedVersion,
    /// Field name is not a token, is empty, or is followed by whitespace
    /// before the colon (RFC 9112 §5.1, RFC 9110 §5.1).
    #[error("invalid header name")]
    PeerInvalidHeaderName,
    /// Field value contains bare CR, NUL or another CTL (RFC 9110 §5.5).
    #[error("invalid header value")]
    PeerInvalidHeaderValue,
    /// Obsolete line folding, or whitespace before the first field line
    /// (RFC 9112 §5.2, §2.2).
    #[error("obsolete line folding")]
    PeerObsFold,
    /// Content-Length repeated (even with equal values) or given as a list
    /// (RFC 9112 §6.3 item 5; refused outright to stop smuggling).
    #[error("conflicting Content-Length")]
    PeerConflictingContentLength,
    /// Content-Length is not `1*DIGIT` or overflows u64 (RFC 9110 §8.6).
    #[error("invalid Content-Length")]
    PeerInvalidContentLength,
    /// Both Content-Length and Transfer-Encoding (RFC 9112 §6.3 item 3).
    #[error("Content-Length with Transfer-Encoding")]
    PeerContentLengthWithTransferEncoding,
    /// A transfer coding other than `chunked` (RFC 9112 §6.3 item 4, §7).
    #[error("unknown transfer coding")]
    PeerUnknownTransferCoding,
    /// Transfer-Encoding repeated, empty, or `chunked` applied twice
    /// (RFC 9112 §6.1: chunked MUST NOT be applied more than once).
    #[error("invalid Transfer-Encoding")]
    PeerInvalidTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1).
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    PeerTransferEncodingInHttp10,
    /// HTTP/1.1 request without Host (RFC 9112 §3.2).
    #[error("missing Host")]
    PeerMissingHost,
    /// More than one Host field line (RFC 9112 §3.2).
    #[error("multiple Host")]
    PeerMultipleHost,
    /// Host is not `uri-host [":" port]` (RFC 9110 §7.2).
    #[error("invalid Host")]
    PeerInvalidHost,
    /// Chunk size is empty, not hex, or longer than 16 hex digits
    /// (RFC 9112 §7.1).
    #[error("invalid chunk size")]
    PeerInvalidChunkSize,
    /// Chunked framing broken: missing CRLF (bare LF included) after a
    /// size line or chunk data, or invalid bytes in a chunk extension
    /// (RFC 9112 §7.1, §7.1.1).
    #[error("invalid chunk framing")]
    PeerInvalidChunkFraming,
    /// The client closed before the body was complete (RFC 9112 §8).
    #[error("incomplete request body")]
    PeerIncompleteBody,
    /// Header section (or trailer section) larger than `max_header_section`.
    #[error("header section too large")]
    LimitHeaderSection,
    /// One field line larger than `max_header_line`.
    #[error("header field too large")]
    LimitHeaderLine,
    /// More than `max_headers` field lines.
    #[error("too many header fields")]
    LimitTooManyHeaders,
    /// Request target alone longer than `max_header_line`.
    #[error("URI too long")]
    LimitUriTooLong,
    /// Body larger than `max_body` (by Content-Length or while streaming).
    #[error("body too large")]
    LimitBody,
    /// Chunk extensions on one size line longer than the extension bound.
    #[error("chunk extension too large")]
    LimitChunkExtension,
    /// Backend status line or header section is not valid HTTP/1.x.
    #[error("upstream sent an invalid response")]
    UpstreamInvalidResponse,
    /// Backend header section exceeded the limits.
    #[error("upstream response header too large")]
    UpstreamHeaderTooLarge,
    /// Backend message framing is ambiguous (CL/TE problems).
    #[error("upstream response framing invalid")]
    UpstreamInvalidFraming,
    /// Backend chunked body is malformed.
    #[error("upstream sent an invalid chunk")]
    UpstreamInvalidChunk,
    /// Backend closed before the body was complete.
    #[error("upstream response body incomplete")]
    UpstreamIncompleteBody,
    /// The request head did not arrive whole within the header timeout.
    #[error("request head timed out")]
    PeerHeaderTimeout,
    /// No app serves this host (SPEC §4: unknown host → 404).
    #[error("unknown host")]
    RouteUnknownHost,
    /// The app's queue is full (SPEC §3: 503 at once).
    #[error("queue full")]
    QueueFull,
    /// The request waited in the app's queue for longer than its timeout.
    #[error("queue timeout")]
    QueueTimeout,
    /// No healthy backend (all quarantined, draining, or retries used up).
    #[error("no backend available")]
    NoBackend,
    /// The backend did not accept the connection in time.
    #[error("upstream connect timeout")]
    UpstreamConnectTimeout,
    /// The backend did not answer (or went silent mid-response) in time.
    #[error("upstream read timeout")]
    UpstreamReadTimeout,
    /// The backend cut the connection after the request was sent.
    #[error("upstream connection failed")]
    UpstreamConnectionFailed,
}

impl HttpError {
    /// The response status for this error: the only error → status mapping.
    pub fn status(&self) -> u16 {
        use HttpError::*;
        match self {
            PeerUnsupportedVersion => 505,
            PeerHeaderTimeout => 408,
            RouteUnknownHost => 404,
            QueueFull | QueueTimeout | NoBackend => 503,
            UpstreamConnectTimeout | UpstreamReadTimeout => 504,
            UpstreamConnectionFailed => 502,
            LimitHeaderSection | LimitHeaderLine | LimitTooManyHeaders => 431,
            LimitUriTooLong => 414,
            LimitBody => 413,
            UpstreamInvalidResponse
            | UpstreamHeaderTooLarge
            | UpstreamInvalidFraming
            | UpstreamInvalidChunk
            | UpstreamIncompleteBody => 502,
            PeerInvalidRequestLine
            | PeerInvalidHeaderName
            | PeerInvalidHeaderValue
            | PeerObsFold
            | PeerConflictingContentLength
            | PeerInvalidContentLength
            | PeerContentLengthWithTransferEncoding
            | PeerUnknownTransferCoding
            | PeerInvalidTransferEncoding
            | PeerTransferEncodingInHttp10
            | PeerMissingHost
            | PeerMultipleHost
            | PeerInvalidHost
            | PeerInvalidChunkSize
            | PeerInvalidChunkFraming
            | PeerIncompleteBody
            | LimitChunkExtension => 400,
        }
    }

    /// Short stable snake_case reason, sent in the error header.
    pub fn code(&self) -> &'static str {
        use HttpError::*;
        match self {
            PeerInvalidRequestLine => "invalid_request_line",
            PeerUnsupportedVersion => "unsupported_version",
            PeerInvalidHeaderName => "invalid_header_name",
            PeerInvalidHeaderValue => "invalid_header_value",
            PeerObsFold => "obs_fold",
            PeerConflictingContentLength => "conflicting_content_length",
            PeerInvalidContentLength => "invalid_content_length",
            PeerContentLengthWithTransferEncoding => "content_length_with_transfer_encoding",
            PeerUnknownTransferCoding => "unknown_transfer_coding",
            PeerInvalidTransferEncoding => "invalid_transfer_encoding",
            PeerTransferEncodingInHttp10 => "transfer_encoding_in_http10",
            PeerMissingHost => "missing_host",
            PeerMultipleHost => "multiple_host",
            PeerInvalidHost => "invalid_host",
            PeerInvalidChunkSize => "invalid_chunk_size",
            PeerInvalidChunkFraming => "invalid_chunk_framing",
            PeerIncompleteBody => "incomplete_body",
            LimitHeaderSection => "header_section_too_large",
            LimitHeaderLine => "header_too_large",
            LimitTooManyHeaders => "too_many_headers",
            LimitUriTooLong => "uri_too_long",
            LimitBody => "body_too_large",
            LimitChunkExtension => "chunk_extension_too_large",
            UpstreamInvalidResponse => "upstream_invalid_response",
            UpstreamHeaderTooLarge => "upstream_header_too_large",
            UpstreamInvalidFraming => "upstream_invalid_framing",
            UpstreamInvalidChunk => "upstream_invalid_chunk",
            UpstreamIncompleteBody => "upstream_incomplete_body",
            PeerHeaderTimeout => "header_timeout",
            RouteUnknownHost => "unknown_host",
            QueueFull => "queue_full",
            QueueTimeout => "queue_timeout",
            NoBackend => "no_backend_available",
            UpstreamConnectTimeout => "upstream_connect_timeout",
            UpstreamReadTimeout => "upstream_read_timeout",
            UpstreamConnectionFailed => "upstream_connection_failed",
        }
    }

    /// Re-blame an error on the backend: used when the bytes being parsed
    /// came from an upstream response, so the client sees a 502.
    pub fn to_upstream(self) -> HttpError {
        use HttpError::*;
        match self {
            LimitHeaderSection | LimitHeaderLine | LimitTooManyHeaders => UpstreamHeaderTooLarge,
            PeerConflictingContentLength
            | PeerInvalidContentLength
            | PeerContentLengthWithTransferEncoding
            | PeerUnknownTransferCoding
            | PeerInvalidTransferEncoding
            | PeerTransferEncodingInHttp10 => UpstreamInvalidFraming,
            PeerInvalidChunkSize | PeerInvalidChunkFraming | LimitChunkExtension => {
                UpstreamInvalidChunk
            }
            PeerIncompleteBody => UpstreamIncompleteBody,
            UpstreamInvalidResponse
            | UpstreamHeaderTooLarge
            | UpstreamInvalidFraming
            | UpstreamInvalidChunk
            | UpstreamIncompleteBody
            | UpstreamConnectTimeout
            | UpstreamReadTimeout
            | UpstreamConnectionFailed
            | PeerHeaderTimeout
            | RouteUnknownHost
            | QueueFull
            | QueueTimeout
            | NoBackend => self,
            PeerInvalidRequestLine
            | PeerUnsupportedVersion
            | PeerInvalidHeaderName
            | PeerInvalidHeaderValue
            | PeerObsFold
            | PeerMissingHost
            | PeerMultipleHost
            | PeerInvalidHost
            | LimitUriTooLong
            | LimitBody => UpstreamInvalidResponse,
        }
    }

    /// Whether the backend is to blame (status 502).
    pub fn is_upstream(&self) -> bool {
        self.status() == 502
    }

    /// Every variant, for documentation checks and tests.
    pub const ALL: &'static [HttpError] = &[
        HttpError::PeerInvalidRequestLine,
        HttpError::PeerUnsupportedVersion,
        HttpError::PeerInvalidHeaderName,
        HttpError::PeerInvalidHeaderValue,
        HttpError::PeerObsFold,
        HttpError::PeerConflictingContentLength,
        HttpError::PeerInvalidContentLength,
        HttpError::PeerContentLengthWithTransferEncoding,
        HttpError::PeerUnknownTransferCoding,
        HttpError::PeerInvalidTransferEncoding,
        HttpError::PeerTransferEncodingInHttp10,
        HttpError::PeerMissingHost,
        HttpError::PeerMultipleHost,
        HttpError::PeerInvalidHost,
        HttpError::PeerInvalidChunkSize,
        HttpError::PeerInvalidChunkFraming,
        HttpError::PeerIncompleteBody,
        HttpError::LimitHeaderSection,
        HttpError::LimitHeaderLine,
        HttpError::LimitTooManyHeaders,
        HttpError::LimitUriTooLong,
        HttpError::LimitBody,
        HttpError::LimitChunkExtension,
        HttpError::UpstreamInvalidResponse,
        HttpError::UpstreamHeaderTooLarge,
        HttpError::UpstreamInvalidFraming,
        HttpError::UpstreamInvalidChunk,
        HttpError::UpstreamIncompleteBody,
        HttpError::PeerHeaderTimeout,
        HttpError::RouteUnknownHost,
        HttpError::QueueFull,
        HttpError::QueueTimeout,
        HttpError::NoBackend,
        HttpError::UpstreamConnectTimeout,
        HttpError::UpstreamReadTimeout,
        HttpError::UpstreamConnectionFailed,
    ];

    /// The variants the HTTP/1.1 codec produces (the first 28 of `ALL`);
    /// the others come from routing, scheduling and timers.
    pub const CODEC: &'static [HttpError] = HttpError::ALL.split_at(28).0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for e in HttpError::ALL {
            let code = e.code();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(
                code.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()),
                "{code} is not snake_case"
            );
        }
    }

    #[test]
    fn statuses_follow_fault() {
        for e in HttpError::ALL {
            let s = e.status();
            match e.code() {
                c if c.ends_with("_timeout") && c.starts_with("upstream_") => {
                    assert_eq!(s, 504, "{c}")
                }
                c if c.starts_with("upstream_") => assert_eq!(s, 502, "{c}"),
                "unknown_host" => assert_eq!(s, 404),
                "header_timeout" => assert_eq!(s, 408),
                "queue_full" | "queue_timeout" | "no_backend_available" => assert_eq!(s, 503),
                _ => assert!(matches!(s, 400 | 413 | 414 | 431 | 505), "{e:?} -> {s}"),
            }
        }
        assert_eq!(HttpError::LimitHeaderSection.status(), 431);
        assert_eq!(HttpError::LimitHeaderLine.status(), 431);
        assert_eq!(HttpError::LimitTooManyHeaders.status(), 431);
        assert_eq!(HttpError::LimitBody.status(), 413);
        assert_eq!(HttpError::LimitUriTooLong.status(), 414);
        assert_eq!(HttpError::PeerUnsupportedVersion.status(), 505);
        assert_eq!(HttpError::PeerObsFold.status(), 400);
    }

    #[test]
    fn to_upstream_always_yields_502() {
        for e in HttpError::CODEC {
            let u = e.to_upstream();
            assert_eq!(u.status(), 502, "{e:?} -> {u:?}");
            assert!(u.is_upstream());
            assert_eq!(u.to_upstream(), u);
        }
    }

    #[test]
    fn all_lists_every_variant_once() {
        // A new variant must be added to ALL, status, code, and the table.
        assert_eq!(HttpError::ALL.len(), 36);
        assert_eq!(HttpError::CODEC, &HttpError::ALL[..28]);
    }
}
