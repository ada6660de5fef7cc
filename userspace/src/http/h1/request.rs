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
    Framing, Headers, Scan, classify_request_error, framing, list_elements, lists_token,
    own_headers, scan_head, tokenizer_slots,
};
use crate::http::{HttpError, Limits};

/// The `Host` of a request, from the absolute-form target if there is one
/// (RFC 9112 §3.2.2: the received Host field is then ignored, though it
/// must still be there and valid), else from the Host field.
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
    /// The `Upgrade` value when `Connection` lists `upgrade` (HTTP/1.1):
    /// what the client asked for. Only a WebSocket upgrade is forwarded
    /// ([`RequestHead::is_websocket_upgrade`]).
    pub upgrade: Option<String>,
    /// Host; `None` only for an HTTP/1.0 request without one.
    pub host: Option<Host>,
}

impl RequestHead {
    /// First value of `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.find(name)
    }

    /// Every value of `name`, in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.values_of(name)
    }

    /// `HEAD` request: its response has no body (RFC 9110 §9.3.2).
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// The client asks for a WebSocket upgrade: `Connection` lists
    /// `upgrade` and `Upgrade` lists `websocket` (RFC 9110 §7.8; the token
    /// is case-insensitive, RFC 6455 §4.2.1). The only upgrade Portier
    /// forwards, and so the only request whose connection may become a
    /// tunnel; any other protocol (`h2c`, `TLS/1.0`...) is stripped.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.upgrade.as_deref().is_some_and(|u| {
            list_elements(u.as_bytes()).any(|p| p.eq_ignore_ascii_case(b"websocket"))
        })
    }

    /// The target sent in absolute-form (`http://authority/path`, RFC 9112
    /// §3.2.2): its Host is the target's authority (already in `host`).
    pub fn is_absolute_form(&self) -> bool {
        !self.target.starts_with('/') && absolute_authority(&self.target).is_some()
    }

    /// The target as a backend receives it: origin-form (RFC 9112 §3.2.1),
    /// also for an absolute-form target.
    pub fn origin_form(&self) -> std::borrow::Cow<'_, str> {
        origin_form(&self.target)
    }
}

/// The origin-form (`/path?query`) of a request target: itself when it is
/// already one, the path and query of an `http`/`https` absolute-form
/// target (`/` when the path is empty, RFC 9112 §3.2.1; a fragment, which
/// an absolute-URI cannot carry, is dropped), `/` for anything else.
pub fn origin_form(target: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if target.starts_with('/') {
        return Cow::Borrowed(target);
    }
    let Some(authority) = absolute_authority(target) else {
        return Cow::Borrowed("/");
    };
    let start = target
        .find("://")
        .map_or(target.len(), |i| i + 3 + authority.len());
    let rest = target.get(start..).unwrap_or_default();
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    if rest.starts_with('/') {
        Cow::Borrowed(rest)
    } else {
        Cow::Owned(format!("/{rest}"))
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
    let (mut stack, mut heap) = ([httparse::EMPTY_HEADER; 32], Vec::new());
    let fields = tokenizer_slots(capacity, &mut stack, &mut heap);
    let mut req = httparse::Request::new(fields);
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
        // RFC 9110 §4.2.1: an http(s) URI with an empty host is invalid.
        Some("") => Err(HttpError::PeerInvalidHost),
        Some(authority) => parse_host(authority.as_bytes()).map(Some),
        None => Ok(from_field),
    }
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2). No
/// userinfo; reg-name limited to unreserved / pct-encoded / sub-delims.
pub fn parse_host(raw: &[u8]) -> Result<Host, HttpError> {
    let raw = std::str::from_utf8(raw).map_err(|_| HttpError::PeerInvalidHost)?;
    host_of(raw.to_owned())
}

/// [`parse_host`] of a value already owned (kept as `raw`).
pub fn host_of(raw: String) -> Result<Host, HttpError> {
    let (name, port) = host_parts(&raw)?;
    let mut name = name.to_ascii_lowercase();
    if name.ends_with('.') {
        name.pop();
    }
    Ok(Host { name, port, raw })
}

/// [`parse_host`]'s judgement alone, without building anything.
pub fn check_host(raw: &[u8]) -> Result<(), HttpError> {
    let raw = std::str::from_utf8(raw).map_err(|_| HttpError::PeerInvalidHost)?;
    host_parts(raw).map(|_| ())
}

/// The name as sent and the port of a valid Host value.
fn host_parts(raw_str: &str) -> Result<(&str, Option<u16>), HttpError> {
    let invalid = HttpError::PeerInvalidHost;
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
    Ok((name, port))
}

#[cfg(test)]
mod tests;
