//! The reactor's timer wheel: a min-heap with at most about one live entry
//! per machine (connection or exchange), at that machine's earliest timer.
//!
//! A machine keeps its own timers (`timer::TimerTable`) and the instant of
//! its heap entry (`scheduled`). Re-arming to a *later* instant (the common
//! case: each request pushes keep-alive and read timeouts forward) touches
//! no heap: when the early entry surfaces it is re-pushed at the real
//! deadline. Stale entries (record gone, slot reused, moved) are skipped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Whose timer: a connection record or an exchange (both slab keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Conn(usize),
    Exchange(usize),
}

impl Key {
    /// Packed into one word on the heap (entries stay 24 bytes).
    fn pack(self) -> usize {
        match self {
            Key::Conn(k) => k << 1,
            Key::Exchange(k) => (k << 1) | 1,
        }
    }

    fn unpack(v: usize) -> Key {
        if v & 1 == 0 {
            Key::Conn(v >> 1)
        } else {
            Key::Exchange(v >> 1)
        }
    }
}

#[derive(Default)]
pub struct Wheel {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Wheel {
    /// Make sure a heap entry exists at or before `next` (the machine's
    /// earliest timer). `scheduled` is the machine's bookkeeping.
    pub fn schedule(&mut self, scheduled: &mut Option<Instant>, next: Option<Instant>, key: Key) {
        let Some(at) = next else {
            return;
        };
        if scheduled.is_none_or(|s| at < s) {
            self.heap.push(Reverse((at, key.pack())));
            *scheduled = Some(at);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The next entry due at `now`: its key and instant. The caller checks
    /// it against the machine with [`Wheel::is_live`].
    pub fn pop_due(&mut self, now: Instant) -> Option<(Key, Instant)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => {
                self.heap.pop().map(|Reverse((at, k))| (Key::unpack(k), at))
            }
            _ => None,
        }
    }

    /// Whether a popped entry is the machine's live one (then its
    /// bookkeeping is cleared: the caller fires what is due and schedules
    /// again).
    pub fn is_live(scheduled: &mut Option<Instant>, popped: Instant) -> bool {
        if *scheduled != Some(popped) {
            return false;
        }
        *scheduled = None;
        true
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn later_rearm_costs_no_push_and_earlier_one_does() {
        let t0 = Instant::now();
        let mut w = Wheel::default();
        let mut s = None;
        w.schedule(&mut s, Some(t0 + Duration::from_secs(10)), Key::Conn(1));
        w.schedule(&mut s, Some(t0 + Duration::from_secs(20)), Key::Conn(1));
        assert_eq!(w.len(), 1);
        w.schedule(&mut s, Some(t0 + Duration::from_secs(5)), Key::Conn(1));
        assert_eq!(w.len(), 2);
        let (k, at) = w.pop_due(t0 + Duration::from_secs(6)).expect("due");
        assert_eq!(k, Key::Conn(1));
        assert!(Wheel::is_live(&mut s, at));
        let (_, stale) = w.pop_due(t0 + Duration::from_secs(11)).expect("due");
        assert!(!Wheel::is_live(&mut s, stale), "superseded entry");
        assert!(w.is_empty());
    }

    #[test]
    fn keys_survive_packing() {
        for k in [
            Key::Conn(0),
            Key::Conn(7),
            Key::Exchange(0),
            Key::Exchange(12345),
        ] {
            assert_eq!(Key::unpack(k.pack()), k);
        }
    }
}
