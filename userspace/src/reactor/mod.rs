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
            started: Instant::now(),
            shutdown: AtomicBool::new(false),
        })
    }

    pub fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_millis() as u64
    }
}

const WAKER: Token = Token(usize::MAX);

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
