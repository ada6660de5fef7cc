//! A machine's own timers: `[Option<Instant>; N]` indexed by the machine's
//! timer enum (as in quinn-proto). The reactor keeps one wheel entry per
//! machine at [`TimerTable::next`] and calls the machine back when it is
//! due; a spurious call finds nothing expired and does nothing.

use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerTable<const N: usize> {
    at: [Option<Instant>; N],
}

impl<const N: usize> Default for TimerTable<N> {
    fn default() -> Self {
        TimerTable { at: [None; N] }
    }
}

impl<const N: usize> TimerTable<N> {
    pub fn set(&mut self, timer: usize, at: Instant) {
        if let Some(slot) = self.at.get_mut(timer) {
            *slot = Some(at);
        }
    }

    pub fn clear(&mut self, timer: usize) {
        if let Some(slot) = self.at.get_mut(timer) {
            *slot = None;
        }
    }

    pub fn clear_all(&mut self) {
        self.at = [None; N];
    }

    pub fn get(&self, timer: usize) -> Option<Instant> {
        self.at.get(timer).copied().flatten()
    }

    /// The earliest armed timer.
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// The first timer (in index order) due at `now`, disarmed.
    pub fn take_expired(&mut self, now: Instant) -> Option<usize> {
        let i = self.at.iter().position(|t| t.is_some_and(|t| t <= now))?;
        self.at[i] = None;
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earliest_fires_first_and_only_once() {
        let t0 = Instant::now();
        let mut t = TimerTable::<3>::default();
        t.set(2, t0 + Duration::from_secs(1));
        t.set(0, t0 + Duration::from_secs(5));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.take_expired(t0), None, "nothing due yet");
        assert_eq!(t.take_expired(t0 + Duration::from_secs(2)), Some(2));
        assert_eq!(t.take_expired(t0 + Duration::from_secs(2)), None);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(5)));
        t.clear(0);
        assert_eq!(t.next(), None);
    }
}
