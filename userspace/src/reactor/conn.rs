//! Connection records (a slab slot each) and their socket I/O: a client
//! connection (through its TLS session when it has one) and a backend
//! connection, with buffered read and flush.
//!
//! ```text
//!  client:   Idle (reading a head) ──head──► Busy(exchange) ──response done──► Idle (keep-alive, pipelining)
//!            │                                └─ 101 ──► Tunnel(backend) ──either side closes──► closed
//!            └─ TLS ALPN h2 ──► H2(connection machine + streams)
//!  backend:  Connecting(exchange) ─► Serving(exchange) ─► Idle (pool) ─► Serving ... │ Tunnel(client)
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::Token;
use mio::net::TcpStream;

use crate::exchange::ExchangeId;
use crate::http::forward::Scheme;
use crate::sched::balance::{BackendId, Balancer};
use crate::timer::TimerTable;
pub use crate::tls::session::ReadOutcome;
use crate::tls::session::Session;

/// Bytes read per `read` call.
pub const READ_CHUNK: usize = 16 * 1024;
/// Stop reading a side when the other side's output buffer exceeds this.
pub const HIGH_WATER: usize = 256 * 1024;

/// A slab slot. Backend connections are boxed so every slot — most of them
/// idle client connections — is only as large as a `Client`.
pub enum Conn {
    Client(Client),
    Upstream(Box<Upstream>),
}

/// A client connection's timers.
#[derive(Clone, Copy, Debug)]
pub enum ClientTimer {
    /// A request head must arrive whole (→ 408), also the TLS handshake.
    Header = 0,
    /// Keep-alive idle (HTTP/1.x between requests, HTTP/2 without streams).
    Idle = 1,
    /// No traffic either way on an upgraded connection.
    Tunnel = 2,
}

pub enum ClientState {
    /// Waiting for (the rest of) a request head.
    Idle,
    /// A request is being served (queued, connecting, or streaming).
    Busy(ExchangeId),
    /// Upgraded (WebSocket): bytes flow both ways untouched.
    Tunnel(Token),
    /// HTTP/2: the connection machine and its streams' exchanges.
    H2(Box<H2Client>),
}

pub struct H2Client {
    pub conn: crate::http::h2::ServerConn,
    /// Stream id → exchange.
    pub streams: HashMap<u32, ExchangeId>,
}

pub struct Client {
    pub sock: TcpStream,
    /// TLS session on HTTPS listeners (plaintext in `rbuf`/`wbuf`).
    pub tls: Option<Box<Session>>,
    pub scheme: Scheme,
    /// The client's address (the port is of no use past accept).
    pub peer: std::net::IpAddr,
    /// Public port (X-Forwarded-Port).
    pub port: u16,
    pub rbuf: Vec<u8>,
    pub wbuf: Vec<u8>,
    pub state: ClientState,
    /// The client closed its sending side.
    pub eof: bool,
    /// Reading stopped at a buffer limit; must be resumed explicitly.
    pub read_paused: bool,
    /// Close once everything queued is sent.
    pub closing: bool,
    /// When the first byte of the current head arrived.
    pub head_started: Option<Instant>,
    pub timers: TimerTable<3>,
    /// The wheel entry (see `timers::Wheel`).
    pub scheduled: Option<Instant>,
}

impl Client {
    pub fn set_timer(&mut self, t: ClientTimer, at: Instant) {
        self.timers.set(t as usize, at);
    }

    pub fn clear_timer(&mut self, t: ClientTimer) {
        self.timers.clear(t as usize);
    }

    /// Read plaintext, through TLS when the client has a session.
    pub fn read(&mut self, cap: usize, scratch: &mut [u8], drain: bool) -> io::Result<ReadOutcome> {
        match self.tls.as_deref_mut() {
            None => read_into(&mut self.sock, &mut self.rbuf, cap, scratch, drain),
            Some(tls) => tls.read_into(&mut self.sock, &mut self.rbuf, cap, scratch),
        }
    }

    /// Write pending plaintext (and TLS records); bytes of `wbuf` taken.
    pub fn flush(&mut self) -> io::Result<usize> {
        match self.tls.as_deref_mut() {
            None => flush(&mut self.sock, &mut self.wbuf),
            Some(tls) => tls.flush(&mut self.sock, &mut self.wbuf),
        }
    }

    /// Nothing left to send, at any layer.
    pub fn output_empty(&self) -> bool {
        self.wbuf.is_empty() && self.tls.as_ref().is_none_or(|t| !t.wants_write())
    }
}

/// What a backend connection is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Opening, for this exchange.
    Connecting(ExchangeId),
    /// Carrying this exchange's request and response.
    Serving(ExchangeId),
    /// Idle in the pool.
    Idle,
    /// Upgraded: bytes to and from this client.
    Tunnel(Token),
}

/// A backend connection's timers (an exchange's own timers cover connect
/// and read while it is served).
#[derive(Clone, Copy, Debug)]
pub enum UpstreamTimer {
    /// Idle in the pool past the backend keep-alive.
    PoolIdle = 0,
    /// No traffic either way on an upgraded connection.
    Tunnel = 1,
}

pub struct Upstream {
    pub sock: TcpStream,
    pub addr: SocketAddr,
    pub balancer: Arc<Balancer>,
    pub backend: BackendId,
    pub phase: Phase,
    /// Taken from the idle pool (a failure may just be a stale connection).
    pub reused: bool,
    pub wbuf: Vec<u8>,
    pub rbuf: Vec<u8>,
    /// The backend allows another request on this connection.
    pub keep_alive: bool,
    /// Request bytes written to the socket for the current exchange.
    pub written: u64,
    pub eof: bool,
    pub read_paused: bool,
    pub timers: TimerTable<2>,
    pub scheduled: Option<Instant>,
}

impl Upstream {
    pub fn set_timer(&mut self, t: UpstreamTimer, at: Instant) {
        self.timers.set(t as usize, at);
    }
}

/// Read into `buf` until the socket would block, hits EOF, or `buf` reaches
/// `cap`. Reads go through the reactor's `scratch` buffer, so a connection
/// holds only the bytes it has (nothing while idle). With `drain == false` a
/// short read ends the loop: the receive queue was empty at that moment, and
/// new data raises a new edge — one `read` per event instead of two. When
/// the peer may have closed (`EPOLLRDHUP`), pass `drain` to see the EOF.
pub fn read_into(
    sock: &mut impl Read,
    buf: &mut Vec<u8>,
    cap: usize,
    scratch: &mut [u8],
    drain: bool,
) -> io::Result<ReadOutcome> {
    let mut out = ReadOutcome::default();
    loop {
        if buf.len() >= cap {
            out.paused = true;
            return Ok(out);
        }
        let want = scratch.len().min(cap - buf.len()).max(1);
        let Some(dst) = scratch.get_mut(..want) else {
            return Ok(out);
        };
        match sock.read(dst) {
            Ok(0) => {
                out.eof = true;
                return Ok(out);
            }
            Ok(n) => {
                buf.extend_from_slice(&dst[..n]);
                out.bytes += n;
                if n < want && !drain {
                    return Ok(out);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Write as much of `buf` as the socket takes; returns bytes written.
pub fn flush(sock: &mut impl Write, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut written = 0;
    while written < buf.len() {
        match sock.write(&buf[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.drain(..written);
                return Err(e);
            }
        }
    }
    buf.drain(..written);
    Ok(written)
}

#[cfg(test)]
mod size_tests {
    /// Idle keep-alive connections cost a slab slot each: keep it small.
    #[test]
    fn a_connection_slot_stays_small() {
        assert!(
            std::mem::size_of::<super::Conn>() <= 200,
            "{}",
            std::mem::size_of::<super::Conn>()
        );
    }
}
