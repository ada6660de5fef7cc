//! A request's way to a backend and back, on exchange ids — so an HTTP/1.1
//! connection (one exchange at a time) and an HTTP/2 connection (one per
//! stream) share all of it: routing, the app-wide queue and its grants, a
//! backend connection (pooled or new), the request body, the end, failure
//! and timeouts. The decisions are the exchange machine's and the
//! scheduler's; this file carries them out.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use mio::Token;

use super::conn::*;
use super::core::{Reactor, cid, tok};
use crate::exchange::*;
use crate::http::HttpError;
use crate::http::answer::Answer;
use crate::http::forward::{ForwardInput, Scheme, forward_headers};
use crate::http::h1::client::{ClientConn, State as ConnState};
use crate::http::h1::{BodyDecoder, BodyKind, RequestHead, encode_request_head};
use crate::router::Decision;
use crate::sched::balance::{BackendId, Balancer, Grant, Pick};

/// What routing made of a request head.
pub(super) enum Routed {
    Proxy(Box<Exchange>),
    /// Portier answers itself (unknown host, redirect).
    Answer(Answer),
}

/// What an exchange holds that must be given back when it ends.
struct Held {
    ticket: Option<crate::sched::queue::Ticket>,
    backend: Option<BackendId>,
    upstream: Option<ConnId>,
}

impl Reactor {
    /// Route a request head and build its exchange (not yet in the slab).
    /// `head.body` says how the backend will see the body; `started` is
    /// when the request's first byte arrived.
    pub(super) fn route(
        &mut self,
        token: Token,
        downstream: Downstream,
        head: &RequestHead,
        body: RequestBody,
        started: std::time::Instant,
    ) -> Option<Routed> {
        let snap = self.snapshot.clone();
        let generated_id = self.request_uuid();
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return None;
        };
        let https = c.scheme == Scheme::Https;
        let control = &self.control;
        let decision = crate::router::decide(
            &snap,
            || Some(control.challenges.load_full()),
            head.host.as_ref().map(|h| h.name.as_str()),
            &head.target,
            https,
        );
        let incoming_xff: Vec<&[u8]> = head.header_values("x-forwarded-for").collect();
        // The wall clock of that instant (read once per loop turn).
        let start = self.wall - self.now.saturating_duration_since(started);
        let since = start.duration_since(UNIX_EPOCH).unwrap_or_default();
        let fwd = forward_headers(&ForwardInput {
            peer_ip: c.peer,
            peer_trusted: snap.is_trusted(c.peer),
            incoming_xff: &incoming_xff,
            scheme: c.scheme,
            port: c.port,
            incoming_request_id: head.header("x-request-id"),
            generated_id,
            start: (since.as_secs(), since.subsec_millis()),
        });
        let app = match decision {
            Decision::Proxy(app) => app,
            Decision::NotFound => {
                return Some(Routed::Answer(Answer::error(
                    HttpError::RouteUnknownHost,
                    fwd.request_id().to_owned(),
                )));
            }
            Decision::Redirect(location) => {
                return Some(Routed::Answer(Answer::redirect(
                    location,
                    fwd.request_id().to_owned(),
                )));
            }
            Decision::AcmeChallenge(key_authorization) => {
                return Some(Routed::Answer(Answer::challenge(
                    key_authorization,
                    fwd.request_id().to_owned(),
                )));
            }
        };
        let mut encoded = Vec::with_capacity(512);
        encode_request_head(head, &fwd.fields(), &mut encoded);
        let log = self.control.access_log.as_ref().map(|_| {
            Box::new(LogInfo {
                app: app.name.clone(),
                host: head
                    .host
                    .as_ref()
                    .map(|h| h.name.clone())
                    .unwrap_or_default(),
                method: head.method.clone(),
                path: head.target.clone(),
                tls: c.tls.as_ref().and_then(|t| t.version_name()),
                picked: None,
                connected: None,
                head: None,
                backend: None,
                bytes: 0,
            })
        });
        let gzip_ok =
            app.compress && crate::compress::accepts_gzip(head.header_values("accept-encoding"));
        let t = &snap.timeouts;
        Some(Routed::Proxy(Box::new(Exchange::new(Route {
            client: cid(token),
            downstream,
            started,
            app_stats: app.stats.clone(),
            balancer: app.balancer.clone(),
            request: RequestFacts {
                method: head.method.as_str().into(),
                is_head: head.is_head(),
                idempotent: head.body == BodyKind::None
                    && matches!(
                        head.method.as_str(),
                        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
                    ),
                upgrade: head.is_websocket_upgrade(),
                // Draining: this response ends the connection.
                keep_alive: head.keep_alive && !self.is_draining(),
                request_id: fwd.request_id().to_owned(),
            },
            head: encoded,
            body,
            extras: ResponseExtras {
                hsts: if https { app.hsts.clone() } else { None },
                preferred: app
                    .sticky
                    .as_ref()
                    .and_then(|st| st.backend_for(head.header_values("cookie"))),
                sticky: app.sticky.clone(),
                secure: https,
                gzip_ok,
            },
            timeouts: ExchangeTimeouts {
                queue: t.queue,
                connect: t.connect,
                read: t.read,
            },
            log,
        }))))
    }

    /// A complete HTTP/1.x request head.
    pub(super) fn start_h1_exchange(
        &mut self,
        token: Token,
        head: RequestHead,
        started: std::time::Instant,
    ) {
        let body = match head.body {
            BodyKind::None => RequestBody::None,
            kind => RequestBody::H1(BodyDecoder::for_request(kind, &self.snapshot.limits)),
        };
        let close_after = head.body != BodyKind::None || !head.keep_alive || self.is_draining();
        let downstream = Downstream::H1 {
            version: head.version,
        };
        match self.route(token, downstream, &head, body, started) {
            None => {}
            Some(Routed::Answer(a)) => self.answer(token, a, close_after, head.is_head()),
            Some(Routed::Proxy(ex)) => {
                let xid = ExchangeId(self.exchanges.insert(*ex));
                if let Some(Conn::Client(Client {
                    state: ClientState::H1(h),
                    ..
                })) = self.conns.get_mut(token.0)
                {
                    h.link = Link::Exchange(xid);
                }
                self.dispatch(xid);
            }
        }
    }

    // ---- scheduling -------------------------------------------------------

    /// Find a backend for the exchange, or queue it, or refuse it.
    pub(super) fn dispatch(&mut self, xid: ExchangeId) {
        let now = self.now;
        let Some(ex) = self.exchanges.get_mut(xid.0) else {
            return;
        };
        if let Err(e) = ex.try_attempt() {
            self.fail_exchange(xid, e);
            return;
        }
        // Requests already waiting go first: a newcomer queues behind them.
        let pick = if ex.tried.is_empty() && ex.route.balancer.queue_depth() > 0 {
            Pick::Busy
        } else if let Some(id) = ex
            .route
            .extras
            .preferred
            .filter(|p| !ex.tried.contains(p))
            .and_then(|p| ex.route.balancer.pick_exactly(p))
        {
            // The client's sticky backend, healthy and with room.
            Pick::Backend(id)
        } else {
            ex.route.balancer.pick(&ex.tried)
        };
        match pick {
            Pick::Backend(id) => self.attach_upstream(xid, id),
            Pick::Busy => match ex.route.balancer.enqueue(self.id, xid.0) {
                Some(ticket) => {
                    ex.queued(ticket, now);
                    let balancer = ex.route.balancer.clone();
                    self.schedule_exchange(xid);
                    // A slot freed since the pick goes to the queue's head.
                    self.serve_queue(&balancer);
                }
                None => self.fail_exchange(xid, HttpError::QueueFull),
            },
            Pick::AllDown => self.fail_exchange(xid, HttpError::NoBackend),
        }
    }

    /// Hand free slots of the app to its oldest waiters, on any reactor.
    pub(super) fn serve_queue(&mut self, balancer: &Arc<Balancer>) {
        let grants = balancer.serve_queue();
        if !grants.is_empty() {
            let mine = self.control.deliver(grants, Some(self.id));
            self.grants.extend(mine);
        }
    }

    /// Give a backend slot back; a waiting request gets it.
    pub(super) fn release_slot(&mut self, balancer: &Arc<Balancer>, id: BackendId) {
        balancer.release(id);
        self.serve_queue(balancer);
    }

    /// Queued requests of this reactor that got their turn, oldest first.
    pub(super) fn take_grants(&mut self) {
        for g in std::mem::take(&mut self.grants) {
            self.take_grant(g);
        }
    }

    fn take_grant(&mut self, g: Grant) {
        let xid = ExchangeId(g.ticket.exchange);
        let waiting = self.exchanges.get(xid.0).is_some_and(|ex| {
            ex.ticket().is_some_and(|t| t.seq == g.ticket.seq)
                && Arc::ptr_eq(&ex.route.balancer, &g.balancer)
        });
        match (waiting, g.backend) {
            (true, Some(id)) => self.attach_upstream(xid, id),
            (true, None) => self.fail_exchange(xid, HttpError::NoBackend),
            // The request left meanwhile (timeout, client gone): pass it on.
            (false, Some(id)) => self.release_slot(&g.balancer, id),
            (false, None) => {}
        }
    }

    /// Give the exchange a connection to backend `id` (pooled or new) and
    /// start writing the request.
    fn attach_upstream(&mut self, xid: ExchangeId, id: BackendId) {
        let Some(ex) = self.exchanges.get(xid.0) else {
            return;
        };
        let balancer = ex.route.balancer.clone();
        let Some(addr) = balancer.backend(id).map(|b| b.addr) else {
            self.release_slot(&balancer, id);
            self.fail_exchange(xid, HttpError::NoBackend);
            return;
        };
        // A pooled connection, unless the backend closed it meanwhile.
        let mut pooled = None;
        while let Some((c, serial)) = self.pool.take(addr) {
            match self.conns.get(c.0) {
                // The slot now holds another connection.
                Some(Conn::Upstream(u)) if u.serial != serial => {}
                // Never one that carries something or goes elsewhere: the
                // pool holds ids, and an id outlives its connection.
                Some(Conn::Upstream(u)) if !matches!(u.link, Link::None) || u.addr != addr => {
                    tracing::warn!("backend pool: skipped an entry for a connection in use");
                }
                Some(Conn::Upstream(u)) if !u.eof && u.conn.state() == ConnState::Idle => {
                    pooled = Some(tok(c));
                    break;
                }
                Some(Conn::Upstream(_)) => self.close_upstream(tok(c)),
                _ => {}
            }
        }
        let up = match pooled {
            Some(t) => {
                // The head stays with the exchange (a retry sends it again).
                if let (Some(Conn::Upstream(u)), Some(ex)) =
                    (self.conns.get_mut(t.0), self.exchanges.get(xid.0))
                {
                    u.conn.reuse();
                    u.link = Link::Exchange(xid);
                    u.backend = id;
                    u.balancer = balancer.clone();
                    u.wbuf.extend_from_slice(&ex.route.head);
                }
                t
            }
            None => {
                let head = self
                    .exchanges
                    .get(xid.0)
                    .map(|ex| ex.route.head.clone())
                    .unwrap_or_default();
                let registered = mio::net::TcpStream::connect(addr).ok().and_then(|sock| {
                    let _ = sock.set_nodelay(true);
                    let serial = self.next_upstream_serial;
                    self.next_upstream_serial += 1;
                    self.register_upstream(sock, |sock| Upstream {
                        serial,
                        sock,
                        addr,
                        balancer: balancer.clone(),
                        backend: id,
                        conn: ClientConn::connecting(),
                        link: Link::Exchange(xid),
                        wbuf: head,
                        rbuf: Vec::new(),
                        eof: false,
                        read_paused: false,
                        scheduled: None,
                    })
                });
                match registered {
                    Some(t) => t,
                    None => {
                        self.backend_failed_early(xid, id);
                        return;
                    }
                }
            }
        };
        if let Some(ex) = self.exchanges.get_mut(xid.0) {
            ex.attached(id, cid(up), pooled.is_none(), self.now);
            ex.decoder = None;
            if let Some(l) = ex.route.log.as_mut() {
                l.backend = Some(addr);
            }
        }
        self.schedule_exchange(xid);
        self.pump_request_body(xid);
        self.upstream_flush(up);
    }

    /// A new connection to the backend could not even be started: it is
    /// quarantined and another backend gets the request.
    fn backend_failed_early(&mut self, xid: ExchangeId, id: BackendId) {
        let now_ms = self.control.now_ms(self.now);
        let Some(ex) = self.exchanges.get_mut(xid.0) else {
            return;
        };
        let balancer = ex.route.balancer.clone();
        balancer.quarantine(id, now_ms);
        ex.tried.push(id);
        self.release_slot(&balancer, id);
        self.dispatch(xid);
    }

    /// Move request-body bytes from the client to the exchange's backend and
    /// write them, as long as both sides make progress.
    pub(super) fn pump_request_body(&mut self, xid: ExchangeId) {
        loop {
            let Some(ex) = self.exchanges.get_mut(xid.0) else {
                return;
            };
            let (Some(up), client) = (ex.upstream().map(tok), tok(ex.route.client)) else {
                return;
            };
            let moved;
            match &mut ex.route.body {
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
                        ex.route.body = RequestBody::None;
                    }
                }
                RequestBody::H1(dec) => {
                    let Some((Conn::Client(c), Conn::Upstream(u))) =
                        self.conns.get2_mut(client.0, up.0)
                    else {
                        return;
                    };
                    // Framing validated and passed through as received.
                    match pump(
                        dec,
                        &mut OutMode::Raw,
                        &c.rbuf,
                        false,
                        &mut u.wbuf,
                        HIGH_WATER,
                    ) {
                        Ok(p) => {
                            c.rbuf.drain(..p.consumed);
                            moved = p.consumed;
                            if p.done {
                                ex.route.body = RequestBody::None;
                            }
                        }
                        Err(e) => {
                            self.fail_exchange(xid, e);
                            return;
                        }
                    }
                }
            }
            self.h2_release_request_capacity(xid, moved);
            self.upstream_write(up);
            let upstream_full = match self.conns.get(up.0) {
                Some(Conn::Upstream(u)) => u.wbuf.len() >= HIGH_WATER || u.conn.is_connecting(),
                _ => true,
            };
            if moved == 0 || upstream_full {
                break;
            }
        }
        // Room in our buffer again: the client may have more to give.
        let Some(client) = self.exchanges.get(xid.0).map(|ex| tok(ex.route.client)) else {
            return;
        };
        if matches!(self.conns.get(client.0), Some(Conn::Client(c)) if c.read_paused && c.rbuf.len() < HIGH_WATER)
        {
            self.ready.push_back(client);
        }
    }

    // ---- the end ----------------------------------------------------------

    /// The response is complete: pool or close the backend connection, give
    /// back the slot, and let the client go on.
    pub(super) fn finish_exchange(&mut self, xid: ExchangeId) {
        let Some(mut ex) = self.exchanges.try_remove(xid.0) else {
            return;
        };
        self.count_response(ex.status, Some(ex.route.started));
        ex.route
            .app_stats
            .count(&ex.route.request.method, ex.status);
        self.access_log(&ex, ex.status);
        if let Some(c) = self.counters() {
            let proto = match ex.route.downstream {
                Downstream::H1 { .. } => &c.http1_requests,
                Downstream::H2(_) => &c.http2_requests,
            };
            proto.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let (backend, upstream) = (ex.backend(), ex.upstream().map(tok));
        ex.finish();
        let request_done = ex.route.body.is_done();
        if let Some(up) = upstream {
            self.park_or_close_upstream(up, request_done);
        }
        if let Some(id) = backend {
            self.release_slot(&ex.route.balancer, id);
        }
        let client = tok(ex.route.client);
        match ex.route.downstream {
            Downstream::H2(s) => self.h2_stream_finished(client, s.id),
            // A body the backend did not wait for cannot be skipped safely.
            Downstream::H1 { .. } => {
                self.after_response(client, !ex.route.request.keep_alive || !request_done)
            }
        }
    }

    /// After a response: the backend connection goes to the pool when it
    /// can carry another request, else it is closed.
    fn park_or_close_upstream(&mut self, up: Token, request_done: bool) {
        let (now, idle) = (self.now, self.snapshot.timeouts.backend_keepalive);
        let Some(Conn::Upstream(u)) = self.conns.get_mut(up.0) else {
            return;
        };
        let clean = request_done && u.rbuf.is_empty() && u.wbuf.is_empty();
        if !u.conn.response_done(clean, u.eof, now, idle) {
            self.close_upstream(up);
            return;
        }
        u.link = Link::None;
        u.rbuf = Vec::new();
        u.wbuf = Vec::new();
        let (addr, serial) = (u.addr, u.serial);
        self.pool.put(addr, cid(up), serial);
        self.schedule_conn(up);
    }

    /// Remove an exchange for good: queue place, backend slot, connection.
    pub(super) fn drop_exchange(&mut self, xid: ExchangeId) {
        let Some(ex) = self.exchanges.try_remove(xid.0) else {
            return;
        };
        let held = Held {
            ticket: ex.ticket(),
            backend: ex.backend(),
            upstream: ex.upstream(),
        };
        if let Some(t) = held.ticket {
            // Not there any more: its grant is on the way and will be
            // passed on when it finds the exchange gone.
            let _ = ex.route.balancer.leave_queue(&t);
        }
        if let Some(up) = held.upstream {
            self.close_upstream(tok(up));
        }
        if let Some(id) = held.backend {
            self.release_slot(&ex.route.balancer, id);
        }
    }

    /// The exchange cannot be served: answer with Portier's own error if
    /// nothing of the response was sent yet, else cut the client (HTTP/1.x)
    /// or reset the stream (HTTP/2).
    pub(super) fn fail_exchange(&mut self, xid: ExchangeId, e: HttpError) {
        let Some(ex) = self.exchanges.get(xid.0) else {
            return;
        };
        let status = e.status();
        self.count_response(status, Some(ex.route.started));
        ex.route.app_stats.count(&ex.route.request.method, status);
        self.access_log(ex, status);
        // Waiting or refusing leaves the connection usable; a backend
        // failure, or a body still on its way, does not.
        let soft = matches!(
            e,
            HttpError::QueueFull | HttpError::QueueTimeout | HttpError::NoBackend
        );
        let close = !soft || !ex.route.body.is_done() || !ex.route.request.keep_alive;
        let (client, stream, started) = (tok(ex.route.client), ex.stream(), ex.response_started());
        let (answer, is_head) = (
            Answer::error(e, ex.route.request.request_id.clone()),
            ex.route.request.is_head,
        );
        self.drop_exchange(xid);
        match stream {
            Some(sid) => self.h2_fail_stream(client, sid, (!started).then_some(answer), is_head),
            None if started => self.close_client(client),
            // Counted above, with the exchange's latency.
            None => self.answer_uncounted(client, answer, close, is_head),
        }
    }

    /// One of the exchange's timers is due.
    pub(super) fn exchange_timeout(&mut self, xid: ExchangeId) {
        let now = self.now;
        let now_ms = self.control.now_ms(now);
        let Some(ex) = self.exchanges.get_mut(xid.0) else {
            return;
        };
        let Some(e) = ex.handle_timeout(now) else {
            return;
        };
        if e == HttpError::UpstreamConnectTimeout
            && let Some(id) = ex.backend()
        {
            ex.route.balancer.quarantine(id, now_ms);
        }
        self.fail_exchange(xid, e);
    }

    /// One access-log line for a finished (or failed) exchange.
    pub(super) fn access_log(&self, ex: &Exchange, status: u16) {
        let (Some(log), Some(info)) = (self.control.access_log.as_ref(), ex.route.log.as_ref())
        else {
            return;
        };
        let ms = |a: Option<std::time::Instant>, b: Option<std::time::Instant>| match (a, b) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64() * 1e3,
            _ => 0.0,
        };
        let client = match self.conns.get(ex.route.client.0) {
            Some(Conn::Client(c)) => c.peer.to_string(),
            _ => String::new(),
        };
        let started_wall = self.wall - self.now.saturating_duration_since(ex.route.started);
        let record = crate::accesslog::Record {
            time: crate::time_fmt::rfc3339_millis(started_wall),
            app: &info.app,
            host: &info.host,
            method: &info.method,
            path: &info.path,
            status,
            bytes: info.bytes,
            queue_ms: ms(Some(ex.route.started), info.picked),
            connect_ms: ms(info.picked, info.connected),
            backend_ms: ms(info.connected.or(info.picked), info.head),
            total_ms: ms(Some(ex.route.started), Some(self.now)),
            backend: info.backend.map(|a| a.to_string()),
            request_id: &ex.route.request.request_id,
            protocol: match ex.route.downstream {
                Downstream::H1 { version: 0 } => "HTTP/1.0",
                Downstream::H1 { .. } => "HTTP/1.1",
                Downstream::H2(_) => "HTTP/2",
            },
            tls: info.tls,
            client,
        };
        if let Ok(line) = serde_json::to_string(&record) {
            log.log(line);
        }
    }
}
