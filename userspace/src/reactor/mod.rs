//! Reactor threads: one mio loop per thread, each with its own SO_REUSEPORT
//! listeners, connections, backend pool, queues and timers. The only code
//! that touches sockets and the clock on the request path.
//!
//! Fed by: the kernel (accepts, readiness) and the shared `Snapshot` (loaded
//! lock-free per request). Emits: bytes on sockets. Reaches the management
//! thread through atomics only (balancer state); the management thread
//! reaches it through the `ArcSwap` and the `Waker`.

mod conn;
mod exchange;
mod h2;
mod listener;
mod proxy;
mod timers;
mod upstream;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use arc_swap::ArcSwap;
use mio::{Token, Waker};

use crate::snapshot::Snapshot;

/// State every reactor and the management thread share.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    /// One shard of request counters per reactor thread (index = thread).
    pub counters: Vec<crate::metrics::ReactorCounters>,
    /// The access log, when `[log] access` is on (set at start).
    pub access_log: Option<crate::accesslog::AccessLog>,
    /// Listener changes from a reload, one queue per reactor; the flag
    /// saves the reactor a lock on every turn (it looks only when set).
    listener_changes: Vec<std::sync::Mutex<Vec<ListenerChange>>>,
    listener_pending: Vec<std::sync::atomic::AtomicBool>,
    wakers: std::sync::OnceLock<Vec<Arc<Waker>>>,
    /// Whether the reactors were given a TLS configuration at start.
    has_tls: std::sync::atomic::AtomicBool,
    /// Origin of the millisecond clock the balancers use.
    pub started: Instant,
    pub shutdown: AtomicBool,
}

impl Shared {
    /// `threads`: reactor threads that will run (0 = one per CPU).
    pub fn new(
        snapshot: Snapshot,
        threads: usize,
        access_log: Option<crate::accesslog::AccessLog>,
    ) -> Arc<Shared> {
        let threads = effective_threads(threads);
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            counters: (0..threads).map(|_| Default::default()).collect(),
            access_log,
            listener_changes: (0..threads).map(|_| Default::default()).collect(),
            listener_pending: (0..threads).map(|_| Default::default()).collect(),
            wakers: std::sync::OnceLock::new(),
            has_tls: Default::default(),
            started: Instant::now(),
            shutdown: AtomicBool::new(false),
        })
    }

    pub fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_millis() as u64
    }
}

const WAKER: Token = Token(usize::MAX);

/// A listener to add to, or remove from, a running reactor (reload).
pub enum ListenerChange {
    Add(mio::net::TcpListener, bool),
    Remove(SocketAddr),
}

impl Shared {
    /// Changes queued for reactor `id`, if any (takes them).
    pub(crate) fn take_listener_changes(&self, id: usize) -> Vec<ListenerChange> {
        let pending = self
            .listener_pending
            .get(id)
            .is_some_and(|p| p.swap(false, Ordering::AcqRel));
        if !pending {
            return Vec::new();
        }
        match self.listener_changes.get(id).map(|m| m.lock()) {
            Some(Ok(mut v)) => std::mem::take(&mut *v),
            _ => Vec::new(),
        }
    }

    /// Open and close listeners on the running reactors (reload). New
    /// addresses are bound on every reactor first; if one cannot be bound,
    /// nothing changes and the error says which.
    pub fn change_listeners(
        &self,
        (old_http, old_https): (&[SocketAddr], &[SocketAddr]),
        (new_http, new_https): (&[SocketAddr], &[SocketAddr]),
    ) -> io::Result<()> {
        let added: Vec<(SocketAddr, bool)> = new_http
            .iter()
            .filter(|a| !old_http.contains(a))
            .map(|a| (*a, false))
            .chain(
                new_https
                    .iter()
                    .filter(|a| !old_https.contains(a))
                    .map(|a| (*a, true)),
            )
            .collect();
        let removed: Vec<SocketAddr> = old_http
            .iter()
            .filter(|a| !new_http.contains(a))
            .chain(old_https.iter().filter(|a| !new_https.contains(a)))
            .copied()
            .collect();
        if added.is_empty() && removed.is_empty() {
            return Ok(());
        }
        if added.iter().any(|(_, tls)| *tls) && !self.has_tls.load(Ordering::Acquire) {
            return Err(io::Error::other(
                "a first HTTPS listener needs a restart (TLS was not configured at start)",
            ));
        }
        let Some(wakers) = self.wakers.get() else {
            return Err(io::Error::other("reactors are not running"));
        };
        let mut per_reactor = Vec::with_capacity(wakers.len());
        for _ in 0..wakers.len() {
            let mut changes = Vec::new();
            for (addr, tls) in &added {
                changes.push(ListenerChange::Add(listener::bind_reuseport(*addr)?, *tls));
            }
            changes.extend(removed.iter().map(|a| ListenerChange::Remove(*a)));
            per_reactor.push(changes);
        }
        for (id, changes) in per_reactor.into_iter().enumerate() {
            if let Some(Ok(mut q)) = self.listener_changes.get(id).map(|m| m.lock()) {
                q.extend(changes);
            }
            if let Some(p) = self.listener_pending.get(id) {
                p.store(true, Ordering::Release);
            }
        }
        for w in wakers {
            let _ = w.wake();
        }
        Ok(())
    }
}

/// Reactor threads for a `threads` setting (0 = one per CPU).
pub fn effective_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
}

/// A running reactor thread.
pub struct ReactorHandle {
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl ReactorHandle {
    pub fn wake(&self) {
        let _ = self.waker.wake();
    }

    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bind every listener once per thread (SO_REUSEPORT: the kernel spreads
/// connections) and start the threads. Binding happens here, so a busy port
/// is an error at start, not a silent thread death.
pub fn spawn(
    shared: Arc<Shared>,
    http: &[SocketAddr],
    https: &[SocketAddr],
    tls: Option<Arc<rustls::ServerConfig>>,
    threads: usize,
) -> io::Result<Vec<ReactorHandle>> {
    let threads = effective_threads(threads).min(shared.counters.len());
    shared.has_tls.store(tls.is_some(), Ordering::Release);
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let mut listeners = Vec::with_capacity(http.len() + https.len());
        for addr in http {
            listeners.push((listener::bind_reuseport(*addr)?, false));
        }
        if !https.is_empty() && tls.is_none() {
            return Err(io::Error::other("HTTPS listeners need a TLS configuration"));
        }
        for addr in https {
            listeners.push((listener::bind_reuseport(*addr)?, true));
        }
        let tls = tls.clone();
        let poll = mio::Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("portier-reactor-{i}"))
            .spawn(move || {
                let mut r = match proxy::Reactor::new(i, poll, shared, listeners, tls) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("reactor {i} cannot start: {e}");
                        return;
                    }
                };
                if let Err(e) = r.run() {
                    tracing::error!("reactor {i} stopped: {e}");
                }
            })?;
        handles.push(ReactorHandle {
            waker,
            thread: Some(thread),
        });
    }
    let _ = shared
        .wakers
        .set(handles.iter().map(|h| h.waker.clone()).collect());
    Ok(handles)
}

/// Ask every reactor to stop and wait for them.
pub fn shutdown(shared: &Shared, handles: Vec<ReactorHandle>) {
    shared.shutdown.store(true, Ordering::Release);
    for h in &handles {
        h.wake();
    }
    for h in handles {
        h.join();
    }
}
