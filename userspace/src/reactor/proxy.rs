//! The PROXY protocol header in the reactor: on a listener that requires
//! it, the first bytes of every connection (from a trusted peer: accept
//! already closed the others) are peeked, not read, until
//! `proxy_protocol::parse` has a whole header; exactly the header's bytes
//! are then taken off the socket, the connection takes the client address
//! (and public port) the header carries, and becomes an HTTP/1.x one — so
//! TLS and HTTP start on a socket that looks as if the header had never
//! been there. Anything else closes the connection and is counted.
//!
//! ```text
//!  accept ─ untrusted peer ──────────────────────────► closed (untrusted)
//!     └─► ProxyHeader ─ peek ─ Incomplete ─► wait (next edge, or deadline ─► closed (timeout))
//!                             ├ Complete ──► read `used` bytes ─► H1 (then TLS / HTTP as usual)
//!                             └ Err ───────► closed (missing | malformed); EOF midway ─► closed (truncated)
//! ```
//!
//! Peeking keeps no buffer in the connection while it waits, and needs no
//! way to hand bytes read past the header back to TLS. Linux raises a new
//! edge for every arrival, so peeking without reading loses no wake-up.

use std::io::{self, Read};
use std::sync::atomic::Ordering;

use mio::Token;

use super::conn::*;
use super::core::Reactor;
use crate::http::forward::Scheme;
use crate::http::h1::server::ServerConn;
use crate::proxy_protocol::{self, Addresses, Parsed, Rejected, V1_MAX};

/// What peeking at the header came to.
enum Peeked {
    Done,
    Wait,
    Close(Option<Rejected>),
}

impl Reactor {
    /// Drive a connection waiting for its PROXY protocol header. `true`:
    /// the header was taken and the connection is HTTP/1.x now (read on);
    /// `false`: still waiting, or closed.
    pub(super) fn proxy_header_read(&mut self, token: Token) -> bool {
        match self.proxy_peek(token) {
            Peeked::Done => true,
            Peeked::Wait => false,
            Peeked::Close(reason) => {
                if let Some(reason) = reason {
                    self.proxy_rejected(reason);
                }
                self.close_client(token);
                false
            }
        }
    }

    fn proxy_peek(&mut self, token: Token) -> Peeked {
        let timeouts = self.server_timeouts();
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return Peeked::Wait;
        };
        // A v1 line at most, which also covers the fixed part of v2; more
        // when a v2 header says it is longer.
        let mut want = V1_MAX;
        let mut large = Vec::new();
        loop {
            let buf = match self.scratch.get_mut(..want) {
                Some(buf) => buf,
                None => {
                    large.resize(want, 0);
                    &mut large[..]
                }
            };
            let n = match c.sock.peek(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Peeked::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Peeked::Close(None),
            };
            // Closed before sending anything: nothing to hold against it
            // (a plain listener does not count those either).
            if n == 0 {
                return Peeked::Close(None);
            }
            let seen = buf.get(..n).unwrap_or_default();
            match proxy_protocol::parse(seen) {
                Ok(Parsed::Complete { header, used }) => {
                    if consume(&mut c.sock, used, &mut self.scratch).is_err() {
                        return Peeked::Close(None);
                    }
                    if let Addresses::Tcp {
                        source,
                        destination,
                    } = header.addresses
                    {
                        c.peer = source.ip().to_canonical();
                        let configured = match c.scheme {
                            Scheme::Https => self.snapshot.public_https_port,
                            Scheme::Http => self.snapshot.public_http_port,
                        };
                        if configured == 0 {
                            c.port = destination.port();
                        }
                    }
                    c.state = ClientState::H1(H1Client {
                        conn: ServerConn::new(self.now, &timeouts),
                        link: Link::None,
                    });
                    if let Some(counters) = self.counters() {
                        counters.proxy_accepted[header.version.index()]
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    self.schedule_conn(token);
                    return Peeked::Done;
                }
                // Everything asked for was there: ask for the rest.
                Ok(Parsed::Incomplete { want: more }) if n == want => want = more,
                // The rest has not arrived; unless the peer is gone, wait.
                Ok(Parsed::Incomplete { .. }) => {
                    return if self.drain_reads {
                        Peeked::Close(Some(Rejected::Truncated))
                    } else {
                        Peeked::Wait
                    };
                }
                Err(e) => return Peeked::Close(Some(e.into())),
            }
        }
    }

    /// Count a connection refused by a PROXY protocol listener.
    pub(super) fn proxy_rejected(&self, reason: Rejected) {
        if let Some(c) = self.counters() {
            c.proxy_rejected[reason.index()].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Take exactly `n` bytes (already peeked, so already there) off `sock`.
fn consume(sock: &mut impl Read, mut n: usize, scratch: &mut [u8]) -> io::Result<()> {
    while n > 0 {
        let chunk = n.min(scratch.len());
        let Some(dst) = scratch.get_mut(..chunk) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        match sock.read(dst) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(got) => n -= got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
