//! Writing the demo backend's HTTP/1.1 responses: heads, the JSON echo,
//! `/status`, `/bytes` and `/sse` bodies, and codec error responses.
//!
//! Owns: [`Framing`] (Content-Length, chunked, close-delimited for HTTP/1.0
//! clients, or none for 204/304), the `X-Backend` header on every response,
//! `Connection: close` / `keep-alive`, and the `/bytes` pattern.
//! Must not: read from the socket or parse targets (see `conn.rs`,
//! `route.rs`). Fed by: `Conn::respond` and the request readers in
//! `conn.rs`. Emits: bytes on the connection's stream.

use std::io::{self, Write};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use portier::http::h1::{
    RequestHead, encode_chunk, encode_last_chunk, error_response, reason_phrase,
};

use crate::conn::{BodySummary, Conn, Next};
use crate::route::split_target;

/// Bytes per chunk for `/bytes/<n>?chunked=1`, and per write for `/bytes`.
pub const BYTES_CHUNK: usize = 16 * 1024;
/// The repeating `/bytes` pattern.
pub const PATTERN: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
/// Header naming the codec error in an error response.
const ERROR_HEADER: &str = "X-Demo-Error";

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// HTTP/1.0 client: the body ends when the connection closes.
    UntilClose,
    /// 204, 304: no body, no framing field.
    NoBody,
}

impl Conn<'_> {
    pub fn send_echo(
        &mut self,
        head: &RequestHead,
        body: BodySummary,
        close: bool,
    ) -> io::Result<Next> {
        let headers: Vec<[String; 2]> = head
            .headers
            .iter()
            .map(|(n, v)| [n.to_owned(), String::from_utf8_lossy(v).into_owned()])
            .collect();
        let json = serde_json::json!({
            "backend": self.name,
            "method": head.method,
            "path": split_target(&head.target).0,
            "target": head.target,
            "version": if head.version == 0 { "HTTP/1.0" } else { "HTTP/1.1" },
            "headers": headers,
            "body_bytes": body.bytes,
            "body_fnv": format!("{:016x}", body.fnv),
        })
        .to_string();
        let framing = Framing::Length(json.len() as u64);
        self.send_simple(
            head,
            200,
            "application/json",
            framing,
            json.as_bytes(),
            close,
        )
    }

    pub fn send_simple(
        &mut self,
        head: &RequestHead,
        status: u16,
        content_type: &str,
        framing: Framing,
        body: &[u8],
        close: bool,
    ) -> io::Result<Next> {
        let mut out = Vec::with_capacity(256 + body.len());
        let next = self.push_head(head, status, content_type, framing, close, &mut out);
        if !head.is_head() && framing != Framing::NoBody {
            out.extend_from_slice(body);
        }
        self.stream.write_all(&out)?;
        Ok(next)
    }

    /// Framing for a streamed body: chunked, or close-delimited for 1.0.
    fn streamed(head: &RequestHead) -> Framing {
        if head.version == 0 {
            Framing::UntilClose
        } else {
            Framing::Chunked
        }
    }

    pub fn send_bytes(
        &mut self,
        head: &RequestHead,
        n: u64,
        chunked: bool,
        close: bool,
    ) -> io::Result<Next> {
        let framing = if chunked {
            Self::streamed(head)
        } else {
            Framing::Length(n)
        };
        let mut out = Vec::with_capacity(256 + BYTES_CHUNK);
        let next = self.push_head(head, 200, "text/plain", framing, close, &mut out);
        if head.is_head() {
            self.stream.write_all(&out)?;
            return Ok(next);
        }
        let block = pattern_block();
        let mut sent = 0u64;
        while sent < n {
            let len = usize::try_from(n - sent).map_or(BYTES_CHUNK, |r| r.min(BYTES_CHUNK));
            let offset = (sent % PATTERN.len() as u64) as usize;
            let data = block.get(offset..offset + len).unwrap_or_default();
            if framing == Framing::Chunked {
                encode_chunk(data, &mut out);
            } else {
                out.extend_from_slice(data);
            }
            self.stream.write_all(&out)?;
            out.clear();
            sent += len as u64;
        }
        if framing == Framing::Chunked {
            encode_last_chunk(&mut out);
        }
        self.stream.write_all(&out)?;
        Ok(next)
    }

    pub fn send_sse(
        &mut self,
        head: &RequestHead,
        events: u64,
        interval_ms: u64,
        content_type: &str,
        close: bool,
    ) -> io::Result<Next> {
        let framing = Self::streamed(head);
        let mut out = Vec::with_capacity(256);
        let next = self.push_head(head, 200, content_type, framing, close, &mut out);
        self.stream.write_all(&out)?;
        if head.is_head() {
            return Ok(next);
        }
        for i in 0..events {
            if i > 0 {
                thread::sleep(Duration::from_millis(interval_ms));
            }
            out.clear();
            let event = format!("data: {i}\n\n");
            if framing == Framing::Chunked {
                encode_chunk(event.as_bytes(), &mut out);
            } else {
                out.extend_from_slice(event.as_bytes());
            }
            self.stream.write_all(&out)?;
        }
        if framing == Framing::Chunked {
            out.clear();
            encode_last_chunk(&mut out);
            self.stream.write_all(&out)?;
        }
        Ok(next)
    }

    /// Append a response head; returns whether the connection persists.
    pub fn push_head(
        &self,
        head: &RequestHead,
        status: u16,
        content_type: &str,
        framing: Framing,
        close: bool,
        out: &mut Vec<u8>,
    ) -> Next {
        let close = close || framing == Framing::UntilClose;
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {status} {}\r\nX-Backend: {}\r\n",
                reason_phrase(status),
                self.name
            )
            .as_bytes(),
        );
        match framing {
            Framing::Length(n) => {
                out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
                out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
            }
            Framing::Chunked => {
                out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            }
            Framing::UntilClose => {
                out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
            }
            Framing::NoBody => {}
        }
        if content_type == "text/event-stream" {
            out.extend_from_slice(b"Cache-Control: no-cache\r\n");
        }
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if head.version == 0 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if close { Next::Close } else { Next::KeepAlive }
    }

    pub fn send_error(&mut self, status: u16, code: &str) -> io::Result<()> {
        let mut out = Vec::with_capacity(256);
        error_response(
            status,
            code,
            ERROR_HEADER,
            &[("X-Backend", self.name)],
            true,
            &mut out,
        );
        self.stream.write_all(&out)
    }
}

/// `PATTERN` repeated over `BYTES_CHUNK + PATTERN.len()` bytes, so any
/// window of `BYTES_CHUNK` bytes starting in the first period exists.
fn pattern_block() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        PATTERN
            .iter()
            .copied()
            .cycle()
            .take(BYTES_CHUNK + PATTERN.len())
            .collect()
    })
}
