//! Deadlines of connections: a min-heap holding at most about one entry per
//! connection. A connection keeps its current deadline and the instant of its
//! heap entry; re-arming to a *later* deadline (the common case: every
//! request pushes keep-alive and read timeouts forward) touches no heap at
//! all — when the early entry surfaces, it is re-pushed at the real
//! deadline. Stale entries (slot reused, deadline moved earlier) are skipped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use mio::Token;

/// A connection's timer state, kept in the connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct Deadline {
    /// When the connection's timeout fires (`None`: no timeout).
    pub at: Option<Instant>,
    /// The instant of this connection's live heap entry, if any.
    pub scheduled: Option<Instant>,
}

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

/// What to do with a popped entry.
pub enum Due {
    /// Stale entry: nothing.
    Skip,
    /// The deadline passed: fire.
    Fire,
}

impl Timers {
    /// Set `deadline` to `at`, pushing a heap entry only when it is earlier
    /// than the one already scheduled.
    pub fn arm(&mut self, deadline: &mut Deadline, at: Instant, token: Token) {
        deadline.at = Some(at);
        if deadline.scheduled.is_none_or(|s| at < s) {
            self.heap.push(Reverse((at, token.0)));
            deadline.scheduled = Some(at);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Pop the next entry due at or before `now`: its token and instant.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Token, Instant)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => {
                self.heap.pop().map(|Reverse((at, t))| (Token(t), at))
            }
            _ => None,
        }
    }

    /// Judge a popped entry against the connection's state (updated here:
    /// a deadline that moved later is re-scheduled).
    pub fn check(
        &mut self,
        deadline: &mut Deadline,
        popped: Instant,
        token: Token,
        now: Instant,
    ) -> Due {
        if deadline.scheduled != Some(popped) {
            return Due::Skip;
        }
        deadline.scheduled = None;
        match deadline.at {
            Some(at) if at <= now => {
                deadline.at = None;
                Due::Fire
            }
            Some(at) => {
                self.heap.push(Reverse((at, token.0)));
                deadline.scheduled = Some(at);
                Due::Skip
            }
            None => Due::Skip,
        }
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

    fn fire_all(t: &mut Timers, d: &mut Deadline, now: Instant) -> usize {
        let mut fired = 0;
        while let Some((tok, at)) = t.pop_due(now) {
            if matches!(t.check(d, at, tok, now), Due::Fire) {
                fired += 1;
            }
        }
        fired
    }

    #[test]
    fn pushing_later_deadlines_costs_no_heap_entry() {
        let mut t = Timers::default();
        let mut d = Deadline::default();
        let now = Instant::now();
        for i in 1..1000u64 {
            t.arm(&mut d, now + Duration::from_millis(i), Token(1));
        }
        assert_eq!(t.len(), 1, "one entry however often it is re-armed later");
        // The early entry surfaces, is re-pushed at the real deadline, fires once.
        assert_eq!(fire_all(&mut t, &mut d, now + Duration::from_millis(5)), 0);
        assert_eq!(t.len(), 1);
        assert_eq!(fire_all(&mut t, &mut d, now + Duration::from_secs(2)), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn an_earlier_deadline_wins_and_the_stale_entry_is_skipped() {
        let mut t = Timers::default();
        let mut d = Deadline::default();
        let now = Instant::now();
        t.arm(&mut d, now + Duration::from_secs(10), Token(3));
        t.arm(&mut d, now + Duration::from_secs(1), Token(3));
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(1)));
        assert_eq!(fire_all(&mut t, &mut d, now + Duration::from_secs(1)), 1);
        assert_eq!(
            fire_all(&mut t, &mut d, now + Duration::from_secs(20)),
            0,
            "stale 10 s entry"
        );
    }

    #[test]
    fn disarmed_deadlines_do_not_fire() {
        let mut t = Timers::default();
        let mut d = Deadline::default();
        let now = Instant::now();
        t.arm(&mut d, now + Duration::from_secs(1), Token(2));
        d.at = None;
        assert_eq!(fire_all(&mut t, &mut d, now + Duration::from_secs(5)), 0);
    }
}
