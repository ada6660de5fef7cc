//! From a decoded header list to an [`H2Request`] (RFC 9113 §8.1–§8.3),
//! with the same limits as HTTP/1.1 (SPEC §3 "Limits").
//!
//! Owns: [`Collector`] (bounded accumulation of decoded fields while HPACK
//! keeps the table in sync), request and trailer validation.
//! Must not: touch streams or frames. Fed by: the HPACK decoder callback.
//! Emits: `H2Request`, trailer fields, or a [`Refusal`].
//!
//! Mapping (all stream-level; the connection survives):
//! * limits → `Limit*` (431 header list / field / count, 414 `:path`,
//!   413 content-length over `max_body`);
//! * malformed per §8.1.1 / §8.2 / §8.3 (every `Peer*` error, i.e. a 400
//!   on HTTP/1.1) → [`Refusal::Malformed`]: a stream error of type
//!   PROTOCOL_ERROR (RST_STREAM), no response. §8.1.1 would allow a
//!   response first, but only one that does not end the stream (a closed
//!   stream may not be reset, §5.1), which clients do not show anyway;
//! * CONNECT (§8.5) → RST_STREAM(REFUSED_STREAM) with no response: this
//!   proxy does not tunnel.

use super::{ErrorCode, H2Request};
use crate::http::fields::Fields;
use crate::http::h1::check_host;
use crate::http::h1::head::is_token;
use crate::http::{CONNECTION_SPECIFIC, HttpError, Limits};

/// Why a header block does not become a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Answer with `HttpError::status()` on the stream (a limit).
    Reject(HttpError),
    /// Malformed (§8.1.1): RST_STREAM(PROTOCOL_ERROR), no response; the
    /// error says why (tests, logs).
    Malformed(HttpError),
    /// Reset the stream with this code, no response.
    Reset(ErrorCode),
}

impl From<HttpError> for Refusal {
    fn from(e: HttpError) -> Self {
        if is_malformed(e) {
            Refusal::Malformed(e)
        } else {
            Refusal::Reject(e)
        }
    }
}

/// The client broke an HTTP/2 message rule (what HTTP/1.1 answers with
/// 400), as opposed to exceeding a limit of ours (413, 414, 431).
pub fn is_malformed(e: HttpError) -> bool {
    e.status() == 400
}

/// Accumulates decoded fields under the limits. Once a limit is hit it
/// keeps counting but stops copying, so the HPACK decoder can finish the
/// block (keeping its table in sync) at a cost bounded by the block size.
#[derive(Debug)]
pub struct Collector {
    /// A name that is not UTF-8 is kept lossily: U+FFFD is no token
    /// character, so it is refused where the name would have been.
    pub fields: Fields,
    /// RFC 9113 §6.5.2 size: name + value + 32 per field.
    pub list_size: usize,
    pub error: Option<HttpError>,
    regular: usize,
    seen_cookie: bool,
    max_list: usize,
    limits: Limits,
}

impl Collector {
    pub fn new(max_list: usize, limits: Limits) -> Self {
        Collector::reusing(Fields::new(), max_list, limits)
    }

    /// A collector writing into `fields` (emptied first), kept by the
    /// connection between header blocks.
    pub fn reusing(mut fields: Fields, max_list: usize, limits: Limits) -> Self {
        fields.clear();
        // A usual request's fields without growing.
        fields.reserve(16, 160, 480);
        Collector {
            fields,
            list_size: 0,
            error: None,
            regular: 0,
            seen_cookie: false,
            max_list,
            limits,
        }
    }

    /// The buffers, for the next header block.
    pub fn into_fields(self) -> Fields {
        self.fields
    }

    /// One decoded field.
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        self.list_size = self.list_size.saturating_add(name.len() + value.len() + 32);
        if self.error.is_some() {
            return;
        }
        let error = if self.list_size > self.max_list {
            Some(HttpError::LimitHeaderSection)
        } else if name.len() + 2 + value.len() > self.limits.max_header_line {
            Some(if name == b":path" {
                HttpError::LimitUriTooLong
            } else {
                HttpError::LimitHeaderLine
            })
        } else {
            if !name.starts_with(b":") {
                // Cookie crumbs are one field once joined (§8.2.3).
                if name != b"cookie" || !self.seen_cookie {
                    self.regular += 1;
                }
                self.seen_cookie |= name == b"cookie";
            }
            (self.regular > self.limits.max_headers).then_some(HttpError::LimitTooManyHeaders)
        };
        if error.is_some() {
            self.error = error;
            self.fields.clear();
            return;
        }
        self.fields.push(&String::from_utf8_lossy(name), value);
    }
}

/// §8.2.1 plus what an HTTP/1.1 backend needs: a lowercase token.
fn valid_name(name: &[u8]) -> bool {
    is_token(name) && !name.iter().any(u8::is_ascii_uppercase)
}

/// §8.2.1: no NUL, CR, LF, no leading/trailing SP or HTAB; other CTLs are
/// refused too, as on HTTP/1.1 (RFC 9110 §5.5).
fn valid_value(value: &[u8]) -> bool {
    let edge = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    !edge(value.first())
        && !edge(value.last())
        && value
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// §8.2.2: fields that only make sense on a single HTTP/1.1 hop (`name`
/// is already known to be lowercase).
fn connection_specific(name: &[u8]) -> bool {
    CONNECTION_SPECIFIC.iter().any(|c| c.as_bytes() == name)
}

/// The bytes as a `String`, if all visible ASCII.
fn ascii(v: &[u8], err: HttpError) -> Result<String, HttpError> {
    match std::str::from_utf8(v) {
        Ok(s) if v.iter().all(u8::is_ascii_graphic) => Ok(s.to_owned()),
        _ => Err(err),
    }
}

/// Content-Length: `1*DIGIT` (RFC 9110 §8.6).
fn parse_content_length(v: &[u8]) -> Result<u64, HttpError> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::PeerInvalidContentLength);
    }
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(HttpError::PeerInvalidContentLength)
}

/// Check the regular fields shared by requests and trailers.
fn check_regular(name: &[u8], value: &[u8]) -> Result<(), HttpError> {
    if !valid_name(name) {
        return Err(HttpError::PeerInvalidHeaderName);
    }
    if !valid_value(value) {
        return Err(HttpError::PeerInvalidHeaderValue);
    }
    if connection_specific(name) {
        return Err(if name == b"transfer-encoding" {
            HttpError::PeerInvalidTransferEncoding
        } else {
            HttpError::PeerInvalidHeaderName
        });
    }
    // §8.2.2: TE may only carry "trailers".
    if name == b"te" && !value.eq_ignore_ascii_case(b"trailers") {
        return Err(HttpError::PeerInvalidHeaderValue);
    }
    Ok(())
}

/// Build a request from a complete, limit-checked header list (§8.3.1).
pub fn build_request(
    c: &Collector,
    end_stream: bool,
    limits: &Limits,
) -> Result<H2Request, Refusal> {
    if let Some(e) = c.error {
        return Err(e.into());
    }
    let bad = HttpError::PeerInvalidRequestLine;
    let (mut method, mut scheme, mut authority, mut path) = (None, None, None, None);
    let mut seen_regular = false;
    let mut cookie: Option<Vec<u8>> = None;
    let mut host: Option<&[u8]> = None;
    let mut content_length: Option<u64> = None;
    // The regular fields that are forwarded as they are, and their bytes.
    let (mut kept, mut kept_names, mut kept_values) = (0, 0, 0);
    for (name, value) in c.fields.iter() {
        if let Some(pseudo) = name.strip_prefix(':') {
            if seen_regular {
                return Err(bad.into());
            }
            let slot = match pseudo {
                "method" => &mut method,
                "scheme" => &mut scheme,
                "authority" => &mut authority,
                "path" => &mut path,
                _ => return Err(bad.into()),
            };
            if slot.replace(value).is_some() {
                return Err(bad.into());
            }
            continue;
        }
        seen_regular = true;
        check_regular(name.as_bytes(), value)?;
        match name {
            "cookie" => match &mut cookie {
                Some(c) => {
                    c.extend_from_slice(b"; ");
                    c.extend_from_slice(value);
                }
                None => cookie = Some(value.to_vec()),
            },
            "host" => {
                if host.replace(value).is_some() {
                    return Err(HttpError::PeerMultipleHost.into());
                }
            }
            "content-length" => {
                if content_length.is_some() {
                    return Err(HttpError::PeerConflictingContentLength.into());
                }
                content_length = Some(parse_content_length(value)?);
            }
            _ => {
                kept += 1;
                kept_names += name.len();
                kept_values += value.len();
            }
        }
    }
    let method = method.ok_or(bad)?;
    if !is_token(method) {
        return Err(bad.into());
    }
    if method == b"CONNECT" {
        // §8.5: not a tunnel.
        return Err(Refusal::Reset(ErrorCode::REFUSED_STREAM));
    }
    let scheme = scheme.ok_or(bad)?;
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok {
        return Err(bad.into());
    }
    let path = path.ok_or(bad)?;
    let path_ok = path.starts_with(b"/") || (path == b"*" && method == b"OPTIONS");
    if !path_ok {
        return Err(bad.into());
    }
    // §8.3.1: :authority wins; Host must then name the same entity; no
    // userinfo. An HTTP/1.1 backend needs one of them.
    let authority = match (authority, host) {
        (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => {
            return Err(HttpError::PeerInvalidHost.into());
        }
        (Some(a), _) => a,
        (None, Some(h)) => h,
        (None, None) => return Err(HttpError::PeerMissingHost.into()),
    };
    check_host(authority)?;
    if let Some(n) = content_length {
        if n > limits.max_body {
            return Err(HttpError::LimitBody.into());
        }
        if end_stream && n != 0 {
            return Err(HttpError::PeerIncompleteBody.into());
        }
    }
    // One buffer per head; room for the cookie and for the `host` field
    // that the HTTP/1.1 translation puts first.
    let cookie_len = cookie.as_ref().map_or(0, Vec::len);
    let mut headers = Fields::with_capacity(
        kept + 2,
        kept_names + "cookie".len() + "host".len(),
        kept_values + cookie_len + authority.len(),
    );
    for (name, value) in c.fields.iter() {
        if !name.starts_with(':') && !matches!(name, "cookie" | "host" | "content-length") {
            headers.push(name, value);
        }
    }
    if let Some(v) = cookie {
        headers.push("cookie", &v);
    }
    Ok(H2Request {
        method: ascii(method, bad)?,
        scheme: match scheme {
            b"https" => "https".into(),
            b"http" => "http".into(),
            other => ascii(other, bad)?.into(),
        },
        authority: ascii(authority, HttpError::PeerInvalidHost)?,
        path: ascii(path, bad)?,
        headers,
        content_length,
    })
}

/// Validate a trailer section (§8.1: no pseudo-header fields).
pub fn build_trailers(c: &Collector) -> Result<Vec<(String, Vec<u8>)>, HttpError> {
    if let Some(e) = c.error {
        return Err(e);
    }
    let mut out = Vec::with_capacity(c.fields.len());
    for (name, value) in c.fields.iter() {
        if name.starts_with(':') {
            return Err(HttpError::PeerInvalidHeaderName);
        }
        check_regular(name.as_bytes(), value)?;
        out.push((name.to_owned(), value.to_vec()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(fields: &[(&str, &str)]) -> Collector {
        let mut c = Collector::new(32 * 1024, Limits::default());
        for (n, v) in fields {
            c.push(n.as_bytes(), v.as_bytes());
        }
        c
    }

    fn req(fields: &[(&str, &str)]) -> Result<H2Request, Refusal> {
        build_request(&collect(fields), false, &Limits::default())
    }

    #[test]
    fn names_that_are_not_utf8_are_refused_where_they_stand() {
        let build = |names: &[&[u8]]| {
            let mut c = collect(&[(":method", "GET"), (":scheme", "https")]);
            for n in names {
                c.push(n, b"v");
            }
            c.push(b":path", b"/");
            build_request(&c, true, &Limits::default()).map(|_| ())
        };
        assert_eq!(
            build(&[b"x-\xff"]),
            Err(Refusal::Malformed(HttpError::PeerInvalidHeaderName))
        );
        assert_eq!(
            build(&[b":pa\xffth"]),
            Err(Refusal::Malformed(HttpError::PeerInvalidRequestLine))
        );
    }

    const BASE: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", "/x?y=1"),
    ];

    fn with(extra: &[(&str, &str)]) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<(&str, &str)> = BASE.to_vec();
        for (n, val) in extra {
            // Leak-free: tests only use string literals.
            v.push((
                Box::leak(n.to_string().into_boxed_str()),
                Box::leak(val.to_string().into_boxed_str()),
            ));
        }
        v
    }

    #[test]
    fn builds_a_plain_request_and_joins_cookies() {
        let r = req(&with(&[
            ("cookie", "a=1"),
            ("accept", "*/*"),
            ("cookie", "b=2"),
        ]))
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.scheme, "https");
        assert_eq!(r.authority, "example.com");
        assert_eq!(r.path, "/x?y=1");
        assert_eq!(
            r.headers,
            [("accept", "*/*"), ("cookie", "a=1; b=2")]
                .into_iter()
                .collect()
        );
    }

    #[test]
    fn refuses_malformed_pseudo_headers() {
        let bad = Refusal::Malformed(HttpError::PeerInvalidRequestLine);
        assert_eq!(req(&BASE[1..]).unwrap_err(), bad, "missing :method");
        assert_eq!(
            req(&[BASE[0], BASE[2], BASE[3]]).unwrap_err(),
            bad,
            "missing :scheme"
        );
        assert_eq!(req(&BASE[..3]).unwrap_err(), bad, "missing :path");
        assert_eq!(req(&with(&[(":path", "/")])).unwrap_err(), bad, "dup");
        let mut after = with(&[("accept", "*/*")]);
        after.push((":method", "GET"));
        assert_eq!(req(&after).unwrap_err(), bad, "pseudo after regular");
        assert_eq!(req(&with(&[(":status", "200")])).unwrap_err(), bad);
        assert_eq!(req(&with(&[(":protocol", "ws")])).unwrap_err(), bad);
        let mut rel = BASE.to_vec();
        rel[3] = (":path", "x");
        assert_eq!(req(&rel).unwrap_err(), bad, "relative path");
        rel[3] = (":path", "/a b");
        assert_eq!(req(&rel).unwrap_err(), bad, "space in path");
        rel[3] = (":path", "");
        assert_eq!(req(&rel).unwrap_err(), bad, "empty path");
    }

    #[test]
    fn refuses_uppercase_and_connection_specific_fields() {
        assert_eq!(
            req(&with(&[("Accept", "x")])).unwrap_err(),
            Refusal::Malformed(HttpError::PeerInvalidHeaderName)
        );
        for &name in CONNECTION_SPECIFIC {
            let want = if name == "transfer-encoding" {
                HttpError::PeerInvalidTransferEncoding
            } else {
                HttpError::PeerInvalidHeaderName
            };
            assert_eq!(
                req(&with(&[(name, "chunked")])).unwrap_err(),
                Refusal::Malformed(want),
                "{name}"
            );
        }
        assert_eq!(
            req(&with(&[("te", "gzip")])).unwrap_err(),
            Refusal::Malformed(HttpError::PeerInvalidHeaderValue)
        );
        assert!(req(&with(&[("te", "trailers")])).is_ok());
        assert_eq!(
            req(&with(&[("x", " lead")])).unwrap_err(),
            Refusal::Malformed(HttpError::PeerInvalidHeaderValue)
        );
        assert_eq!(
            req(&with(&[("x", "a\r\nb")])).unwrap_err(),
            Refusal::Malformed(HttpError::PeerInvalidHeaderValue)
        );
    }

    #[test]
    fn connect_is_reset_not_answered() {
        let r = req(&[(":method", "CONNECT"), (":authority", "example.com:443")]);
        assert_eq!(r.unwrap_err(), Refusal::Reset(ErrorCode::REFUSED_STREAM));
    }

    #[test]
    fn host_rules() {
        let mut v = BASE.to_vec();
        v.remove(2);
        v.push(("host", "h.example"));
        assert_eq!(req(&v).unwrap().authority, "h.example");
        assert_eq!(
            req(&with(&[("host", "other.example")])).unwrap_err(),
            Refusal::Malformed(HttpError::PeerInvalidHost)
        );
        let mut v = BASE.to_vec();
        v.remove(2);
        assert_eq!(
            req(&v).unwrap_err(),
            Refusal::Malformed(HttpError::PeerMissingHost)
        );
        let mut v = BASE.to_vec();
        v[2] = (":authority", "user@example.com");
        assert_eq!(
            req(&v).unwrap_err(),
            Refusal::Malformed(HttpError::PeerInvalidHost)
        );
    }

    #[test]
    fn content_length_rules() {
        assert_eq!(
            req(&with(&[("content-length", "5")]))
                .unwrap()
                .content_length,
            Some(5)
        );
        assert_eq!(
            req(&with(&[("content-length", "5"), ("content-length", "5")])).unwrap_err(),
            Refusal::Malformed(HttpError::PeerConflictingContentLength)
        );
        assert_eq!(
            req(&with(&[("content-length", "-1")])).unwrap_err(),
            Refusal::Malformed(HttpError::PeerInvalidContentLength)
        );
        assert_eq!(
            req(&with(&[("content-length", "75000001")])).unwrap_err(),
            Refusal::Reject(HttpError::LimitBody)
        );
        let c = collect(&with(&[("content-length", "3")]));
        assert_eq!(
            build_request(&c, true, &Limits::default()).unwrap_err(),
            Refusal::Malformed(HttpError::PeerIncompleteBody)
        );
    }

    #[test]
    fn limits_map_to_431_and_414() {
        let big = "v".repeat(9000);
        assert_eq!(
            req(&with(&[("x", &big)])).unwrap_err(),
            Refusal::Reject(HttpError::LimitHeaderLine)
        );
        let mut v = BASE.to_vec();
        let long_path = format!("/{big}");
        v[3] = (":path", Box::leak(long_path.into_boxed_str()));
        assert_eq!(
            req(&v).unwrap_err(),
            Refusal::Reject(HttpError::LimitUriTooLong)
        );
        let mut c = Collector::new(32 * 1024, Limits::default());
        for _ in 0..10 {
            c.push(b"x-filler", &[b'a'; 4000]);
        }
        assert_eq!(c.error, Some(HttpError::LimitHeaderSection));
        assert!(c.fields.is_empty());
        let mut c = Collector::new(32 * 1024, Limits::default());
        for _ in 0..101 {
            c.push(b"x", b"y");
        }
        assert_eq!(c.error, Some(HttpError::LimitTooManyHeaders));
    }

    #[test]
    fn trailers_refuse_pseudo_headers() {
        assert_eq!(
            build_trailers(&collect(&[(":path", "/")])).unwrap_err(),
            HttpError::PeerInvalidHeaderName
        );
        assert_eq!(
            build_trailers(&collect(&[("grpc-status", "0")])).unwrap(),
            vec![("grpc-status".to_owned(), b"0".to_vec())]
        );
    }
}
