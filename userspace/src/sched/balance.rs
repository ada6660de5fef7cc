//! Strict round-robin over an app's healthy backends, with a per-backend
//! concurrency limit and quarantine (SPEC §3 Scheduling).
//!
//! Shared by all reactor threads through an `Arc`; every field is an atomic,
//! so picking a backend is a handful of uncontended atomic operations. Time
//! is passed in as milliseconds since the process started (`now_ms`): this
//! module reads no clock.
//!
//! ```text
//!  healthy ──refused/reset/cut──► quarantined(next_probe = now + delay)
//!     ▲                                 │ probe due (mgmt/probe.rs)
//!     └──── probe answered (HTTP) ◄─────┤
//!                                       └─ probe fails: delay ×2 (capped)
//!
//!  delay when a quarantine starts (flap damping, [`Backoff::first_delay`]):
//!    back in rotation for less than max(stable, last delay) → last delay ×2 (capped)
//!    otherwise (or never quarantined before)               → initial
//! ```
//!
//! Damping is evaluated lazily, when the next quarantine starts: a backend
//! in rotation needs no timer to "earn" its reset.

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
    /// 0 = healthy; [`CLAIMED`] while a quarantine is being set up;
    /// otherwise the time (ms) the next probe is due.
    quarantined_until: AtomicU64,
    /// Delay before the probe that is due (quarantined), or before the one
    /// that last brought the backend back (in rotation).
    backoff_ms: AtomicU64,
    /// When a probe last brought the backend back ([`NEVER`]: not since
    /// the balancer was built).
    back_since_ms: AtomicU64,
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

/// `quarantined_until` while the one caller that won the quarantine writes
/// its delay: counts as quarantined, never due.
const CLAIMED: u64 = u64::MAX;
/// `back_since_ms` of a backend that was never quarantined.
const NEVER: u64 = u64::MAX;

/// The quarantine backoff and its flap damping, as pure arithmetic over
/// milliseconds (no clock: callers pass `now_ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first probe of a fresh quarantine.
    pub initial_ms: u64,
    /// Cap of the doubling.
    pub max_ms: u64,
    /// A backend back in rotation for at least this long (and at least its
    /// last delay) starts its next quarantine at `initial_ms` again.
    pub stable_ms: u64,
}

impl Backoff {
    /// Delay before the next probe after a probe that followed `last_ms`
    /// failed: doubled, within `[initial_ms, max_ms]`.
    pub fn after_failed_probe(&self, last_ms: u64) -> u64 {
        last_ms
            .saturating_mul(2)
            .min(self.max_ms)
            .max(self.initial_ms)
    }

    /// Delay before the first probe of a quarantine starting at `now_ms`.
    /// `last_ms` is the delay before the probe that brought the backend
    /// back at `back_since_ms` (`None`: it was never quarantined). A
    /// backend quarantined again before it proved stable — in rotation for
    /// less than `max(stable_ms, last_ms)` — is flapping: its backoff goes
    /// on doubling from where it was instead of starting over.
    pub fn first_delay(&self, last_ms: u64, back_since_ms: Option<u64>, now_ms: u64) -> u64 {
        match back_since_ms {
            Some(since) if now_ms.saturating_sub(since) < self.stable_ms.max(last_ms) => {
                self.after_failed_probe(last_ms)
            }
            _ => self.initial_ms,
        }
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
    backoff: Backoff,
}

impl Balancer {
    pub fn new(
        addrs: &[SocketAddr],
        max_in_flight: u32,
        queue_per_backend: u32,
        backoff: Backoff,
    ) -> Balancer {
        Balancer {
            backends: addrs
                .iter()
                .map(|&addr| Backend {
                    addr,
                    in_flight: AtomicU32::new(0),
                    max_in_flight,
                    quarantined_until: AtomicU64::new(0),
                    backoff_ms: AtomicU64::new(backoff.initial_ms),
                    back_since_ms: AtomicU64::new(NEVER),
                    probing: AtomicBool::new(false),
                    draining: AtomicBool::new(false),
                    probes: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
            queue: Queue::new(queue_per_backend.saturating_mul(addrs.len() as u32)),
            backoff,
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
    /// a probe gets an answer. A backend already in quarantine keeps its
    /// schedule; one quarantined again soon after it came back keeps its
    /// backoff ([`Backoff::first_delay`]).
    pub fn quarantine(&self, id: BackendId, now_ms: u64) {
        let Some(b) = self.backends.get(id.0) else {
            return;
        };
        // Claim first, so that of several reactors reporting the same
        // backend only one computes and writes the delay; the prober reads
        // it only after the due time below is published (Release/Acquire).
        if b.quarantined_until
            .compare_exchange(0, CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let since = b.back_since_ms.load(Ordering::Relaxed);
        let delay = self.backoff.first_delay(
            b.backoff_ms.load(Ordering::Relaxed),
            (since != NEVER).then_some(since),
            now_ms,
        );
        b.backoff_ms.store(delay, Ordering::Relaxed);
        b.quarantined_until
            .store(due_at(now_ms, delay), Ordering::Release);
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
            // The delay stays: a quarantine soon after this continues from it.
            b.back_since_ms.store(now_ms, Ordering::Relaxed);
            b.quarantined_until.store(0, Ordering::Release);
        } else {
            let next = self
                .backoff
                .after_failed_probe(b.backoff_ms.load(Ordering::Relaxed));
            b.backoff_ms.store(next, Ordering::Relaxed);
            b.quarantined_until
                .store(due_at(now_ms, next), Ordering::Release);
        }
        b.probing.store(false, Ordering::Release);
    }

    /// Delay before the next probe of a quarantined backend, or before the
    /// probe that last brought a healthy one back (tests, logs).
    pub fn backoff_ms(&self, id: BackendId) -> Option<u64> {
        self.backends
            .get(id.0)
            .map(|b| b.backoff_ms.load(Ordering::Relaxed))
    }
}

/// A backend's health as delays relative to a moment, so another process
/// (a binary upgrade) can take it over on its own clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Carried {
    pub draining: bool,
    /// Quarantined: its next probe is due in this many ms.
    pub probe_in_ms: Option<u64>,
    pub backoff_ms: u64,
    /// A probe brought it back this many ms ago.
    pub back_for_ms: Option<u64>,
}

impl Balancer {
    /// The state of every backend, as of `now_ms`.
    pub fn carried(&self, now_ms: u64) -> Vec<(SocketAddr, Carried)> {
        self.backends
            .iter()
            .map(|b| {
                let until = b.quarantined_until.load(Ordering::Acquire);
                let since = b.back_since_ms.load(Ordering::Relaxed);
                let backoff_ms = b.backoff_ms.load(Ordering::Relaxed);
                let probe_in_ms = match until {
                    0 => None,
                    // Being set up this instant: due after the delay.
                    CLAIMED => Some(backoff_ms),
                    t => Some(t.saturating_sub(now_ms)),
                };
                let c = Carried {
                    draining: b.is_draining(),
                    probe_in_ms,
                    backoff_ms,
                    back_for_ms: (since != NEVER).then(|| now_ms.saturating_sub(since)),
                };
                (b.addr, c)
            })
            .collect()
    }

    /// Take over a backend's state carried from another process; `false`
    /// when this balancer has no backend at `addr`.
    pub fn carry(&self, addr: SocketAddr, c: &Carried, now_ms: u64) -> bool {
        let Some(b) = self.backends.iter().find(|b| b.addr == addr) else {
            return false;
        };
        b.draining.store(c.draining, Ordering::Release);
        b.backoff_ms.store(c.backoff_ms, Ordering::Relaxed);
        if let Some(ago) = c.back_for_ms {
            b.back_since_ms
                .store(now_ms.saturating_sub(ago), Ordering::Relaxed);
        }
        let until = match c.probe_in_ms {
            Some(ms) => due_at(now_ms, ms),
            None => 0,
        };
        b.quarantined_until.store(until, Ordering::Release);
        true
    }
}

/// When a probe `delay_ms` after `now_ms` is due: never 0 (healthy) nor
/// [`CLAIMED`].
fn due_at(now_ms: u64, delay_ms: u64) -> u64 {
    now_ms.saturating_add(delay_ms).clamp(1, CLAIMED - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(initial_ms: u64, max_ms: u64) -> Backoff {
        Backoff {
            initial_ms,
            max_ms,
            stable_ms: 10_000,
        }
    }

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + i)))
            .collect()
    }

    #[test]
    fn strict_round_robin() {
        let b = Balancer::new(&addrs(3), 10, 50, backoff(1000, 8000));
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
        let b = Balancer::new(&addrs(2), 1, 50, backoff(1000, 8000));
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
        let b = Balancer::new(&addrs(2), 1, 50, backoff(1000, 8000));
        assert_eq!(b.queue_capacity(), 100);
        let tickets: Vec<_> = (0..100).map(|i| b.enqueue(0, i).expect("room")).collect();
        assert!(b.enqueue(0, 100).is_none());
        assert!(b.leave_queue(&tickets[0]));
        assert!(b.enqueue(0, 100).is_some());
    }

    #[test]
    fn a_freed_slot_goes_to_the_oldest_waiter_whatever_its_reactor() {
        let b = Arc::new(Balancer::new(&addrs(1), 1, 50, backoff(1000, 8000)));
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
        let b = Arc::new(Balancer::new(&addrs(1), 1, 50, backoff(1000, 8000)));
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
    fn health_is_carried_to_another_clock() {
        let a = Balancer::new(
            &[
                "10.0.0.1:80".parse().expect("addr"),
                "10.0.0.2:80".parse().expect("addr"),
            ],
            0,
            0,
            backoff(1000, 60_000),
        );
        a.quarantine(BackendId(0), 5_000);
        a.set_draining("10.0.0.2:80".parse().expect("addr"), true);
        let carried = a.carried(5_400);
        assert_eq!(carried[0].1.probe_in_ms, Some(600));
        assert!(carried[1].1.draining && carried[1].1.probe_in_ms.is_none());
        // The new process' clock reads 100 at the handoff.
        let b = Balancer::new(
            &[
                "10.0.0.1:80".parse().expect("addr"),
                "10.0.0.2:80".parse().expect("addr"),
            ],
            0,
            0,
            backoff(1000, 60_000),
        );
        for (addr, c) in &carried {
            assert!(b.carry(*addr, c, 100));
        }
        assert!(b.backends()[0].is_quarantined() && b.backends()[1].is_draining());
        assert!(b.due_probes(699).is_empty());
        assert_eq!(b.due_probes(700), vec![BackendId(0)]);
        assert!(!b.carry("10.9.9.9:80".parse().expect("addr"), &carried[0].1, 0));
    }

    #[test]
    fn quarantine_skips_and_probes_back_with_backoff() {
        let b = Balancer::new(&addrs(2), 10, 50, backoff(1000, 4000));
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
        // In rotation longer than the stable window: the next quarantine
        // starts again at the initial delay.
        b.quarantine(BackendId(0), 21100);
        assert_eq!(b.backoff_ms(BackendId(0)), Some(1000), "backoff reset");
        assert!(b.due_probes(22099).is_empty());
        assert_eq!(b.due_probes(22100), vec![BackendId(0)]);
    }

    #[test]
    fn failed_probes_double_the_delay_up_to_the_cap() {
        let d = backoff(1000, 8000);
        let mut delays = vec![d.initial_ms];
        for _ in 0..5 {
            delays.push(d.after_failed_probe(*delays.last().unwrap_or(&0)));
        }
        assert_eq!(delays, [1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(
            d.after_failed_probe(0),
            1000,
            "never below the initial delay"
        );
        assert_eq!(d.after_failed_probe(u64::MAX), 8000, "no overflow");
    }

    #[test]
    fn a_first_quarantine_starts_at_the_initial_delay() {
        let d = backoff(1000, 8000);
        assert_eq!(d.first_delay(1000, None, 0), 1000);
        assert_eq!(d.first_delay(4000, None, 5), 1000);
    }

    #[test]
    fn quarantined_again_soon_after_coming_back_continues_the_backoff() {
        let d = Backoff {
            initial_ms: 1000,
            max_ms: 16_000,
            stable_ms: 5000,
        };
        // Back at t=10 s after a 2 s wait; cut again within the window.
        assert_eq!(d.first_delay(2000, Some(10_000), 10_050), 4000);
        assert_eq!(d.first_delay(2000, Some(10_000), 14_999), 4000);
        // Stable for the whole window: start over.
        assert_eq!(d.first_delay(2000, Some(10_000), 15_000), 1000);
        // Capped like failed probes.
        assert_eq!(d.first_delay(16_000, Some(0), 1), 16_000);
    }

    #[test]
    fn the_stable_window_is_at_least_the_last_delay() {
        let d = Backoff {
            initial_ms: 1000,
            max_ms: 30_000,
            stable_ms: 5000,
        };
        // Out for 16 s, in for 10 s: not yet proven stable.
        assert_eq!(d.first_delay(16_000, Some(0), 10_000), 30_000);
        assert_eq!(d.first_delay(16_000, Some(0), 16_000), 1000);
        // With no stable window only the last delay counts.
        let d = Backoff { stable_ms: 0, ..d };
        assert_eq!(d.first_delay(1000, Some(0), 999), 2000);
        assert_eq!(d.first_delay(1000, Some(0), 1000), 1000);
    }

    #[test]
    fn a_flapping_backend_is_probed_ever_later_on_a_fake_clock() {
        // Answers every probe, then is cut 50 ms after coming back.
        let b = Balancer::new(
            &addrs(1),
            10,
            50,
            Backoff {
                initial_ms: 200,
                max_ms: 1600,
                stable_ms: 1000,
            },
        );
        let id = BackendId(0);
        let mut now = 0;
        b.quarantine(id, now);
        let mut intervals = Vec::new();
        for _ in 0..6 {
            let quarantined_at = now;
            while b.due_probes(now).is_empty() {
                now += 10;
            }
            intervals.push(now - quarantined_at);
            b.probe_result(id, true, now);
            assert_eq!(b.pick(&[]), Pick::Backend(id), "back in rotation");
            b.release(id);
            now += 50;
            b.quarantine(id, now);
        }
        assert_eq!(intervals, [200, 400, 800, 1600, 1600, 1600]);
        // Then it stays healthy past the window: the next quarantine is short.
        let due = b.due_probes(now + 1600);
        b.probe_result(due[0], true, now + 1600);
        now += 1600 + 1600;
        b.quarantine(id, now);
        assert_eq!(b.backoff_ms(id), Some(200));
    }

    #[test]
    fn a_backend_is_quarantined_once_by_concurrent_reports() {
        let b = Balancer::new(&addrs(1), 10, 50, backoff(1000, 8000));
        let id = BackendId(0);
        b.quarantine(id, 0);
        let due = b.due_probes(1000);
        b.probe_result(due[0], true, 1000);
        // Two reactors report the same cut: the backoff doubles once.
        b.quarantine(id, 1010);
        b.quarantine(id, 1011);
        assert_eq!(b.backoff_ms(id), Some(2000));
        assert!(b.due_probes(3009).is_empty());
        assert_eq!(b.due_probes(3010), vec![id]);
    }

    #[test]
    fn draining_backends_get_no_new_requests() {
        let a = addrs(2);
        let b = Balancer::new(&a, 10, 50, backoff(1000, 4000));
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
        let b = Balancer::new(&addrs(2), 10, 50, backoff(1000, 4000));
        assert_eq!(b.pick(&[BackendId(0), BackendId(1)]), Pick::AllDown);
        b.quarantine(BackendId(0), 0);
        b.quarantine(BackendId(1), 0);
        assert_eq!(b.pick(&[]), Pick::AllDown);
    }
}
