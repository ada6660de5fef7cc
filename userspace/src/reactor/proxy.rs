//! The reactor loop and the client side of the proxy: accept, read and
//! write clients (through TLS when they have it), parse HTTP/1.1 heads,
//! tunnels, timers, teardown. The request's journey lives in `exchange.rs`,
//! the backend side in `upstream.rs`.
//!
//! ```text
//! client:  Idle ──head──► Busy(exchange) ──response done──► Idle (keep-alive)
//!                           │  queued ─► upstream picked ─► streaming
//!                           └─ 101 ──► Tunnel ──either side closes──► closed
//! upstream: connecting ─► busy (exchange) ─► idle in pool ─► busy ...
//! ```

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use mio::event::Event;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::conn::{self, *};
use super::timers::{Due, Timers};

/// Seed for the request-id generator.
fn seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_le_bytes(b) | 1
}
use super::{Shared, WAKER};
use crate::http::forward::Scheme;
use crate::http::h1::{error_response, parse_request_head};
use crate::snapshot::Snapshot;

/// Router errors that are not codec errors (reason codes for the error header).
pub(super) const UNKNOWN_HOST: (u16, &str) = (404, "unknown_host");
pub(super) const QUEUE_FULL: (u16, &str) = (503, "queue_full");
pub(super) const QUEUE_TIMEOUT: (u16, &str) = (503, "queue_timeout");
pub(super) const ALL_DOWN: (u16, &str) = (503, "no_backend_available");
pub(super) const HEADER_TIMEOUT: (u16, &str) = (408, "header_timeout");
pub(super) const CONNECT_TIMEOUT: (u16, &str) = (504, "upstream_connect_timeout");
pub(super) const READ_TIMEOUT: (u16, &str) = (504, "upstream_read_timeout");
pub(super) const UPSTREAM_FAILED: (u16, &str) = (502, "upstream_connection_failed");

/// Tokens above this are listeners (counting down from `WAKER`).
const LISTENER_BASE: usize = usize::MAX - 1;
/// How often queued requests look for capacity freed by other reactors.
const QUEUE_TICK: Duration = Duration::from_millis(10);
/// On shutdown, in-flight requests get this long to finish.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

pub struct Reactor {
    /// This thread's index (its shard of the counters).
    pub(super) id: usize,
    pub(super) poll: Poll,
    pub(super) shared: Arc<Shared>,
    /// Listening sockets by index (token `LISTENER_BASE - index`); a
    /// removed one leaves `None` so other tokens stay valid.
    listeners: Vec<Option<TcpListener>>,
    /// Local port of each listener (for X-Forwarded-Port).
    ports: Vec<u16>,
    /// Whether each listener speaks TLS.
    secure: Vec<bool>,
    tls: Option<Arc<rustls::ServerConfig>>,
    pub(super) conns: Slab<Conn>,
    pub(super) exchanges: Slab<Exchange>,
    timers: Timers,
    /// Idle keep-alive backend connections, per backend address.
    pub(super) idle: HashMap<SocketAddr, Vec<Token>>,
    /// Waiting exchanges per app (keyed by the balancer's address).
    pub(super) queues: HashMap<usize, VecDeque<usize>>,
    /// Connections to drive again this turn (reading resumed after the other
    /// side drained): a work list instead of recursion between the two sides.
    pub(super) ready: VecDeque<Token>,
    pub(super) now: Instant,
    pub(super) wall: SystemTime,
    pub(super) snapshot: Arc<Snapshot>,
    /// Every socket read lands here first; connections keep only what they
    /// hold, so an idle one holds no buffer.
    pub(super) scratch: Box<[u8]>,
    /// The event being handled says the peer may have closed: reads drain.
    pub(super) drain_reads: bool,
    /// Request ids: a fast generator seeded once from the system (ids are
    /// correlation handles, not secrets), so no syscall per request.
    pub(super) rng: u64,
    /// Set when shutdown began: no new connections, idle ones closed, busy
    /// ones closed after their response, HTTP/2 told GOAWAY.
    pub(super) drain_deadline: Option<Instant>,
    drain_begun: bool,
}

impl Reactor {
    pub fn new(
        id: usize,
        poll: Poll,
        shared: Arc<Shared>,
        tagged: Vec<(TcpListener, bool)>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<Reactor> {
        let secure: Vec<bool> = tagged.iter().map(|(_, s)| *s).collect();
        let mut listeners: Vec<Option<TcpListener>> =
            tagged.into_iter().map(|(l, _)| Some(l)).collect();
        for (i, l) in listeners.iter_mut().enumerate() {
            if let Some(l) = l {
                poll.registry()
                    .register(l, Token(LISTENER_BASE - i), Interest::READABLE)?;
            }
        }
        let snapshot = shared.snapshot.load_full();
        let ports = listeners
            .iter()
            .map(|l| {
                l.as_ref()
                    .and_then(|l| l.local_addr().ok())
                    .map_or(80, |a| a.port())
            })
            .collect();
        Ok(Reactor {
            id,
            poll,
            shared,
            listeners,
            ports,
            secure,
            tls,
            conns: Slab::with_capacity(1024),
            exchanges: Slab::with_capacity(1024),
            timers: Timers::default(),
            idle: HashMap::new(),
            queues: HashMap::new(),
            ready: VecDeque::new(),
            now: Instant::now(),
            wall: SystemTime::now(),
            snapshot,
            scratch: vec![0u8; READ_CHUNK * 4].into_boxed_slice(),
            drain_reads: true,
            rng: seed(),
            drain_deadline: None,
            drain_begun: false,
        })
    }

    pub(super) fn is_draining(&self) -> bool {
        self.drain_begun
    }

    fn draining_started(&mut self) -> bool {
        !std::mem::replace(&mut self.drain_begun, true)
    }

    /// Graceful shutdown: stop accepting; close idle connections; let busy
    /// ones finish their current response (HTTP/1.x then closes, HTTP/2 gets
    /// GOAWAY and closes when its streams are done).
    fn begin_drain(&mut self) {
        for mut l in self.listeners.drain(..).flatten() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let tokens: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c, Conn::Client(_)))
            .map(|(k, _)| Token(k))
            .collect();
        for token in tokens {
            let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
                continue;
            };
            match &mut c.state {
                ClientState::Idle => {
                    c.close_after_flush = true;
                    self.client_flush(token);
                }
                ClientState::Busy(xid) => {
                    if let Some(ex) = self.exchanges.get_mut(*xid) {
                        ex.keep_alive = false;
                    }
                }
                ClientState::Tunnel(_) => {}
                ClientState::H2(h) => {
                    h.conn.goaway(false);
                    if h.streams.is_empty() {
                        c.close_after_flush = true;
                    }
                    self.h2_flush(token);
                }
            }
        }
    }

    /// A random (version 4) UUID from the reactor's generator (wyrand).
    pub(super) fn request_uuid(&mut self) -> uuid::Uuid {
        let mut bytes = [0u8; 16];
        for half in bytes.chunks_mut(8) {
            self.rng = self.rng.wrapping_add(0xa076_1d64_78bd_642f);
            let t = u128::from(self.rng) * u128::from(self.rng ^ 0xe703_7ed1_a0b4_28db);
            half.copy_from_slice(&((t >> 64) as u64 ^ t as u64).to_le_bytes());
        }
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let mut timeout = self
                .timers
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if self.drain_begun || self.queues.values().any(|q| !q.is_empty()) {
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
            self.apply_listener_changes();
            self.fire_timers();
            self.serve_queues();
            self.drive_ready();
            if self.shared.shutdown.load(Ordering::Acquire) {
                let deadline = *self
                    .drain_deadline
                    .get_or_insert_with(|| self.now + DRAIN_GRACE);
                if self.draining_started() {
                    self.begin_drain();
                }
                let clients_left = self.conns.iter().any(|(_, c)| matches!(c, Conn::Client(_)));
                if !clients_left || self.now >= deadline {
                    return Ok(());
                }
            }
        }
    }

    /// This thread's counters.
    pub(super) fn counters(&self) -> Option<&crate::metrics::ReactorCounters> {
        self.shared.counters.get(self.id)
    }

    /// Count a response: status class and time since the request began.
    pub(super) fn count_response(&self, status: u16, since: Option<Instant>) {
        if let Some(c) = self.counters() {
            let us = since.map_or(0, |t| {
                self.now.saturating_duration_since(t).as_micros() as u64
            });
            c.response(status, us);
        }
    }

    /// Listeners opened or closed by a reload.
    fn apply_listener_changes(&mut self) {
        if self.drain_begun {
            return;
        }
        for change in self.shared.take_listener_changes(self.id) {
            match change {
                super::ListenerChange::Add(mut l, secure) => {
                    let index = self.listeners.len();
                    if self
                        .poll
                        .registry()
                        .register(&mut l, Token(LISTENER_BASE - index), Interest::READABLE)
                        .is_err()
                    {
                        continue;
                    }
                    self.ports.push(l.local_addr().map_or(80, |a| a.port()));
                    self.secure.push(secure);
                    self.listeners.push(Some(l));
                }
                super::ListenerChange::Remove(addr) => {
                    for slot in self.listeners.iter_mut() {
                        if slot
                            .as_ref()
                            .and_then(|l| l.local_addr().ok())
                            .is_some_and(|a| a == addr)
                            && let Some(mut l) = slot.take()
                        {
                            let _ = self.poll.registry().deregister(&mut l);
                        }
                    }
                }
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
            let Some(Some(listener)) = self.listeners.get(index) else {
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
                        handshake_seen: false,
                        deadline: Default::default(),
                    }));
                    let at = self.now + self.snapshot.timeouts.header;
                    self.arm(token, at);
                    if let Some(c) = self.counters() {
                        c.connections_accepted.fetch_add(1, Ordering::Relaxed);
                    }
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

    pub(super) fn arm(&mut self, token: Token, at: Instant) {
        let deadline = match self.conns.get_mut(token.0) {
            Some(Conn::Client(c)) => &mut c.deadline,
            Some(Conn::Upstream(u)) => &mut u.deadline,
            None => return,
        };
        self.timers.arm(deadline, at, token);
    }

    pub(super) fn disarm(&mut self, token: Token) {
        match self.conns.get_mut(token.0) {
            Some(Conn::Client(c)) => c.deadline.at = None,
            Some(Conn::Upstream(u)) => u.deadline.at = None,
            None => {}
        }
    }

    fn fire_timers(&mut self) {
        while let Some((token, popped)) = self.timers.pop_due(self.now) {
            let (deadline, client) = match self.conns.get_mut(token.0) {
                Some(Conn::Client(c)) => (&mut c.deadline, true),
                Some(Conn::Upstream(u)) => (&mut u.deadline, false),
                None => continue,
            };
            if let Due::Fire = self.timers.check(deadline, popped, token, self.now) {
                if client {
                    self.client_timeout(token);
                } else {
                    self.upstream_timeout(token);
                }
            }
        }
    }

    fn client_timeout(&mut self, token: Token) {
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        match &mut c.state {
            ClientState::H2(h) => {
                // Idle HTTP/2 connection: say goodbye. Busy streams have
                // their own backend deadlines; the idle clock starts again.
                if h.streams.is_empty() {
                    h.conn.goaway(false);
                    c.close_after_flush = true;
                    self.h2_flush(token);
                } else {
                    let at = self.now + self.snapshot.timeouts.keepalive;
                    self.arm(token, at);
                }
            }
            ClientState::Idle if c.head_started.is_some() || !c.rbuf.is_empty() => {
                self.respond_error_plain(token, HEADER_TIMEOUT, true, None);
            }
            ClientState::Idle => self.close_client(token),
            ClientState::Busy(xid) => {
                let xid = *xid;
                if self.exchanges.get(xid).is_some_and(|ex| ex.queued) {
                    self.fail_exchange(xid, QUEUE_TIMEOUT, false);
                }
            }
            ClientState::Tunnel(up) => {
                let up = *up;
                self.close_upstream(up);
                self.close_client(token);
            }
        }
    }

    // ---- events -----------------------------------------------------------

    fn on_event(&mut self, token: Token, ev: &Event) {
        self.drain_reads = ev.is_read_closed() || ev.is_error();
        self.on_event_inner(token, ev);
        self.drain_reads = true;
    }

    fn on_event_inner(&mut self, token: Token, ev: &Event) {
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

    pub(super) fn client_read(&mut self, token: Token) {
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
        match client_read_into(c, cap, &mut self.scratch, self.drain_reads) {
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

    /// The client vanished (reset): drop its exchanges and backend connections.
    pub(super) fn client_gone(&mut self, token: Token) {
        self.close_client(token);
    }

    pub(super) fn client_flush(&mut self, token: Token) {
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
        if c.wbuf.is_empty() {
            // Nothing held while idle.
            c.wbuf = Vec::new();
        }
        if client_output_empty(c) && c.close_after_flush {
            self.close_client_gracefully(token);
            return;
        }
        // The backend side was paused on our buffer: resume it.
        if drained_below || c.wbuf.is_empty() {
            let up = match c.state {
                ClientState::Busy(xid) => self.exchanges.get(xid).and_then(|ex| ex.upstream),
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
    pub(super) fn client_progress(&mut self, token: Token) {
        self.after_handshake(token);
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
                    if c.close_after_flush {
                        return;
                    }
                    if c.rbuf.is_empty() {
                        c.rbuf = Vec::new();
                        if c.eof {
                            // Answer what was asked, then close.
                            c.close_after_flush = true;
                            self.client_flush(token);
                        }
                        return;
                    }
                    match parse_request_head(&c.rbuf, &self.snapshot.limits) {
                        Err(e) => {
                            self.respond_error_plain(token, (e.status(), e.code()), true, None);
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
                            self.start_h1_exchange(token, head);
                            // Loop: stream any body bytes already buffered.
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
                        && self
                            .exchanges
                            .get(xid)
                            .is_some_and(|ex| matches!(ex.body, RequestBody::H1(_)))
                    {
                        // The client stopped mid-body.
                        self.client_gone(token);
                    }
                    return;
                }
                ClientState::Tunnel(up) => {
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

    // ---- answers without an exchange --------------------------------------

    /// A router error to an HTTP/1.x client that has no exchange (malformed
    /// head, header timeout, unknown host, redirect).
    pub(super) fn respond_error_plain(
        &mut self,
        token: Token,
        (status, code): (u16, &str),
        close: bool,
        id: Option<String>,
    ) {
        let header = self.snapshot.error_header.clone();
        let fresh = self.request_uuid();
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        let close = close || c.eof;
        let id = id.unwrap_or_else(|| fresh.to_string());
        error_response(
            status,
            code,
            &header,
            &[("X-Request-ID", &id)],
            close,
            &mut c.wbuf,
        );
        let since = c.head_started.map(|(t, _)| t);
        self.count_response(status, since);
        self.after_plain_answer(token, close);
    }

    /// 301 to `location` (canonical domain, force-HTTPS).
    pub(super) fn respond_redirect(
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
        let close = close || c.eof;
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
        self.count_response(301, None);
        self.after_plain_answer(token, close);
    }

    /// After a response Portier wrote itself: the connection waits for the
    /// next request, or closes once it is sent.
    pub(super) fn after_plain_answer(&mut self, token: Token, close: bool) {
        let Some(Conn::Client(c)) = self.conns.get_mut(token.0) else {
            return;
        };
        c.state = ClientState::Idle;
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

    // ---- teardown ---------------------------------------------------------

    pub(super) fn close_client(&mut self, token: Token) {
        let Some(Conn::Client(_)) = self.conns.get(token.0) else {
            return;
        };
        let Conn::Client(mut c) = self.conns.remove(token.0) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.sock);
        match c.state {
            ClientState::Busy(xid) => self.drop_exchange(xid),
            ClientState::Tunnel(up) => self.close_upstream(up),
            ClientState::H2(h) => self.h2_drop_all(*h),
            ClientState::Idle => {}
        }
    }

    pub(super) fn close_upstream(&mut self, token: Token) {
        let Some(Conn::Upstream(_)) = self.conns.get(token.0) else {
            return;
        };
        let Conn::Upstream(mut u) = self.conns.remove(token.0) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut u.sock);
        if let Some(pool) = self.idle.get_mut(&u.addr) {
            pool.retain(|t| *t != token);
        }
        if let Some(xid) = u.exchange
            && let Some(ex) = self.exchanges.get_mut(xid)
            && ex.upstream == Some(token)
        {
            ex.upstream = None;
        }
    }
}
