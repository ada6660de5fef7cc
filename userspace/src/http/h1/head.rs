//! What request and response heads share: finding the end of a head under
//! the [`Limits`], classifying a syntax error precisely, and reading the
//! framing and connection fields (RFC 9112 §2, §5, §6; RFC 9110 §5.6, §7.6.1).
//!
//! Owns: the line scanner that enforces `max_header_section`,
//! `max_header_line` and `max_headers` before any tokenizing, the
//! error classifier run when `httparse` refuses a head, Content-Length /
//! Transfer-Encoding interpretation, and comma-list helpers.
//! Must not: build head values (see `request.rs`, `response.rs`).
//! Fed by: the head parsers. Emits: [`Scan`], [`Framing`], `HttpError`s
//! (always `Peer*` / `Limit*`; response callers re-blame with
//! `HttpError::to_upstream`).
//!
//! Line endings: a bare LF is accepted as a line terminator in heads, as
//! RFC 9112 §2.2 allows ("MAY recognize a single LF"); heads are always
//! re-encoded with CRLF, so the leniency never reaches a backend. A bare CR
//! anywhere is refused (RFC 9112 §2.2 "MUST ... consider the message invalid").

use crate::http::{HttpError, Limits};

/// Field lines as received: name as sent, raw value (OWS trimmed), in order.
pub use crate::http::fields::Fields as Headers;

/// Outcome of [`scan_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The head is `buf[..len]` and holds `fields` field lines.
    Complete { len: usize, fields: usize },
    /// No empty line yet; `fields` complete field lines seen so far.
    Partial { fields: usize },
}

/// Find the end of a head while enforcing the size limits (RFC 9112 §2.1:
/// start-line, field lines, empty line). Leading empty lines before a
/// request line are skipped (RFC 9112 §2.2) but count toward the section.
pub(crate) fn scan_head(buf: &[u8], limits: &Limits, is_request: bool) -> Result<Scan, HttpError> {
    let window = buf.get(..limits.max_header_section).unwrap_or(buf);
    let mut pos = 0usize;
    let mut seen_start = false;
    let mut fields = 0usize;
    loop {
        let rest = window.get(pos..).unwrap_or_default();
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            // A trailing CR may be the first half of the CRLF.
            let line = strip_cr(rest);
            if !seen_start {
                check_start_line(line, limits, is_request)?;
            } else if line.len() > limits.max_header_line {
                return Err(HttpError::LimitHeaderLine);
            }
            if buf.len() > limits.max_header_section {
                return Err(HttpError::LimitHeaderSection);
            }
            return Ok(Scan::Partial { fields });
        };
        let line = strip_cr(rest.get(..nl).unwrap_or_default());
        let end = pos + nl + 1;
        if !seen_start {
            if !line.is_empty() {
                check_start_line(line, limits, is_request)?;
                seen_start = true;
            }
        } else if line.is_empty() {
            return Ok(Scan::Complete { len: end, fields });
        } else {
            if line.len() > limits.max_header_line {
                return Err(HttpError::LimitHeaderLine);
            }
            fields += 1;
            if fields > limits.max_headers {
                return Err(HttpError::LimitTooManyHeaders);
            }
        }
        pos = end;
    }
}

/// Size rules for the start line. A request target longer than
/// `max_header_line` is 414 (RFC 9112 §3 "SHOULD respond with 414"); method
/// and version are bounded by the section limit. A status line is a field
/// line for size purposes.
fn check_start_line(line: &[u8], limits: &Limits, is_request: bool) -> Result<(), HttpError> {
    if is_request {
        let mut parts = line.splitn(3, |&b| b == b' ');
        let _method = parts.next();
        if let Some(target) = parts.next()
            && target.len() > limits.max_header_line
        {
            return Err(HttpError::LimitUriTooLong);
        }
        Ok(())
    } else if line.len() > limits.max_header_line {
        Err(HttpError::LimitHeaderLine)
    } else {
        Ok(())
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `tchar` (RFC 9110 §5.6.2).
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// `tchar` as a table: every field name byte is checked on the way in and
/// out, and the symbol list is a 15-byte scan per `-`.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

/// `token = 1*tchar` (RFC 9110 §5.6.2).
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// `field-vchar / SP / HTAB` (RFC 9110 §5.5): no CTL but HTAB, no DEL.
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// Elements of a comma-separated list, OWS trimmed, empty ones kept
/// (RFC 9110 §5.6.1).
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(|e| e.trim_ascii())
}

/// Whether any `name` field line lists `token` (case-insensitive).
pub(crate) fn lists_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| list_elements(h.value))
        .any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

/// Why `httparse` refused a head, as precisely as the bytes allow. `buf` is
/// the (possibly partial) head; `err` is the fallback when no line is found
/// guilty. Only meaningful for requests; response callers map everything to
/// `UpstreamInvalidResponse`.
pub(crate) fn classify_request_error(buf: &[u8], err: httparse::Error) -> HttpError {
    let mut lines = buf.split(|&b| b == b'\n').map(strip_cr).peekable();
    // Leading empty lines (RFC 9112 §2.2).
    while lines.next_if(|l| l.is_empty()).is_some() {}
    if let Some(start) = lines.next()
        && let Some(e) = check_request_line_syntax(start)
    {
        return e;
    }
    for line in lines {
        if let Some(e) = check_field_line_syntax(line) {
            return e;
        }
    }
    match err {
        httparse::Error::HeaderName => HttpError::PeerInvalidHeaderName,
        httparse::Error::HeaderValue => HttpError::PeerInvalidHeaderValue,
        httparse::Error::TooManyHeaders => HttpError::LimitTooManyHeaders,
        _ => HttpError::PeerInvalidRequestLine,
    }
}

/// `request-line = method SP request-target SP HTTP-version` (RFC 9112 §3).
/// Tolerates a line cut short (partial input) as long as what is there is
/// valid. Returns `None` when the line shows no fault.
fn check_request_line_syntax(line: &[u8]) -> Option<HttpError> {
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next();
    let version = parts.next();
    if parts.next().is_some() || !method.iter().all(|&b| is_tchar(b)) {
        return Some(HttpError::PeerInvalidRequestLine);
    }
    let target = target?;
    // httparse's URI alphabet: VCHAR and obs-text, nothing else.
    if !target
        .iter()
        .all(|&b| (b'!'..=b'~').contains(&b) || b >= 0x80)
        || method.is_empty()
        || (target.is_empty() && version.is_some())
    {
        return Some(HttpError::PeerInvalidRequestLine);
    }
    let version = version?;
    if version == b"HTTP/1.1" || version == b"HTTP/1.0" {
        return None;
    }
    // HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3); a well-formed
    // other version (or "HTTP/2") is 505, anything else 400.
    match version.strip_prefix(b"HTTP/") {
        Some([d]) | Some([d, b'.']) | Some([d, b'.', b'0'..=b'9']) if d.is_ascii_digit() => {
            Some(HttpError::PeerUnsupportedVersion)
        }
        _ => Some(HttpError::PeerInvalidRequestLine),
    }
}

/// `field-line = field-name ":" OWS field-value OWS` (RFC 9112 §5).
fn check_field_line_syntax(line: &[u8]) -> Option<HttpError> {
    match line.first() {
        None => return None,
        // RFC 9112 §5.2 obs-fold; §2.2 whitespace before the first field.
        Some(b' ' | b'\t') => return Some(HttpError::PeerObsFold),
        Some(_) => {}
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        // Partial or colon-less line: the name so far must be a token.
        return if line.iter().all(|&b| is_tchar(b)) {
            None
        } else {
            Some(HttpError::PeerInvalidHeaderName)
        };
    };
    let (name, value) = line.split_at(colon);
    if !is_token(name) {
        // Includes "Host : x" (RFC 9112 §5.1: no whitespace before colon).
        return Some(HttpError::PeerInvalidHeaderName);
    }
    if !value.iter().skip(1).all(|&b| is_field_value_byte(b)) {
        return Some(HttpError::PeerInvalidHeaderValue);
    }
    None
}

/// Message body framing from the fields (RFC 9112 §6.1, §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Neither Content-Length nor Transfer-Encoding.
    Absent,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Read Content-Length and Transfer-Encoding, refusing every ambiguous
/// shape. `allow_equal_duplicate_cl`: accept repeated identical
/// Content-Length values (RFC 9110 §8.6 permits it; used for responses only —
/// requests refuse them to leave no room for smuggling).
///
/// Transfer-Encoding must be exactly one field line whose value is exactly
/// `chunked` (case-insensitive, OWS trimmed): Portier decodes no other
/// transfer coding, and RFC 9112 §6.1 forbids applying chunked twice.
pub(crate) fn framing(
    headers: &[httparse::Header<'_>],
    allow_equal_duplicate_cl: bool,
) -> Result<Framing, HttpError> {
    let cl_lines = || {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    };
    let te_lines = || {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    };
    let has_cl = cl_lines().next().is_some();
    let te_count = te_lines().count();
    if has_cl && te_count > 0 {
        // RFC 9112 §6.3 item 3: "ought to be handled as an error".
        return Err(HttpError::PeerContentLengthWithTransferEncoding);
    }
    if te_count > 1 {
        return Err(HttpError::PeerInvalidTransferEncoding);
    }
    if let Some(te) = te_lines().next() {
        let mut chunked = 0usize;
        for coding in list_elements(te.value) {
            if coding.eq_ignore_ascii_case(b"chunked") {
                chunked += 1;
            } else if !coding.is_empty() {
                return Err(HttpError::PeerUnknownTransferCoding);
            } else {
                return Err(HttpError::PeerInvalidTransferEncoding);
            }
        }
        return if chunked == 1 {
            Ok(Framing::Chunked)
        } else {
            Err(HttpError::PeerInvalidTransferEncoding)
        };
    }
    let mut length: Option<u64> = None;
    for (i, line) in cl_lines().enumerate() {
        for (j, element) in line.value.split(|&b| b == b',').enumerate() {
            if (i > 0 || j > 0) && !allow_equal_duplicate_cl {
                return Err(HttpError::PeerConflictingContentLength);
            }
            let n = parse_content_length(element.trim_ascii())?;
            match length {
                Some(prev) if prev != n => return Err(HttpError::PeerConflictingContentLength),
                _ => length = Some(n),
            }
        }
    }
    Ok(length.map_or(Framing::Absent, Framing::Length))
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6), refusing u64 overflow.
pub(crate) fn parse_content_length(v: &[u8]) -> Result<u64, HttpError> {
    if v.is_empty() {
        return Err(HttpError::PeerInvalidContentLength);
    }
    v.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(HttpError::PeerInvalidContentLength);
        }
        acc.checked_mul(10)
            .and_then(|a| a.checked_add(u64::from(b - b'0')))
            .ok_or(HttpError::PeerInvalidContentLength)
    })
}

/// Slots for the tokenizer's fields: on the stack for a usual head, on the
/// heap for a big one (the line scanner counted them, so exactly enough).
pub(crate) fn tokenizer_slots<'a, 'b>(
    n: usize,
    stack: &'a mut [httparse::Header<'b>; 32],
    heap: &'a mut Vec<httparse::Header<'b>>,
) -> &'a mut [httparse::Header<'b>] {
    if n <= stack.len() {
        stack.get_mut(..n).unwrap_or_default()
    } else {
        *heap = vec![httparse::EMPTY_HEADER; n];
        heap
    }
}

/// Copy httparse fields into owned [`Headers`]: three allocations, sized
/// exactly.
pub(crate) fn own_headers(headers: &[httparse::Header<'_>]) -> Headers {
    let (names, values) = headers
        .iter()
        .fold((0, 0), |(n, v), h| (n + h.name.len(), v + h.value.len()));
    let mut owned = Headers::with_capacity(headers.len(), names, values);
    for h in headers {
        owned.push(h.name, h.value);
    }
    owned
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Heads of 32 fields use the tokenizer's stack slots, 33 its heap
    /// ones; a partial head of 32 fields needs 33.
    #[test]
    fn heads_around_the_stack_slot_count_parse_alike() {
        use crate::http::h1::{parse_request_head, parse_response_head};
        let limits = Limits::default();
        for n in [31, 32, 33, 40] {
            let fields: String = (0..n).map(|i| format!("X-F{i}: {i}\r\n")).collect();
            let req = format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
            let (head, used) = parse_request_head(req.as_bytes(), &limits)
                .expect("valid")
                .expect("complete");
            assert_eq!((head.headers.len(), used), (n + 1, req.len()));
            assert_eq!(
                head.headers.get(n),
                Some((
                    format!("X-F{}", n - 1).as_str(),
                    format!("{}", n - 1).as_bytes()
                ))
            );
            let partial = &req[..req.len() - 2];
            assert_eq!(parse_request_head(partial.as_bytes(), &limits), Ok(None));
            let res = format!("HTTP/1.1 200 OK\r\n{fields}Content-Length: 0\r\n\r\n");
            let (head, _) = parse_response_head(res.as_bytes(), &limits, false)
                .expect("valid")
                .expect("complete");
            assert_eq!(head.headers.len(), n + 1);
            assert_eq!(head.header("x-f0"), Some(&b"0"[..]));
            let partial = &res[..res.len() - 2];
            assert_eq!(
                parse_response_head(partial.as_bytes(), &limits, false),
                Ok(None)
            );
        }
    }

    fn hdr<'a>(name: &'a str, value: &'a [u8]) -> httparse::Header<'a> {
        httparse::Header { name, value }
    }

    fn small() -> Limits {
        Limits {
            max_header_section: 64,
            max_header_line: 16,
            max_body: 100,
            max_headers: 2,
        }
    }

    #[test]
    fn scan_finds_end_after_empty_line() {
        let buf = b"GET / HTTP/1.1\r\nA: b\r\n\r\nBODY";
        assert_eq!(
            scan_head(buf, &Limits::default(), true),
            Ok(Scan::Complete { len: 24, fields: 1 })
        );
    }

    #[test]
    fn scan_accepts_bare_lf_terminators() {
        let buf = b"GET / HTTP/1.1\nA: b\n\nrest";
        assert_eq!(
            scan_head(buf, &Limits::default(), true),
            Ok(Scan::Complete { len: 21, fields: 1 })
        );
    }

    #[test]
    fn scan_skips_leading_empty_lines() {
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(
            scan_head(buf, &Limits::default(), true),
            Ok(Scan::Complete {
                len: buf.len(),
                fields: 0
            })
        );
    }

    #[test]
    fn scan_reports_partial_with_trailing_cr() {
        let buf = b"GET / HTTP/1.1\r\nA: 0123456789abc\r";
        assert_eq!(
            scan_head(buf, &small(), true),
            Ok(Scan::Partial { fields: 0 })
        );
    }

    #[test]
    fn scan_refuses_long_partial_line_early() {
        let buf = b"GET / HTTP/1.1\r\nA: 0123456789abcd";
        assert_eq!(
            scan_head(buf, &small(), true),
            Err(HttpError::LimitHeaderLine)
        );
    }

    #[test]
    fn scan_refuses_long_status_line() {
        let buf = b"HTTP/1.1 200 OK and much more\r\n\r\n";
        assert_eq!(
            scan_head(buf, &small(), false),
            Err(HttpError::LimitHeaderLine)
        );
    }

    #[test]
    fn classifies_obs_fold_and_first_line_whitespace() {
        let e = httparse::Error::HeaderName;
        assert_eq!(
            classify_request_error(b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", e),
            HttpError::PeerObsFold
        );
        assert_eq!(
            classify_request_error(b"GET / HTTP/1.1\r\n A: b\r\n\r\n", e),
            HttpError::PeerObsFold
        );
    }

    #[test]
    fn classifies_version_shapes() {
        let e = httparse::Error::Version;
        for (line, want) in [
            (
                &b"GET / HTTP/2.0\r\n"[..],
                HttpError::PeerUnsupportedVersion,
            ),
            (b"GET / HTTP/2", HttpError::PeerUnsupportedVersion),
            (b"GET / HTTP/1.2\r\n", HttpError::PeerUnsupportedVersion),
            (b"GET / HTTP/0.9\r\n", HttpError::PeerUnsupportedVersion),
            (b"GET / http/1.1\r\n", HttpError::PeerInvalidRequestLine),
            (b"GET / HTTP/1.10\r\n", HttpError::PeerInvalidRequestLine),
            (b"GET / HTTP/11\r\n", HttpError::PeerInvalidRequestLine),
            (b"GET / FOO\r\n", HttpError::PeerInvalidRequestLine),
            (b"G@T / HTTP/2.0\r\n", HttpError::PeerInvalidRequestLine),
        ] {
            assert_eq!(
                classify_request_error(line, e),
                want,
                "{:?}",
                line.escape_ascii()
            );
        }
    }

    #[test]
    fn lists_token_spans_lines_and_case() {
        let h = [
            hdr("Connection", b"keep-alive"),
            hdr("connection", b" Foo , UPGRADE "),
        ];
        assert!(lists_token(&h, "connection", "upgrade"));
        assert!(lists_token(&h, "Connection", "foo"));
        assert!(!lists_token(&h, "connection", "close"));
    }

    #[test]
    fn framing_accepts_equal_duplicate_cl_only_when_allowed() {
        let h = [hdr("Content-Length", b"5"), hdr("content-length", b"5")];
        assert_eq!(framing(&h, true), Ok(Framing::Length(5)));
        assert_eq!(
            framing(&h, false),
            Err(HttpError::PeerConflictingContentLength)
        );
        let h = [hdr("Content-Length", b"5, 5")];
        assert_eq!(framing(&h, true), Ok(Framing::Length(5)));
        assert_eq!(
            framing(&h, false),
            Err(HttpError::PeerConflictingContentLength)
        );
        let h = [hdr("Content-Length", b"5, 6")];
        assert_eq!(
            framing(&h, true),
            Err(HttpError::PeerConflictingContentLength)
        );
    }

    #[test]
    fn parses_content_length_digits_only() {
        assert_eq!(parse_content_length(b"0"), Ok(0));
        assert_eq!(parse_content_length(b"007"), Ok(7));
        assert_eq!(parse_content_length(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"0x5",
            b"5 5",
            b"1e3",
            b"18446744073709551616",
        ] {
            assert_eq!(
                parse_content_length(bad),
                Err(HttpError::PeerInvalidContentLength),
                "{:?}",
                bad.escape_ascii()
            );
        }
    }
}
