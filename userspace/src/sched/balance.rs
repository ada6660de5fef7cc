//! Strict round-robin over an app's healthy backends, with a per-backend
//! concurrency limit and quarantine (SPEC §3 Scheduling).
//!
//! Shared by all reactor threads through an `Arc`; every field is an atomic,
//! so picking a backend is a handful of uncontended atomic operations. Time
//! is passed in as milliseconds since the process started (`now_ms`): this
//! module reads no clock.
//!
//! ```text
//!  healthy ──refused/reset/cut──► quarantined(next_probe = now + backoff)
//!     ▲                                 │ probe due (mgmt/probe.rs)
//!     └──────── probe succeeds ◄────────┤
//!                                       └─ probe fails: backoff ×2 (capped)
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

use super::queue::{Queue, Ticket};

/// Index of a backend within its app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BackendId(pub usize);

#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    in_flight: AtomicU32,
    max_in_flight: u32,
    /// 0 = healthy; otherwise the time (ms) the next probe is due.
    quarantined_until: AtomicU64,
    backoff_ms: AtomicU64,
    /// A probe is under way (only one at a time).
    probing: AtomicBool,
    /// Draining: no new requests; in-flight ones finish.
    draining: AtomicBool,
    /// Probes made since the backend entered quarantine (metrics).
    pub probes: AtomicU64,
}

impl Backend {
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn is_quarantined(&self) -> bool {
        self.quarantined_until.load(Ordering::Acquire) != 0
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// What `pick` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    /// This backend, with one in-flight slot taken (give it back with `release`).
    Backend(BackendId),
    /// Healthy backends exist but all are at their concurrency limit: queue.
    Busy,
    /// No healthy backend.
    AllDown,
}

/// A queued request's turn: a slot on `backend` taken for it (give it
/// back with `release` if the request is gone), or `None` when every
/// backend is down.
#[derive(Debug)]
pub struct Grant {
    pub ticket: Ticket,
    pub backend: Option<BackendId>,
    pub balancer: Arc<Balancer>,
}

#[derive(Debug)]
pub struct Balancer {
    backends: Vec<Backend>,
    next: AtomicUsize,
    /// Requests waiting for a slot, app-wide (every reactor).
    queue: Queue,
    quarantine_initial_ms: u64,
    quarantine_max_ms: u64,
}

impl Balancer {
    pub fn new(
        addrs: &[SocketAddr],
        max_in_flight: u32,
        queue_per_backend: u32,
        quarantine_initial_ms: u64,
        quarantine_max_ms: u64,
    ) -> Balancer {
        Balancer {
            backends: addrs
                .iter()
                .map(|&addr| Backend {
                    addr,
                    in_flight: AtomicU32::new(0),
                    max_in_flight,
                    quarantined_until: AtomicU64::new(0),
                    backoff_ms: AtomicU64::new(quarantine_initial_ms),
                    probing: AtomicBool::new(false),
                    draining: AtomicBool::new(false),
                    probes: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
            queue: Queue::new(queue_per_backend.saturating_mul(addrs.len() as u32)),
            quarantine_initial_ms,
            quarantine_max_ms,
        }
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    pub fn backend(&self, id: BackendId) -> Option<&Backend> {
        self.backends.get(id.0)
    }

    /// Next healthy backend with a free slot, in strict rotation; `avoid`
    /// skips backends a retried request already failed on.
    pub fn pick(&self, avoid: &[BackendId]) -> Pick {
        let n = self.backends.len();
        if n == 0 {
            return Pick::AllDown;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut any_healthy = false;
        for i in 0..n {
            let id = BackendId((start + i) % n);
            let b = &self.backends[id.0];
            if b.is_quarantined() || b.is_draining() || avoid.contains(&id) {
                continue;
            }
            any_healthy = true;
            let taken = b
                .in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| {
                    (v < b.max_in_flight).then_some(v + 1)
                })
                .is_ok();
            if taken {
                return Pick::Backend(id);
            }
        }
        if any_healthy {
            Pick::Busy
        } else {
            Pick::AllDown
        }
    }

    /// The given backend if it is healthy and has a free slot (sticky
    /// sessions); `None` sends the caller back to `pick`.
    pub fn pick_exactly(&self, id: BackendId) -> Option<BackendId> {
        let b = self.backends.get(id.0)?;
        if b.is_quarantined() || b.is_draining() {
            return None;
        }
        b.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| {
                (v < b.max_in_flight).then_some(v + 1)
            })
            .ok()
            .map(|_| id)
    }

    /// Stop (or resume) sending new requests to a backend; in-flight
    /// requests finish. `false` when there is no such backend.
    pub fn set_draining(&self, addr: SocketAddr, draining: bool) -> bool {
        match self.backends.iter().find(|b| b.addr == addr) {
            Some(b) => {
                b.draining.store(draining, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Give back the slot `pick` took. The caller then calls
    /// [`Balancer::serve_queue`] so a waiting request gets it.
    pub fn release(&self, id: BackendId) {
        if let Some(b) = self.backends.get(id.0) {
            let _ = b
                .in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| v.checked_sub(1));
        }
        // Pairs with the fence in `serve_queue`: either this release sees
        // the ticket just queued, or that enqueuer's serve sees this slot.
        fence(Ordering::SeqCst);
    }

    /// Join the app's queue (→ 503 `queue_full` on `None`). The caller then
    /// calls `serve_queue`: a slot freed between its pick and this push
    /// would otherwise wait for the next release.
    pub fn enqueue(&self, reactor: usize, exchange: usize) -> Option<Ticket> {
        self.queue.push(reactor, exchange)
    }

    /// Leave the queue (queue timeout, client gone); false when the ticket
    /// was already granted (a grant is on its way and must be released).
    pub fn leave_queue(&self, ticket: &Ticket) -> bool {
        self.queue.remove(ticket)
    }

    /// Give free slots to the oldest waiting requests, app-wide. With no
    /// healthy backend left, every waiting request gets a grant without a
    /// backend (→ 503 `no_backend_available`).
    pub fn serve_queue(self: &Arc<Self>) -> Vec<Grant> {
        fence(Ordering::SeqCst);
        if self.queue.is_empty() {
            return Vec::new();
        }
        let mut all_down = false;
        let mut grants: Vec<Grant> = self
            .queue
            .serve(|| match self.pick(&[]) {
                Pick::Backend(id) => Some(id),
                Pick::Busy => None,
                Pick::AllDown => {
                    all_down = true;
                    None
                }
            })
            .into_iter()
            .map(|(ticket, id)| Grant {
                ticket,
                backend: Some(id),
                balancer: self.clone(),
            })
            .collect();
        if all_down {
            grants.extend(self.queue.take_all().into_iter().map(|ticket| Grant {
                ticket,
                backend: None,
                balancer: self.clone(),
            }));
        }
        grants
    }

    pub fn queue_depth(&self) -> u32 {
        self.queue.len()
    }

    pub fn queue_capacity(&self) -> u32 {
        self.queue.capacity()
    }

    /// The backend refused, reset or cut a connection: out of rotation until
    /// a probe succeeds. A backend already in quarantine keeps its schedule.
    pub fn quarantine(&self, id: BackendId, now_ms: u64) {
        if let Some(b) = self.backends.get(id.0) {
            let due = now_ms
                .saturating_add(b.backoff_ms.load(Ordering::Relaxed))
                .max(1);
            let _ =
                b.quarantined_until
                    .compare_exchange(0, due, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Quarantined backends whose probe is due now; marks them as being
    /// probed so a second caller does not probe them twice.
    pub fn due_probes(&self, now_ms: u64) -> Vec<BackendId> {
        let mut out = Vec::new();
        for (i, b) in self.backends.iter().enumerate() {
            let until = b.quarantined_until.load(Ordering::Acquire);
            if until != 0
                && until <= now_ms
                && b.probing
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                out.push(BackendId(i));
            }
        }
        out
    }

    /// Outcome of a probe started by `due_probes`.
    pub fn probe_result(&self, id: BackendId, ok: bool, now_ms: u64) {
        let Some(b) = self.backends.get(id.0) else {
            return;
        };
        b.probes.fetch_add(1, Ordering::Relaxed);
        if ok {
            b.backoff_ms
                .store(self.quarantine_initial_ms, Ordering::Relaxed);
            b.quarantined_until.store(0, Ordering::Release);
        } else {
            let next = b
                .backoff_ms
                .load(Ordering::Relaxed)
                .saturating_mul(2)
                .min(self.quarantine_max_ms);
            b.backoff_ms.store(next, Ordering::Relaxed);
            b.quarantined_until
                .store(now_ms.saturating_add(next).max(1), Ordering::Release);
        }
        b.probing.store(false, Ordering::Release);
    }

    /// Delay before the next probe of a quarantined backend (tests, metrics).
    pub fn backoff_ms(&self, id: BackendId) -> Option<u64> {
        self.backends
            .get(id.0)
            .map(|b| b.backoff_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + i)))
            .collect()
    }

    #[test]
    fn strict_round_robin() {
        let b = Balancer::new(&addrs(3), 10, 50, 1000, 8000);
        let picks: Vec<_> = (0..6)
            .map(|_| match b.pick(&[]) {
                Pick::Backend(id) => id.0,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn full_backends_mean_busy_then_release_frees() {
        let b = Balancer::new(&addrs(2), 1, 50, 1000, 8000);
        let Pick::Backend(a) = b.pick(&[]) else {
            panic!()
        };
        let Pick::Backend(c) = b.pick(&[]) else {
            panic!()
        };
        assert_ne!(a, c);
        assert_eq!(b.pick(&[]), Pick::Busy);
        b.release(a);
        assert_eq!(b.pick(&[]), Pick::Backend(a));
    }

    #[test]
    fn queue_capacity_is_per_backend() {
        let b = Balancer::new(&addrs(2), 1, 50, 1000, 8000);
        assert_eq!(b.queue_capacity(), 100);
        let tickets: Vec<_> = (0..100).map(|i| b.enqueue(0, i).expect("room")).collect();
        assert!(b.enqueue(0, 100).is_none());
        assert!(b.leave_queue(&tickets[0]));
        assert!(b.enqueue(0, 100).is_some());
    }

    #[test]
    fn a_freed_slot_goes_to_the_oldest_waiter_whatever_its_reactor() {
        let b = Arc::new(Balancer::new(&addrs(1), 1, 50, 1000, 8000));
        let Pick::Backend(id) = b.pick(&[]) else {
            panic!()
        };
        let first = b.enqueue(1, 10).expect("room");
        let _second = b.enqueue(0, 11).expect("room");
        assert!(b.serve_queue().is_empty(), "no slot yet");
        b.release(id);
        let grants = b.serve_queue();
        assert_eq!(grants.len(), 1);
        assert_eq!(grants[0].ticket, first);
        assert_eq!(grants[0].backend, Some(id));
        assert_eq!(b.queue_depth(), 1);
        assert_eq!(b.pick(&[]), Pick::Busy, "the slot went with the grant");
    }

    #[test]
    fn waiters_get_an_empty_grant_when_every_backend_is_down() {
        let b = Arc::new(Balancer::new(&addrs(1), 1, 50, 1000, 8000));
        let Pick::Backend(id) = b.pick(&[]) else {
            panic!()
        };
        b.enqueue(0, 1).expect("room");
        b.quarantine(id, 0);
        b.release(id);
        let grants = b.serve_queue();
        assert_eq!(grants.len(), 1);
        assert_eq!(grants[0].backend, None);
        assert_eq!(b.queue_depth(), 0);
    }

    #[test]
    fn quarantine_skips_and_probes_back_with_backoff() {
        let b = Balancer::new(&addrs(2), 10, 50, 1000, 4000);
        b.quarantine(BackendId(0), 100);
        for _ in 0..4 {
            assert_eq!(b.pick(&[]), Pick::Backend(BackendId(1)));
        }
        assert!(b.due_probes(1099).is_empty());
        assert_eq!(b.due_probes(1100), vec![BackendId(0)]);
        assert!(b.due_probes(1100).is_empty(), "one probe at a time");
        b.probe_result(BackendId(0), false, 1100);
        assert_eq!(b.backoff_ms(BackendId(0)), Some(2000));
        assert_eq!(b.due_probes(3099), vec![]);
        assert_eq!(b.due_probes(3100), vec![BackendId(0)]);
        b.probe_result(BackendId(0), false, 3100);
        assert_eq!(b.backoff_ms(BackendId(0)), Some(4000));
        let due = b.due_probes(7100);
        b.probe_result(due[0], false, 7100);
        assert_eq!(b.backoff_ms(BackendId(0)), Some(4000), "capped");
        let due = b.due_probes(11100);
        b.probe_result(due[0], true, 11100);
        assert!(!b.backends()[0].is_quarantined());
        assert_eq!(b.backoff_ms(BackendId(0)), Some(1000), "backoff reset");
    }

    #[test]
    fn draining_backends_get_no_new_requests() {
        let a = addrs(2);
        let b = Balancer::new(&a, 10, 50, 1000, 4000);
        assert!(b.set_draining(a[0], true));
        for _ in 0..4 {
            assert_eq!(b.pick(&[]), Pick::Backend(BackendId(1)));
        }
        assert_eq!(b.pick_exactly(BackendId(0)), None);
        assert!(b.set_draining(a[0], false));
        assert!(!b.set_draining("127.0.0.1:1".parse().unwrap(), true));
    }

    #[test]
    fn all_quarantined_is_all_down_and_avoid_is_respected() {
        let b = Balancer::new(&addrs(2), 10, 50, 1000, 4000);
        assert_eq!(b.pick(&[BackendId(0), BackendId(1)]), Pick::AllDown);
        b.quarantine(BackendId(0), 0);
        b.quarantine(BackendId(1), 0);
        assert_eq!(b.pick(&[]), Pick::AllDown);
    }
}
