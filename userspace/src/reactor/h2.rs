//! HTTP/2 client connections in the reactor: the sans-IO
//! `http::h2::ServerConn` fed from the TLS plaintext, each stream an
//! exchange on the shared request path (routing, queue, round-robin,
//! backend pool), its HTTP/1.1 response re-framed as HEADERS and DATA.
//!
//! Backpressure both ways: request DATA is credited back to the client
//! (WINDOW_UPDATE) only as it is forwarded to the backend; a response
//! stream whose send window is empty stops reading its backend until the
//! client opens the window again.

use std::sync::atomic::Ordering;

use mio::Token;

use super::conn::*;
use super::exchange::Routed;
use super::proxy::{Reactor, UNKNOWN_HOST};
use crate::http::h1::{
    BodyDecoder, BodyKind, Host, RequestHead, ResponseHead, encode_chunk, encode_last_chunk,
};
use crate::http::h2::{ErrorCode, Event, H2Request, H2Settings, ServerConn, StreamId};

/// Response header fields that do not exist in HTTP/2 (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

impl Reactor {
    /// Once per TLS connection, when the handshake completes: count it
    /// (version, resumption) and switch a client that negotiated `h2`.
    pub(super) fn after_handshake(&mut self, token: Token) {
        let limits = self.snapshot.limits;
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        let Some(tls) = c.tls.as_ref() else {
            return;
        };
        if c.handshake_seen || tls.is_handshaking() {
            return;
        }
        c.handshake_seen = true;
        let v13 = tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
        let resumed = matches!(tls.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
        let h2 = tls.alpn_protocol() == Some(b"h2");
        let became_h2 = h2 && matches!(c.state, ClientState::Idle);
        if became_h2 {
            c.state = ClientState::H2(Box::new(H2Client {
                conn: ServerConn::new(H2Settings::default(), limits),
                streams: Default::default(),
            }));
            c.head_started = None;
        }
        if let Some(counters) = self.counters() {
            let version = if v13 {
                &counters.tls_handshakes_tls13
            } else {
                &counters.tls_handshakes_tls12
            };
            version.fetch_add(1, Ordering::Relaxed);
            if resumed {
                counters
                    .tls_handshakes_resumed
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        if became_h2 {
            // From here the connection's clock is the keep-alive idle
            // timeout, not the header timeout armed at accept.
            let at = self.now + self.snapshot.timeouts.keepalive;
            self.arm(token, at);
        }
    }

    /// Feed buffered bytes to the connection machine and act on its events.
    pub(super) fn h2_progress(&mut self, token: Token) {
        loop {
            let now = self.now;
            let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
                return;
            };
            let ClientState::H2(h) = &mut c.state else {
                return;
            };
            let used = h.conn.handle_input(&c.rbuf, now);
            c.rbuf.drain(..used);
            let mut events = Vec::new();
            while let Some(ev) = h.conn.poll_event() {
                events.push(ev);
            }
            if events.is_empty() {
                break;
            }
            for ev in events {
                self.h2_event(token, ev);
            }
            if used == 0 {
                break;
            }
        }
        self.h2_flush(token);
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        if c.eof && c.rbuf.is_empty() {
            c.close_after_flush = true;
            self.client_flush(token);
        } else if c.read_paused && c.rbuf.len() < HIGH_WATER {
            // Reading stopped at the buffer limit; the machine took bytes.
            self.ready.push_back(token);
        }
    }

    /// Move frames the machine produced to the socket; close a finished
    /// connection once everything is out.
    pub(super) fn h2_flush(&mut self, token: Token) {
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        let ClientState::H2(h) = &mut c.state else {
            return;
        };
        h.conn.poll_output(&mut c.wbuf);
        if h.conn.is_closed() {
            c.close_after_flush = true;
        }
        self.client_flush(token);
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
                if let Some(ex) = self.exchanges.get_mut(xid)
                    && let RequestBody::H2 {
                        pending,
                        chunked,
                        ended,
                    } = &mut ex.body
                {
                    ex.h2_unreleased += data.len();
                    if *chunked {
                        if !data.is_empty() {
                            encode_chunk(&data, pending);
                        }
                        if end_stream {
                            encode_last_chunk(pending);
                        }
                    } else {
                        pending.extend_from_slice(&data);
                    }
                    *ended |= end_stream;
                }
                self.pump_request_body(xid);
            }
            Event::Trailers { stream, .. } => {
                let Some(xid) = self.h2_xid(token, stream.0) else {
                    return;
                };
                if let Some(ex) = self.exchanges.get_mut(xid)
                    && let RequestBody::H2 {
                        pending,
                        chunked,
                        ended,
                    } = &mut ex.body
                {
                    if *chunked && !*ended {
                        encode_last_chunk(pending);
                    }
                    *ended = true;
                }
                self.pump_request_body(xid);
            }
            Event::Rejected { stream, error } => {
                if let Some(xid) = self.h2_xid(token, stream.0) {
                    self.drop_exchange(xid);
                    self.h2_forget(token, stream.0);
                }
                let header = self.snapshot.error_header.clone();
                self.count_response(error.status(), None);
                if let Some(h) = self.h2_client(token) {
                    let _ = h.conn.reject(stream, error.status(), error.code(), &header);
                }
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
                    && let Some(up) = self.exchanges.get(xid).and_then(|ex| ex.upstream)
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
                    c.close_after_flush = true;
                }
            }
        }
    }

    fn h2_client(&mut self, token: Token) -> Option<&mut H2Client> {
        match self.conns.get_mut(token.0) {
            Some(Conn::Client(Client {
                state: ClientState::H2(h),
                ..
            })) => Some(h),
            _ => None,
        }
    }

    fn h2_xid(&self, token: Token, sid: u32) -> Option<usize> {
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
        if let Some(h) = self.h2_client(token)
            && h.streams.remove(&sid).is_some()
            && h.streams.is_empty()
        {
            let at = self.now + self.snapshot.timeouts.keepalive;
            self.arm(token, at);
        }
    }

    /// A new stream: the same routing and exchange as HTTP/1.1, with the
    /// request re-expressed as an HTTP/1.1 head for the backend.
    fn h2_request(&mut self, token: Token, stream: StreamId, req: H2Request, end_stream: bool) {
        let sid = stream.0;
        let Ok(host) = crate::http::h1::parse_host(req.authority.as_bytes()) else {
            let header = self.snapshot.error_header.clone();
            if let Some(h) = self.h2_client(token) {
                let _ = h.conn.reject(stream, 400, "invalid_host", &header);
            }
            return;
        };
        let body_kind = match (end_stream, req.content_length) {
            (true, _) => BodyKind::None,
            (false, Some(n)) => BodyKind::Length(n),
            (false, None) => BodyKind::Chunked,
        };
        let mut headers = Vec::with_capacity(req.headers.len() + 1);
        headers.push(("host".to_string(), req.authority.clone().into_bytes()));
        headers.extend(req.headers);
        let head = RequestHead {
            method: req.method,
            target: req.path,
            version: 1,
            headers,
            body: body_kind,
            keep_alive: true,
            expect_continue: false,
            upgrade: None,
            host: Some(Host {
                name: host.name,
                port: host.port,
                raw: req.authority,
            }),
        };
        let body = match body_kind {
            BodyKind::None => RequestBody::None,
            kind => RequestBody::H2 {
                pending: Vec::new(),
                chunked: kind == BodyKind::Chunked,
                ended: false,
            },
        };
        match self.route(token, sid, &head, body) {
            None => {}
            Some(Routed::NotFound { request_id }) => {
                let header = self.snapshot.error_header.clone();
                self.count_response(UNKNOWN_HOST.0, None);
                if let Some(h) = self.h2_client(token) {
                    let _ = h
                        .conn
                        .reject(stream, UNKNOWN_HOST.0, UNKNOWN_HOST.1, &header);
                }
                let _ = request_id;
            }
            Some(Routed::Redirect {
                location,
                request_id,
            }) => {
                self.count_response(301, None);
                if let Some(h) = self.h2_client(token) {
                    let _ = h.conn.send_headers(
                        stream,
                        301,
                        &[
                            ("location", location.as_bytes()),
                            ("x-request-id", request_id.as_bytes()),
                        ],
                        true,
                    );
                }
            }
            Some(Routed::Proxy(ex)) => {
                let xid = self.exchanges.insert(*ex);
                if let Some(h) = self.h2_client(token) {
                    h.streams.insert(sid, xid);
                }
                self.dispatch(xid);
            }
        }
    }

    /// Request bytes reached the backend: credit the client's window.
    pub(super) fn h2_release_request_capacity(&mut self, xid: usize, moved: usize) {
        let Some(ex) = self.exchanges.get_mut(xid) else {
            return;
        };
        if ex.sid == 0 || moved == 0 {
            return;
        }
        let pending_empty = matches!(&ex.body, RequestBody::H2 { pending, .. } if pending.is_empty())
            || matches!(ex.body, RequestBody::None);
        // Chunk framing makes `moved` a little larger than the payload.
        let credit = if pending_empty {
            ex.h2_unreleased
        } else {
            moved.min(ex.h2_unreleased)
        };
        ex.h2_unreleased -= credit;
        let (client, sid) = (ex.client, ex.sid);
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
        {
            c.close_after_flush = true;
        }
        self.h2_flush(client);
    }

    pub(super) fn h2_fail_stream(
        &mut self,
        client: Token,
        sid: u32,
        status: u16,
        code: &str,
        _id: &str,
        started: bool,
    ) {
        let header = self.snapshot.error_header.clone();
        self.h2_forget(client, sid);
        if let Some(h) = self.h2_client(client) {
            if started {
                h.conn.reset(StreamId(sid), ErrorCode::INTERNAL_ERROR);
            } else {
                let _ = h.conn.reject(StreamId(sid), status, code, &header);
            }
        }
        self.h2_flush(client);
    }

    pub(super) fn h2_reset_stream(&mut self, client: Token, sid: u32) {
        self.h2_forget(client, sid);
        if let Some(h) = self.h2_client(client) {
            h.conn.reset(StreamId(sid), ErrorCode::INTERNAL_ERROR);
        }
        self.h2_flush(client);
    }

    /// Can this stream take more response bytes now?
    pub(super) fn h2_stream_room(&self, client: Token, sid: u32) -> bool {
        match self.conns.get(client.0) {
            Some(Conn::Client(Client {
                state: ClientState::H2(h),
                wbuf,
                ..
            })) => {
                let stash_empty = h
                    .streams
                    .get(&sid)
                    .and_then(|x| self.exchanges.get(*x))
                    .is_none_or(|ex| ex.h2_stash.is_empty());
                stash_empty && wbuf.len() < HIGH_WATER && h.conn.send_capacity(StreamId(sid)) > 0
            }
            _ => false,
        }
    }

    /// The backend's response head, as HEADERS on the stream.
    pub(super) fn h2_response_head(
        &mut self,
        xid: usize,
        up: Token,
        mut head: ResponseHead,
    ) -> bool {
        if head.is_interim() {
            // 1xx are hop-by-hop here: the client gets the final response.
            return true;
        }
        if head.is_switching_protocols() {
            let e = crate::http::HttpError::UpstreamInvalidResponse;
            self.fail_exchange(xid, (e.status(), e.code()), true);
            return false;
        }
        let (min_size, level) = (self.snapshot.gzip_min_size, self.snapshot.gzip_level);
        let Some(ex) = self.exchanges.get_mut(xid) else {
            return false;
        };
        let backend_kind = ex.begin_response(&mut head, self.now, min_size, level);
        let mut fields: Vec<(String, Vec<u8>)> = head
            .headers
            .iter()
            .filter(|(n, _)| {
                !CONNECTION_SPECIFIC
                    .iter()
                    .any(|c| n.eq_ignore_ascii_case(c))
            })
            .filter(|(n, _)| {
                !(n.eq_ignore_ascii_case("content-length") && backend_kind == BodyKind::Chunked)
            })
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect();
        fields.extend(
            ex.response_extras()
                .into_iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v)),
        );
        let refs: Vec<(&str, &[u8])> = fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let no_body = backend_kind == BodyKind::None;
        let (client, sid) = (ex.client, ex.sid);
        let sent = match self.h2_client(client) {
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
            u.resp_keep_alive = head.keep_alive;
        }
        if no_body {
            self.finish_exchange(xid);
            return false;
        }
        if let Some(Conn::Upstream(u)) = self.conns.get_mut(up.0) {
            u.resp = ResponseState::Body(BodyDecoder::for_response(
                backend_kind,
                &self.snapshot.limits,
            ));
        }
        let at = self.now + self.snapshot.timeouts.read;
        self.arm(up, at);
        self.h2_flush(client);
        true
    }

    /// Stream response payload as DATA within the stream's send window.
    pub(super) fn h2_response_body(&mut self, xid: usize, up: Token) {
        let mut done = false;
        let mut failed = false;
        loop {
            let Some(ex) = self.exchanges.get_mut(xid) else {
                return;
            };
            let (client, sid) = (ex.client, ex.sid);
            // First what is already waiting for window.
            if !ex.h2_stash.is_empty() || done {
                let Some(Conn::Client(Client {
                    state: ClientState::H2(h),
                    ..
                })) = self.conns.get_mut(client.0)
                else {
                    return;
                };
                let taken = h.conn.send_data(StreamId(sid), &ex.h2_stash, done);
                ex.h2_stash.drain(..taken);
                if let Some(l) = ex.log.as_mut() {
                    l.bytes += taken as u64;
                }
                if !ex.h2_stash.is_empty() {
                    break;
                }
                if done {
                    break;
                }
            }
            let Some(Conn::Upstream(u)) = self.conns.get_mut(up.0) else {
                return;
            };
            let ResponseState::Body(dec) = &mut u.resp else {
                return;
            };
            if u.rbuf.is_empty() {
                if u.eof {
                    match dec.handle_eof() {
                        Ok(()) => {
                            done = true;
                            finish_out(&mut ex.out, &mut ex.h2_stash);
                            continue;
                        }
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
                break;
            }
            match dec.decode(&u.rbuf) {
                Ok(d) => {
                    if let Some(r) = d.data.clone() {
                        let payload = &u.rbuf[r];
                        match &mut ex.out {
                            OutMode::Gzip { gz, .. } => gz.push(payload, false, &mut ex.h2_stash),
                            _ => ex.h2_stash.extend_from_slice(payload),
                        }
                    }
                    u.rbuf.drain(..d.consumed);
                    if d.done {
                        done = true;
                        finish_out(&mut ex.out, &mut ex.h2_stash);
                    } else if d.consumed == 0 {
                        break;
                    }
                }
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        // A compressed stream pushes out what it has so far.
        if !done
            && !failed
            && let Some(ex) = self.exchanges.get_mut(xid)
            && ex.h2_stash.is_empty()
            && let OutMode::Gzip { gz, .. } = &mut ex.out
        {
            gz.push(&[], true, &mut ex.h2_stash);
            let (client, sid) = (ex.client, ex.sid);
            if let Some(Conn::Client(Client {
                state: ClientState::H2(h),
                ..
            })) = self.conns.get_mut(client.0)
            {
                let taken = h.conn.send_data(StreamId(sid), &ex.h2_stash, false);
                ex.h2_stash.drain(..taken);
                if let Some(l) = ex.log.as_mut() {
                    l.bytes += taken as u64;
                }
            }
        }
        let Some(ex) = self.exchanges.get(xid) else {
            return;
        };
        let (client, sid, stash_left) = (ex.client, ex.sid, !ex.h2_stash.is_empty());
        if failed {
            self.drop_exchange(xid);
            self.h2_reset_stream(client, sid);
            return;
        }
        if stash_left && let Some(Conn::Upstream(u)) = self.conns.get_mut(up.0) {
            // Out of window: stop reading this backend until it opens.
            u.read_paused = true;
        }
        if done && !stash_left {
            // Counted before the last frames leave (finishing flushes).
            self.finish_exchange(xid);
        } else {
            self.h2_flush(client);
            let at = self.now + self.snapshot.timeouts.read;
            self.arm(up, at);
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
        let ups: Vec<Token> = h
            .streams
            .values()
            .filter_map(|x| self.exchanges.get(*x).and_then(|ex| ex.upstream))
            .collect();
        for up in ups {
            if matches!(self.conns.get(up.0), Some(Conn::Upstream(u)) if u.read_paused) {
                self.ready.push_back(up);
            }
        }
    }

    /// The connection is closing: every stream's exchange goes with it.
    pub(super) fn h2_drop_all(&mut self, h: H2Client) {
        for xid in h.streams.into_values() {
            self.drop_exchange(xid);
        }
    }
}

/// The end of a response body: a gzip stream writes its trailer.
fn finish_out(out: &mut OutMode, stash: &mut Vec<u8>) {
    if let OutMode::Gzip { .. } = out
        && let OutMode::Gzip { gz, .. } =
            std::mem::replace(out, OutMode::Payload { chunked: false })
    {
        gz.finish(stash);
    }
}
