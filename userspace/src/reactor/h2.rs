//! HTTP/2 client connections in the reactor: the sans-IO
//! `http::h2::ServerConn` fed from the TLS plaintext, each stream an
//! exchange on the shared request path (routing, queue, round-robin,
//! backend pool), its HTTP/1.1 response re-framed as HEADERS and DATA by
//! the same body pipeline HTTP/1.1 uses.
//!
//! Backpressure both ways: request DATA is credited back to the client
//! (WINDOW_UPDATE) only as it is forwarded to the backend; a response
//! stream whose send window is empty stops reading its backend until the
//! client opens the window again.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use mio::Token;

use super::conn::*;
use super::core::{Reactor, tok};
use super::dispatch::Routed;
use crate::exchange::{Downstream, ExchangeId, H2Stream, RequestBody, pump};
use crate::http::HttpError;
use crate::http::answer::Answer;
use crate::http::h1::{BodyDecoder, BodyKind, ResponseHead, encode_chunk, encode_last_chunk};
use crate::http::h2::{ErrorCode, Event, H2Request, H2Settings, ServerConn, StreamId};

impl Reactor {
    /// ALPN chose h2: from here the connection machine reads the bytes, and
    /// the connection's clock is the keep-alive idle timeout, not the
    /// header timeout armed at accept.
    pub(super) fn become_h2(&mut self, token: Token) {
        let limits = self.snapshot.limits;
        let at = self.now + self.snapshot.timeouts.keepalive;
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        let settings = H2Settings {
            stall_timeout: self.snapshot.timeouts.h2_stall,
            ..H2Settings::default()
        };
        c.state = ClientState::H2(Box::new(H2Client {
            conn: ServerConn::new(settings, limits),
            streams: HashMap::new(),
            idle: Some(at),
        }));
        self.schedule_conn(token);
    }

    /// The keep-alive idle deadline passed: without streams the connection
    /// says goodbye; with streams open the clock starts again.
    pub(super) fn h2_idle_timeout(&mut self, token: Token) {
        let (now, keepalive) = (self.now, self.snapshot.timeouts.keepalive);
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        let ClientState::H2(h) = &mut c.state else {
            return;
        };
        if h.idle.is_none_or(|at| at > now) {
            return;
        }
        if h.streams.is_empty() {
            h.idle = None;
            h.conn.goaway(false);
            c.closing = true;
            self.h2_flush(token);
        } else {
            h.idle = Some(now + keepalive);
        }
    }

    /// The connection machine's own timer (the stall sweep): reaped
    /// streams come out as `StreamReset` events and free their exchanges.
    pub(super) fn h2_timeout(&mut self, token: Token) {
        let now = self.now;
        let Some(h) = self.h2_client(token) else {
            return;
        };
        h.conn.handle_timeout(now);
        let mut events = Vec::new();
        while let Some(ev) = h.conn.poll_event() {
            events.push(ev);
        }
        for ev in events {
            if let Event::StreamReset {
                code: ErrorCode::CANCEL,
                by_peer: false,
                ..
            } = ev
                && let Some(c) = self.counters()
            {
                c.http2_streams_stalled.fetch_add(1, Ordering::Relaxed);
            }
            self.h2_event(token, ev);
        }
        self.h2_flush(token);
    }

    /// Feed buffered bytes to the connection machine and act on its events.
    pub(super) fn h2_progress(&mut self, token: Token) {
        // The reactor's event buffer, reused turn after turn (a nested call
        // finds it taken and makes its own).
        let mut events = std::mem::take(&mut self.h2_events);
        let undispatched = self.h2_undispatched.len();
        loop {
            let now = self.now;
            let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
                break;
            };
            let ClientState::H2(h) = &mut c.state else {
                break;
            };
            let used = h.conn.handle_input(&c.rbuf, now);
            c.rbuf.drain(..used);
            while let Some(ev) = h.conn.poll_event() {
                events.push(ev);
            }
            if events.is_empty() {
                break;
            }
            for ev in events.drain(..) {
                self.h2_event(token, ev);
            }
            if used == 0 {
                break;
            }
        }
        events.clear();
        self.h2_events = events;
        self.h2_dispatch_batch(undispatched);
        self.h2_flush(token);
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        if c.eof && c.rbuf.is_empty() {
            c.closing = true;
            self.client_flush(token);
        } else if c.read_paused && c.rbuf.len() < HIGH_WATER {
            // Reading stopped at the buffer limit; the machine took bytes.
            self.ready.push_back(token);
        }
    }

    /// Move frames the machine produced to the socket; close a finished
    /// connection once everything is out.
    pub(super) fn h2_flush(&mut self, token: Token) {
        let draining = self.is_draining();
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        let ClientState::H2(h) = &mut c.state else {
            return;
        };
        h.conn.poll_output(&mut c.wbuf);
        // Draining: the final GOAWAY (sent when the PING came back) and no
        // stream left ends the connection.
        if h.conn.is_closed() || (draining && h.streams.is_empty() && h.conn.goaway_is_final()) {
            c.closing = true;
        }
        // Written at the end of the turn: every stream that moved by then
        // goes out in one TLS write instead of one per frame batch.
        if !c.flush_queued {
            c.flush_queued = true;
            self.flush_later.push(token);
        }
        // The machine may have armed its timer (a new stream).
        self.schedule_conn(token);
    }

    fn h2_event(&mut self, token: Token, ev: Event) {
        match ev {
            Event::Request {
                stream,
                head,
                end_stream,
            } => self.h2_request(token, stream, head, end_stream),
            Event::Data {
                stream,
                data,
                end_stream,
            } => {
                let Some(xid) = self.h2_xid(token, stream.0) else {
                    return;
                };
                if let Some(ex) = self.exchanges.get_mut(xid.0) {
                    if let Some(s) = ex.h2_mut() {
                        s.unreleased += data.len();
                    }
                    if let RequestBody::H2 {
                        pending,
                        chunked,
                        ended,
                    } = &mut ex.route.body
                    {
                        if *chunked {
                            encode_chunk(&data, pending);
                            if end_stream {
                                encode_last_chunk(pending);
                            }
                        } else {
                            pending.extend_from_slice(&data);
                        }
                        *ended |= end_stream;
                    }
                }
                self.pump_request_body(xid);
            }
            Event::Trailers { stream, .. } => {
                let Some(xid) = self.h2_xid(token, stream.0) else {
                    return;
                };
                if let Some(ex) = self.exchanges.get_mut(xid.0)
                    && let RequestBody::H2 {
                        pending,
                        chunked,
                        ended,
                    } = &mut ex.route.body
                {
                    if *chunked && !*ended {
                        encode_last_chunk(pending);
                    }
                    *ended = true;
                }
                self.pump_request_body(xid);
            }
            Event::Rejected { stream, error } => {
                let id = match self.h2_xid(token, stream.0) {
                    Some(xid) => {
                        let id = self
                            .exchanges
                            .get(xid.0)
                            .map(|ex| ex.route.request.request_id.clone());
                        self.drop_exchange(xid);
                        self.h2_forget(token, stream.0);
                        id
                    }
                    None => None,
                };
                let id = id.unwrap_or_else(|| self.request_uuid().to_string());
                self.count_response(error.status(), None);
                self.h2_answer(token, stream.0, &Answer::error(error, id), false);
            }
            Event::StreamReset { stream, .. } => {
                // The client cancelled (or broke) the stream: its backend
                // work is cancelled too.
                if let Some(xid) = self.h2_xid(token, stream.0) {
                    self.drop_exchange(xid);
                    self.h2_forget(token, stream.0);
                }
                if let Some(c) = self.counters() {
                    c.http2_streams_reset.fetch_add(1, Ordering::Relaxed);
                }
            }
            Event::CapacityAvailable { stream } => {
                if let Some(xid) = self.h2_xid(token, stream.0)
                    && let Some(up) = self
                        .exchanges
                        .get(xid.0)
                        .and_then(|ex| ex.upstream())
                        .map(tok)
                {
                    self.h2_response_body(xid, up);
                    if matches!(self.conns.get(up.0), Some(Conn::Upstream(u)) if u.read_paused) {
                        self.ready.push_back(up);
                    }
                }
            }
            Event::GoAway { .. } => {}
            Event::ConnectionError { .. } => {
                if let Some(c) = self.counters() {
                    c.http2_goaways.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(Conn::Client(c)) = self.conns.get_mut(token.0) {
                    c.closing = true;
                }
            }
        }
    }

    fn h2_client(&mut self, token: Token) -> Option<&mut H2Client> {
        h2_client_in(&mut self.conns, token)
    }

    fn h2_xid(&self, token: Token, sid: u32) -> Option<ExchangeId> {
        match self.conns.get(token.0) {
            Some(Conn::Client(Client {
                state: ClientState::H2(h),
                ..
            })) => h.streams.get(&sid).copied(),
            _ => None,
        }
    }

    /// The stream is over for the reactor; the last one out starts the
    /// connection's idle clock again.
    fn h2_forget(&mut self, token: Token, sid: u32) {
        let at = self.now + self.snapshot.timeouts.keepalive;
        if let Some(Conn::Client(c)) = self.conns.get_mut(token.0)
            && let ClientState::H2(h) = &mut c.state
            && h.streams.remove(&sid).is_some()
            && h.streams.is_empty()
        {
            h.idle = Some(at);
            self.schedule_conn(token);
        }
    }

    /// Portier's own answer on a stream (not counted here).
    fn h2_answer(&mut self, token: Token, sid: u32, answer: &Answer, head_only: bool) {
        let header = self.snapshot.error_header.clone();
        if let Some(h) = self.h2_client(token) {
            let _ = answer.send_h2(&mut h.conn, StreamId(sid), &header, head_only);
        }
    }

    /// A new stream: the same routing and exchange as HTTP/1.1, with the
    /// request re-expressed as an HTTP/1.1 head for the backend.
    fn h2_request(&mut self, token: Token, stream: StreamId, req: H2Request, end_stream: bool) {
        let sid = stream.0;
        let head = match crate::http::h2::translate::to_h1(req, end_stream) {
            Ok(head) => head,
            Err(e) => {
                let id = self.request_uuid().to_string();
                self.count_response(e.status(), None);
                self.h2_answer(token, sid, &Answer::error(e, id), false);
                return;
            }
        };
        let body_kind = head.body;
        let body = match body_kind {
            BodyKind::None => RequestBody::None,
            kind => RequestBody::H2 {
                pending: Vec::new(),
                chunked: kind == BodyKind::Chunked,
                ended: false,
            },
        };
        let downstream = Downstream::H2(H2Stream::new(sid));
        match self.route(token, downstream, &head, body, self.now) {
            None => {}
            Some(Routed::Answer(a)) => {
                self.count_response(a.status, None);
                self.h2_answer(token, sid, &a, head.is_head());
            }
            Some(Routed::Proxy(ex)) => {
                let xid = ExchangeId(self.exchanges.insert(*ex));
                let Some(h) = self.h2_client(token) else {
                    self.drop_exchange(xid);
                    return;
                };
                h.streams.insert(sid, xid);
                // Not yet: a RST_STREAM later in the same input (rapid
                // reset, CVE-2023-44487) or a stream error the client caused
                // (MadeYouReset) then costs no backend connection.
                self.h2_undispatched.push((token, sid, xid));
            }
        }
    }

    /// Send the requests routed since `from` to their backends, except
    /// those whose stream ended meanwhile (their exchange is gone). Stream
    /// ids are never reused on a connection, so a stream still mapped to
    /// the same exchange is the same request.
    fn h2_dispatch_batch(&mut self, from: usize) {
        if self.h2_undispatched.len() <= from {
            return;
        }
        // Taken out while dispatching (kept for reuse, no allocation per
        // batch). Dispatching never routes a new request, so nothing is
        // pushed meanwhile.
        let mut list = std::mem::take(&mut self.h2_undispatched);
        for &(token, sid, xid) in &list[from..] {
            let closing = matches!(self.conns.get(token.0), Some(Conn::Client(c)) if c.closing);
            if closing {
                // The connection failed in this input: its close drops the
                // exchange with the others.
                continue;
            }
            if self.h2_xid(token, sid) == Some(xid) {
                self.dispatch(xid);
            } else if let Some(c) = self.counters() {
                c.http2_resets_before_dispatch
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        debug_assert!(self.h2_undispatched.is_empty());
        list.truncate(from);
        self.h2_undispatched = list;
    }

    /// Request bytes reached the backend: credit the client's window.
    pub(super) fn h2_release_request_capacity(&mut self, xid: ExchangeId, moved: usize) {
        let Some(ex) = self.exchanges.get_mut(xid.0) else {
            return;
        };
        if moved == 0 {
            return;
        }
        let pending_empty = matches!(&ex.route.body, RequestBody::H2 { pending, .. } if pending.is_empty())
            || matches!(ex.route.body, RequestBody::None);
        let client = tok(ex.route.client);
        let Some(s) = ex.h2_mut() else {
            return;
        };
        // Chunk framing makes `moved` a little larger than the payload.
        let credit = if pending_empty {
            s.unreleased
        } else {
            moved.min(s.unreleased)
        };
        s.unreleased -= credit;
        let sid = s.id;
        if let Some(h) = self.h2_client(client) {
            h.conn.release_capacity(StreamId(sid), credit);
        }
    }

    pub(super) fn h2_stream_finished(&mut self, client: Token, sid: u32) {
        self.h2_forget(client, sid);
        // Shutting down: the last stream done closes the connection.
        if self.is_draining()
            && let Some(Conn::Client(c)) = self.conns.get_mut(client.0)
            && let ClientState::H2(h) = &c.state
            && h.streams.is_empty()
            && h.conn.goaway_is_final()
        {
            c.closing = true;
        }
        self.h2_flush(client);
    }

    /// The stream's exchange failed: Portier's answer when no response
    /// started (`answer`), else RST_STREAM.
    pub(super) fn h2_fail_stream(
        &mut self,
        client: Token,
        sid: u32,
        answer: Option<Answer>,
        head_only: bool,
    ) {
        self.h2_forget(client, sid);
        match answer {
            Some(a) => self.h2_answer(client, sid, &a, head_only),
            None => {
                if let Some(h) = self.h2_client(client) {
                    h.conn.reset(StreamId(sid), ErrorCode::INTERNAL_ERROR);
                }
            }
        }
        self.h2_flush(client);
    }

    /// Can this stream take more response bytes now?
    pub(super) fn h2_stream_room(&self, xid: ExchangeId) -> bool {
        let Some(ex) = self.exchanges.get(xid.0) else {
            return false;
        };
        let Downstream::H2(s) = &ex.route.downstream else {
            return false;
        };
        match self.conns.get(ex.route.client.0) {
            Some(Conn::Client(Client {
                state: ClientState::H2(h),
                wbuf,
                ..
            })) => {
                s.stash.is_empty()
                    && wbuf.len() < HIGH_WATER
                    && h.conn.send_capacity(StreamId(s.id)) > 0
            }
            _ => false,
        }
    }

    /// The backend's response head, as HEADERS on the stream.
    pub(super) fn h2_response_head(
        &mut self,
        xid: ExchangeId,
        up: Token,
        mut head: ResponseHead,
    ) -> bool {
        if head.is_interim() {
            // 1xx are hop-by-hop here: the client gets the final response.
            return true;
        }
        if head.is_switching_protocols() {
            self.fail_exchange(xid, HttpError::UpstreamInvalidResponse);
            return false;
        }
        let (min_size, level) = (self.snapshot.gzip_min_size, self.snapshot.gzip_level);
        let Some(ex) = self.exchanges.get_mut(xid.0) else {
            return false;
        };
        let backend_kind = ex.begin_response(&mut head, self.now, min_size, level);
        // Borrowed as received: the connection machine drops what HTTP/2
        // forbids (connection-specific fields) and lowercases names as it
        // encodes, without a copy per field.
        let chunked = backend_kind == BodyKind::Chunked;
        let no_body = backend_kind == BodyKind::None;
        let (client, Some(sid)) = (tok(ex.route.client), ex.stream()) else {
            return false;
        };
        let extras = ex.response_extras();
        let extra = extras.pairs();
        let mut refs: Vec<(&str, &[u8])> = Vec::with_capacity(head.headers.len() + extra.len());
        refs.extend(
            head.headers
                .iter()
                .filter(|(n, _)| !(chunked && n.eq_ignore_ascii_case("content-length"))),
        );
        refs.extend(extra.iter().copied());
        // Through the slab alone: `refs` borrows from the exchanges.
        let sent = match h2_client_in(&mut self.conns, client) {
            Some(h) => h
                .conn
                .send_headers(StreamId(sid), head.status, &refs, no_body)
                .is_ok(),
            None => false,
        };
        if !sent {
            // The stream is gone (reset by the client meanwhile).
            self.drop_exchange(xid);
            self.h2_forget(client, sid);
            return false;
        }
        if let Some(Conn::Upstream(u)) = self.conns.get_mut(up.0) {
            u.conn.head(&head);
        }
        if no_body {
            self.finish_exchange(xid);
            return false;
        }
        if let Some(ex) = self.exchanges.get_mut(xid.0) {
            ex.decoder = Some(BodyDecoder::for_response(
                backend_kind,
                &self.snapshot.limits,
            ));
        }
        self.h2_flush(client);
        true
    }

    /// Stream response payload as DATA within the stream's send window:
    /// decode and compress (the shared pipeline) only as much as the window
    /// takes, keep the rest in the stream's stash.
    pub(super) fn h2_response_body(&mut self, xid: ExchangeId, up: Token) {
        let Some(ex) = self.exchanges.get_mut(xid.0) else {
            return;
        };
        let client = tok(ex.route.client);
        let Some((Conn::Upstream(u), Conn::Client(c))) = self.conns.get2_mut(up.0, client.0) else {
            return;
        };
        let ClientState::H2(h) = &mut c.state else {
            return;
        };
        let crate::exchange::Exchange {
            route:
                crate::exchange::Route {
                    downstream: Downstream::H2(s),
                    log,
                    ..
                },
            decoder: Some(dec),
            out,
            ..
        } = ex
        else {
            return;
        };
        let sid = StreamId(s.id);
        let mut failed = false;
        loop {
            if s.stash.is_empty() && !s.body_done {
                let room = h.conn.send_capacity(sid).min(HIGH_WATER);
                if u.rbuf.is_empty() && !u.eof {
                    break;
                }
                if room == 0 {
                    // Out of window before the first byte: be woken when it
                    // opens, and stop reading this backend meanwhile.
                    h.conn.want_capacity(sid);
                    u.read_paused = true;
                    break;
                }
                match pump(dec, out, &u.rbuf, u.eof, &mut s.stash, room) {
                    Ok(p) => {
                        u.rbuf.drain(..p.consumed);
                        s.body_done = p.done;
                        if p.consumed == 0 && !p.done && s.stash.is_empty() {
                            break;
                        }
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            let taken = h.conn.send_data(sid, &s.stash, s.body_done);
            s.stash.drain(..taken);
            if let Some(l) = log.as_mut() {
                l.bytes += taken as u64;
            }
            if !s.stash.is_empty() || s.body_done {
                break;
            }
        }
        let (stash_left, done, sid) = (!s.stash.is_empty(), s.body_done, s.id);
        if failed {
            self.drop_exchange(xid);
            self.h2_fail_stream(client, sid, None, false);
            return;
        }
        if stash_left {
            // Out of window: stop reading this backend until it opens.
            u.read_paused = true;
        }
        if done && !stash_left {
            // Counted before the last frames leave (finishing flushes).
            self.finish_exchange(xid);
        } else {
            self.h2_flush(client);
        }
    }

    /// Client-side buffers drained: resume the streams' backends that were
    /// waiting for room.
    pub(super) fn h2_resume_paused(&mut self, token: Token) {
        let Some(Conn::Client(Client {
            state: ClientState::H2(h),
            ..
        })) = self.conns.get(token.0)
        else {
            return;
        };
        // Disjoint fields: no list of tokens is built on the way.
        let (conns, exchanges, ready) = (&self.conns, &self.exchanges, &mut self.ready);
        for x in h.streams.values() {
            if let Some(up) = exchanges.get(x.0).and_then(|ex| ex.upstream()).map(tok)
                && matches!(conns.get(up.0), Some(Conn::Upstream(u)) if u.read_paused)
            {
                ready.push_back(up);
            }
        }
    }
}

/// The HTTP/2 client connection at `token` in `conns`, if that is what it is.
fn h2_client_in(conns: &mut slab::Slab<Conn>, token: Token) -> Option<&mut H2Client> {
    match conns.get_mut(token.0) {
        Some(Conn::Client(Client {
            state: ClientState::H2(h),
            ..
        })) => Some(h),
        _ => None,
    }
}
