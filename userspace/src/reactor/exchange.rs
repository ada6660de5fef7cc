//! A request's journey inside the reactor: routed, queued, given a backend
//! connection (pooled or new), its body pumped, its end or failure. Works on
//! exchange ids, so an HTTP/1.1 connection (one exchange at a time) and an
//! HTTP/2 connection (one per stream) share all of it.

use std::time::UNIX_EPOCH;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::conn::*;
use super::proxy::{ALL_DOWN, QUEUE_FULL, Reactor, UNKNOWN_HOST};
use crate::http::HttpError;
use crate::http::forward::{ForwardInput, Scheme, forward_headers};
use crate::http::h1::{BodyDecoder, BodyKind, RequestHead, encode_request_head, error_response};
use crate::router::Decision;
use crate::sched::balance::{BackendId, Pick};

pub(super) fn app_key(b: &std::sync::Arc<crate::sched::balance::Balancer>) -> usize {
    std::sync::Arc::as_ptr(b) as usize
}

/// What the router and the forwarding rules made of a request head.
pub(super) enum Routed {
    Proxy(Box<Exchange>),
    Redirect {
        location: String,
        request_id: String,
    },
    NotFound {
        request_id: String,
    },
}

impl Reactor {
    /// Route a request head and build its exchange (not yet in the slab).
    /// `head.body` says how the backend will see the body.
    pub(super) fn route(
        &mut self,
        token: Token,
        sid: u32,
        head: &RequestHead,
        body: RequestBody,
    ) -> Option<Routed> {
        let snap = self.snapshot.clone();
        let generated_id = self.request_uuid();
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return None;
        };
        let https = c.scheme == Scheme::Https;
        let decision = crate::router::decide(
            &snap,
            head.host.as_ref().map(|h| h.name.as_str()),
            &head.target,
            https,
        );
        let incoming_xff: Vec<&[u8]> = head.header_values("x-forwarded-for").collect();
        let start = c.head_started.map_or(self.wall, |(_, w)| w);
        let since = start.duration_since(UNIX_EPOCH).unwrap_or_default();
        let fwd = forward_headers(&ForwardInput {
            peer_ip: c.peer.ip(),
            peer_trusted: snap.is_trusted(c.peer.ip()),
            incoming_xff: &incoming_xff,
            scheme: c.scheme,
            port: c.port,
            incoming_request_id: head.header("x-request-id"),
            generated_id,
            start: (since.as_secs(), since.subsec_millis()),
        });
        let started = if sid == 0 {
            c.head_started.map_or(self.now, |(t, _)| t)
        } else {
            self.now
        };
        if sid == 0 {
            c.head_started = None;
        }
        let app = match decision {
            Decision::Proxy(app) => app,
            Decision::NotFound => {
                return Some(Routed::NotFound {
                    request_id: fwd.request_id,
                });
            }
            Decision::Redirect(location) => {
                return Some(Routed::Redirect {
                    location,
                    request_id: fwd.request_id,
                });
            }
        };
        let mut encoded = Vec::with_capacity(512);
        encode_request_head(head, &fwd.fields(), &mut encoded);
        let log = self.shared.access_log.as_ref().map(|_| {
            let tls = c.tls.as_ref().and_then(|t| match t.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => Some("TLSv1.3"),
                Some(rustls::ProtocolVersion::TLSv1_2) => Some("TLSv1.2"),
                _ => None,
            });
            Box::new(LogInfo {
                app: app.name.clone(),
                host: head
                    .host
                    .as_ref()
                    .map(|h| h.name.clone())
                    .unwrap_or_default(),
                method: head.method.clone(),
                path: head.target.clone(),
                tls,
                picked: None,
                connected: None,
                head: None,
                bytes: 0,
            })
        });
        let gzip_ok =
            app.compress && crate::compress::accepts_gzip(head.header_values("accept-encoding"));
        Some(Routed::Proxy(Box::new(Exchange {
            app_stats: app.stats.clone(),
            method: head.method.as_str().into(),
            client: token,
            started,
            status: 0,
            sid,
            balancer: app.balancer.clone(),
            head: encoded,
            body,
            is_head: head.is_head(),
            idempotent: head.body == BodyKind::None
                && matches!(
                    head.method.as_str(),
                    "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
                ),
            upgrade: head.upgrade.is_some(),
            client_version: head.version,
            keep_alive: head.keep_alive,
            request_id: fwd.request_id,
            hsts: if https { app.hsts.clone() } else { None },
            preferred: app
                .sticky
                .as_ref()
                .and_then(|st| st.backend_for(head.header_values("cookie"))),
            sticky: app.sticky.clone(),
            secure: https,
            gzip_ok,
            upstream: None,
            backend: None,
            tried: Vec::new(),
            attempts: 0,
            queued: false,
            response_started: false,
            out: OutMode::Raw,
            h2_stash: Vec::new(),
            h2_unreleased: 0,
            log,
        })))
    }

    /// A complete HTTP/1.x request head.
    pub(super) fn start_h1_exchange(&mut self, token: Token, head: RequestHead) {
        let body = match head.body {
            BodyKind::None => RequestBody::None,
            kind => RequestBody::H1(BodyDecoder::for_request(kind, &self.snapshot.limits)),
        };
        let close_after = head.body != BodyKind::None || !head.keep_alive;
        match self.route(token, 0, &head, body) {
            None => {}
            Some(Routed::NotFound { request_id }) => {
                self.respond_error_plain(token, UNKNOWN_HOST, close_after, Some(request_id));
            }
            Some(Routed::Redirect {
                location,
                request_id,
            }) => {
                self.respond_redirect(token, &location, &request_id, close_after, head.is_head());
            }
            Some(Routed::Proxy(ex)) => {
                let xid = self.exchanges.insert(*ex);
                if let Some(Conn::Client(c)) = self.conns.get_mut(token.0) {
                    c.state = ClientState::Busy(xid);
                }
                self.disarm(token);
                self.dispatch(xid);
            }
        }
    }

    // ---- scheduling -------------------------------------------------------

    /// Find a backend for the exchange, or queue it, or refuse it.
    pub(super) fn dispatch(&mut self, xid: usize) {
        let Some(ex) = self.exchanges.get_mut(xid) else {
            return;
        };
        ex.attempts += 1;
        if ex.attempts > ex.balancer.backends().len() as u32 + 2 {
            self.fail_exchange(xid, ALL_DOWN, true);
            return;
        }
        // Requests already waiting go first: a newcomer queues behind them.
        let pick = if !ex.queued && ex.tried.is_empty() && ex.balancer.queue_depth() > 0 {
            Pick::Busy
        } else if let Some(id) = ex
            .preferred
            .filter(|p| !ex.tried.contains(p))
            .and_then(|p| ex.balancer.pick_exactly(p))
        {
            // The client's sticky backend, healthy and with room.
            Pick::Backend(id)
        } else {
            ex.balancer.pick(&ex.tried)
        };
        match pick {
            Pick::Backend(id) => {
                if ex.queued {
                    ex.queued = false;
                    ex.balancer.dequeued();
                }
                self.attach_upstream(xid, id);
            }
            Pick::Busy if ex.queued => {}
            Pick::Busy => {
                if ex.balancer.try_enqueue() {
                    ex.queued = true;
                    ex.attempts -= 1;
                    let key = app_key(&ex.balancer);
                    let client = ex.client;
                    self.queues.entry(key).or_default().push_back(xid);
                    let at = self.now + self.snapshot.timeouts.queue;
                    self.arm(client, at);
                } else {
                    self.fail_exchange(xid, QUEUE_FULL, false);
                }
            }
            Pick::AllDown => self.fail_exchange(xid, ALL_DOWN, false),
        }
    }

    /// Queued requests, oldest first, take capacity wherever it appeared.
    pub(super) fn serve_queues(&mut self) {
        let keys: Vec<usize> = self
            .queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            while let Some(&xid) = self.queues.get(&key).and_then(|q| q.front()) {
                let pick = match self.exchanges.get(xid) {
                    Some(ex) if ex.queued => ex.balancer.pick(&ex.tried),
                    _ => {
                        // Gone or already served: drop the stale entry.
                        if let Some(q) = self.queues.get_mut(&key) {
                            q.pop_front();
                        }
                        continue;
                    }
                };
                match pick {
                    Pick::Busy => break,
                    Pick::Backend(id) => {
                        if let Some(q) = self.queues.get_mut(&key) {
                            q.pop_front();
                        }
                        let mut client = None;
                        if let Some(ex) = self.exchanges.get_mut(xid) {
                            ex.queued = false;
                            ex.balancer.dequeued();
                            client = Some(ex.client);
                        }
                        if let Some(c) = client {
                            self.disarm(c);
                        }
                        self.attach_upstream(xid, id);
                    }
                    Pick::AllDown => self.fail_exchange(xid, ALL_DOWN, false),
                }
            }
        }
    }

    pub(super) fn leave_queue(&mut self, xid: usize) {
        let Some(ex) = self.exchanges.get_mut(xid) else {
            return;
        };
        if !ex.queued {
            return;
        }
        ex.queued = false;
        ex.balancer.dequeued();
        let key = app_key(&ex.balancer);
        if let Some(q) = self.queues.get_mut(&key) {
            q.retain(|x| *x != xid);
        }
    }

    /// Give the exchange a connection to backend `id` (pooled or new) and
    /// start writing the request.
    fn attach_upstream(&mut self, xid: usize, id: BackendId) {
        let Some(ex) = self.exchanges.get_mut(xid) else {
            return;
        };
        let balancer = ex.balancer.clone();
        let Some(addr) = balancer.backend(id).map(|b| b.addr) else {
            balancer.release(id);
            self.fail_exchange(xid, ALL_DOWN, true);
            return;
        };
        ex.backend = Some(id);
        if let Some(l) = ex.log.as_mut() {
            l.picked.get_or_insert(self.now);
        }
        let head = ex.head.clone();
        let timeouts = self.snapshot.timeouts;

        // A pooled connection, unless the backend closed it meanwhile.
        let mut pooled = None;
        while let Some(t) = self.idle.get_mut(&addr).and_then(|v| v.pop()) {
            match self.conns.get(t.0) {
                Some(Conn::Upstream(u))
                    if !u.eof && u.exchange.is_none() && u.tunnel_client.is_none() =>
                {
                    pooled = Some(t);
                    break;
                }
                Some(Conn::Upstream(_)) => self.close_upstream(t),
                _ => {}
            }
        }
        let up = match pooled {
            Some(t) => {
                if let Some(l) = self.exchanges.get_mut(xid).and_then(|ex| ex.log.as_mut()) {
                    l.connected = Some(self.now);
                }
                if let Some(Conn::Upstream(u)) = self.conns.get_mut(t.0) {
                    u.exchange = Some(xid);
                    u.reused = true;
                    u.backend = id;
                    u.balancer = balancer.clone();
                    u.resp = ResponseState::Head;
                    u.written = 0;
                    u.wbuf.extend_from_slice(&head);
                }
                self.arm(t, self.now + timeouts.read);
                t
            }
            None => match TcpStream::connect(addr) {
                Ok(mut sock) => {
                    let _ = sock.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    let t = Token(entry.key());
                    if self
                        .poll
                        .registry()
                        .register(&mut sock, t, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        self.backend_failed_early(xid, id, true);
                        return;
                    }
                    entry.insert(Conn::Upstream(Box::new(Upstream {
                        sock,
                        addr,
                        balancer: balancer.clone(),
                        backend: id,
                        exchange: Some(xid),
                        tunnel_client: None,
                        connecting: true,
                        reused: false,
                        wbuf: head,
                        rbuf: Vec::new(),
                        resp: ResponseState::Head,
                        resp_keep_alive: true,
                        written: 0,
                        eof: false,
                        read_paused: false,
                        deadline: Default::default(),
                    })));
                    self.arm(t, self.now + timeouts.connect);
                    t
                }
                Err(_) => {
                    self.backend_failed_early(xid, id, true);
                    return;
                }
            },
        };
        if let Some(ex) = self.exchanges.get_mut(xid) {
            ex.upstream = Some(up);
        }
        self.pump_request_body(xid);
        self.upstream_flush(up);
    }

    /// The backend failed before any byte of the request reached it: try
    /// another one. `quarantine`: it refused or reset a fresh connection.
    pub(super) fn backend_failed_early(&mut self, xid: usize, id: BackendId, quarantine: bool) {
        let now_ms = self.shared.now_ms(self.now);
        let Some(ex) = self.exchanges.get_mut(xid) else {
            return;
        };
        ex.balancer.release(id);
        if quarantine {
            ex.balancer.quarantine(id, now_ms);
            ex.tried.push(id);
        }
        ex.upstream = None;
        ex.backend = None;
        self.dispatch(xid);
    }

    /// Move request-body bytes from the client to the exchange's backend and
    /// write them, as long as both sides make progress.
    pub(super) fn pump_request_body(&mut self, xid: usize) {
        loop {
            let Some(ex) = self.exchanges.get_mut(xid) else {
                return;
            };
            let Some(up) = ex.upstream else {
                return;
            };
            let client = ex.client;
            let mut moved = 0;
            let mut failed: Option<HttpError> = None;
            match &mut ex.body {
                RequestBody::None => return,
                RequestBody::H2 { pending, ended, .. } => {
                    let Some(Conn::Upstream(u)) = self.conns.get_mut(up.0) else {
                        return;
                    };
                    let n = pending.len().min(HIGH_WATER.saturating_sub(u.wbuf.len()));
                    u.wbuf.extend_from_slice(&pending[..n]);
                    pending.drain(..n);
                    moved = n;
                    if *ended && pending.is_empty() {
                        ex.body = RequestBody::None;
                    }
                    let _ = n;
                }
                RequestBody::H1(dec) => {
                    let Some((Conn::Client(c), Conn::Upstream(u))) =
                        self.conns.get2_mut(client.0, up.0)
                    else {
                        return;
                    };
                    let mut done = false;
                    while !c.rbuf.is_empty() && u.wbuf.len() < HIGH_WATER {
                        match dec.decode(&c.rbuf) {
                            Ok(d) => {
                                u.wbuf.extend_from_slice(&c.rbuf[..d.consumed]);
                                c.rbuf.drain(..d.consumed);
                                moved += d.consumed;
                                if d.done {
                                    done = true;
                                    break;
                                }
                                if d.consumed == 0 {
                                    break;
                                }
                            }
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    if done {
                        ex.body = RequestBody::None;
                    }
                }
            }
            if let Some(e) = failed {
                self.fail_exchange(xid, (e.status(), e.code()), true);
                return;
            }
            self.h2_release_request_capacity(xid, moved);
            self.upstream_write(up);
            let upstream_full = match self.conns.get(up.0) {
                Some(Conn::Upstream(u)) => u.wbuf.len() >= HIGH_WATER || u.connecting,
                _ => true,
            };
            if moved == 0 || upstream_full {
                break;
            }
        }
        // Room in our buffer again: the client may have more to give.
        let Some(client) = self.exchanges.get(xid).map(|ex| ex.client) else {
            return;
        };
        if matches!(self.conns.get(client.0), Some(Conn::Client(c)) if c.read_paused && c.rbuf.len() < HIGH_WATER)
        {
            self.ready.push_back(client);
        }
    }

    /// The response is complete: pool or close the backend connection, give
    /// back the slot, and let the client go on.
    pub(super) fn finish_exchange(&mut self, xid: usize) {
        let Some(ex) = self.exchanges.try_remove(xid) else {
            return;
        };
        self.count_response(ex.status, Some(ex.started));
        ex.app_stats.count(&ex.method, ex.status);
        self.access_log(&ex, ex.status);
        if let Some(c) = self.counters() {
            let proto = if ex.sid == 0 {
                &c.http1_requests
            } else {
                &c.http2_requests
            };
            proto.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(id) = ex.backend {
            ex.balancer.release(id);
        }
        let request_done = ex.body.is_done();
        if let Some(up) = ex.upstream {
            let reusable = match self.conns.get(up.0) {
                Some(Conn::Upstream(u)) => {
                    u.resp_keep_alive
                        && !u.eof
                        && request_done
                        && u.rbuf.is_empty()
                        && u.wbuf.is_empty()
                }
                _ => false,
            };
            if reusable {
                let mut addr = None;
                if let Some(Conn::Upstream(u)) = self.conns.get_mut(up.0) {
                    u.exchange = None;
                    u.resp = ResponseState::Head;
                    u.reused = true;
                    u.rbuf = Vec::new();
                    u.wbuf = Vec::new();
                    addr = Some(u.addr);
                }
                if let Some(addr) = addr {
                    self.idle.entry(addr).or_default().push(up);
                }
                let at = self.now + self.snapshot.timeouts.backend_keepalive;
                self.arm(up, at);
            } else {
                if let Some(Conn::Upstream(u)) = self.conns.get_mut(up.0) {
                    u.exchange = None;
                }
                self.close_upstream(up);
            }
        }
        if ex.sid != 0 {
            self.h2_stream_finished(ex.client, ex.sid);
        } else if let Some(Conn::Client(c)) = self.conns.get_mut(ex.client.0) {
            c.state = ClientState::Idle;
            if !ex.keep_alive || !request_done {
                // A body the backend did not wait for cannot be skipped safely.
                c.close_after_flush = true;
            }
            let at = self.now + self.snapshot.timeouts.keepalive;
            self.arm(ex.client, at);
            self.client_flush(ex.client);
            // A pipelined request may already be buffered.
            self.client_progress(ex.client);
        }
        self.serve_queues();
    }

    /// Remove an exchange for good: queue place, backend slot, connection.
    pub(super) fn drop_exchange(&mut self, xid: usize) {
        self.leave_queue(xid);
        let Some(ex) = self.exchanges.try_remove(xid) else {
            return;
        };
        if let Some(id) = ex.backend {
            ex.balancer.release(id);
        }
        if let Some(up) = ex.upstream {
            if let Some(Conn::Upstream(u)) = self.conns.get_mut(up.0) {
                u.exchange = None;
            }
            self.close_upstream(up);
        }
    }

    /// The exchange cannot be served: answer with a router error if nothing
    /// of the response was sent yet, else cut the client (HTTP/1.x) or reset
    /// the stream (HTTP/2).
    pub(super) fn fail_exchange(&mut self, xid: usize, (status, code): (u16, &str), close: bool) {
        let Some(ex) = self.exchanges.get(xid) else {
            return;
        };
        let (client, sid, started) = (ex.client, ex.sid, ex.response_started);
        self.count_response(status, Some(ex.started));
        ex.app_stats.count(&ex.method, status);
        self.access_log(ex, status);
        let close = close || !ex.body.is_done() || !ex.keep_alive;
        let (id, is_head) = (ex.request_id.clone(), ex.is_head);
        self.drop_exchange(xid);
        if sid != 0 {
            self.h2_fail_stream(client, sid, status, code, &id, started);
            return;
        }
        if started {
            self.close_client(client);
            return;
        }
        let header = self.snapshot.error_header.clone();
        let Some(Conn::Client(c)) = self.conns.get_mut(client.0) else {
            return;
        };
        c.state = ClientState::Idle;
        let close = close || c.eof;
        let start = c.wbuf.len();
        let head_len = error_response(
            status,
            code,
            &header,
            &[("X-Request-ID", &id)],
            close,
            &mut c.wbuf,
        );
        if is_head {
            c.wbuf.truncate(start + head_len);
        }
        self.after_plain_answer(client, close);
    }

    /// One access-log line for a finished (or failed) exchange.
    pub(super) fn access_log(&self, ex: &Exchange, status: u16) {
        let (Some(log), Some(info)) = (self.shared.access_log.as_ref(), ex.log.as_ref()) else {
            return;
        };
        let ms = |a: Option<std::time::Instant>, b: Option<std::time::Instant>| match (a, b) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64() * 1e3,
            _ => 0.0,
        };
        let client = match self.conns.get(ex.client.0) {
            Some(Conn::Client(c)) => c.peer.ip().to_string(),
            _ => String::new(),
        };
        let started_wall = self.wall - self.now.saturating_duration_since(ex.started);
        let record = crate::accesslog::Record {
            time: crate::accesslog::rfc3339(started_wall),
            app: &info.app,
            host: &info.host,
            method: &info.method,
            path: &info.path,
            status,
            bytes: info.bytes,
            queue_ms: ms(Some(ex.started), info.picked),
            connect_ms: ms(info.picked, info.connected),
            backend_ms: ms(info.connected.or(info.picked), info.head),
            total_ms: ms(Some(ex.started), Some(self.now)),
            backend: ex
                .backend
                .and_then(|b| ex.balancer.backend(b))
                .map(|b| b.addr.to_string()),
            request_id: &ex.request_id,
            protocol: if ex.sid == 0 {
                if ex.client_version == 0 {
                    "HTTP/1.0"
                } else {
                    "HTTP/1.1"
                }
            } else {
                "HTTP/2"
            },
            tls: info.tls,
            client,
        };
        if let Ok(line) = serde_json::to_string(&record) {
            log.log(line);
        }
    }
}
