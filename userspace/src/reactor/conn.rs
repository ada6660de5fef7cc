//! Connection records (a slab slot each) and their socket I/O: a client
//! connection (through its TLS session when it has one) and a backend
//! connection, with buffered read and flush.
//!
//! ```text
//!  client:   [ProxyHeader (PROXY protocol listeners: nothing read past it yet)]
//!            ──► H1(http::h1::server machine, link: none | exchange | tunnel)
//!            └─ TLS ALPN h2 ──► H2(http::h2 machine + streams' exchanges)
//!  backend:  http::h1::client machine (connecting, sending, receiving,
//!            idle in the pool, tunnel), link: exchange | tunnel | none
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
use crate::http::h1::client::ClientConn;
use crate::http::h1::server::ServerConn;
use crate::sched::balance::{BackendId, Balancer};
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

/// What a client connection is linked to, besides its protocol machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    None,
    /// The request being served.
    Exchange(ExchangeId),
    /// Upgraded: the backend connection at the other end.
    Tunnel(Token),
}

pub enum ClientState {
    /// On a PROXY protocol listener, before anything else: waiting for the
    /// whole header (peeked, so TLS and HTTP find the socket as if it were
    /// not there), until `deadline`.
    ProxyHeader { deadline: Instant },
    /// HTTP/1.x: the connection machine and what it is linked to.
    H1(H1Client),
    /// HTTP/2: the connection machine and its streams' exchanges.
    H2(Box<H2Client>),
}

pub struct H1Client {
    pub conn: ServerConn,
    pub link: Link,
}

pub struct H2Client {
    pub conn: crate::http::h2::ServerConn,
    /// Stream id → exchange.
    pub streams: HashMap<u32, ExchangeId>,
    /// Keep-alive idle deadline (armed while no stream is open).
    pub idle: Option<Instant>,
}

pub struct Client {
    pub sock: TcpStream,
    /// TLS session on HTTPS listeners (plaintext in `rbuf`/`wbuf`).
    pub tls: Option<Box<Session>>,
    pub scheme: Scheme,
    /// The client's address (the port is of no use past accept): the
    /// socket's peer, or the source a PROXY protocol header gave.
    pub peer: std::net::IpAddr,
    /// Public port (X-Forwarded-Port): configured, else the destination a
    /// PROXY protocol header gave, else the listener's.
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
    /// Queued in the reactor's end-of-turn flush list (HTTP/2: the frames
    /// of every stream that moved this turn go out in one write).
    pub flush_queued: bool,
    /// The wheel entry (see `timers::Wheel`).
    pub scheduled: Option<Instant>,
}

impl Client {
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

    /// The earliest timer of its protocol machine.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            ClientState::ProxyHeader { deadline } => Some(*deadline),
            ClientState::H1(h) => h.conn.next_deadline(),
            ClientState::H2(h) => match (h.idle, h.conn.next_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// What an HTTP/1.x connection is linked to (`None` for HTTP/2 and
    /// before the PROXY protocol header).
    pub fn link(&self) -> Link {
        match &self.state {
            ClientState::H1(h) => h.link,
            ClientState::ProxyHeader { .. } | ClientState::H2(_) => Link::None,
        }
    }
}

pub struct Upstream {
    /// Unique per connection of a reactor (slots are reused; this is not).
    pub serial: u64,
    pub sock: TcpStream,
    pub addr: SocketAddr,
    pub balancer: Arc<Balancer>,
    pub backend: BackendId,
    /// The backend connection machine.
    pub conn: ClientConn,
    /// The exchange it carries, or the client of its tunnel.
    pub link: Link,
    pub wbuf: Vec<u8>,
    pub rbuf: Vec<u8>,
    pub eof: bool,
    pub read_paused: bool,
    pub scheduled: Option<Instant>,
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
            std::mem::size_of::<super::Conn>() <= 184,
            "{}",
            std::mem::size_of::<super::Conn>()
        );
    }
}
