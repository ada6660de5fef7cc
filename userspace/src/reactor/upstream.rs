//! The backend side: connect, write the request, read and parse the
//! response, stream it to the client through the exchange's pipeline,
//! tunnels, and what a failed backend connection means (sched::retry).

use std::io;

use mio::Token;

use super::conn::*;
use super::core::{Reactor, tok};
use crate::exchange::{ExchangeId, pump};
use crate::http::HttpError;
use crate::http::h1::{
    BodyDecoder, BodyKind, ResponseHead, encode_response_head, parse_response_head,
};
use crate::sched::retry::{Cut, Verdict, after_cut};

impl Reactor {
    pub(super) fn upstream_writable(&mut self, token: Token) {
        let Some(Conn::Upstream(u)) = self.conns.get_mut(token.0) else {
            return;
        };
        if u.conn.is_connecting()
            && let Link::Exchange(xid) = u.link
        {
            let failed = match u.sock.take_error() {
                Ok(Some(_)) | Err(_) => true,
                Ok(None) => match u.sock.peer_addr() {
                    Ok(_) => false,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                    Err(_) => true,
                },
            };
            if failed {
                self.upstream_failed(token);
                return;
            }
            u.conn.connected();
            if let Some(ex) = self.exchanges.get_mut(xid.0) {
                ex.connected(self.now);
            }
            self.schedule_exchange(xid);
        }
        self.upstream_flush(token);
    }

    /// Write what is buffered for the backend; no pulling from the client.
    pub(super) fn upstream_write(&mut self, token: Token) {
        let Some(Conn::Upstream(u)) = self.conns.get_mut(token.0) else {
            return;
        };
        if u.conn.is_connecting() || u.wbuf.is_empty() {
            return;
        }
        match flush(&mut u.sock, &mut u.wbuf) {
            Ok(n) => u.conn.wrote(n),
            Err(_) => self.upstream_failed(token),
        }
    }

    /// Write, and when the buffer has room again let the client feed it.
    pub(super) fn upstream_flush(&mut self, token: Token) {
        self.upstream_write(token);
        let Some(Conn::Upstream(u)) = self.conns.get(token.0) else {
            return;
        };
        if u.wbuf.len() >= HIGH_WATER {
            return;
        }
        match u.link {
            Link::Tunnel(client) => {
                if matches!(self.conns.get(client.0), Some(Conn::Client(c)) if !c.rbuf.is_empty() || c.read_paused)
                {
                    self.ready.push_back(client);
                }
            }
            Link::Exchange(xid) => {
                let pending = match self.exchanges.get(xid.0) {
                    Some(ex) => match &ex.route.body {
                        crate::exchange::RequestBody::H2 { pending, .. } => !pending.is_empty(),
                        crate::exchange::RequestBody::H1(_) => {
                            matches!(self.conns.get(ex.route.client.0), Some(Conn::Client(c)) if !c.rbuf.is_empty() || c.read_paused)
                        }
                        crate::exchange::RequestBody::None => false,
                    },
                    None => false,
                };
                if pending {
                    self.pump_request_body(xid);
                }
            }
            Link::None => {}
        }
    }

    pub(super) fn upstream_read(&mut self, token: Token) {
        let Some(Conn::Upstream(u)) = self.conns.get(token.0) else {
            return;
        };
        if u.conn.is_connecting() {
            return;
        }
        let room = self.response_room(token);
        let Some(Conn::Upstream(u)) = self.conns.get_mut(token.0) else {
            return;
        };
        if !room {
            u.read_paused = true;
        } else if !u.eof {
            match read_into(
                &mut u.sock,
                &mut u.rbuf,
                HIGH_WATER,
                &mut self.scratch,
                self.drain_reads,
            ) {
                Ok(r) => {
                    u.eof |= r.eof;
                    u.read_paused = r.paused;
                    if r.bytes > 0
                        && let Link::Exchange(xid) = u.link
                        && let Some(ex) = self.exchanges.get_mut(xid.0)
                    {
                        // The backend is alive: its read clock starts again.
                        ex.backend_progress(self.now);
                        self.schedule_exchange(xid);
                    }
                }
                Err(_) => {
                    self.upstream_failed(token);
                    return;
                }
            }
        }
        self.upstream_progress(token);
    }

    /// Can the client take more of this backend's response now?
    fn response_room(&self, up: Token) -> bool {
        let Some(Conn::Upstream(u)) = self.conns.get(up.0) else {
            return false;
        };
        let client = match u.link {
            Link::Tunnel(c) => c,
            Link::Exchange(xid) => match self.exchanges.get(xid.0) {
                // Before the response head, only the head is read: always room.
                Some(ex) if ex.response_started() && ex.stream().is_some() => {
                    return self.h2_stream_room(xid);
                }
                Some(ex) => tok(ex.route.client),
                None => return true,
            },
            Link::None => return true,
        };
        matches!(self.conns.get(client.0), Some(Conn::Client(c)) if c.wbuf.len() < HIGH_WATER)
    }

    /// Parse and forward what the backend sent.
    fn upstream_progress(&mut self, token: Token) {
        loop {
            let Some(Conn::Upstream(u)) = self.conns.get_mut(token.0) else {
                return;
            };
            let xid = match u.link {
                Link::Tunnel(client) => {
                    self.tunnel_to_client(token, client);
                    return;
                }
                // Idle in the pool: any byte or EOF means it is no longer usable.
                Link::None => {
                    if (u.eof || !u.rbuf.is_empty()) && u.conn.idle_input() {
                        self.close_upstream(token);
                    }
                    return;
                }
                Link::Exchange(_) if u.conn.is_connecting() => return,
                Link::Exchange(xid) => xid,
            };
            let Some(ex) = self.exchanges.get(xid.0) else {
                return;
            };
            if ex.decoder.is_some() {
                self.response_body(xid, token);
                return;
            }
            if u.rbuf.is_empty() {
                if u.eof {
                    self.upstream_failed(token);
                }
                return;
            }
            match parse_response_head(&u.rbuf, &self.snapshot.limits, ex.route.request.is_head) {
                Err(e) => {
                    self.fail_exchange(xid, e.to_upstream());
                    return;
                }
                Ok(None) => {
                    if u.eof {
                        self.upstream_failed(token);
                    }
                    return;
                }
                Ok(Some((head, used))) => {
                    u.rbuf.drain(..used);
                    if !self.response_head(xid, token, head) {
                        return;
                    }
                }
            }
        }
    }

    /// Forward a response head; false when the exchange is over or changed
    /// shape (no body, tunnel), true to keep going (interim, body).
    fn response_head(&mut self, xid: ExchangeId, up: Token, mut head: ResponseHead) -> bool {
        let (now, t) = (self.now, self.server_timeouts());
        let Some(ex) = self.exchanges.get_mut(xid.0) else {
            return false;
        };
        if ex.stream().is_some() {
            return self.h2_response_head(xid, up, head);
        }
        if head.is_switching_protocols()
            && !(ex.route.request.upgrade && head.switches_to_websocket())
        {
            // A 101 to a request Portier did not forward as a WebSocket
            // upgrade (or switching to another protocol than the one
            // offered, RFC 9110 §7.8): tunnelling would let the client's
            // next bytes reach the backend unparsed — no forwarding
            // headers, no limits, a forged X-Forwarded-For believed. Never
            // a tunnel: 502, and both connections close.
            self.fail_exchange(xid, HttpError::UpstreamInvalidResponse);
            return false;
        }
        let (min_size, level) = (self.snapshot.gzip_min_size, self.snapshot.gzip_level);
        let client = tok(ex.route.client);
        let version = ex.client_version();
        let Some((Conn::Upstream(u), Conn::Client(c))) = self.conns.get2_mut(up.0, client.0) else {
            return false;
        };
        if head.is_interim() {
            let extra = ex.response_extras();
            encode_response_head(&head, &extra.pairs(), version, false, &mut c.wbuf);
            return true;
        }
        if head.is_switching_protocols() {
            let extra = ex.response_extras();
            encode_response_head(&head, &extra.pairs(), version, false, &mut c.wbuf);
            c.wbuf.extend_from_slice(&u.rbuf);
            u.rbuf.clear();
            u.link = Link::Tunnel(client);
            u.conn.upgraded(now, t.tunnel);
            if let ClientState::H1(h) = &mut c.state {
                h.link = Link::Tunnel(up);
                h.conn.upgraded(now, &t);
            }
            // The upgraded connection no longer holds a request slot.
            if let Some(ex) = self.exchanges.try_remove(xid.0)
                && let Some(b) = ex.backend()
            {
                self.release_slot(&ex.route.balancer, b);
            }
            self.schedule_conn(up);
            self.schedule_conn(client);
            self.client_flush(client);
            self.ready.push_back(client);
            return false;
        }
        let backend_kind = ex.begin_response(&mut head, self.now, min_size, level);
        let close = !ex.route.request.keep_alive || head.body == BodyKind::CloseDelimited;
        if close {
            ex.route.request.keep_alive = false;
        }
        let extra = ex.response_extras();
        encode_response_head(&head, &extra.pairs(), version, close, &mut c.wbuf);
        u.conn.head(&head);
        if backend_kind == BodyKind::None {
            // finish_exchange flushes, after counting.
            self.finish_exchange(xid);
            return false;
        }
        ex.decoder = Some(BodyDecoder::for_response(
            backend_kind,
            &self.snapshot.limits,
        ));
        true
    }

    /// Stream response body bytes to an HTTP/1.x client.
    fn response_body(&mut self, xid: ExchangeId, up: Token) {
        let Some(ex) = self.exchanges.get_mut(xid.0) else {
            return;
        };
        if ex.stream().is_some() {
            self.h2_response_body(xid, up);
            return;
        }
        let client = tok(ex.route.client);
        let Some((Conn::Upstream(u), Conn::Client(c))) = self.conns.get2_mut(up.0, client.0) else {
            return;
        };
        let Some(dec) = ex.decoder.as_mut() else {
            return;
        };
        let before = c.wbuf.len();
        let pumped = pump(dec, &mut ex.out, &u.rbuf, u.eof, &mut c.wbuf, HIGH_WATER);
        if let Some(l) = ex.route.log.as_mut() {
            l.bytes += c.wbuf.len().saturating_sub(before) as u64;
        }
        match pumped {
            Ok(p) => {
                u.rbuf.drain(..p.consumed);
                if !u.rbuf.is_empty() && c.wbuf.len() >= HIGH_WATER {
                    u.read_paused = true;
                }
                if p.done {
                    // Counted and logged before the last bytes leave
                    // (finishing flushes), so a client never sees a
                    // response its counters miss.
                    self.finish_exchange(xid);
                } else {
                    self.client_flush(client);
                }
            }
            Err(_) => {
                // The response started: the only honest signal is to cut
                // (after what was already decoded).
                self.client_flush(client);
                self.drop_exchange(xid);
                self.close_client(client);
            }
        }
    }

    fn tunnel_to_client(&mut self, up: Token, client: Token) {
        let (now, t) = (self.now, self.server_timeouts());
        let Some((Conn::Upstream(u), Conn::Client(c))) = self.conns.get2_mut(up.0, client.0) else {
            self.close_upstream(up);
            return;
        };
        c.wbuf.extend_from_slice(&u.rbuf);
        u.rbuf.clear();
        let eof = u.eof;
        u.conn.tunnel_activity(now, t.tunnel);
        if let ClientState::H1(h) = &mut c.state {
            h.conn.tunnel_activity(now, &t);
        }
        self.schedule_conn(up);
        self.schedule_conn(client);
        self.client_flush(client);
        if eof {
            self.close_upstream(up);
            if let Some(Conn::Client(c)) = self.conns.get_mut(client.0) {
                c.closing = true;
                if let ClientState::H1(h) = &mut c.state {
                    h.link = Link::None;
                    h.conn.close();
                }
            }
            self.client_flush(client);
        }
    }

    /// The backend connection failed (refused, reset, closed) under a
    /// request: retry, answer, or cut, as `sched::retry` says.
    pub(super) fn upstream_failed(&mut self, token: Token) {
        let Some(Conn::Upstream(u)) = self.conns.get(token.0) else {
            return;
        };
        let (link, reused, written, backend, balancer) = (
            u.link,
            u.conn.reused(),
            u.conn.written(),
            u.backend,
            u.balancer.clone(),
        );
        self.close_upstream(token);
        let xid = match link {
            Link::Tunnel(client) => {
                self.close_client(client);
                return;
            }
            Link::None => return,
            Link::Exchange(xid) => xid,
        };
        let now_ms = self.control.now_ms(self.now);
        let Some(ex) = self.exchanges.get_mut(xid.0) else {
            return;
        };
        let verdict = after_cut(Cut {
            written,
            reused,
            idempotent: ex.route.request.idempotent,
            body_pending: !ex.route.body.is_done(),
            response_started: ex.response_started(),
        });
        match verdict {
            Verdict::Abort => {
                let (client, stream) = (tok(ex.route.client), ex.stream());
                self.drop_exchange(xid);
                match stream {
                    None => self.close_client(client),
                    Some(sid) => self.h2_fail_stream(client, sid, None, false),
                }
            }
            Verdict::Retry { quarantine } => {
                let slot = ex.detach();
                if quarantine {
                    balancer.quarantine(backend, now_ms);
                    ex.tried.push(backend);
                }
                if let Some(id) = slot {
                    self.release_slot(&balancer, id);
                }
                self.schedule_exchange(xid);
                self.dispatch(xid);
            }
            Verdict::Fail(e) => {
                balancer.quarantine(backend, now_ms);
                self.fail_exchange(xid, e);
            }
        }
    }
}
