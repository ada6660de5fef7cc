//! One client connection of the demo backend: the receive buffer, the
//! request loop (head, body, response, keep-alive), and the dispatch of a
//! request to its endpoint.
//!
//! Owns: [`Conn`] and its buffer (`buf[pos..]` not yet consumed), reading
//! heads with the codec's `parse_request_head`, counting and hashing request
//! bodies (never buffered) through its [`BodyDecoder`], `100 Continue`, and
//! the keep-alive decision ([`Next`]). Pipelined requests are answered in
//! order. Must not: format responses (see `response.rs`) or WebSocket frames
//! (see `websocket.rs`). Fed by: `main.rs` (`serve`). Emits: calls into
//! `response.rs` / `websocket.rs`.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use portier::http::Limits;
use portier::http::h1::{BodyDecoder, BodyKind, RequestHead, parse_request_head, reason_phrase};

use crate::fnv::Fnv1a;
use crate::response::Framing;
use crate::route::Route;

/// Bytes read from the socket per `read` call.
const READ_SIZE: usize = 64 * 1024;

/// What to do after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
}

/// What a request body amounted to.
#[derive(Debug, Clone, Copy)]
pub struct BodySummary {
    pub bytes: u64,
    pub fnv: u64,
}

/// One client connection being served.
pub struct Conn<'a> {
    pub stream: TcpStream,
    /// Received bytes; `buf[pos..]` are not yet consumed.
    buf: Vec<u8>,
    pos: usize,
    /// Sent in `X-Backend` and the echo.
    pub name: &'a str,
    limits: Limits,
}

impl<'a> Conn<'a> {
    pub fn new(stream: TcpStream, name: &'a str, limits: Limits) -> Self {
        Conn {
            stream,
            buf: Vec::new(),
            pos: 0,
            name,
            limits,
        }
    }
}

impl Conn<'_> {
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    pub fn consume(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Read more bytes after the pending ones; `false` at EOF.
    pub fn fill(&mut self) -> io::Result<bool> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_SIZE, 0);
        loop {
            match self.stream.read(&mut self.buf[old..]) {
                Ok(n) => {
                    self.buf.truncate(old + n);
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        }
    }

    pub fn serve(&mut self) -> io::Result<()> {
        while let Some(head) = self.read_head()? {
            if self.respond(&head)? == Next::Close {
                break;
            }
        }
        Ok(())
    }

    /// The next request head; `None` when the connection is done (EOF, or a
    /// malformed head that was answered).
    fn read_head(&mut self) -> io::Result<Option<RequestHead>> {
        loop {
            match parse_request_head(self.pending(), &self.limits) {
                Ok(Some((head, n))) => {
                    self.consume(n);
                    return Ok(Some(head));
                }
                Ok(None) => {
                    if !self.fill()? {
                        return Ok(None);
                    }
                }
                Err(e) => {
                    self.send_error(e.status(), e.code())?;
                    return Ok(None);
                }
            }
        }
    }

    /// Count and hash the request body; `None` if it was malformed (and
    /// answered) or the client left mid-body.
    fn read_body(&mut self, kind: BodyKind) -> io::Result<Option<BodySummary>> {
        let mut decoder = BodyDecoder::for_request(kind, &self.limits);
        let mut fnv = Fnv1a::new();
        while !decoder.is_done() {
            let step = match decoder.decode(self.pending()) {
                Ok(step) => step,
                Err(e) => {
                    self.send_error(e.status(), e.code())?;
                    return Ok(None);
                }
            };
            if let Some(data) = step.data.and_then(|r| self.pending().get(r)) {
                fnv.update(data);
            }
            self.consume(step.consumed);
            if step.consumed == 0 && !step.done && !self.fill()? {
                return Ok(None);
            }
        }
        Ok(Some(BodySummary {
            bytes: decoder.payload_len(),
            fnv: fnv.0,
        }))
    }

    fn respond(&mut self, head: &RequestHead) -> io::Result<Next> {
        let route = Route::parse(&head.target);
        if route == Route::WebSocket {
            return self.websocket(head);
        }
        if head.expect_continue && head.body != BodyKind::None && self.pending().is_empty() {
            // RFC 9110 §10.1.1: the client waits for this before the body.
            self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let Some(body) = self.read_body(head.body)? else {
            return Ok(Next::Close);
        };
        let close = !head.keep_alive || route == Route::Close;
        match route {
            Route::Echo | Route::Close | Route::WebSocket => self.send_echo(head, body, close),
            Route::Slow(ms) => {
                thread::sleep(Duration::from_millis(ms));
                self.send_echo(head, body, close)
            }
            Route::Bytes { n, chunked } => self.send_bytes(head, n, chunked, close),
            Route::Status(code) => {
                let text = format!("{code} {}", reason_phrase(code))
                    .trim_end()
                    .to_owned()
                    + "\n";
                let framing = match code {
                    204 | 304 => Framing::NoBody,
                    _ => Framing::Length(text.len() as u64),
                };
                self.send_simple(head, code, "text/plain", framing, text.as_bytes(), close)
            }
            Route::BadRequest(why) => {
                let text = format!("{why}\n");
                let framing = Framing::Length(text.len() as u64);
                self.send_simple(head, 400, "text/plain", framing, text.as_bytes(), close)
            }
            Route::Sse {
                events,
                interval_ms,
                content_type,
            } => self.send_sse(head, events, interval_ms, content_type, close),
        }
    }
}
