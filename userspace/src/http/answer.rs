//! Portier's own answers — router errors and redirects — for both protocols.
//!
//! Owns: the one shape of an answer Portier writes itself (status, error
//! header or `Location`, `X-Request-ID`, a short text body) and its two
//! encodings: HTTP/1.1 bytes and HTTP/2 HEADERS + DATA.
//! Must not: decide statuses (that is [`HttpError::status`]) or touch I/O.
//! Fed by: the reactor when a request ends without a backend response.

use super::HttpError;
use super::h1::encode::{encode_plain_response, short_body};
use super::h2::{H2Error, ServerConn, StreamId};

/// What Portier answers instead of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub kind: AnswerKind,
    /// Returned on every answer (SPEC §3: always).
    pub request_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerKind {
    /// A refusal: its reason code goes in the error header.
    Error(&'static str),
    /// 301 to this location (canonical domain, force-HTTPS).
    Redirect(String),
    /// 200 with this HTTP-01 key authorization as the whole body.
    Challenge(String),
}

impl Answer {
    pub fn error(e: HttpError, request_id: impl Into<String>) -> Answer {
        Answer {
            status: e.status(),
            kind: AnswerKind::Error(e.code()),
            request_id: request_id.into(),
        }
    }

    pub fn redirect(location: impl Into<String>, request_id: impl Into<String>) -> Answer {
        Answer {
            status: 301,
            kind: AnswerKind::Redirect(location.into()),
            request_id: request_id.into(),
        }
    }

    /// An ACME HTTP-01 challenge answered by Portier (the CA compares
    /// the body byte for byte).
    pub fn challenge(
        key_authorization: impl Into<String>,
        request_id: impl Into<String>,
    ) -> Answer {
        Answer {
            status: 200,
            kind: AnswerKind::Challenge(key_authorization.into()),
            request_id: request_id.into(),
        }
    }

    /// `503 Service Unavailable: queue_full`, one line; a challenge's key
    /// authorization as is.
    pub fn body(&self) -> Vec<u8> {
        let what = match &self.kind {
            AnswerKind::Error(code) => code,
            AnswerKind::Redirect(location) => location.as_str(),
            AnswerKind::Challenge(key_authorization) => {
                return key_authorization.as_bytes().to_vec();
            }
        };
        short_body(self.status, what)
    }

    /// Fields besides the framing ones (HTTP/2 lowercases the names).
    pub fn fields<'a>(&'a self, error_header: &'a str) -> Vec<(&'a str, &'a [u8])> {
        let mut fields: Vec<(&str, &[u8])> = vec![("Content-Type", b"text/plain; charset=utf-8")];
        match &self.kind {
            AnswerKind::Error(code) => fields.push((error_header, code.as_bytes())),
            AnswerKind::Redirect(location) => fields.push(("Location", location.as_bytes())),
            AnswerKind::Challenge(_) => {}
        }
        fields.push(("X-Request-ID", self.request_id.as_bytes()));
        fields
    }

    /// HTTP/1.1 bytes; `head_only` for a HEAD request (no body, same
    /// Content-Length), `close` adds `Connection: close`.
    pub fn encode_h1(&self, error_header: &str, close: bool, head_only: bool, out: &mut Vec<u8>) {
        let body = self.body();
        encode_plain_response(
            self.status,
            &self.fields(error_header),
            &body,
            close,
            head_only,
            out,
        );
    }

    /// HEADERS (+ DATA when the stream's window takes the whole body) on
    /// an HTTP/2 stream.
    pub fn send_h2(
        &self,
        conn: &mut ServerConn,
        stream: StreamId,
        error_header: &str,
        head_only: bool,
    ) -> Result<(), H2Error> {
        let body = self.body();
        let body: &[u8] = if head_only { b"" } else { &body };
        conn.respond(stream, self.status, &self.fields(error_header), body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_carry_the_code_and_request_id_over_h1() {
        let a = Answer::error(HttpError::QueueTimeout, "id-1");
        let mut out = Vec::new();
        a.encode_h1("X-Portier-Error", true, false, &mut out);
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(
            text.contains("x-portier-error: queue_timeout\r\n")
                || text.contains("X-Portier-Error: queue_timeout\r\n"),
            "{text}"
        );
        assert!(
            text.to_ascii_lowercase().contains("x-request-id: id-1\r\n"),
            "{text}"
        );
        assert!(
            text.to_ascii_lowercase().contains("connection: close\r\n"),
            "{text}"
        );
        assert!(
            text.ends_with("\r\n\r\n503 Service Unavailable: queue_timeout\n"),
            "{text}"
        );
    }

    #[test]
    fn head_answers_keep_the_length_but_send_no_body() {
        let a = Answer::error(HttpError::RouteUnknownHost, "id");
        let mut full = Vec::new();
        a.encode_h1("X-Portier-Error", false, false, &mut full);
        let mut head = Vec::new();
        a.encode_h1("X-Portier-Error", false, true, &mut head);
        assert!(full.starts_with(&head));
        assert_eq!(full.len() - head.len(), a.body().len());
        assert!(
            !String::from_utf8_lossy(&head)
                .to_ascii_lowercase()
                .contains("connection: close")
        );
    }

    #[test]
    fn redirects_say_where() {
        let a = Answer::redirect("https://example.com/x?y", "id");
        assert_eq!(a.status, 301);
        let fields = a.fields("x-portier-error");
        assert!(fields.contains(&("Location", b"https://example.com/x?y".as_slice())));
        assert!(!fields.iter().any(|(n, _)| *n == "x-portier-error"));
        assert_eq!(
            a.body(),
            b"301 Moved Permanently: https://example.com/x?y\n"
        );
    }

    #[test]
    fn status_comes_from_the_error() {
        for e in HttpError::ALL {
            assert_eq!(Answer::error(*e, "i").status, e.status());
        }
    }
}
