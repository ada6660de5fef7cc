//! The backend side: connect, write the request, read and parse the
//! response, stream it to the client in the exchange's output mode (raw,
//! re-framed, gzipped), fail over, time out.

use std::io;

use mio::Token;

use super::conn::*;
use super::proxy::{CONNECT_TIMEOUT, READ_TIMEOUT, Reactor, UPSTREAM_FAILED};
use crate::http::h1::{
    BodyDecoder, BodyKind, ResponseHead, encode_chunk, encode_last_chunk, encode_response_head,
    parse_response_head,
};

impl Reactor {
    pub(super) fn upstream_timeout(&mut self, token: Token) {
        let Some(Conn::Upstream(u)) = self.conns.get(token.0) else {
            return;
        };
        if let Some(client) = u.tunnel_client {
            self.close_upstream(token);
            self.close_client(client);
            return;
        }
        let Some(xid) = u.exchange else {
            // Idle pooled connection past its keep-alive.
            self.close_upstream(token);
            return;
        };
        if u.connecting {
            u.balancer
                .quarantine(u.backend, self.shared.now_ms(self.now));
        }
        let err = if u.connecting {
            CONNECT_TIMEOUT
        } else {
            READ_TIMEOUT
        };
        self.fail_exchange(xid, err, true);
    }

    pub(super) fn upstream_writable(&mut self, token: Token) {
        let Some(Conn::Upstream(u)) = self.conns.get_mut(token.0) else {
            return;
        };
        if u.connecting {
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
            u.connecting = false;
            if let Some(xid) = u.exchange
                && let Some(l) = self.exchanges.get_mut(xid).and_then(|ex| ex.log.as_mut())
            {
                l.connected = Some(self.now);
            }
            let at = self.now + self.snapshot.timeouts.read;
            self.arm(token, at);
        }
        self.upstream_flush(token);
    }

    /// Write what is buffered for the backend; no pulling from the client.
    pub(super) fn upstream_write(&mut self, token: Token) {
        let Some(Conn::Upstream(u)) = self.conns.get_mut(token.0) else {
            return;
        };
        if u.connecting || u.wbuf.is_empty() {
            return;
        }
        match flush(&mut u.sock, &mut u.wbuf) {
            Ok(n) => u.written += n as u64,
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
        if let Some(client) = u.tunnel_client {
            if matches!(self.conns.get(client.0), Some(Conn::Client(c)) if !c.rbuf.is_empty() || c.read_paused)
            {
                self.ready.push_back(client);
            }
            return;
        }
        if let Some(xid) = u.exchange {
            let pending = match self.exchanges.get(xid) {
                Some(ex) => match &ex.body {
                    RequestBody::H2 { pending, .. } => !pending.is_empty(),
                    RequestBody::H1(_) => {
                        matches!(self.conns.get(ex.client.0), Some(Conn::Client(c)) if !c.rbuf.is_empty() || c.read_paused)
                    }
                    RequestBody::None => false,
                },
                None => false,
            };
            if pending {
                self.pump_request_body(xid);
            }
        }
    }

    pub(super) fn upstream_read(&mut self, token: Token) {
        let Some(Conn::Upstream(u)) = self.conns.get(token.0) else {
            return;
        };
        if u.connecting {
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
        let client = match (u.exchange, u.tunnel_client) {
            (_, Some(c)) => c,
            (Some(xid), None) => match self.exchanges.get(xid) {
                // Before the response head, only the head is read: always room.
                Some(ex) if ex.sid != 0 && ex.response_started => {
                    return self.h2_stream_room(ex.client, ex.sid);
                }
                Some(ex) => ex.client,
                None => return true,
            },
            (None, None) => return true,
        };
        matches!(self.conns.get(client.0), Some(Conn::Client(c)) if c.wbuf.len() < HIGH_WATER)
    }

    /// Parse and forward what the backend sent.
    fn upstream_progress(&mut self, token: Token) {
        loop {
            let Some(Conn::Upstream(u)) = self.conns.get_mut(token.0) else {
                return;
            };
            if let Some(client) = u.tunnel_client {
                self.tunnel_to_client(token, client);
                return;
            }
            let Some(xid) = u.exchange else {
                // Idle in the pool: any byte or EOF means it is no longer usable.
                if u.eof || !u.rbuf.is_empty() {
                    self.close_upstream(token);
                }
                return;
            };
            match u.resp {
                ResponseState::Head => {
                    if u.rbuf.is_empty() {
                        if u.eof {
                            self.upstream_failed(token);
                        }
                        return;
                    }
                    let is_head = self.exchanges.get(xid).is_some_and(|ex| ex.is_head);
                    match parse_response_head(&u.rbuf, &self.snapshot.limits, is_head) {
                        Err(e) => {
                            let e = e.to_upstream();
                            self.fail_exchange(xid, (e.status(), e.code()), true);
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
                ResponseState::Body(_) => {
                    self.response_body(xid, token);
                    return;
                }
                ResponseState::Tunnel => return,
            }
        }
    }

    /// Forward a response head; false when the exchange is over or changed
    /// shape (no body, tunnel), true to keep parsing (interim, body).
    fn response_head(&mut self, xid: usize, up: Token, mut head: ResponseHead) -> bool {
        let min_size = self.snapshot.gzip_min_size;
        let level = self.snapshot.gzip_level;
        let Some(ex) = self.exchanges.get_mut(xid) else {
            return false;
        };
        if ex.sid != 0 {
            return self.h2_response_head(xid, up, head);
        }
        let client = ex.client;
        let extra = ex.response_extras();
        let extra_refs: Vec<(&str, &[u8])> =
            extra.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let Some((Conn::Upstream(u), Conn::Client(c))) = self.conns.get2_mut(up.0, client.0) else {
            return false;
        };
        if head.is_interim() {
            encode_response_head(&head, &extra_refs, ex.client_version, false, &mut c.wbuf);
            return true;
        }
        if head.is_switching_protocols() && ex.upgrade {
            encode_response_head(&head, &extra_refs, ex.client_version, false, &mut c.wbuf);
            c.wbuf.extend_from_slice(&u.rbuf);
            u.rbuf.clear();
            u.resp = ResponseState::Tunnel;
            u.tunnel_client = Some(client);
            u.exchange = None;
            c.state = ClientState::Tunnel(up);
            // The upgraded connection no longer holds a request slot.
            if let Some(ex) = self.exchanges.try_remove(xid)
                && let Some(b) = ex.backend
            {
                ex.balancer.release(b);
            }
            let at = self.now + self.snapshot.timeouts.tunnel_idle;
            self.arm(up, at);
            self.arm(client, at);
            self.client_flush(client);
            self.client_progress(client);
            self.serve_queues();
            return false;
        }
        let backend_kind = ex.begin_response(&mut head, self.now, min_size, level);
        let close = !ex.keep_alive || head.body == BodyKind::CloseDelimited;
        if close {
            ex.keep_alive = false;
        }
        encode_response_head(&head, &extra_refs, ex.client_version, close, &mut c.wbuf);
        u.resp_keep_alive = head.keep_alive;
        if backend_kind == BodyKind::None {
            // finish_exchange flushes, after counting.
            self.finish_exchange(xid);
            return false;
        }
        u.resp = ResponseState::Body(BodyDecoder::for_response(
            backend_kind,
            &self.snapshot.limits,
        ));
        let at = self.now + self.snapshot.timeouts.read;
        self.arm(up, at);
        true
    }

    /// Stream response body bytes to an HTTP/1.x client.
    fn response_body(&mut self, xid: usize, up: Token) {
        let Some(ex) = self.exchanges.get_mut(xid) else {
            return;
        };
        if ex.sid != 0 {
            self.h2_response_body(xid, up);
            return;
        }
        let client = ex.client;
        let Some((Conn::Upstream(u), Conn::Client(c))) = self.conns.get2_mut(up.0, client.0) else {
            return;
        };
        let ResponseState::Body(dec) = &mut u.resp else {
            return;
        };
        let mut done = false;
        let mut error = None;
        let mut scratch = Vec::new();
        let wbuf_before = c.wbuf.len();
        while !u.rbuf.is_empty() && c.wbuf.len() < HIGH_WATER {
            match dec.decode(&u.rbuf) {
                Ok(d) => {
                    let payload = d.data.clone().map(|r| &u.rbuf[r]);
                    match &mut ex.out {
                        OutMode::Raw => c.wbuf.extend_from_slice(&u.rbuf[..d.consumed]),
                        OutMode::Payload { chunked } => {
                            if let Some(p) = payload {
                                if *chunked {
                                    encode_chunk(p, &mut c.wbuf);
                                } else {
                                    c.wbuf.extend_from_slice(p);
                                }
                            }
                        }
                        OutMode::Gzip { gz, chunked } => {
                            if let Some(p) = payload {
                                scratch.clear();
                                gz.push(p, false, &mut scratch);
                                frame(&scratch, *chunked, &mut c.wbuf);
                            }
                        }
                    }
                    u.rbuf.drain(..d.consumed);
                    if d.done {
                        done = true;
                        break;
                    }
                    if d.consumed == 0 {
                        break;
                    }
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if !done && error.is_none() && u.eof && u.rbuf.is_empty() {
            match dec.handle_eof() {
                Ok(()) => done = true,
                Err(e) => error = Some(e),
            }
        }
        if !u.rbuf.is_empty() && c.wbuf.len() >= HIGH_WATER {
            u.read_paused = true;
        }
        // End the client-side framing, or push out what is compressed so far
        // (a slow stream still arrives as it goes).
        match std::mem::replace(&mut ex.out, OutMode::Raw) {
            OutMode::Gzip { mut gz, chunked } => {
                scratch.clear();
                if done {
                    gz.finish(&mut scratch);
                    frame(&scratch, chunked, &mut c.wbuf);
                    if chunked {
                        encode_last_chunk(&mut c.wbuf);
                    }
                } else {
                    gz.push(&[], true, &mut scratch);
                    frame(&scratch, chunked, &mut c.wbuf);
                    ex.out = OutMode::Gzip { gz, chunked };
                }
            }
            OutMode::Payload { chunked } => {
                if done && chunked {
                    encode_last_chunk(&mut c.wbuf);
                }
                ex.out = OutMode::Payload { chunked };
            }
            OutMode::Raw => {}
        }
        if let Some(l) = ex.log.as_mut() {
            l.bytes += c.wbuf.len().saturating_sub(wbuf_before) as u64;
        }
        if error.is_some() {
            // The response started: the only honest signal is to cut
            // (after what was already decoded).
            self.client_flush(client);
            self.drop_exchange(xid);
            self.close_client(client);
            return;
        }
        if done {
            // Counted and logged before the last bytes leave (finishing
            // flushes), so a client never sees a response its counters miss.
            self.finish_exchange(xid);
        } else {
            self.client_flush(client);
            let at = self.now + self.snapshot.timeouts.read;
            self.arm(up, at);
        }
    }

    fn tunnel_to_client(&mut self, up: Token, client: Token) {
        let Some((Conn::Upstream(u), Conn::Client(c))) = self.conns.get2_mut(up.0, client.0) else {
            self.close_upstream(up);
            return;
        };
        c.wbuf.extend_from_slice(&u.rbuf);
        u.rbuf.clear();
        let eof = u.eof;
        let at = self.now + self.snapshot.timeouts.tunnel_idle;
        self.arm(up, at);
        self.arm(client, at);
        self.client_flush(client);
        if eof {
            self.close_upstream(up);
            if let Some(Conn::Client(c)) = self.conns.get_mut(client.0) {
                c.close_after_flush = true;
                c.state = ClientState::Idle;
            }
            self.client_flush(client);
        }
    }

    /// The backend connection failed (refused, reset, closed) mid-exchange.
    pub(super) fn upstream_failed(&mut self, token: Token) {
        let Some(Conn::Upstream(u)) = self.conns.get(token.0) else {
            return;
        };
        let (xid, tunnel, reused, written, backend, balancer) = (
            u.exchange,
            u.tunnel_client,
            u.reused,
            u.written,
            u.backend,
            u.balancer.clone(),
        );
        self.close_upstream(token);
        if let Some(client) = tunnel {
            self.close_client(client);
            return;
        }
        let Some(xid) = xid else {
            return;
        };
        let Some(ex) = self.exchanges.get_mut(xid) else {
            return;
        };
        ex.upstream = None;
        let (started, has_body, idempotent) =
            (ex.response_started, !ex.body.is_done(), ex.idempotent);
        if started {
            let (client, sid) = (ex.client, ex.sid);
            self.drop_exchange(xid);
            if sid == 0 {
                self.close_client(client);
            } else {
                self.h2_reset_stream(client, sid);
            }
            return;
        }
        if written == 0 {
            // Nothing of the request reached it: another backend gets it.
            // A stale pooled connection says nothing about the backend.
            self.backend_failed_early(xid, backend, !reused);
            return;
        }
        if idempotent && !reused {
            // Cut before answering a request that is safe to repeat: the
            // backend is quarantined and another one gets the request.
            self.backend_failed_early(xid, backend, true);
            return;
        }
        if reused && !has_body {
            // The pooled connection closed as we reused it; the backend may
            // not have seen the request: one more try on a fresh connection.
            ex.balancer.release(backend);
            ex.backend = None;
            self.dispatch(xid);
            return;
        }
        // Cut after the request was sent, before any response.
        balancer.quarantine(backend, self.shared.now_ms(self.now));
        self.fail_exchange(xid, UPSTREAM_FAILED, true);
    }
}

/// Frame `data` for the client: an HTTP/1.1 chunk, or as is.
fn frame(data: &[u8], chunked: bool, out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    if chunked {
        encode_chunk(data, out);
    } else {
        out.extend_from_slice(data);
    }
}
