//! The reactor loop: poll, accept, route readiness events to the client
//! and backend sides, run the control door's commands (listeners, queue
//! grants), fire timers, drain on shutdown; and connection teardown.
//!
//! One turn: poll (until the wheel's next deadline) → read the clock once →
//! events → work list (`ready`) → commands and grants → due timers → work
//! list again. No stage calls back into the loop: work that must happen
//! again (a paused side resumed, a pipelined request) goes on `ready`.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use mio::event::Event;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::WAKER;
use super::conn::*;
use super::listener::Listeners;
use super::timers::{Key, Wheel};
use crate::control::{Command, Control, ListenerKind};
use crate::exchange::{ConnId, Exchange, ExchangeId};
use crate::http::HttpError;
use crate::http::answer::Answer;
use crate::http::forward::Scheme;
use crate::http::h1::server::{Expired, ServerConn, ServerTimeouts};
use crate::proxy_protocol::Rejected;
use crate::sched::balance::Grant;
use crate::snapshot::Snapshot;
use crate::upstream::pool::Pool;

/// Connections accepted from one listener per turn (the rest next turn).
const ACCEPTS_PER_TURN: usize = 16;
/// Live timers fired per turn (the rest next turn; stale entries are
/// skipped without counting).
const TIMERS_PER_TURN: usize = 32;

/// On shutdown, in-flight requests get this long to finish.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

pub struct Reactor {
    /// This thread's index (its shard of the counters, its mailbox).
    pub(super) id: usize,
    pub(super) poll: Poll,
    pub(super) control: Arc<Control>,
    listeners: Listeners,
    tls: Option<Arc<rustls::ServerConfig>>,
    pub(super) conns: Slab<Conn>,
    pub(super) exchanges: Slab<Exchange>,
    wheel: Wheel,
    /// Idle keep-alive backend connections.
    pub(super) pool: Pool,
    /// Connections to drive again this turn (reading resumed after the other
    /// side drained, a pipelined request): a work list instead of recursion.
    pub(super) ready: VecDeque<Token>,
    /// Queue grants for this reactor, handled after the current event.
    pub(super) grants: Vec<Grant>,
    /// Client connections whose output is written at the end of the turn
    /// (see `Client::flush_queued`).
    pub(super) flush_later: Vec<Token>,
    /// The serial number of the next backend connection.
    pub(super) next_upstream_serial: u64,
    /// Listeners with connections still waiting after this turn's batch.
    accept_later: Vec<usize>,
    /// HTTP/2 events of the connection being driven (reused).
    pub(super) h2_events: Vec<crate::http::h2::Event>,
    /// HTTP/2 requests routed during the current input batch, sent to a
    /// backend only once the batch is done (see `h2_progress`).
    pub(super) h2_undispatched: Vec<(Token, u32, crate::exchange::ExchangeId)>,
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
    rng: u64,
    /// Set when shutdown began: no new connections, idle ones closed, busy
    /// ones closed after their response, HTTP/2 told GOAWAY.
    drain_started: Option<Instant>,
}

/// Seed for the request-id generator.
fn seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_le_bytes(b) | 1
}

pub(super) fn cid(t: Token) -> ConnId {
    ConnId(t.0)
}

pub(super) fn tok(c: ConnId) -> Token {
    Token(c.0)
}

impl Reactor {
    pub fn new(
        id: usize,
        poll: Poll,
        control: Arc<Control>,
        tagged: Vec<(std::net::TcpListener, ListenerKind)>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<Reactor> {
        let mut listeners = Listeners::default();
        for (l, kind) in tagged {
            listeners.add(poll.registry(), l, kind)?;
        }
        let snapshot = control.snapshot.load_full();
        Ok(Reactor {
            id,
            poll,
            control,
            listeners,
            tls,
            conns: Slab::with_capacity(1024),
            exchanges: Slab::with_capacity(1024),
            wheel: Wheel::default(),
            pool: Pool::default(),
            ready: VecDeque::new(),
            grants: Vec::new(),
            flush_later: Vec::new(),
            next_upstream_serial: 0,
            accept_later: Vec::new(),
            h2_events: Vec::new(),
            h2_undispatched: Vec::new(),
            now: Instant::now(),
            wall: SystemTime::now(),
            snapshot,
            scratch: vec![0u8; READ_CHUNK * 4].into_boxed_slice(),
            drain_reads: true,
            rng: seed(),
            drain_started: None,
        })
    }

    pub(super) fn is_draining(&self) -> bool {
        self.drain_started.is_some()
    }

    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let mut timeout = self
                .wheel
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if !self.accept_later.is_empty() {
                // Connections are waiting on a listener: do not sleep.
                timeout = Some(Duration::ZERO);
            }
            if self.is_draining() {
                // Look again soon: the drain ends when the last client goes.
                timeout = Some(timeout.map_or(Duration::from_millis(50), |t| {
                    t.min(Duration::from_millis(50))
                }));
            }
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            // One clock reading per loop turn.
            self.now = Instant::now();
            self.wall = SystemTime::now();
            self.snapshot = self.control.snapshot.load_full();
            for index in std::mem::take(&mut self.accept_later) {
                self.accept(index);
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    token => match self.listeners.index_of(token) {
                        Some(index) => self.accept(index),
                        None => self.on_event(token, ev),
                    },
                }
            }
            self.drive_ready();
            self.run_commands();
            self.fire_timers();
            self.drive_ready();
            // Deferred writes; a drained buffer may resume backends, whose
            // reads may queue more.
            while !self.flush_later.is_empty() {
                self.flush_deferred();
                self.drive_ready();
            }
            if self.control.is_shutting_down() {
                let started = match self.drain_started {
                    Some(t) => t,
                    None => {
                        self.drain_started = Some(self.now);
                        self.begin_drain();
                        self.now
                    }
                };
                // Read each turn: a SIGTERM during an upgrade's long drain
                // shortens it.
                let deadline = started + self.control.drain_limit().unwrap_or(DRAIN_GRACE);
                let clients_left = self.conns.iter().any(|(_, c)| matches!(c, Conn::Client(_)));
                if !clients_left || self.now >= deadline {
                    return Ok(());
                }
            }
        }
    }

    /// Graceful shutdown: stop accepting; close idle connections; let busy
    /// ones finish their current response (HTTP/1.x then closes, HTTP/2 gets
    /// GOAWAY and closes when its streams are done).
    fn begin_drain(&mut self) {
        self.listeners.close_all(self.poll.registry());
        // Handing over to an upgraded process: nothing is cut. An idle
        // keep-alive connection stays for its next request, answered with
        // `Connection: close` (closing it now would race a request already
        // on its way); HTTP/2 gets GOAWAY(max) + PING, then the real one.
        let handover = self.control.is_handover();
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
                ClientState::ProxyHeader { .. } => self.close_client(token),
                ClientState::H1(h) => match h.link {
                    Link::None if handover => {}
                    Link::None => {
                        h.conn.close();
                        c.closing = true;
                        self.client_flush(token);
                    }
                    Link::Exchange(xid) => {
                        if let Some(ex) = self.exchanges.get_mut(xid.0) {
                            ex.route.request.keep_alive = false;
                        }
                    }
                    Link::Tunnel(_) => {}
                },
                ClientState::H2(h) => {
                    h.conn.goaway(handover);
                    // Graceful: the client may still open streams until
                    // the PING comes back and the final GOAWAY goes out.
                    if h.streams.is_empty() && h.conn.goaway_is_final() {
                        c.closing = true;
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

    /// This thread's counters.
    pub(super) fn counters(&self) -> Option<&crate::metrics::ReactorCounters> {
        self.control.counters.get(self.id)
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

    /// Listener changes and queue grants from the control door.
    fn run_commands(&mut self) {
        for command in self.control.take_commands(self.id) {
            match command {
                Command::AddListener { listener, kind } => {
                    if !self.is_draining()
                        && let Err(e) = self.listeners.add(self.poll.registry(), listener, kind)
                    {
                        tracing::warn!("reactor {}: cannot add a listener: {e}", self.id);
                    }
                }
                Command::RemoveListener { addr, secure } => {
                    self.listeners.remove(self.poll.registry(), addr, secure);
                }
                Command::UpdateListener { addr, kind } => self.listeners.update(addr, kind),
                Command::Grant(g) => self.grants.push(g),
                Command::ShareListeners(reply) => {
                    let _ = reply.send(self.listeners.share());
                }
            }
        }
        self.take_grants();
    }

    /// Write out the client connections queued this turn.
    fn flush_deferred(&mut self) {
        let queued = std::mem::take(&mut self.flush_later);
        for token in &queued {
            if let Some(Conn::Client(c)) = self.conns.get_mut(token.0) {
                c.flush_queued = false;
            }
            self.client_flush(*token);
        }
        // Keep the allocation for the next turn.
        if self.flush_later.is_empty() {
            self.flush_later = queued;
            self.flush_later.clear();
        }
    }

    pub(super) fn drive_ready(&mut self) {
        loop {
            while let Some(token) = self.ready.pop_front() {
                match self.conns.get(token.0) {
                    Some(Conn::Client(_)) => self.client_read(token),
                    Some(Conn::Upstream(_)) => self.upstream_read(token),
                    None => {}
                }
            }
            if self.grants.is_empty() {
                return;
            }
            self.take_grants();
        }
    }

    // ---- accept -----------------------------------------------------------

    fn accept(&mut self, index: usize) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            let (port, kind) = (listener.addr.port(), listener.kind);
            match listener.sock.accept() {
                Ok((mut sock, peer)) => {
                    if let Some(c) = self.counters() {
                        c.connections_accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    // Only a trusted balancer may speak for its clients:
                    // anyone else is closed before a byte is read.
                    if kind.proxy_protocol && !self.snapshot.is_trusted(peer.ip()) {
                        self.proxy_rejected(Rejected::Untrusted);
                        continue;
                    }
                    let _ = sock.set_nodelay(true);
                    let tls = match (kind.secure, &self.tls) {
                        (true, Some(cfg)) => match crate::tls::session::Session::new(cfg.clone()) {
                            Ok(s) => Some(Box::new(s)),
                            Err(e) => {
                                tracing::warn!("TLS session setup failed: {e}");
                                continue;
                            }
                        },
                        _ => None,
                    };
                    let configured = if kind.secure {
                        self.snapshot.public_https_port
                    } else {
                        self.snapshot.public_http_port
                    };
                    let state = if kind.proxy_protocol {
                        ClientState::ProxyHeader {
                            deadline: self.now + self.snapshot.timeouts.header,
                        }
                    } else {
                        ClientState::H1(H1Client {
                            conn: ServerConn::new(self.now, &self.server_timeouts()),
                            link: Link::None,
                        })
                    };
                    let token = Token(self.conns.vacant_key());
                    if self.register(&mut sock, token).is_err() {
                        continue;
                    }
                    self.conns.insert(Conn::Client(Client {
                        sock,
                        tls,
                        scheme: if kind.secure {
                            Scheme::Https
                        } else {
                            Scheme::Http
                        },
                        peer: peer.ip(),
                        port: if configured == 0 { port } else { configured },
                        rbuf: Vec::new(),
                        wbuf: Vec::new(),
                        state,
                        eof: false,
                        read_paused: false,
                        closing: false,
                        flush_queued: false,
                        scheduled: None,
                    }));
                    self.schedule_conn(token);
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
        // More may be waiting (a burst of connections): the rest next turn,
        // after the other connections' events (epoll is edge-triggered, so
        // the listener must be remembered).
        if !self.accept_later.contains(&index) {
            self.accept_later.push(index);
        }
    }

    // ---- timers -----------------------------------------------------------

    /// The client connection timeouts of the current snapshot.
    pub(super) fn server_timeouts(&self) -> ServerTimeouts {
        let t = &self.snapshot.timeouts;
        ServerTimeouts {
            header: t.header,
            keepalive: t.keepalive,
            tunnel: t.tunnel_idle,
        }
    }

    /// Put a connection's earliest timer on the wheel (after any change).
    pub(super) fn schedule_conn(&mut self, token: Token) {
        let (scheduled, next) = match self.conns.get_mut(token.0) {
            Some(Conn::Client(c)) => {
                let next = c.next_deadline();
                (&mut c.scheduled, next)
            }
            Some(Conn::Upstream(u)) => {
                // The exchange it carries rides on its entry (1:1): no
                // wheel entry per request.
                let carried = match u.link {
                    Link::Exchange(xid) => {
                        self.exchanges.get(xid.0).and_then(|ex| ex.next_deadline())
                    }
                    _ => None,
                };
                let next = match (u.conn.next_deadline(), carried) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                (&mut u.scheduled, next)
            }
            None => return,
        };
        self.wheel.schedule(scheduled, next, Key::Conn(token.0));
    }

    /// Put an exchange's earliest timer on the wheel (after any change):
    /// on its backend connection's entry while it has one, on its own
    /// while it waits (queued, or between retries).
    pub(super) fn schedule_exchange(&mut self, xid: ExchangeId) {
        let Some(ex) = self.exchanges.get_mut(xid.0) else {
            return;
        };
        match ex.upstream() {
            Some(up) if matches!(self.conns.get(up.0), Some(Conn::Upstream(_))) => {
                self.schedule_conn(tok(up));
            }
            _ => {
                let next = ex.next_deadline();
                self.wheel
                    .schedule(&mut ex.scheduled, next, Key::Exchange(xid.0));
            }
        }
    }

    fn fire_timers(&mut self) {
        // A bounded batch per turn: thousands of connections timing out
        // together (slowloris) must not hold up everyone else's events; the
        // rest are still due, so the next poll does not wait.
        let mut fired = 0;
        while fired < TIMERS_PER_TURN {
            let Some((key, popped)) = self.wheel.pop_due(self.now) else {
                break;
            };
            match key {
                Key::Conn(k) => {
                    let live = match self.conns.get_mut(k) {
                        Some(Conn::Client(c)) => Wheel::is_live(&mut c.scheduled, popped),
                        Some(Conn::Upstream(u)) => Wheel::is_live(&mut u.scheduled, popped),
                        None => false,
                    };
                    if live {
                        fired += 1;
                        self.conn_timeout(Token(k));
                        self.schedule_conn(Token(k));
                    }
                }
                Key::Exchange(k) => {
                    let live = self
                        .exchanges
                        .get_mut(k)
                        .is_some_and(|ex| Wheel::is_live(&mut ex.scheduled, popped));
                    if live {
                        fired += 1;
                        self.exchange_timeout(ExchangeId(k));
                        self.schedule_exchange(ExchangeId(k));
                    }
                }
            }
        }
    }

    fn conn_timeout(&mut self, token: Token) {
        let now = self.now;
        match self.conns.get_mut(token.0) {
            Some(Conn::Client(c)) => match &mut c.state {
                ClientState::ProxyHeader { deadline } => {
                    if *deadline <= now {
                        self.proxy_rejected(Rejected::Timeout);
                        self.close_client(token);
                    }
                }
                ClientState::H1(h) => match h.conn.handle_timeout(now) {
                    Some(Expired::HeaderTimeout) => {
                        let id = self.request_uuid().to_string();
                        let answer = Answer::error(HttpError::PeerHeaderTimeout, id);
                        self.answer(token, answer, true, false);
                    }
                    Some(Expired::Close) => {
                        if let Link::Tunnel(up) = h.link {
                            self.close_upstream(up);
                        }
                        self.close_client(token);
                    }
                    None => {}
                },
                ClientState::H2(_) => {
                    self.h2_timeout(token);
                    self.h2_idle_timeout(token);
                }
            },
            // The carried exchange's timers first (connect, response);
            // then idle in the pool, or a silent tunnel: either way it ends.
            Some(Conn::Upstream(u)) => {
                let link = u.link;
                if let Link::Exchange(xid) = link
                    && self
                        .exchanges
                        .get(xid.0)
                        .and_then(|ex| ex.next_deadline())
                        .is_some_and(|at| at <= now)
                {
                    self.exchange_timeout(xid);
                }
                let Some(Conn::Upstream(u)) = self.conns.get_mut(token.0) else {
                    return;
                };
                if u.conn.handle_timeout(now) {
                    self.close_upstream(token);
                    if let Link::Tunnel(client) = link {
                        self.close_client(client);
                    }
                }
            }
            None => {}
        }
    }

    // ---- events -----------------------------------------------------------

    fn on_event(&mut self, token: Token, ev: &Event) {
        self.drain_reads = ev.is_read_closed() || ev.is_error();
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
        self.drain_reads = true;
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
            ClientState::ProxyHeader { .. } => {}
            ClientState::H1(h) => match h.link {
                Link::Exchange(xid) => self.drop_exchange(xid),
                Link::Tunnel(up) => self.close_upstream(up),
                Link::None => {}
            },
            ClientState::H2(h) => {
                for xid in h.streams.into_values() {
                    self.drop_exchange(xid);
                }
            }
        }
    }

    /// Close after everything was sent: a TLS client gets close_notify first.
    pub(super) fn close_client_gracefully(&mut self, token: Token) {
        if let Some(Conn::Client(c)) = self.conns.get_mut(token.0)
            && let Some(tls) = c.tls.as_deref_mut()
        {
            tls.close(&mut c.sock);
        }
        self.close_client(token);
    }

    pub(super) fn close_upstream(&mut self, token: Token) {
        let Some(Conn::Upstream(_)) = self.conns.get(token.0) else {
            return;
        };
        let Conn::Upstream(mut u) = self.conns.remove(token.0) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut u.sock);
        // Only a pooled connection carries nothing. Its machine may say
        // Closed already (idle timeout, bytes while idle): the pool entry
        // must go whatever the state, or the freed slot's next tenant
        // would be taken from the pool as this connection.
        if matches!(u.link, Link::None) {
            self.pool.remove(u.addr, cid(token));
        }
    }

    /// Register a new backend connection's socket; `None` if it cannot be.
    pub(super) fn register_upstream(
        &mut self,
        mut sock: mio::net::TcpStream,
        make: impl FnOnce(mio::net::TcpStream) -> Upstream,
    ) -> Option<Token> {
        let token = Token(self.conns.vacant_key());
        self.register(&mut sock, token).ok()?;
        self.conns.insert(Conn::Upstream(Box::new(make(sock))));
        Some(token)
    }

    /// Every connection is registered once, edge-triggered, for both
    /// directions: no re-registration per request.
    fn register(&self, sock: &mut mio::net::TcpStream, token: Token) -> io::Result<()> {
        self.poll
            .registry()
            .register(sock, token, Interest::READABLE | Interest::WRITABLE)
    }
}
