//! The door between the management thread and the reactor threads.
//!
//! Owns: the published configuration snapshot (swapped lock-free), one
//! command mailbox and waker per reactor (listeners opened or closed by a
//! reload, queue grants from another thread), the per-reactor counters the
//! metrics read, the shutdown flag.
//! Must not: know reactor internals. mgmt, metrics and the scheduler's
//! callers use this module, never `reactor`'s types; reactors implement
//! [`Wake`] and register with [`Control::attach_reactors`].
//!
//! ```text
//!  mgmt ── store_snapshot / change_listeners / begin_shutdown ──► Control ──► mailbox[i] + wake(i) ──► reactor i
//!  reactor j ── deliver(grants) ─────────────────────────────────► Control ──► mailbox[i] + wake(i) ──► reactor i
//!  metrics ◄── counters (relaxed atomics, one shard per reactor) ◄── reactors
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::challenge::HttpChallenges;
use crate::config::Listen;
use crate::metrics::ReactorCounters;
use crate::sched::balance::Grant;
use crate::snapshot::Snapshot;

/// Wakes one reactor thread from its poll.
pub trait Wake: Send + Sync {
    fn wake(&self);
}

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerKind {
    /// TLS first (HTTPS).
    pub secure: bool,
    /// A PROXY protocol header comes before anything else.
    pub proxy_protocol: bool,
}

/// What a reactor is asked to do on its next turn.
pub enum Command {
    /// Start accepting on this (already bound) listener.
    AddListener {
        listener: std::net::TcpListener,
        kind: ListenerKind,
    },
    /// Stop accepting on this address (open connections stay).
    RemoveListener { addr: SocketAddr, secure: bool },
    /// The listener on this address keeps its socket but serves new
    /// connections as `kind` says (its options changed).
    UpdateListener {
        addr: SocketAddr,
        kind: ListenerKind,
    },
    /// A queued request of this reactor got its turn.
    Grant(Grant),
    /// Send duplicates of every listening socket (binary upgrade).
    ShareListeners(std::sync::mpsc::Sender<Vec<SharedListener>>),
}

/// A duplicate of one reactor's listening socket, for the handoff.
pub struct SharedListener {
    pub addr: SocketAddr,
    pub secure: bool,
    pub fd: std::os::fd::OwnedFd,
}

/// Binds one SO_REUSEPORT listener (given by the reactor side).
pub type Binder = fn(SocketAddr) -> io::Result<std::net::TcpListener>;

struct Mailbox {
    commands: Mutex<Vec<Command>>,
    /// Saves the reactor a lock on every turn: it looks only when set.
    pending: AtomicBool,
}

pub struct Control {
    pub snapshot: ArcSwap<Snapshot>,
    /// HTTP-01 tokens being validated (published by the ACME service).
    pub challenges: ArcSwap<HttpChallenges>,
    /// One shard of request counters per reactor thread (index = thread).
    pub counters: Vec<ReactorCounters>,
    /// The access log, when `[log] access` is on (set at start).
    pub access_log: Option<crate::accesslog::AccessLog>,
    /// Origin of the millisecond clock the balancers use.
    pub started: Instant,
    mailboxes: Vec<Mailbox>,
    wakers: OnceLock<Vec<Arc<dyn Wake>>>,
    binder: OnceLock<Binder>,
    /// Whether the reactors were given a TLS configuration at start.
    has_tls: AtomicBool,
    shutdown: AtomicBool,
    /// The shutdown is a handover to an upgraded process: idle keep-alive
    /// connections stay for their next request (answered with close),
    /// HTTP/2 gets the two-step GOAWAY, and the drain may last longer.
    handover: AtomicBool,
    /// How long the drain may last, in ms (0: the default grace).
    drain_ms: AtomicU64,
}

impl Control {
    /// `threads`: reactor threads that will run (already resolved, ≥ 1).
    pub fn new(
        snapshot: Snapshot,
        threads: usize,
        access_log: Option<crate::accesslog::AccessLog>,
    ) -> Arc<Control> {
        let threads = threads.max(1);
        Arc::new(Control {
            snapshot: ArcSwap::from_pointee(snapshot),
            challenges: ArcSwap::from_pointee(HttpChallenges::default()),
            counters: (0..threads).map(|_| Default::default()).collect(),
            access_log,
            started: Instant::now(),
            mailboxes: (0..threads)
                .map(|_| Mailbox {
                    commands: Mutex::new(Vec::new()),
                    pending: AtomicBool::new(false),
                })
                .collect(),
            wakers: OnceLock::new(),
            binder: OnceLock::new(),
            has_tls: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            handover: AtomicBool::new(false),
            drain_ms: AtomicU64::new(0),
        })
    }

    /// Milliseconds since start (the balancers' clock).
    pub fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_millis() as u64
    }

    /// How many reactors the mailboxes serve.
    pub fn reactors(&self) -> usize {
        self.mailboxes.len()
    }

    /// The reactors are running: how to wake them, how to bind listeners,
    /// whether they have TLS.
    pub fn attach_reactors(&self, wakers: Vec<Arc<dyn Wake>>, binder: Binder, has_tls: bool) {
        let _ = self.wakers.set(wakers);
        let _ = self.binder.set(binder);
        self.has_tls.store(has_tls, Ordering::Release);
    }

    /// Post a command to reactor `id` and wake it.
    pub fn send(&self, id: usize, command: Command) {
        self.post(id, command);
        self.wake(id);
    }

    fn post(&self, id: usize, command: Command) {
        if let Some(m) = self.mailboxes.get(id) {
            m.commands
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(command);
            m.pending.store(true, Ordering::Release);
        }
    }

    fn wake(&self, id: usize) {
        if let Some(w) = self.wakers.get().and_then(|w| w.get(id)) {
            w.wake();
        }
    }

    /// Commands waiting for reactor `id` (taken).
    pub fn take_commands(&self, id: usize) -> Vec<Command> {
        let Some(m) = self.mailboxes.get(id) else {
            return Vec::new();
        };
        if !m.pending.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *m.commands.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Send queue grants to the reactors holding their requests; those of
    /// reactor `local` (the caller, or `None` for mgmt) come back to be
    /// handled at once, without a wake-up.
    pub fn deliver(&self, grants: Vec<Grant>, local: Option<usize>) -> Vec<Grant> {
        let mut mine = Vec::new();
        let mut woken = Vec::new();
        for g in grants {
            let id = g.ticket.reactor;
            if Some(id) == local {
                mine.push(g);
            } else {
                self.post(id, Command::Grant(g));
                if !woken.contains(&id) {
                    woken.push(id);
                }
            }
        }
        for id in woken {
            self.wake(id);
        }
        mine
    }

    /// Open, close and update listeners on the running reactors (reload).
    /// A listener is its address and whether it is HTTPS; a changed option
    /// (`proxy_protocol`) updates it in place. New addresses are bound on
    /// every reactor first; if one cannot be bound, nothing changes and the
    /// error says which.
    pub fn change_listeners(
        &self,
        (old_http, old_https): (&[Listen], &[Listen]),
        (new_http, new_https): (&[Listen], &[Listen]),
    ) -> io::Result<()> {
        let tagged = |http: &[Listen], https: &[Listen]| -> Vec<(SocketAddr, ListenerKind)> {
            let kind = |l: &Listen, secure| ListenerKind {
                secure,
                proxy_protocol: l.proxy_protocol,
            };
            http.iter()
                .map(|l| (l.addr, kind(l, false)))
                .chain(https.iter().map(|l| (l.addr, kind(l, true))))
                .collect()
        };
        let (old, new) = (tagged(old_http, old_https), tagged(new_http, new_https));
        let find = |list: &[(SocketAddr, ListenerKind)], addr, secure| {
            list.iter()
                .find(|(a, k)| *a == addr && k.secure == secure)
                .map(|(_, k)| *k)
        };
        let mut added = Vec::new();
        let mut updated = Vec::new();
        for (addr, kind) in &new {
            match find(&old, *addr, kind.secure) {
                None => added.push((*addr, *kind)),
                Some(before) if before != *kind => updated.push((*addr, *kind)),
                Some(_) => {}
            }
        }
        let removed: Vec<(SocketAddr, bool)> = old
            .iter()
            .filter(|(a, k)| find(&new, *a, k.secure).is_none())
            .map(|(a, k)| (*a, k.secure))
            .collect();
        if added.is_empty() && removed.is_empty() && updated.is_empty() {
            return Ok(());
        }
        if added.iter().any(|(_, k)| k.secure) && !self.has_tls.load(Ordering::Acquire) {
            return Err(io::Error::other(
                "a first HTTPS listener needs a restart (TLS was not configured at start)",
            ));
        }
        let (Some(wakers), Some(bind)) = (self.wakers.get(), self.binder.get()) else {
            return Err(io::Error::other("reactors are not running"));
        };
        let mut per_reactor = Vec::with_capacity(wakers.len());
        for _ in 0..wakers.len() {
            let mut changes = Vec::new();
            // A listener is removed by address and kind, so one that moves
            // between `http` and `https` is a removal and an addition.
            changes.extend(
                removed
                    .iter()
                    .map(|&(addr, secure)| Command::RemoveListener { addr, secure }),
            );
            for (addr, kind) in &added {
                changes.push(Command::AddListener {
                    listener: bind(*addr)?,
                    kind: *kind,
                });
            }
            changes.extend(
                updated
                    .iter()
                    .map(|&(addr, kind)| Command::UpdateListener { addr, kind }),
            );
            per_reactor.push(changes);
        }
        for (id, changes) in per_reactor.into_iter().enumerate() {
            for c in changes {
                self.post(id, c);
            }
            self.wake(id);
        }
        Ok(())
    }

    /// Ask every reactor to stop (graceful: in-flight requests finish).
    pub fn begin_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        for id in 0..self.reactors() {
            self.wake(id);
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// A new process serves now: stop accepting and let every connection
    /// finish on its own, for at most `hard_stop`.
    pub fn begin_handover(&self, hard_stop: std::time::Duration) {
        self.drain_ms
            .store(hard_stop.as_millis().max(1) as u64, Ordering::Release);
        self.handover.store(true, Ordering::Release);
        self.begin_shutdown();
    }

    /// End a drain now (SIGTERM while an upgrade's drain runs).
    pub fn cut_drain(&self) {
        self.drain_ms.store(1, Ordering::Release);
        for id in 0..self.reactors() {
            self.wake(id);
        }
    }

    pub fn is_handover(&self) -> bool {
        self.handover.load(Ordering::Acquire)
    }

    /// How long the drain may last (`None`: the reactors' default).
    pub fn drain_limit(&self) -> Option<std::time::Duration> {
        match self.drain_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }

    /// Duplicates of every reactor's listening sockets, gathered through
    /// their mailboxes (each answers on its next turn).
    pub fn share_listeners(&self, timeout: std::time::Duration) -> io::Result<Vec<SharedListener>> {
        if self.wakers.get().is_none() {
            return Ok(Vec::new()); // no listener, no reactor
        }
        let (tx, rx) = std::sync::mpsc::channel();
        for id in 0..self.reactors() {
            self.send(id, Command::ShareListeners(tx.clone()));
        }
        drop(tx);
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        for _ in 0..self.reactors() {
            let left = deadline.saturating_duration_since(Instant::now());
            let part = rx.recv_timeout(left).map_err(|_| {
                io::Error::other("a reactor did not hand its listeners over in time")
            })?;
            out.extend(part);
        }
        Ok(out)
    }
}
