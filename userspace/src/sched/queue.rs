//! The app-wide FIFO queue (SPEC §3 "Request queue"): requests that found
//! every backend of their app at its concurrency limit wait here, in
//! arrival order, whichever reactor thread holds them.
//!
//! Owns: the waiting tickets of one app and the hand-over of freed slots.
//! A freed slot goes to the OLDEST ticket: the slot is taken on its behalf
//! (`Balancer::serve_queue`) and the resulting [`Grant`] names the reactor
//! that holds the request, which the caller wakes (`control::Control`).
//! Must not: know reactors, wakers or sockets — it returns grants, the
//! caller delivers them. No polling anywhere.
//!
//! ```text
//!  newcomer ─► slot free and nobody waiting? ─yes─► served at once
//!                   │ no
//!                   ▼
//!  enqueue (Ticket{reactor, exchange, seq}) ──► serve_queue()  (closes the race
//!                                                 with a release that just missed it)
//!  release(slot) ──► serve_queue(): oldest ticket ◄─ slot ──► Grant ──► its reactor
//!  timeout / client gone ──► remove(ticket)
//! ```

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A place in an app's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// Index of the reactor thread holding the request.
    pub reactor: usize,
    /// The request's exchange id on that reactor.
    pub exchange: usize,
    /// Unique per queue: tells a live ticket from a reused exchange slot.
    pub seq: u64,
}

/// The waiting tickets of one app.
#[derive(Debug)]
pub struct Queue {
    waiting: Mutex<VecDeque<Ticket>>,
    /// Mirror of `waiting.len()`, read without the lock on every release.
    len: AtomicU32,
    capacity: u32,
    next_seq: AtomicU64,
}

impl Queue {
    pub fn new(capacity: u32) -> Queue {
        Queue {
            waiting: Mutex::new(VecDeque::new()),
            len: AtomicU32::new(0),
            capacity,
            next_seq: AtomicU64::new(1),
        }
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    pub fn len(&self) -> u32 {
        self.len.load(Ordering::SeqCst)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Take a place at the back; `None` when the queue is full.
    pub fn push(&self, reactor: usize, exchange: usize) -> Option<Ticket> {
        let mut q = self.lock();
        if q.len() as u32 >= self.capacity {
            return None;
        }
        let ticket = Ticket {
            reactor,
            exchange,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
        };
        q.push_back(ticket);
        self.len.store(q.len() as u32, Ordering::SeqCst);
        Some(ticket)
    }

    /// Leave the queue (timeout, client gone); false when it was not there
    /// (already granted).
    pub fn remove(&self, ticket: &Ticket) -> bool {
        let mut q = self.lock();
        let Some(pos) = q.iter().position(|t| t.seq == ticket.seq) else {
            return false;
        };
        q.remove(pos);
        self.len.store(q.len() as u32, Ordering::SeqCst);
        true
    }

    /// Hand out places from the front while `take` finds a slot for them:
    /// `take` is called with the lock held, so no newer ticket can be
    /// served before an older one.
    pub fn serve<T>(&self, mut take: impl FnMut() -> Option<T>) -> Vec<(Ticket, T)> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut q = self.lock();
        let mut out = Vec::new();
        while !q.is_empty() {
            let Some(slot) = take() else {
                break;
            };
            match q.pop_front() {
                Some(t) => out.push((t, slot)),
                None => break,
            }
        }
        self.len.store(q.len() as u32, Ordering::SeqCst);
        out
    }

    /// Every waiting ticket, oldest first, removed (all backends went down).
    pub fn take_all(&self) -> Vec<Ticket> {
        let mut q = self.lock();
        let all: Vec<Ticket> = q.drain(..).collect();
        self.len.store(0, Ordering::SeqCst);
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Ticket>> {
        // A panic while holding this lock cannot leave the deque invalid.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_oldest_first_across_reactors() {
        let q = Queue::new(10);
        let a = q.push(0, 7).expect("room");
        let b = q.push(1, 3).expect("room");
        let c = q.push(0, 8).expect("room");
        let mut slots = 2;
        let got = q.serve(|| {
            (slots > 0).then(|| {
                slots -= 1;
            })
        });
        let tickets: Vec<Ticket> = got.into_iter().map(|(t, _)| t).collect();
        assert_eq!(tickets, vec![a, b]);
        assert_eq!(q.len(), 1);
        assert!(q.remove(&c));
        assert!(!q.remove(&c), "already gone");
        assert!(q.is_empty());
    }

    #[test]
    fn full_queue_refuses_and_removal_makes_room() {
        let q = Queue::new(2);
        let a = q.push(0, 1).expect("room");
        assert!(q.push(0, 2).is_some());
        assert!(q.push(0, 3).is_none(), "full");
        assert!(q.remove(&a));
        assert!(q.push(0, 3).is_some());
    }

    #[test]
    fn tickets_are_unique_even_for_a_reused_exchange_slot() {
        let q = Queue::new(4);
        let a = q.push(0, 5).expect("room");
        assert!(q.remove(&a));
        let b = q.push(0, 5).expect("room");
        assert_ne!(a.seq, b.seq);
        assert!(!q.remove(&a), "a stale ticket does not remove the new one");
        assert_eq!(q.len(), 1);
    }
}
