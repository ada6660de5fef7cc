//! The demo backend's endpoints: a request target parsed into a [`Route`]
//! with its parameters.
//!
//! Owns: the path and query rules of the endpoint table in `main.rs`
//! (`/bytes/<n>`, `/status/<code>`, `/slow/<ms>`, `/sse?...`, `/ws`,
//! `/close`, anything else = echo), their defaults, and `400` reasons for
//! bad parameters. Must not: do I/O. Fed by: `Conn::respond` (`conn.rs`).
//! Emits: a [`Route`].

/// One endpoint, with its parameters parsed from the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Echo,
    Bytes {
        n: u64,
        chunked: bool,
    },
    Status(u16),
    Slow(u64),
    Sse {
        events: u64,
        interval_ms: u64,
        content_type: &'static str,
    },
    WebSocket,
    Close,
    BadRequest(&'static str),
}

impl Route {
    pub fn parse(target: &str) -> Route {
        let (path, query) = split_target(target);
        let param = |key| query_param(query, key);
        if let Some(n) = path.strip_prefix("/bytes/") {
            match n.parse() {
                Ok(n) => Route::Bytes {
                    n,
                    chunked: param("chunked").is_some_and(|v| v == "1"),
                },
                Err(_) => Route::BadRequest("/bytes/<n>: n must be a number"),
            }
        } else if let Some(code) = path.strip_prefix("/status/") {
            match code.parse() {
                Ok(code @ 200..=599) => Route::Status(code),
                _ => Route::BadRequest("/status/<code>: code must be 200..599"),
            }
        } else if let Some(ms) = path.strip_prefix("/slow/") {
            match ms.parse() {
                Ok(ms) => Route::Slow(ms),
                Err(_) => Route::BadRequest("/slow/<ms>: ms must be a number"),
            }
        } else if path == "/sse" {
            match (
                param("events").map_or(Ok(5), str::parse),
                param("interval_ms").map_or(Ok(100), str::parse),
            ) {
                (Ok(events), Ok(interval_ms)) => Route::Sse {
                    events,
                    interval_ms,
                    // A listed type makes the stream compressible (tests
                    // check gzip still delivers it incrementally).
                    content_type: match param("type") {
                        Some("text/plain") => "text/plain",
                        Some("application/json") => "application/json",
                        _ => "text/event-stream",
                    },
                },
                _ => Route::BadRequest("/sse: events and interval_ms must be numbers"),
            }
        } else if path == "/ws" {
            Route::WebSocket
        } else if path == "/close" {
            Route::Close
        } else {
            Route::Echo
        }
    }
}

/// `(path, query)` of a request target; the authority of an absolute-form
/// target (RFC 9112 §3.2.2) is skipped.
pub fn split_target(target: &str) -> (&str, &str) {
    let origin = match target.split_once("://") {
        Some((_, rest)) if !target.starts_with('/') => rest.find('/').map_or("/", |i| &rest[i..]),
        _ => target,
    };
    origin.split_once('?').unwrap_or((origin, ""))
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}
