//! Deadlines of connections: a min-heap with lazy deletion. Each connection
//! has at most one live deadline; re-arming bumps its generation, and stale
//! heap entries are skipped when they surface.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use mio::Token;

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl Timers {
    pub fn arm(&mut self, at: Instant, token: Token, generation: u64) {
        self.heap.push(Reverse((at, token.0, generation)));
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pop the next entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Token, u64)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                self.heap.pop().map(|Reverse((_, t, g))| (Token(t), g))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let mut t = Timers::default();
        let now = Instant::now();
        t.arm(now + Duration::from_secs(2), Token(1), 0);
        t.arm(now + Duration::from_secs(1), Token(2), 7);
        assert_eq!(t.pop_due(now), None);
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(1)));
        assert_eq!(t.pop_due(now + Duration::from_secs(5)), Some((Token(2), 7)));
        assert_eq!(t.pop_due(now + Duration::from_secs(5)), Some((Token(1), 0)));
        assert_eq!(t.pop_due(now + Duration::from_secs(5)), None);
    }
}
