//! The reactor loop and the HTTP/1.1 proxy it drives: accept clients, parse
//! heads, route, queue, pick a backend, stream the request to a pooled
//! backend connection and the response back, retry, quarantine, time out.
//!
//! ```text
//! client:  Idle ──head──► Busy(exchange) ──response done──► Idle (keep-alive)
//!                           │  queued ─► upstream picked ─► streaming
//!                           └─ 101 ──► Tunnel ──either side closes──► closed
//! upstream: connecting ─► busy (client) ─► idle in pool ─► busy ...
//! ```
//!
//! A request whose backend fails before any of its bytes were written goes
//! to another backend; a refused, reset or cut connection quarantines the
//! backend (a stale pooled connection does not).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::conn::{self, *};
use super::timers::Timers;
use super::{Shared, WAKER};
use crate::http::HttpError;
use crate::http::forward::{ForwardInput, Scheme, forward_headers};
use crate::http::h1::{
    BodyDecoder, BodyKind, encode_request_head, encode_response_head, error_response,
    parse_request_head, parse_response_head,
};
use crate::router::Decision;
use crate::sched::balance::{BackendId, Balancer, Pick};
use crate::snapshot::Snapshot;

/// Router errors that are not codec errors (reason codes for the error header).
const UNKNOWN_HOST: (u16, &str) = (404, "unknown_host");
const QUEUE_FULL: (u16, &str) = (503, "queue_full");
const QUEUE_TIMEOUT: (u16, &str) = (503, "queue_timeout");
const ALL_DOWN: (u16, &str) = (503, "no_backend_available");
const HEADER_TIMEOUT: (u16, &str) = (408, "header_timeout");
const CONNECT_TIMEOUT: (u16, &str) = (504, "upstream_connect_timeout");
const READ_TIMEOUT: (u16, &str) = (504, "upstream_read_timeout");
const UPSTREAM_FAILED: (u16, &str) = (502, "upstream_connection_failed");

/// Tokens above this are listeners (counting down from `WAKER`).
const LISTENER_BASE: usize = usize::MAX - 1;
/// How often queued requests look for capacity freed by other reactors.
const QUEUE_TICK: Duration = Duration::from_millis(10);

pub struct Reactor {
    poll: Poll,
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    /// Local port of each listener (for X-Forwarded-Port).
    ports: Vec<u16>,
    /// Whether each listener speaks TLS.
    secure: Vec<bool>,
    tls: Option<Arc<rustls::ServerConfig>>,
    conns: Slab<Conn>,
    timers: Timers,
    /// Idle keep-alive backend connections, per backend address.
    idle: HashMap<SocketAddr, Vec<Token>>,
    /// Waiting clients per app (keyed by the balancer's address).
    queues: HashMap<usize, VecDeque<Token>>,
    /// Connections to drive again this turn (reading resumed after the other
    /// side drained): a work list instead of recursion between the two sides.
    ready: VecDeque<Token>,
    now: Instant,
    wall: SystemTime,
    snapshot: Arc<Snapshot>,
}

fn app_key(b: &Arc<Balancer>) -> usize {
    Arc::as_ptr(b) as usize
}

impl Reactor {
    pub fn new(
        poll: Poll,
        shared: Arc<Shared>,
        tagged: Vec<(TcpListener, bool)>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<Reactor> {
        let secure: Vec<bool> = tagged.iter().map(|(_, s)| *s).collect();
        let mut listeners: Vec<TcpListener> = tagged.into_iter().map(|(l, _)| l).collect();
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(l, Token(LISTENER_BASE - i), Interest::READABLE)?;
        }
        let snapshot = shared.snapshot.load_full();
        let ports = listeners
            .iter()
            .map(|l| l.local_addr().map_or(80, |a| a.port()))
            .collect();
        Ok(Reactor {
            poll,
            shared,
            listeners,
            ports,
            secure,
            tls,
            conns: Slab::with_capacity(1024),
            timers: Timers::default(),
            idle: HashMap::new(),
            queues: HashMap::new(),
            ready: VecDeque::new(),
            now: Instant::now(),
            wall: SystemTime::now(),
            snapshot,
        })
    }

    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let mut timeout = self
                .timers
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if self.queues.values().any(|q| !q.is_empty()) {
                timeout = Some(timeout.map_or(QUEUE_TICK, |t| t.min(QUEUE_TICK)));
            }
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            // One clock reading per loop turn.
            self.now = Instant::now();
            self.wall = SystemTime::now();
            self.snapshot = self.shared.snapshot.load_full();
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    Token(t) if t > LISTENER_BASE - self.listeners.len() && t <= LISTENER_BASE => {
                        self.accept(LISTENER_BASE - t);
                    }
                    token => self.on_event(token, ev),
                }
            }
            self.drive_ready();
            self.fire_timers();
            self.serve_queues();
            self.drive_ready();
            if self.shared.shutdown.load(Ordering::Acquire) {
                return Ok(());
            }
        }
    }

    fn drive_ready(&mut self) {
        while let Some(token) = self.ready.pop_front() {
            match self.conns.get(token.0) {
                Some(Conn::Client(_)) => self.client_read(token),
                Some(Conn::Upstream(_)) => self.upstream_read(token),
                None => {}
            }
        }
    }

    // ---- accept -----------------------------------------------------------

    fn accept(&mut self, index: usize) {
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            let port = self.ports.get(index).copied().unwrap_or(80);
            match listener.accept() {
                Ok((mut sock, peer)) => {
                    let _ = sock.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key());
                    if self
                        .poll
                        .registry()
                        .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    let secure = self.secure.get(index).copied().unwrap_or(false);
                    let configured = if secure {
                        self.snapshot.public_https_port
                    } else {
                        self.snapshot.public_http_port
                    };
                    let public = if configured == 0 { port } else { configured };
                    let tls = match (secure, &self.tls) {
                        (true, Some(cfg)) => match rustls::ServerConnection::new(cfg.clone()) {
                            Ok(mut t) => {
                                t.set_buffer_limit(Some(64 * 1024));
                                Some(Box::new(t))
                            }
                            Err(e) => {
                                tracing::warn!("TLS session setup failed: {e}");
                                continue;
                            }
                        },
                        _ => None,
                    };
                    entry.insert(Conn::Client(Client {
                        sock,
                        tls,
                        scheme: if secure { Scheme::Https } else { Scheme::Http },
                        peer,
                        port: public,
                        rbuf: Vec::new(),
                        wbuf: Vec::new(),
                        state: ClientState::Idle,
                        eof: false,
                        read_paused: false,
                        close_after_flush: false,
                        head_started: None,
                        timer_gen: 0,
                    }));
                    let at = self.now + self.snapshot.timeouts.header;
                    self.arm(token, at);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: stop accepting this turn, keep serving.
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    // ---- timers -----------------------------------------------------------

    fn arm(&mut self, token: Token, at: Instant) {
        let generation = match self.conns.get_mut(token.0) {
            Some(Conn::Client(c)) => {
                c.timer_gen += 1;
                c.timer_gen
            }
            Some(Conn::Upstream(u)) => {
                u.timer_gen += 1;
                u.timer_gen
            }
            None => return,
        };
        self.timers.arm(at, token, generation);
    }

    fn disarm(&mut self, token: Token) {
        match self.conns.get_mut(token.0) {
            Some(Conn::Client(c)) => c.timer_gen += 1,
            Some(Conn::Upstream(u)) => u.timer_gen += 1,
            None => {}
        }
    }

    fn fire_timers(&mut self) {
        while let Some((token, generation)) = self.timers.pop_due(self.now) {
            match self.conns.get(token.0) {
                Some(Conn::Client(c)) if c.timer_gen == generation => self.client_timeout(token),
                Some(Conn::Upstream(u)) if u.timer_gen == generation => {
                    self.upstream_timeout(token)
                }
                _ => {}
            }
        }
    }

    fn client_timeout(&mut self, token: Token) {
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        match &c.state {
            ClientState::Idle if c.head_started.is_some() || !c.rbuf.is_empty() => {
                self.respond_error(token, HEADER_TIMEOUT, true);
            }
            ClientState::Idle => self.close_client(token),
            ClientState::Busy(ex) if ex.queued => {
                self.leave_queue(token);
                self.respond_error(token, QUEUE_TIMEOUT, false);
            }
            ClientState::Busy(_) => {}
            ClientState::Tunnel(up) => {
                let up = *up;
                self.close_upstream(up);
                self.close_client(token);
            }
        }
    }

    fn upstream_timeout(&mut self, token: Token) {
        let Some(Conn::Upstream(u)) = self.conns.get(token.0) else {
            return;
        };
        let client = u.client;
        let connecting = u.connecting;
        let (balancer, backend) = (u.balancer.clone(), u.backend);
        let Some(client) = client else {
            // Idle pooled connection past its keep-alive.
            self.close_upstream(token);
            return;
        };
        if connecting {
            balancer.quarantine(backend, self.shared.now_ms(self.now));
        }
        let started = match self.conns.get(client.0) {
            Some(Conn::Client(c)) => match &c.state {
                ClientState::Busy(ex) => ex.response_started,
                ClientState::Tunnel(_) => true,
                ClientState::Idle => true,
            },
            _ => true,
        };
        self.close_upstream(token);
        if started {
            self.close_client(client);
        } else {
            let err = if connecting {
                CONNECT_TIMEOUT
            } else {
                READ_TIMEOUT
            };
            self.respond_error(client, err, true);
        }
    }

    // ---- events -----------------------------------------------------------

    fn on_event(&mut self, token: Token, ev: &Event) {
        match self.conns.get(token.0) {
            Some(Conn::Client(_)) => {
                if ev.is_writable() {
                    self.client_flush(token);
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.client_read(token);
                }
            }
            Some(Conn::Upstream(_)) => {
                if ev.is_writable() || ev.is_error() {
                    self.upstream_writable(token);
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.upstream_read(token);
                }
            }
            None => {}
        }
    }

    fn client_read(&mut self, token: Token) {
        let limits = self.snapshot.limits;
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
        let mut head_began = false;
        match client_read_into(c, cap) {
            Ok(r) => {
                c.eof |= r.eof;
                c.read_paused = r.paused;
                if was_empty
                    && r.bytes > 0
                    && matches!(c.state, ClientState::Idle)
                    && c.head_started.is_none()
                {
                    c.head_started = Some((self.now, self.wall));
                    head_began = true;
                }
            }
            Err(_) => {
                // A TLS failure queued an alert: try to deliver it.
                let _ = conn::client_flush(c);
                self.client_gone(token);
                return;
            }
        }
        // Handshake messages, tickets, alerts.
        let tls_output = c.tls.as_ref().is_some_and(|t| t.wants_write());
        if head_began {
            let at = self.now + self.snapshot.timeouts.header;
            self.arm(token, at);
        }
        if tls_output {
            self.client_flush(token);
        }
        self.client_progress(token);
    }

    /// The client vanished (reset): drop its exchange and backend connection.
    fn client_gone(&mut self, token: Token) {
        self.abort_exchange(token);
        self.close_client(token);
    }

    fn client_flush(&mut self, token: Token) {
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        if client_output_empty(c) {
            if c.close_after_flush {
                self.close_client_gracefully(token);
            }
            return;
        }
        let before = c.wbuf.len();
        if conn::client_flush(c).is_err() {
            self.client_gone(token);
            return;
        }
        let drained_below = before >= HIGH_WATER && c.wbuf.len() < HIGH_WATER;
        if client_output_empty(c) && c.close_after_flush {
            self.close_client_gracefully(token);
            return;
        }
        // The backend side was paused on our buffer: resume it.
        if drained_below || c.wbuf.is_empty() {
            let up = match &c.state {
                ClientState::Busy(ex) => ex.upstream,
                ClientState::Tunnel(up) => Some(*up),
                ClientState::Idle => None,
            };
            if let Some(up) = up
                && matches!(self.conns.get(up.0), Some(Conn::Upstream(u)) if u.read_paused)
            {
                self.ready.push_back(up);
            }
        }
    }

    /// Close after everything was sent: a TLS client gets close_notify first.
    fn close_client_gracefully(&mut self, token: Token) {
        if let Some(Conn::Client(c)) = self.conns.get_mut(token.0)
            && let Some(tls) = c.tls.as_deref_mut()
        {
            tls.send_close_notify();
            let _ = tls.write_tls(&mut c.sock);
        }
        self.close_client(token);
    }

    /// Advance the client's state machine with what is buffered.
    fn client_progress(&mut self, token: Token) {
        loop {
            let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
                return;
            };
            match &c.state {
                ClientState::Idle => {
                    if c.close_after_flush {
                        return;
                    }
                    if c.rbuf.is_empty() {
                        if c.eof {
                            // Answer what was asked, then close.
                            c.close_after_flush = true;
                            self.client_flush(token);
                        }
                        return;
                    }
                    let parsed = parse_request_head(&c.rbuf, &self.snapshot.limits);
                    match parsed {
                        Err(e) => {
                            self.respond_error(token, (e.status(), e.code()), true);
                            return;
                        }
                        Ok(None) => {
                            if c.eof {
                                // Half a head and no more coming.
                                c.close_after_flush = true;
                                self.client_flush(token);
                            }
                            return;
                        }
                        Ok(Some((head, used))) => {
                            c.rbuf.drain(..used);
                            self.start_exchange(token, head);
                            // Loop: stream any body bytes already buffered.
                        }
                    }
                }
                ClientState::Busy(ex) => {
                    if ex.upstream.is_some() && ex.body.is_some() {
                        self.pump_request_body(token);
                    }
                    let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
                        return;
                    };
                    if c.eof
                        && c.rbuf.is_empty()
                        && let ClientState::Busy(ex) = &c.state
                        && ex.body.is_some()
                    {
                        // The client stopped mid-body.
                        self.client_gone(token);
                    }
                    return;
                }
                ClientState::Tunnel(up) => {
                    let up = *up;
                    if let Some((Conn::Client(c), Conn::Upstream(u))) =
                        self.conns.get2_mut(token.0, up.0)
                    {
                        u.wbuf.extend_from_slice(&c.rbuf);
                        c.rbuf.clear();
                        let eof = c.eof;
                        let at = self.now + self.snapshot.timeouts.tunnel_idle;
                        self.arm(token, at);
                        self.upstream_write(up);
                        if eof && let Some(Conn::Upstream(u)) = self.conns.get_mut(up.0) {
                            let _ = u.sock.shutdown(std::net::Shutdown::Write);
                        }
                    }
                    return;
                }
            }
        }
    }

    /// A complete request head: route it and send it on its way.
    fn start_exchange(&mut self, token: Token, head: crate::http::h1::RequestHead) {
        let snap = self.snapshot.clone();
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
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
            generated_id: uuid::Uuid::new_v4(),
            start: (since.as_secs(), since.subsec_millis()),
        });
        c.head_started = None;
        let app = match decision {
            Decision::Proxy(app) => app,
            Decision::NotFound => {
                let has_body = head.body != BodyKind::None;
                self.respond_error_id(
                    token,
                    UNKNOWN_HOST,
                    has_body || !head.keep_alive,
                    Some(fwd.request_id),
                );
                return;
            }
            Decision::Redirect(location) => {
                let close = head.body != BodyKind::None || !head.keep_alive;
                self.respond_redirect(token, &location, &fwd.request_id, close, head.is_head());
                return;
            }
        };
        let mut encoded = Vec::with_capacity(512);
        encode_request_head(&head, &fwd.fields(), &mut encoded);
        let body = match head.body {
            BodyKind::None => None,
            kind => Some(BodyDecoder::for_request(kind, &snap.limits)),
        };
        let ex = Exchange {
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
            upstream: None,
            backend: None,
            tried: Vec::new(),
            attempts: 0,
            queued: false,
            response_started: false,
            dechunk: false,
        };
        c.state = ClientState::Busy(Box::new(ex));
        self.disarm(token);
        self.dispatch(token);
    }

    // ---- scheduling -------------------------------------------------------

    /// Find a backend for the client's exchange, or queue it, or refuse it.
    fn dispatch(&mut self, token: Token) {
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        let ClientState::Busy(ex) = &mut c.state else {
            return;
        };
        ex.attempts += 1;
        if ex.attempts > ex.balancer.backends().len() as u32 + 2 {
            self.respond_error(token, ALL_DOWN, true);
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
                self.attach_upstream(token, id);
            }
            Pick::Busy if ex.queued => {}
            Pick::Busy => {
                if ex.balancer.try_enqueue() {
                    ex.queued = true;
                    ex.attempts -= 1;
                    let key = app_key(&ex.balancer);
                    self.queues.entry(key).or_default().push_back(token);
                    let at = self.now + self.snapshot.timeouts.queue;
                    self.arm(token, at);
                } else {
                    self.respond_error(token, QUEUE_FULL, false);
                }
            }
            Pick::AllDown => {
                self.leave_queue(token);
                self.respond_error(token, ALL_DOWN, false);
            }
        }
    }

    /// Queued requests, oldest first, take capacity wherever it appeared.
    fn serve_queues(&mut self) {
        let keys: Vec<usize> = self
            .queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            while let Some(&token) = self.queues.get(&key).and_then(|q| q.front()) {
                let pick = match self.conns.get(token.0) {
                    Some(Conn::Client(Client {
                        state: ClientState::Busy(ex),
                        ..
                    })) if ex.queued => ex.balancer.pick(&ex.tried),
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
                        if let Some(Conn::Client(Client {
                            state: ClientState::Busy(ex),
                            ..
                        })) = self.conns.get_mut(token.0)
                        {
                            ex.queued = false;
                            ex.balancer.dequeued();
                        }
                        self.disarm(token);
                        self.attach_upstream(token, id);
                    }
                    Pick::AllDown => {
                        self.leave_queue(token);
                        self.respond_error(token, ALL_DOWN, false);
                    }
                }
            }
        }
    }

    fn leave_queue(&mut self, token: Token) {
        let Some(Conn::Client(Client {
            state: ClientState::Busy(ex),
            ..
        })) = self.conns.get_mut(token.0)
        else {
            return;
        };
        if !ex.queued {
            return;
        }
        ex.queued = false;
        ex.balancer.dequeued();
        let key = app_key(&ex.balancer);
        if let Some(q) = self.queues.get_mut(&key) {
            q.retain(|t| *t != token);
        }
    }

    /// Give the exchange a connection to backend `id` (pooled or new) and
    /// start writing the request.
    fn attach_upstream(&mut self, token: Token, id: BackendId) {
        let Some(Conn::Client(Client {
            state: ClientState::Busy(ex),
            ..
        })) = self.conns.get_mut(token.0)
        else {
            return;
        };
        let balancer = ex.balancer.clone();
        let Some(addr) = balancer.backend(id).map(|b| b.addr) else {
            balancer.release(id);
            self.respond_error(token, ALL_DOWN, true);
            return;
        };
        ex.backend = Some(id);
        let head = ex.head.clone();
        let timeouts = self.snapshot.timeouts;

        // A pooled connection, unless the backend closed it meanwhile.
        let mut up_token = None;
        while let Some(t) = self.idle.get_mut(&addr).and_then(|v| v.pop()) {
            match self.conns.get(t.0) {
                Some(Conn::Upstream(u)) if !u.eof && u.client.is_none() => {
                    up_token = Some(t);
                    break;
                }
                Some(Conn::Upstream(_)) => self.close_upstream(t),
                _ => {}
            }
        }
        let up_token = match up_token {
            Some(t) => {
                if let Some(Conn::Upstream(u)) = self.conns.get_mut(t.0) {
                    u.client = Some(token);
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
                        self.backend_failed_early(token, id, true);
                        return;
                    }
                    entry.insert(Conn::Upstream(Upstream {
                        sock,
                        addr,
                        balancer: balancer.clone(),
                        backend: id,
                        client: Some(token),
                        connecting: true,
                        reused: false,
                        wbuf: head,
                        rbuf: Vec::new(),
                        resp: ResponseState::Head,
                        resp_keep_alive: true,
                        written: 0,
                        eof: false,
                        read_paused: false,
                        timer_gen: 0,
                    }));
                    self.arm(t, self.now + timeouts.connect);
                    t
                }
                Err(_) => {
                    self.backend_failed_early(token, id, true);
                    return;
                }
            },
        };
        if let Some(Conn::Client(Client {
            state: ClientState::Busy(ex),
            ..
        })) = self.conns.get_mut(token.0)
        {
            ex.upstream = Some(up_token);
        }
        self.pump_request_body(token);
        self.upstream_flush(up_token);
    }

    /// The backend failed before any byte of the request reached it: try
    /// another one. `quarantine`: it refused or reset a fresh connection.
    fn backend_failed_early(&mut self, token: Token, id: BackendId, quarantine: bool) {
        let now_ms = self.shared.now_ms(self.now);
        let Some(Conn::Client(Client {
            state: ClientState::Busy(ex),
            ..
        })) = self.conns.get_mut(token.0)
        else {
            return;
        };
        ex.balancer.release(id);
        if quarantine {
            ex.balancer.quarantine(id, now_ms);
            ex.tried.push(id);
        }
        ex.upstream = None;
        ex.backend = None;
        self.dispatch(token);
    }

    /// Move buffered request-body bytes from the client to its backend and
    /// write them, as long as both sides make progress.
    fn pump_request_body(&mut self, token: Token) {
        loop {
            let Some(Conn::Client(Client {
                state: ClientState::Busy(ex),
                ..
            })) = self.conns.get(token.0)
            else {
                return;
            };
            let Some(up) = ex.upstream else {
                return;
            };
            let mut moved = 0;
            let mut failed: Option<HttpError> = None;
            if let Some((Conn::Client(c), Conn::Upstream(u))) = self.conns.get2_mut(token.0, up.0) {
                let ClientState::Busy(ex) = &mut c.state else {
                    return;
                };
                while let Some(dec) = ex.body.as_mut() {
                    if c.rbuf.is_empty() || u.wbuf.len() >= HIGH_WATER {
                        break;
                    }
                    match dec.decode(&c.rbuf) {
                        Ok(d) => {
                            u.wbuf.extend_from_slice(&c.rbuf[..d.consumed]);
                            c.rbuf.drain(..d.consumed);
                            moved += d.consumed;
                            if d.done {
                                ex.body = None;
                            } else if d.consumed == 0 {
                                break;
                            }
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
            }
            if let Some(e) = failed {
                let started = matches!(self.conns.get(token.0), Some(Conn::Client(Client { state: ClientState::Busy(ex), .. })) if ex.response_started);
                self.abort_exchange(token);
                if started {
                    self.close_client(token);
                } else {
                    self.respond_error(token, (e.status(), e.code()), true);
                }
                return;
            }
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
        if matches!(self.conns.get(token.0), Some(Conn::Client(c)) if c.read_paused && c.rbuf.len() < HIGH_WATER)
        {
            self.ready.push_back(token);
        }
    }

    // ---- backend side -----------------------------------------------------

    fn upstream_writable(&mut self, token: Token) {
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
            let at = self.now + self.snapshot.timeouts.read;
            self.arm(token, at);
        }
        self.upstream_flush(token);
    }

    /// Write what is buffered for the backend; no pulling from the client.
    fn upstream_write(&mut self, token: Token) {
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
    fn upstream_flush(&mut self, token: Token) {
        self.upstream_write(token);
        let Some(Conn::Upstream(u)) = self.conns.get(token.0) else {
            return;
        };
        if u.wbuf.len() < HIGH_WATER
            && let Some(c) = u.client
            && matches!(self.conns.get(c.0), Some(Conn::Client(cl)) if !cl.rbuf.is_empty() || cl.read_paused)
        {
            self.ready.push_back(c);
        }
    }

    fn upstream_read(&mut self, token: Token) {
        let Some(Conn::Upstream(u)) = self.conns.get_mut(token.0) else {
            return;
        };
        if u.connecting {
            return;
        }
        let client_full = match u.client.and_then(|c| self.conns.get(c.0)) {
            Some(Conn::Client(c)) => c.wbuf.len() >= HIGH_WATER,
            _ => false,
        };
        let Some(Conn::Upstream(u)) = self.conns.get_mut(token.0) else {
            return;
        };
        if client_full {
            u.read_paused = true;
        } else if !u.eof {
            match read_into(&mut u.sock, &mut u.rbuf, HIGH_WATER) {
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

    /// Parse and forward what the backend sent.
    fn upstream_progress(&mut self, token: Token) {
        let snap = self.snapshot.clone();
        loop {
            let Some(Conn::Upstream(u)) = self.conns.get_mut(token.0) else {
                return;
            };
            let Some(client) = u.client else {
                // Idle in the pool: any byte or EOF means it is no longer usable.
                if u.eof || !u.rbuf.is_empty() {
                    self.close_upstream(token);
                }
                return;
            };
            let Some((Conn::Upstream(u), Conn::Client(c))) = self.conns.get2_mut(token.0, client.0)
            else {
                return;
            };
            match &mut u.resp {
                ResponseState::Head => {
                    let ClientState::Busy(ex) = &mut c.state else {
                        return;
                    };
                    if u.rbuf.is_empty() {
                        if u.eof {
                            self.upstream_failed(token);
                        }
                        return;
                    }
                    match parse_response_head(&u.rbuf, &snap.limits, ex.is_head) {
                        Err(e) => {
                            let e = e.to_upstream();
                            let started = ex.response_started;
                            self.abort_exchange(client);
                            if started {
                                self.close_client(client);
                            } else {
                                self.respond_error(client, (e.status(), e.code()), true);
                            }
                            return;
                        }
                        Ok(None) => {
                            if u.eof {
                                self.upstream_failed(token);
                            }
                            return;
                        }
                        Ok(Some((mut head, used))) => {
                            u.rbuf.drain(..used);
                            let id = ex.request_id.clone();
                            let hsts = ex.hsts.clone();
                            let mut extra: Vec<(&str, &[u8])> =
                                vec![("X-Request-ID", id.as_bytes())];
                            if let Some(h) = hsts.as_deref() {
                                extra.push(("Strict-Transport-Security", h.as_bytes()));
                            }
                            // (Re-)issue the sticky cookie when the client is not
                            // already bound to the backend that answered.
                            let cookie = match (&ex.sticky, ex.backend) {
                                (Some(st), Some(b)) if ex.preferred != Some(b) => {
                                    st.set_cookie(b, ex.secure)
                                }
                                _ => None,
                            };
                            if let Some(c) = cookie.as_deref() {
                                extra.push(("Set-Cookie", c.as_bytes()));
                            }
                            if head.is_interim() {
                                encode_response_head(
                                    &head,
                                    &extra,
                                    ex.client_version,
                                    false,
                                    &mut c.wbuf,
                                );
                                continue;
                            }
                            if head.is_switching_protocols() && ex.upgrade {
                                encode_response_head(
                                    &head,
                                    &extra,
                                    ex.client_version,
                                    false,
                                    &mut c.wbuf,
                                );
                                c.wbuf.extend_from_slice(&u.rbuf);
                                u.rbuf.clear();
                                u.resp = ResponseState::Tunnel;
                                c.state = ClientState::Tunnel(token);
                                let at = self.now + snap.timeouts.tunnel_idle;
                                self.arm(token, at);
                                self.arm(client, at);
                                self.client_flush(client);
                                self.client_progress(client);
                                return;
                            }
                            ex.response_started = true;
                            if ex.client_version == 0 && head.body == BodyKind::Chunked {
                                ex.dechunk = true;
                                head.body = BodyKind::CloseDelimited;
                            }
                            let close = !ex.keep_alive || head.body == BodyKind::CloseDelimited;
                            if close {
                                ex.keep_alive = false;
                            }
                            encode_response_head(
                                &head,
                                &extra,
                                ex.client_version,
                                close,
                                &mut c.wbuf,
                            );
                            u.resp_keep_alive = head.keep_alive;
                            let kind = if ex.dechunk {
                                BodyKind::Chunked
                            } else {
                                head.body
                            };
                            if kind == BodyKind::None {
                                self.finish_exchange(client, token);
                                return;
                            }
                            u.resp =
                                ResponseState::Body(BodyDecoder::for_response(kind, &snap.limits));
                            let at = self.now + snap.timeouts.read;
                            self.arm(token, at);
                        }
                    }
                }
                ResponseState::Body(dec) => {
                    let ClientState::Busy(ex) = &mut c.state else {
                        return;
                    };
                    let mut done = false;
                    let mut error = None;
                    while !u.rbuf.is_empty() && c.wbuf.len() < HIGH_WATER {
                        match dec.decode(&u.rbuf) {
                            Ok(d) => {
                                if ex.dechunk {
                                    if let Some(r) = d.data.clone() {
                                        c.wbuf.extend_from_slice(&u.rbuf[r]);
                                    }
                                } else {
                                    c.wbuf.extend_from_slice(&u.rbuf[..d.consumed]);
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
                    self.client_flush(client);
                    if error.is_some() {
                        // The response started: the only honest signal is to cut.
                        self.abort_exchange(client);
                        self.close_client(client);
                        return;
                    }
                    if done {
                        self.finish_exchange(client, token);
                    } else {
                        let at = self.now + snap.timeouts.read;
                        self.arm(token, at);
                    }
                    return;
                }
                ResponseState::Tunnel => {
                    c.wbuf.extend_from_slice(&u.rbuf);
                    u.rbuf.clear();
                    let eof = u.eof;
                    let at = self.now + snap.timeouts.tunnel_idle;
                    self.arm(token, at);
                    self.arm(client, at);
                    self.client_flush(client);
                    if eof {
                        self.close_upstream(token);
                        if let Some(Conn::Client(c)) = self.conns.get_mut(client.0) {
                            c.close_after_flush = true;
                            c.state = ClientState::Idle;
                        }
                        self.client_flush(client);
                    }
                    return;
                }
            }
        }
    }

    /// The response is complete: pool or close the backend connection, give
    /// back the slot, and let the client send its next request.
    fn finish_exchange(&mut self, client: Token, upstream: Token) {
        let Some(Conn::Client(c)) = self.conns.get_mut(client.0) else {
            return;
        };
        let ClientState::Busy(ex) = std::mem::replace(&mut c.state, ClientState::Idle) else {
            return;
        };
        let request_done = ex.body.is_none();
        if let Some(id) = ex.backend {
            ex.balancer.release(id);
        }
        if !ex.keep_alive || !request_done {
            // A body the backend did not wait for cannot be skipped safely.
            c.close_after_flush = true;
        }
        let reusable = match self.conns.get(upstream.0) {
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
            if let Some(Conn::Upstream(u)) = self.conns.get_mut(upstream.0) {
                u.client = None;
                u.resp = ResponseState::Head;
                u.reused = true;
                addr = Some(u.addr);
            }
            if let Some(addr) = addr {
                self.idle.entry(addr).or_default().push(upstream);
            }
            let at = self.now + self.snapshot.timeouts.backend_keepalive;
            self.arm(upstream, at);
        } else {
            self.close_upstream(upstream);
        }
        let at = self.now + self.snapshot.timeouts.keepalive;
        self.arm(client, at);
        self.client_flush(client);
        self.serve_queues();
        // A pipelined request may already be buffered.
        self.client_progress(client);
    }

    /// The backend connection failed (refused, reset, closed) mid-exchange.
    fn upstream_failed(&mut self, token: Token) {
        let Some(Conn::Upstream(u)) = self.conns.get(token.0) else {
            return;
        };
        let (client, reused, written, backend, balancer) =
            (u.client, u.reused, u.written, u.backend, u.balancer.clone());
        self.close_upstream(token);
        let Some(client) = client else {
            return;
        };
        let (started, has_body, idempotent, in_tunnel) = match self.conns.get_mut(client.0) {
            Some(Conn::Client(c)) => match &mut c.state {
                ClientState::Busy(ex) => {
                    ex.upstream = None;
                    (ex.response_started, ex.body.is_some(), ex.idempotent, false)
                }
                ClientState::Tunnel(_) => (true, false, false, true),
                ClientState::Idle => return,
            },
            _ => return,
        };
        if in_tunnel {
            self.close_client(client);
            return;
        }
        if started {
            self.abort_exchange(client);
            self.close_client(client);
            return;
        }
        if written == 0 {
            // Nothing of the request reached it: another backend gets it.
            // A stale pooled connection says nothing about the backend.
            self.backend_failed_early(client, backend, !reused);
            return;
        }
        if idempotent && !reused {
            // Cut before answering a request that is safe to repeat: the
            // backend is quarantined and another one gets the request.
            self.backend_failed_early(client, backend, true);
            return;
        }
        if reused && !has_body {
            // The pooled connection closed as we reused it; the backend may
            // not have seen the request: one more try on a fresh connection.
            if let Some(Conn::Client(Client {
                state: ClientState::Busy(ex),
                ..
            })) = self.conns.get_mut(client.0)
            {
                ex.balancer.release(backend);
                ex.backend = None;
            }
            self.dispatch(client);
            return;
        }
        // Cut after the request was sent, before any response.
        balancer.quarantine(backend, self.shared.now_ms(self.now));
        self.abort_exchange(client);
        self.respond_error(client, UPSTREAM_FAILED, true);
    }

    /// Drop the client's exchange: its queue place, backend slot, connection.
    fn abort_exchange(&mut self, client: Token) {
        self.leave_queue(client);
        let Some(Conn::Client(c)) = self.conns.get_mut(client.0) else {
            return;
        };
        match std::mem::replace(&mut c.state, ClientState::Idle) {
            ClientState::Busy(ex) => {
                if let Some(id) = ex.backend {
                    ex.balancer.release(id);
                }
                if let Some(up) = ex.upstream {
                    self.close_upstream(up);
                }
                // Keep the request id for an error response that may follow.
                if let Some(Conn::Client(c)) = self.conns.get_mut(client.0) {
                    c.state = ClientState::Busy(Box::new(Exchange {
                        backend: None,
                        upstream: None,
                        body: None,
                        ..*ex
                    }));
                }
            }
            ClientState::Tunnel(up) => self.close_upstream(up),
            ClientState::Idle => {}
        }
    }

    // ---- responses and teardown -------------------------------------------

    /// 301 to `location` (canonical domain, force-HTTPS).
    fn respond_redirect(
        &mut self,
        token: Token,
        location: &str,
        id: &str,
        close: bool,
        is_head: bool,
    ) {
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        c.state = ClientState::Idle;
        let body = format!("301 Moved Permanently: {location}\n");
        let _ = std::io::Write::write_fmt(
            &mut c.wbuf,
            format_args!(
                "HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nX-Request-ID: {id}\r\n{}\r\n",
                body.len(),
                if close { "Connection: close\r\n" } else { "" }
            ),
        );
        if !is_head {
            c.wbuf.extend_from_slice(body.as_bytes());
        }
        if close {
            c.close_after_flush = true;
            c.rbuf.clear();
        }
        let at = self.now + self.snapshot.timeouts.keepalive;
        self.arm(token, at);
        self.client_flush(token);
        if !close {
            self.client_progress(token);
        }
    }

    fn respond_error(&mut self, token: Token, err: (u16, &str), close: bool) {
        self.respond_error_id(token, err, close, None);
    }

    /// Answer with a router error (short body + error header). The client
    /// connection closes after it when `close` or when the request body was
    /// not consumed.
    fn respond_error_id(
        &mut self,
        token: Token,
        (status, code): (u16, &str),
        close: bool,
        id: Option<String>,
    ) {
        self.leave_queue(token);
        let header = self.snapshot.error_header.clone();
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        let (id, mut close, is_head) = match std::mem::replace(&mut c.state, ClientState::Idle) {
            ClientState::Busy(ex) => {
                if let Some(b) = ex.backend {
                    ex.balancer.release(b);
                }
                if let Some(up) = ex.upstream {
                    if let Some(Conn::Upstream(u)) = self.conns.get_mut(up.0) {
                        u.client = None;
                    }
                    self.close_upstream(up);
                }
                (
                    Some(ex.request_id),
                    close || ex.body.is_some() || !ex.keep_alive,
                    ex.is_head,
                )
            }
            _ => (
                Some(id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string())),
                close,
                false,
            ),
        };
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        if c.eof {
            close = true;
        }
        let mut extra: Vec<(&str, &str)> = Vec::with_capacity(1);
        if let Some(id) = id.as_deref() {
            extra.push(("X-Request-ID", id));
        }
        let start = c.wbuf.len();
        let head_len = error_response(status, code, &header, &extra, close, &mut c.wbuf);
        if is_head {
            c.wbuf.truncate(start + head_len);
        }
        c.head_started = None;
        if close {
            c.close_after_flush = true;
            c.rbuf.clear();
        }
        let at = self.now + self.snapshot.timeouts.keepalive;
        self.arm(token, at);
        self.client_flush(token);
        if !close {
            self.client_progress(token);
        }
    }

    fn close_client(&mut self, token: Token) {
        self.leave_queue(token);
        if let Some(Conn::Client(_)) = self.conns.get(token.0)
            && let Conn::Client(mut c) = self.conns.remove(token.0)
        {
            let _ = self.poll.registry().deregister(&mut c.sock);
            match c.state {
                ClientState::Busy(ex) => {
                    if let Some(id) = ex.backend {
                        ex.balancer.release(id);
                    }
                    if let Some(up) = ex.upstream {
                        if let Some(Conn::Upstream(u)) = self.conns.get_mut(up.0) {
                            u.client = None;
                        }
                        self.close_upstream(up);
                    }
                }
                ClientState::Tunnel(up) => {
                    if let Some(Conn::Upstream(u)) = self.conns.get_mut(up.0) {
                        u.client = None;
                    }
                    self.close_upstream(up);
                }
                ClientState::Idle => {}
            }
        }
    }

    fn close_upstream(&mut self, token: Token) {
        if let Some(Conn::Upstream(_)) = self.conns.get(token.0)
            && let Conn::Upstream(mut u) = self.conns.remove(token.0)
        {
            let _ = self.poll.registry().deregister(&mut u.sock);
            if let Some(pool) = self.idle.get_mut(&u.addr) {
                pool.retain(|t| *t != token);
            }
        }
    }
}
