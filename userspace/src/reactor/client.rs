//! The HTTP/1.x client side: read and write clients (through TLS when
//! they have it), parse request heads — pipelined ones in a loop, never by
//! recursion — stream request bodies, tunnels, Portier's own answers, the
//! client's timers.

use std::sync::atomic::Ordering;

use mio::Token;

use super::conn::*;
use super::core::Reactor;
use crate::http::HttpError;
use crate::http::answer::Answer;
use crate::http::h1::parse_request_head;

impl Reactor {
    pub(super) fn client_read(&mut self, token: Token) {
        let limits = self.snapshot.limits;
        let header_timeout = self.snapshot.timeouts.header;
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        if c.eof {
            // Nothing more to read, but what is buffered still moves on.
            self.client_progress(token);
            return;
        }
        let cap = match c.state {
            // One byte over the limit is enough to know the head is too big.
            ClientState::Idle => limits.max_header_section + 1,
            _ => HIGH_WATER,
        };
        let was_empty = c.rbuf.is_empty();
        match c.read(cap, &mut self.scratch, self.drain_reads) {
            Ok(r) => {
                c.eof |= r.eof;
                c.read_paused = r.paused;
                if was_empty
                    && r.bytes > 0
                    && matches!(c.state, ClientState::Idle)
                    && c.head_started.is_none()
                {
                    // A head begins: it has the header timeout to arrive.
                    c.head_started = Some(self.now);
                    c.clear_timer(ClientTimer::Idle);
                    c.set_timer(ClientTimer::Header, self.now + header_timeout);
                    self.schedule_conn(token);
                }
            }
            Err(_) => {
                // A TLS failure queued an alert: try to deliver it.
                let _ = c.flush();
                self.close_client(token);
                return;
            }
        }
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        // Handshake messages, tickets, alerts.
        if c.tls.as_ref().is_some_and(|t| t.wants_write()) {
            self.client_flush(token);
        }
        self.after_handshake(token);
        self.client_progress(token);
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
        if hs.h2 && matches!(c.state, ClientState::Idle) {
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
            let up = match c.state {
                ClientState::Busy(xid) => self
                    .exchanges
                    .get(xid.0)
                    .and_then(|ex| ex.upstream())
                    .map(super::core::tok),
                ClientState::Tunnel(up) => Some(up),
                ClientState::Idle => None,
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
        loop {
            let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
                return;
            };
            match c.state {
                ClientState::H2(_) => {
                    self.h2_progress(token);
                    return;
                }
                ClientState::Idle => {
                    if c.closing {
                        return;
                    }
                    if c.rbuf.is_empty() {
                        c.rbuf = Vec::new();
                        if c.eof {
                            // Answer what was asked, then close.
                            c.closing = true;
                            self.client_flush(token);
                        }
                        return;
                    }
                    match parse_request_head(&c.rbuf, &self.snapshot.limits) {
                        Err(e) => {
                            let id = self.request_uuid().to_string();
                            self.answer(token, Answer::error(e, id), true, false);
                            return;
                        }
                        Ok(None) => {
                            if c.eof {
                                // Half a head and no more coming.
                                c.closing = true;
                                self.client_flush(token);
                            }
                            return;
                        }
                        Ok(Some((head, used))) => {
                            c.rbuf.drain(..used);
                            self.start_h1_exchange(token, head);
                            // Loop: a body to stream, or the next request.
                        }
                    }
                }
                ClientState::Busy(xid) => {
                    self.pump_request_body(xid);
                    let Some(Conn::Client(c)) = self.conns.get(token.0) else {
                        return;
                    };
                    if c.eof
                        && c.rbuf.is_empty()
                        && self.exchanges.get(xid.0).is_some_and(|ex| {
                            matches!(ex.body, crate::exchange::RequestBody::H1(_))
                        })
                    {
                        // The client stopped mid-body.
                        self.close_client(token);
                    }
                    return;
                }
                ClientState::Tunnel(up) => {
                    self.tunnel_to_backend(token, up);
                    return;
                }
            }
        }
    }

    /// Client bytes of an upgraded connection to its backend.
    fn tunnel_to_backend(&mut self, token: Token, up: Token) {
        let at = self.now + self.snapshot.timeouts.tunnel_idle;
        let Some((Conn::Client(c), Conn::Upstream(u))) = self.conns.get2_mut(token.0, up.0) else {
            return;
        };
        u.wbuf.extend_from_slice(&c.rbuf);
        c.rbuf.clear();
        let eof = c.eof;
        c.set_timer(ClientTimer::Tunnel, at);
        u.set_timer(UpstreamTimer::Tunnel, at);
        self.schedule_conn(token);
        self.schedule_conn(up);
        self.upstream_write(up);
        if eof && let Some(Conn::Upstream(u)) = self.conns.get_mut(up.0) {
            let _ = u.sock.shutdown(std::net::Shutdown::Write);
        }
    }

    // ---- timers -----------------------------------------------------------

    /// The head did not arrive whole in time (or, before any byte, the
    /// connection or its TLS handshake went nowhere).
    pub(super) fn header_timeout(&mut self, token: Token) {
        let Some(Conn::Client(c)) = self.conns.get(token.0) else {
            return;
        };
        if !matches!(c.state, ClientState::Idle) {
            return;
        }
        if c.head_started.is_some() || !c.rbuf.is_empty() {
            let id = self.request_uuid().to_string();
            self.answer(
                token,
                Answer::error(HttpError::PeerHeaderTimeout, id),
                true,
                false,
            );
        } else {
            self.close_client(token);
        }
    }

    /// Keep-alive idle: an HTTP/1.x connection between requests closes; an
    /// HTTP/2 one without streams says GOAWAY (with streams, the clock
    /// starts again).
    pub(super) fn idle_timeout(&mut self, token: Token) {
        let keepalive = self.snapshot.timeouts.keepalive;
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        match &mut c.state {
            // A pipelined head that never completed: as a header timeout.
            ClientState::Idle if c.head_started.is_some() || !c.rbuf.is_empty() => {
                self.header_timeout(token)
            }
            ClientState::Idle => self.close_client(token),
            ClientState::H2(h) if h.streams.is_empty() => {
                h.conn.goaway(false);
                c.closing = true;
                self.h2_flush(token);
            }
            ClientState::H2(_) => {
                c.set_timer(ClientTimer::Idle, self.now + keepalive);
            }
            _ => {}
        }
    }

    pub(super) fn tunnel_timeout(&mut self, token: Token) {
        if let Some(Conn::Client(c)) = self.conns.get(token.0)
            && let ClientState::Tunnel(up) = c.state
        {
            self.close_upstream(up);
        }
        self.close_client(token);
    }

    // ---- Portier's own answers --------------------------------------------

    /// Answer an HTTP/1.x client with Portier's own response (router error
    /// or redirect), count it, and wait for the next request or close.
    pub(super) fn answer(&mut self, token: Token, answer: Answer, close: bool, head_only: bool) {
        let since = match self.conns.get(token.0) {
            Some(Conn::Client(c)) => c.head_started,
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
        let keepalive = self.snapshot.timeouts.keepalive;
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        c.state = ClientState::Idle;
        c.head_started = None;
        c.clear_timer(ClientTimer::Header);
        if close {
            c.closing = true;
            c.rbuf.clear();
        } else {
            c.set_timer(ClientTimer::Idle, self.now + keepalive);
            if !c.rbuf.is_empty() || c.eof {
                self.ready.push_back(token);
            }
        }
        self.schedule_conn(token);
        self.client_flush(token);
    }
}
