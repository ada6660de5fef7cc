//! The HTTP/1.x client side in the reactor: read and write clients
//! (after their PROXY protocol header when the listener wants one, see
//! `proxy.rs`; through TLS when they have it), feed the `http::h1::server` machine
//! and act on what it says — a head to route, a refusal to answer, a close
//! — one head after the other in a loop (pipelining, never recursion);
//! stream request bodies, tunnels, Portier's own answers.

use std::sync::atomic::Ordering;

use mio::Token;

use super::conn::*;
use super::core::{Reactor, tok};
use crate::http::answer::Answer;
use crate::http::h1::server::Input;
use crate::tls::hello::HelloSni;

impl Reactor {
    pub(super) fn client_read(&mut self, token: Token) {
        let limits = self.snapshot.limits;
        // A PROXY protocol header comes before anything else, TLS included.
        if let Some(Conn::Client(Client {
            state: ClientState::ProxyHeader { .. },
            ..
        })) = self.conns.get(token.0)
            && !self.proxy_header_read(token)
        {
            return;
        }
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        if c.eof {
            // Nothing more to read, but what is buffered still moves on.
            self.client_progress(token);
            return;
        }
        let cap = match &c.state {
            // One byte over the limit is enough to know the head is too big.
            ClientState::H1(h) if h.conn.wants_head() => limits.max_header_section + 1,
            _ => HIGH_WATER,
        };
        let read = c.read(cap, &mut self.scratch, self.drain_reads);
        // Counted before a refused handshake closes the connection.
        if let Some(sni) = c.tls.as_mut().and_then(|t| t.take_hello_sni()) {
            self.count_hello_sni(sni);
        }
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        match read {
            Ok(r) => {
                c.eof |= r.eof;
                c.read_paused = r.paused;
            }
            Err(_) => {
                // A TLS failure queued an alert: try to deliver it.
                let _ = c.flush();
                self.close_client(token);
                return;
            }
        }
        // Handshake messages, tickets, alerts.
        if c.tls.as_ref().is_some_and(|t| t.wants_write()) {
            self.client_flush(token);
        }
        self.after_handshake(token);
        self.client_progress(token);
    }

    /// An IP address or an invalid name as SNI: rustls only logs it (that
    /// log is silenced, one line per connection being a flood), so count it.
    fn count_hello_sni(&self, sni: HelloSni) {
        let Some(counters) = self.counters() else {
            return;
        };
        let counter = match sni {
            HelloSni::IpAddress => &counters.tls_bad_sni_ip,
            HelloSni::Invalid => &counters.tls_bad_sni_invalid,
            HelloSni::Absent | HelloSni::DnsName | HelloSni::Unknown => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Once per TLS connection, when the handshake completes: count it
    /// (version, resumption) and switch a client that negotiated `h2`.
    fn after_handshake(&mut self, token: Token) {
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        let Some(hs) = c.tls.as_mut().and_then(|t| t.take_handshake()) else {
            return;
        };
        if c.output_empty() {
            // The client's Finished arrived and nothing answers it (no
            // session ticket with resumption off): ACK it now. A client
            // with Nagle on holds its first request until that ACK, which
            // the kernel would otherwise delay by ~40 ms.
            let _ = socket2::SockRef::from(&c.sock).set_tcp_quickack(true);
        }
        if hs.h2 && c.link() == Link::None {
            self.become_h2(token);
        }
        if let Some(counters) = self.counters() {
            let version = if hs.tls13 {
                &counters.tls_handshakes_tls13
            } else {
                &counters.tls_handshakes_tls12
            };
            version.fetch_add(1, Ordering::Relaxed);
            if hs.resumed {
                counters
                    .tls_handshakes_resumed
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn client_flush(&mut self, token: Token) {
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        if c.output_empty() {
            if c.closing {
                self.close_client_gracefully(token);
            }
            return;
        }
        let before = c.wbuf.len();
        if c.flush().is_err() {
            self.close_client(token);
            return;
        }
        let drained_below = before >= HIGH_WATER && c.wbuf.len() < HIGH_WATER;
        if c.wbuf.is_empty() {
            // Nothing held while idle.
            c.wbuf = Vec::new();
        }
        if c.output_empty() && c.closing {
            self.close_client_gracefully(token);
            return;
        }
        // The backend side was paused on our buffer: resume it.
        if drained_below || c.wbuf.is_empty() {
            let up = match &c.state {
                ClientState::H1(h) => match h.link {
                    Link::Exchange(xid) => self
                        .exchanges
                        .get(xid.0)
                        .and_then(|ex| ex.upstream())
                        .map(tok),
                    Link::Tunnel(up) => Some(up),
                    Link::None => None,
                },
                ClientState::ProxyHeader { .. } => None,
                ClientState::H2(_) => {
                    self.h2_resume_paused(token);
                    None
                }
            };
            if let Some(up) = up
                && matches!(self.conns.get(up.0), Some(Conn::Upstream(u)) if u.read_paused)
            {
                self.ready.push_back(up);
            }
        }
    }

    /// Advance the client with what is buffered: heads parsed one after
    /// the other (pipelining) in this loop.
    pub(super) fn client_progress(&mut self, token: Token) {
        let (limits, timeouts) = (self.snapshot.limits, self.server_timeouts());
        loop {
            let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
                return;
            };
            let h = match &mut c.state {
                ClientState::ProxyHeader { .. } => return,
                ClientState::H2(_) => {
                    self.h2_progress(token);
                    return;
                }
                ClientState::H1(h) => h,
            };
            match h.link {
                Link::Tunnel(up) => {
                    self.tunnel_to_backend(token, up);
                    return;
                }
                Link::Exchange(xid) => {
                    self.pump_request_body(xid);
                    let Some(Conn::Client(c)) = self.conns.get(token.0) else {
                        return;
                    };
                    if c.eof
                        && c.rbuf.is_empty()
                        && self.exchanges.get(xid.0).is_some_and(|ex| {
                            matches!(ex.route.body, crate::exchange::RequestBody::H1(_))
                        })
                    {
                        // The client stopped mid-body.
                        self.close_client(token);
                    }
                    return;
                }
                Link::None => {}
            }
            if c.closing {
                return;
            }
            match h
                .conn
                .handle_input(&c.rbuf, c.eof, self.now, &limits, &timeouts)
            {
                Input::Wait => {
                    if c.rbuf.is_empty() {
                        c.rbuf = Vec::new();
                    }
                    // A head began: its header timeout is armed.
                    self.schedule_conn(token);
                    return;
                }
                Input::Close => {
                    c.closing = true;
                    self.client_flush(token);
                    return;
                }
                Input::Refuse(e) => {
                    let id = self.request_uuid().to_string();
                    self.answer(token, Answer::error(e, id), true, false);
                    return;
                }
                Input::Head {
                    head,
                    used,
                    started,
                } => {
                    c.rbuf.drain(..used);
                    self.start_h1_exchange(token, *head, started);
                    // Loop: a body to stream, or the next request.
                }
            }
        }
    }

    /// Client bytes of an upgraded connection to its backend.
    fn tunnel_to_backend(&mut self, token: Token, up: Token) {
        let (now, t) = (self.now, self.server_timeouts());
        let Some((Conn::Client(c), Conn::Upstream(u))) = self.conns.get2_mut(token.0, up.0) else {
            return;
        };
        u.wbuf.extend_from_slice(&c.rbuf);
        c.rbuf.clear();
        let eof = c.eof;
        if let ClientState::H1(h) = &mut c.state {
            h.conn.tunnel_activity(now, &t);
        }
        u.conn.tunnel_activity(now, t.tunnel);
        self.schedule_conn(token);
        self.schedule_conn(up);
        self.upstream_write(up);
        if eof && let Some(Conn::Upstream(u)) = self.conns.get_mut(up.0) {
            let _ = u.sock.shutdown(std::net::Shutdown::Write);
        }
    }

    // ---- Portier's own answers --------------------------------------------

    /// Answer an HTTP/1.x client with Portier's own response (router error
    /// or redirect), count it, and wait for the next request or close.
    pub(super) fn answer(&mut self, token: Token, answer: Answer, close: bool, head_only: bool) {
        let since = match self.conns.get(token.0) {
            Some(Conn::Client(Client {
                state: ClientState::H1(h),
                ..
            })) => h.conn.head_started(),
            _ => return,
        };
        self.count_response(answer.status, since);
        self.answer_uncounted(token, answer, close, head_only);
    }

    /// `answer` for a response already counted (a failed exchange).
    pub(super) fn answer_uncounted(
        &mut self,
        token: Token,
        answer: Answer,
        close: bool,
        head_only: bool,
    ) {
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        let close = close || c.eof;
        answer.encode_h1(&self.snapshot.error_header, close, head_only, &mut c.wbuf);
        self.after_response(token, close);
    }

    /// A response is complete on an HTTP/1.x connection: it waits for the
    /// next request (already buffered ones go on the work list) or closes
    /// once everything is sent.
    pub(super) fn after_response(&mut self, token: Token, close: bool) {
        let (now, t) = (self.now, self.server_timeouts());
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        if let ClientState::H1(h) = &mut c.state {
            h.conn.response_done(close, now, &t);
            h.link = Link::None;
        }
        if close {
            c.closing = true;
            c.rbuf = Vec::new();
        } else if !c.rbuf.is_empty() || c.eof {
            self.ready.push_back(token);
        } else {
            // Nothing held while idle.
            c.rbuf = Vec::new();
        }
        self.schedule_conn(token);
        self.client_flush(token);
    }
}
