//! `portier demo-backend`: a small blocking HTTP/1.1 backend for the demo,
//! the integration tests and the benchmarks.
//!
//! Owns: a `std::net` listener, one thread per connection (or a fixed pool
//! of `threads` workers that each serve one connection at a time, so a
//! backend's concurrency can be capped for queueing tests), keep-alive,
//! pipelined requests answered in order, request bodies counted (never
//! buffered) through the codec's [`BodyDecoder`], and the endpoints below.
//! Must not: be used on the proxy's data path. It is test tooling, the one
//! place outside `reactor/` and `mgmt/` allowed blocking sockets and sleeps.
//! Fed by: `main.rs` (`portier demo-backend`) and tests ([`spawn`]).
//! Emits: `demo-backend <name> listening on <addr>` on stderr once bound,
//! then HTTP responses, every one with `X-Backend: <name>`.
//!
//! | request                               | response |
//! |---------------------------------------|----------|
//! | any other path                        | `200` JSON echo: `backend`, `method`, `path` (before `?`), `target` (as received), `version`, `headers` (`[[name, value], ...]` in order, values lossily UTF-8), `body_bytes`, `body_fnv` (FNV-1a 64 of the payload, 16 hex digits) |
//! | `/bytes/<n>[?chunked=1]`              | `200 text/plain`, exactly `n` bytes of `abc...xyzabc...`; chunked in 16 KiB chunks with `chunked=1` |
//! | `/status/<code>`                      | that status (200..=599), body `<code> <reason>\n` (none for 204/304) |
//! | `/slow/<ms>`                          | the echo, after sleeping `ms` milliseconds |
//! | `/sse?events=<n>&interval_ms=<ms>[&type=text/plain]` | `text/event-stream` (or the given listed type), chunked, events `data: 0\n\n` .. `data: n-1\n\n`, one chunk each, `ms` apart (defaults 5 and 100) |
//! | `/ws`                                 | WebSocket echo (RFC 6455), messages up to 1 MiB |
//! | `/close`                              | the echo with `Connection: close`, then the connection closes |
//!
//! A malformed request gets the codec's error response (`X-Demo-Error:
//! <code>`) and the connection closes. An HTTP/1.0 client gets a
//! close-delimited body where others get chunked (RFC 9112 §7.1 is 1.1-only).
//!
//! ```text
//!  connection:  ReadingHead ──head──► ReadingBody ──done──► Responding ──keep-alive──► ReadingHead
//!                   │ EOF/error            │ error              │ close / upgrade
//!                   ▼                      ▼                    ▼
//!                 closed                 closed          closed / WebSocket ──close frame──► closed
//! ```

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;

use crate::http::Limits;
use crate::http::h1::{
    BodyDecoder, BodyKind, RequestHead, encode_chunk, encode_last_chunk, error_response,
    parse_request_head, reason_phrase,
};

/// Largest WebSocket message (one frame or a reassembled fragmented one).
pub const MAX_WS_MESSAGE: usize = 1 << 20;
/// Bytes per chunk for `/bytes/<n>?chunked=1`, and per write for `/bytes`.
pub const BYTES_CHUNK: usize = 16 * 1024;
/// The repeating `/bytes` pattern.
pub const PATTERN: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";

/// Bytes read from the socket per `read` call.
const READ_SIZE: usize = 64 * 1024;
/// A connection silent (or not reading) for this long is closed.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// Header naming the codec error in an error response.
const ERROR_HEADER: &str = "X-Demo-Error";
/// RFC 6455 §1.3.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Bind `listen`, print the ready line, and serve on a background thread
/// (one thread per connection). Returns the bound address (useful with
/// port 0) and the accept thread, which never finishes.
pub fn spawn(listen: SocketAddr, name: String) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = bind(listen, &name)?;
    let addr = listener.local_addr()?;
    let name: Arc<str> = name.into();
    let handle = thread::Builder::new()
        .name(format!("demo-{name}"))
        .spawn(move || accept_loop(&listener, &name))?;
    Ok((addr, handle))
}

/// Bind `listen`, print the ready line, and serve forever on this thread.
/// `threads == 0`: one thread per connection; `threads == n`: `n` workers,
/// each serving one connection at a time (others wait in the backlog).
pub fn run(listen: SocketAddr, name: String, threads: usize) -> anyhow::Result<()> {
    let listener = bind(listen, &name).with_context(|| format!("demo-backend on {listen}"))?;
    let name: Arc<str> = name.into();
    if threads == 0 {
        accept_loop(&listener, &name);
        return Ok(());
    }
    let mut workers = Vec::with_capacity(threads);
    for i in 0..threads {
        let listener = listener.try_clone().context("cloning the listener")?;
        let name = Arc::clone(&name);
        let worker = thread::Builder::new()
            .name(format!("demo-{name}-{i}"))
            .spawn(move || worker_loop(&listener, &name))
            .context("starting a worker")?;
        workers.push(worker);
    }
    for worker in workers {
        if worker.join().is_err() {
            anyhow::bail!("a demo-backend worker panicked");
        }
    }
    Ok(())
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2):
/// base64(SHA-1(key + GUID)).
pub fn websocket_accept(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// FNV-1a 64 of `data`, as the echo's `body_fnv` reports it (16 hex digits).
pub fn fnv1a_hex(data: &[u8]) -> String {
    let mut fnv = Fnv1a::new();
    fnv.update(data);
    format!("{:016x}", fnv.0)
}

fn bind(listen: SocketAddr, name: &str) -> io::Result<TcpListener> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "backend name must be non-empty visible ASCII",
        ));
    }
    let listener = TcpListener::bind(listen)?;
    eprintln!(
        "demo-backend {name} listening on {}",
        listener.local_addr()?
    );
    Ok(listener)
}

fn accept_loop(listener: &TcpListener, name: &Arc<str>) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let name = Arc::clone(name);
                // A failed spawn (out of threads) drops the connection.
                let _ = thread::Builder::new()
                    .name(format!("demo-{name}-conn"))
                    .spawn(move || serve(stream, &name));
            }
            Err(e) => accept_failed(&e),
        }
    }
}

fn worker_loop(listener: &TcpListener, name: &str) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => serve(stream, name),
            Err(e) => accept_failed(&e),
        }
    }
}

fn accept_failed(e: &io::Error) {
    // EMFILE and friends: back off instead of spinning.
    if e.kind() != io::ErrorKind::Interrupted {
        thread::sleep(Duration::from_millis(10));
    }
}

fn serve(stream: TcpStream, name: &str) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        pos: 0,
        name,
        limits: Limits {
            // The proxy enforces body limits; the backend takes anything.
            max_body: u64::MAX,
            ..Limits::default()
        },
    };
    // An I/O error (reset, timeout) just ends the connection.
    let _ = conn.serve();
    let _ = conn.stream.shutdown(Shutdown::Both);
}

/// What to do after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// HTTP/1.0 client: the body ends when the connection closes.
    UntilClose,
    /// 204, 304: no body, no framing field.
    NoBody,
}

/// What a request body amounted to.
#[derive(Debug, Clone, Copy)]
struct BodySummary {
    bytes: u64,
    fnv: u64,
}

/// One endpoint, with its parameters parsed from the target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
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
    fn parse(target: &str) -> Route {
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
fn split_target(target: &str) -> (&str, &str) {
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

struct Conn<'a> {
    stream: TcpStream,
    /// Received bytes; `buf[pos..]` are not yet consumed.
    buf: Vec<u8>,
    pos: usize,
    name: &'a str,
    limits: Limits,
}

impl Conn<'_> {
    fn pending(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn consume(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Read more bytes after the pending ones; `false` at EOF.
    fn fill(&mut self) -> io::Result<bool> {
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

    fn serve(&mut self) -> io::Result<()> {
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

    fn send_echo(
        &mut self,
        head: &RequestHead,
        body: BodySummary,
        close: bool,
    ) -> io::Result<Next> {
        let headers: Vec<[String; 2]> = head
            .headers
            .iter()
            .map(|(n, v)| [n.clone(), String::from_utf8_lossy(v).into_owned()])
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

    fn send_simple(
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

    fn send_bytes(
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

    fn send_sse(
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
    fn push_head(
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

    fn send_error(&mut self, status: u16, code: &str) -> io::Result<()> {
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

    /// The `/ws` handshake (RFC 6455 §4.2), then the echo loop.
    fn websocket(&mut self, head: &RequestHead) -> io::Result<Next> {
        let header = |name| head.header(name).and_then(|v| std::str::from_utf8(v).ok());
        let upgrade_ok = head
            .upgrade
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        let key = header("sec-websocket-key").filter(|k| !k.is_empty());
        let refusal = if head.method != "GET" || head.body != BodyKind::None || !upgrade_ok {
            Some((400, "/ws: expected a GET with Upgrade: websocket\n"))
        } else if key.is_none() {
            Some((400, "/ws: missing Sec-WebSocket-Key\n"))
        } else if header("sec-websocket-version") != Some("13") {
            Some((426, "/ws: Sec-WebSocket-Version must be 13\n"))
        } else {
            None
        };
        if let Some((status, text)) = refusal {
            let mut out = Vec::with_capacity(256);
            let framing = Framing::Length(text.len() as u64);
            self.push_head(head, status, "text/plain", framing, true, &mut out);
            if status == 426 {
                // RFC 6455 §4.4: say which version we speak.
                out.truncate(out.len() - 2);
                out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n\r\n");
            }
            out.extend_from_slice(text.as_bytes());
            self.stream.write_all(&out)?;
            return Ok(Next::Close);
        }
        let accept = websocket_accept(key.unwrap_or_default());
        let handshake = format!(
            "HTTP/1.1 101 Switching Protocols\r\nX-Backend: {}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
            self.name
        );
        self.stream.write_all(handshake.as_bytes())?;
        self.websocket_echo()?;
        Ok(Next::Close)
    }

    fn websocket_echo(&mut self) -> io::Result<()> {
        // A fragmented message being reassembled: its opcode and payload.
        let mut message: Option<(u8, Vec<u8>)> = None;
        loop {
            let frame = match self.read_frame()? {
                WsRead::Frame(frame) => frame,
                WsRead::Fail(code) => return self.ws_close(code),
                WsRead::Eof => return Ok(()),
            };
            let (opcode, payload) = match (frame.opcode, message.take()) {
                (OP_CLOSE, _) => {
                    // RFC 6455 §5.5.1: echo the status code, then close.
                    let mut out = Vec::new();
                    match frame.payload.get(..2) {
                        _ if frame.payload.len() == 1 => return self.ws_close(CLOSE_PROTOCOL),
                        Some(code) => encode_frame(OP_CLOSE, code, &mut out),
                        None => encode_frame(OP_CLOSE, &[], &mut out),
                    }
                    self.stream.write_all(&out)?;
                    return Ok(());
                }
                (OP_PING, partial) => {
                    message = partial;
                    let mut out = Vec::new();
                    encode_frame(OP_PONG, &frame.payload, &mut out);
                    self.stream.write_all(&out)?;
                    continue;
                }
                (OP_PONG, partial) => {
                    message = partial;
                    continue;
                }
                (OP_CONTINUATION, None) => return self.ws_close(CLOSE_PROTOCOL),
                (OP_CONTINUATION, Some((opcode, mut payload))) => {
                    if payload.len() + frame.payload.len() > MAX_WS_MESSAGE {
                        return self.ws_close(CLOSE_TOO_BIG);
                    }
                    payload.extend_from_slice(&frame.payload);
                    (opcode, payload)
                }
                (_, Some(_)) => return self.ws_close(CLOSE_PROTOCOL),
                (opcode, None) => (opcode, frame.payload),
            };
            if !frame.fin {
                message = Some((opcode, payload));
                continue;
            }
            if opcode == OP_TEXT && std::str::from_utf8(&payload).is_err() {
                // RFC 6455 §8.1.
                return self.ws_close(CLOSE_INVALID_DATA);
            }
            let mut out = Vec::with_capacity(payload.len() + 10);
            encode_frame(opcode, &payload, &mut out);
            self.stream.write_all(&out)?;
        }
    }

    fn read_frame(&mut self) -> io::Result<WsRead> {
        loop {
            match parse_frame(self.pending()) {
                Ok(Some((frame, n))) => {
                    self.consume(n);
                    return Ok(WsRead::Frame(frame));
                }
                Ok(None) => {
                    if !self.fill()? {
                        return Ok(WsRead::Eof);
                    }
                }
                Err(code) => return Ok(WsRead::Fail(code)),
            }
        }
    }

    fn ws_close(&mut self, code: u16) -> io::Result<()> {
        let mut out = Vec::new();
        encode_frame(OP_CLOSE, &code.to_be_bytes(), &mut out);
        self.stream.write_all(&out)
    }
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
/// RFC 6455 §7.4.1 status codes.
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_INVALID_DATA: u16 = 1007;
const CLOSE_TOO_BIG: u16 = 1009;

enum WsRead {
    Frame(Frame),
    Fail(u16),
    Eof,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    fin: bool,
    opcode: u8,
    /// Unmasked payload.
    payload: Vec<u8>,
}

/// Parse one client frame at the start of `buf` (RFC 6455 §5.2).
/// `Ok(None)`: incomplete. `Err(code)`: close with that status code. Frames
/// are refused before their payload arrives if too large.
fn parse_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, u16> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    if b0 & 0x70 != 0 {
        // RSV bits without a negotiated extension (§5.2).
        return Err(CLOSE_PROTOCOL);
    }
    let control = opcode & 0x08 != 0;
    match opcode {
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
        _ => return Err(CLOSE_PROTOCOL),
    }
    if b1 & 0x80 == 0 {
        // §5.1: a client MUST mask every frame.
        return Err(CLOSE_PROTOCOL);
    }
    let (len, rest) = match b1 & 0x7F {
        126 => match rest {
            [a, b, rest @ ..] => (u64::from(u16::from_be_bytes([*a, *b])), rest),
            _ => return Ok(None),
        },
        127 => match rest.split_first_chunk::<8>() {
            Some((len, rest)) => (u64::from_be_bytes(*len), rest),
            None => return Ok(None),
        },
        len => (u64::from(len), rest),
    };
    if control && (!fin || len > 125) {
        // §5.5: control frames are short and never fragmented.
        return Err(CLOSE_PROTOCOL);
    }
    let len = match usize::try_from(len) {
        Ok(len) if len <= MAX_WS_MESSAGE => len,
        _ => return Err(CLOSE_TOO_BIG),
    };
    let Some((mask, rest)) = rest.split_first_chunk::<4>() else {
        return Ok(None);
    };
    let Some(masked) = rest.get(..len) else {
        return Ok(None);
    };
    let payload = masked
        .iter()
        .zip(mask.iter().cycle())
        .map(|(b, m)| b ^ m)
        .collect();
    let used = buf.len() - rest.len() + len;
    Ok(Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        used,
    )))
}

/// Append an unmasked, final server frame (RFC 6455 §5.2).
fn encode_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => out.push(len as u8),
        len @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
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

/// FNV-1a, 64 bits.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::h1::{ResponseHead, parse_response_head};

    fn start() -> SocketAddr {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        spawn(any, "t1".to_string()).expect("spawn").0
    }

    struct Client {
        stream: TcpStream,
        buf: Vec<u8>,
    }

    impl Client {
        fn connect(addr: SocketAddr) -> Client {
            let stream = TcpStream::connect(addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            Client {
                stream,
                buf: Vec::new(),
            }
        }

        fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).expect("send");
        }

        /// Read more; false at EOF.
        fn fill(&mut self) -> bool {
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).expect("read");
            self.buf.extend_from_slice(&chunk[..n]);
            n > 0
        }

        fn take(&mut self, n: usize) -> Vec<u8> {
            while self.buf.len() < n {
                assert!(self.fill(), "EOF before {n} bytes");
            }
            self.buf.drain(..n).collect()
        }

        /// One response: head and decoded payload.
        fn response(&mut self, to_head: bool) -> (ResponseHead, Vec<u8>) {
            let limits = Limits::default();
            let head = loop {
                if let Some((head, n)) =
                    parse_response_head(&self.buf, &limits, to_head).expect("valid head")
                {
                    self.buf.drain(..n);
                    break head;
                }
                assert!(self.fill(), "EOF in head");
            };
            let mut decoder = BodyDecoder::for_response(head.body, &limits);
            let mut body = Vec::new();
            while !decoder.is_done() {
                let step = decoder.decode(&self.buf).expect("valid body");
                if let Some(r) = step.data {
                    body.extend_from_slice(&self.buf[r]);
                }
                self.buf.drain(..step.consumed);
                if step.consumed == 0 && !step.done && !self.fill() {
                    decoder.handle_eof().expect("complete body");
                }
            }
            (head, body)
        }

        fn at_eof(&mut self) -> bool {
            self.buf.is_empty() && !self.fill()
        }
    }

    fn json(body: &[u8]) -> serde_json::Value {
        serde_json::from_slice(body).expect("json")
    }

    fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        assert!(payload.len() < 126);
        let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        frame
    }

    #[test]
    fn echoes_request_as_json() {
        let mut c = Client::connect(start());
        c.send(b"POST /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-One: 1\r\nx-two: \xffz\r\nContent-Length: 5\r\n\r\nhello");
        let (head, body) = c.response(false);
        assert_eq!(head.status, 200);
        assert_eq!(head.header("x-backend"), Some(&b"t1"[..]));
        assert_eq!(head.header("content-type"), Some(&b"application/json"[..]));
        let v = json(&body);
        assert_eq!(v["backend"], "t1");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/a/b");
        assert_eq!(v["target"], "/a/b?x=1");
        assert_eq!(v["version"], "HTTP/1.1");
        assert_eq!(
            v["headers"],
            serde_json::json!([
                ["Host", "h"],
                ["X-One", "1"],
                ["x-two", "\u{fffd}z"],
                ["Content-Length", "5"]
            ])
        );
        assert_eq!(v["body_bytes"], 5);
        assert_eq!(v["body_fnv"], fnv1a_hex(b"hello"));
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a_hex(b""), "cbf29ce484222325");
        assert_eq!(fnv1a_hex(b"a"), "af63dc4c8601ec8c");
        assert_eq!(fnv1a_hex(b"foobar"), "85944171f73967e8");
    }

    #[test]
    fn keeps_connection_alive_across_two_requests() {
        let mut c = Client::connect(start());
        c.send(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n");
        let (head, body) = c.response(false);
        assert!(head.keep_alive);
        assert_eq!(json(&body)["path"], "/one");
        c.send(b"GET /two HTTP/1.1\r\nHost: h\r\n\r\n");
        let (_, body) = c.response(false);
        assert_eq!(json(&body)["path"], "/two");
    }

    #[test]
    fn answers_pipelined_requests_in_order() {
        let mut c = Client::connect(start());
        c.send(
            b"GET /slow/50 HTTP/1.1\r\nHost: h\r\n\r\n\
              GET /status/404 HTTP/1.1\r\nHost: h\r\n\r\n\
              HEAD /bytes/10 HTTP/1.1\r\nHost: h\r\n\r\n\
              GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        );
        let (_, body) = c.response(false);
        assert_eq!(json(&body)["path"], "/slow/50");
        let (head, body) = c.response(false);
        assert_eq!(head.status, 404);
        assert_eq!(body, b"404 Not Found\n");
        let (head, body) = c.response(true);
        assert_eq!(head.header("content-length"), Some(&b"10"[..]));
        assert!(body.is_empty());
        let (head, body) = c.response(false);
        assert!(!head.keep_alive);
        assert_eq!(json(&body)["path"], "/last");
        assert!(c.at_eof());
    }

    #[test]
    fn counts_chunked_request_body_sent_in_pieces() {
        let mut c = Client::connect(start());
        c.send(b"PUT /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
        thread::sleep(Duration::from_millis(20));
        c.send(b"lo\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n");
        let (_, body) = c.response(false);
        let v = json(&body);
        assert_eq!(v["body_bytes"], 11);
        assert_eq!(v["body_fnv"], fnv1a_hex(b"hello world"));
    }

    #[test]
    fn sends_100_continue_before_reading_expected_body() {
        let mut c = Client::connect(start());
        c.send(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(c.take(25), b"HTTP/1.1 100 Continue\r\n\r\n");
        c.send(b"abc");
        let (_, body) = c.response(false);
        assert_eq!(json(&body)["body_bytes"], 3);
    }

    #[test]
    fn bytes_sends_exact_length_of_the_pattern() {
        let mut c = Client::connect(start());
        c.send(b"GET /bytes/100003 HTTP/1.1\r\nHost: h\r\n\r\n");
        let (head, body) = c.response(false);
        assert_eq!(head.header("content-length"), Some(&b"100003"[..]));
        assert_eq!(body.len(), 100_003);
        assert!(body.iter().enumerate().all(|(i, &b)| b == PATTERN[i % 26]));
    }

    #[test]
    fn bytes_chunked_sends_16k_chunks() {
        let mut c = Client::connect(start());
        c.send(b"GET /bytes/40000?chunked=1 HTTP/1.1\r\nHost: h\r\n\r\n");
        let head = c.take(200);
        let text = String::from_utf8_lossy(&head);
        assert!(text.contains("Transfer-Encoding: chunked\r\n\r\n4000\r\nabc"));
        c.buf.splice(0..0, head);
        let (_, body) = c.response(false);
        assert_eq!(body.len(), 40_000);
        assert!(body.iter().enumerate().all(|(i, &b)| b == PATTERN[i % 26]));
    }

    #[test]
    fn status_endpoint_answers_that_code() {
        let mut c = Client::connect(start());
        c.send(b"GET /status/503 HTTP/1.1\r\nHost: h\r\n\r\nGET /status/204 HTTP/1.1\r\nHost: h\r\n\r\nGET /status/99 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(c.response(false).0.status, 503);
        let (head, body) = c.response(false);
        assert_eq!((head.status, body.len()), (204, 0));
        assert_eq!(c.response(false).0.status, 400);
    }

    #[test]
    fn slow_waits_before_answering() {
        let mut c = Client::connect(start());
        let t = std::time::Instant::now();
        c.send(b"GET /slow/150 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(c.response(false).0.status, 200);
        assert!(t.elapsed() >= Duration::from_millis(150));
    }

    #[test]
    fn sse_streams_numbered_events() {
        let mut c = Client::connect(start());
        c.send(b"GET /sse?events=3&interval_ms=10 HTTP/1.1\r\nHost: h\r\n\r\n");
        let (head, body) = c.response(false);
        assert_eq!(head.header("content-type"), Some(&b"text/event-stream"[..]));
        assert_eq!(head.body, BodyKind::Chunked);
        assert_eq!(body, b"data: 0\n\ndata: 1\n\ndata: 2\n\n");
    }

    #[test]
    fn close_endpoint_closes_after_answering() {
        let mut c = Client::connect(start());
        c.send(b"GET /close HTTP/1.1\r\nHost: h\r\n\r\n");
        let (head, _) = c.response(false);
        assert_eq!(head.header("connection"), Some(&b"close"[..]));
        assert!(c.at_eof());
    }

    #[test]
    fn malformed_request_gets_error_and_close() {
        let mut c = Client::connect(start());
        c.send(
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let (head, _) = c.response(false);
        assert_eq!(head.status, 400);
        assert_eq!(
            head.header("x-demo-error"),
            Some(&b"content_length_with_transfer_encoding"[..])
        );
        assert_eq!(head.header("x-backend"), Some(&b"t1"[..]));
        assert!(c.at_eof());
    }

    #[test]
    fn websocket_accept_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn websocket_handshake_then_echoes_masked_text_and_pings() {
        let mut c = Client::connect(start());
        let mut req =
            b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .to_vec();
        // Frames sent together with the handshake are kept, not lost.
        req.extend(masked_frame(OP_TEXT, b"hello"));
        c.send(&req);
        let (head, _) = c.response(false);
        assert_eq!(head.status, 101);
        assert_eq!(
            head.header("sec-websocket-accept"),
            Some(&b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="[..])
        );
        assert_eq!(c.take(7), b"\x81\x05hello");
        c.send(&masked_frame(OP_PING, b"p"));
        assert_eq!(c.take(3), b"\x8a\x01p");
        c.send(&masked_frame(OP_CLOSE, &1000u16.to_be_bytes()));
        assert_eq!(c.take(4), b"\x88\x02\x03\xe8");
        assert!(c.at_eof());
    }

    #[test]
    fn websocket_reassembles_fragments_and_refuses_unmasked_frames() {
        let mut c = Client::connect(start());
        c.send(
            b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
            Sec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5aw==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        assert_eq!(c.response(false).0.status, 101);
        let mut first = masked_frame(OP_BINARY, b"ab");
        first[0] &= 0x7F; // not final
        c.send(&first);
        c.send(&masked_frame(OP_PING, b""));
        c.send(&masked_frame(OP_CONTINUATION, b"cd"));
        assert_eq!(c.take(2), b"\x8a\x00");
        assert_eq!(c.take(6), b"\x82\x04abcd");
        c.send(b"\x81\x01x");
        assert_eq!(c.take(4), b"\x88\x02\x03\xea"); // 1002
        assert!(c.at_eof());
    }

    #[test]
    fn websocket_refuses_wrong_version_with_426() {
        let mut c = Client::connect(start());
        c.send(
            b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
            Sec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5aw==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        );
        let (head, _) = c.response(false);
        assert_eq!(head.status, 426);
        assert_eq!(head.header("sec-websocket-version"), Some(&b"13"[..]));
    }

    #[test]
    fn parse_frame_refuses_oversized_frame_before_its_payload() {
        let mut frame = vec![0x82, 0x80 | 127];
        frame.extend_from_slice(&(MAX_WS_MESSAGE as u64 + 1).to_be_bytes());
        assert_eq!(parse_frame(&frame), Err(CLOSE_TOO_BIG));
        assert_eq!(
            parse_frame(&[0x89, 0x80 | 126, 0, 200]),
            Err(CLOSE_PROTOCOL)
        );
        assert_eq!(parse_frame(&[0x81, 0x85, 1, 2]), Ok(None));
    }

    #[test]
    fn route_parses_targets_and_parameters() {
        assert_eq!(
            Route::parse("http://x:8/bytes/7?chunked=1"),
            Route::Bytes {
                n: 7,
                chunked: true
            }
        );
        assert_eq!(
            Route::parse("/sse"),
            Route::Sse {
                events: 5,
                interval_ms: 100,
                content_type: "text/event-stream"
            }
        );
        assert!(matches!(Route::parse("/bytes/x"), Route::BadRequest(_)));
        assert_eq!(Route::parse("/anything?ws"), Route::Echo);
        assert_eq!(split_target("*"), ("*", ""));
    }

    #[test]
    fn http10_client_gets_close_delimited_stream() {
        let mut c = Client::connect(start());
        c.send(b"GET /bytes/30?chunked=1 HTTP/1.0\r\n\r\n");
        let (head, body) = c.response(false);
        assert_eq!(head.body, BodyKind::CloseDelimited);
        assert_eq!(body.len(), 30);
    }
}
