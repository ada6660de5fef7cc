//! Abuse budgets: per-connection counters of frames that cost the server
//! work without carrying a request forward, over a fixed time window.
//!
//! Owns: the counters and their window. Must not: read the clock (time is
//! passed in) or decide what happens when a budget is exceeded (the
//! connection sends GOAWAY ENHANCE_YOUR_CALM). Fed by: `conn.rs`, once per
//! costly frame. Emits: `Err(Abuse)` when a budget is exceeded.
//!
//! A fixed window is used: counters reset when `window` has passed since
//! the window opened. A burst straddling a window boundary can therefore
//! reach twice a budget before being cut off; every budget is sized so that
//! twice the budget is still harmless.

use std::time::{Duration, Instant};

/// What a charged frame was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abuse {
    /// A stream reset by the client (RST_STREAM), or reset / refused /
    /// rejected by the server because of the client (rapid reset,
    /// CVE-2023-44487, and MadeYouReset, CVE-2025-8671).
    Reset,
    /// SETTINGS, PING, PRIORITY, unsolicited WINDOW_UPDATE, RST_STREAM on a
    /// closed stream, unknown frame types.
    Control,
    /// DATA with no payload and no END_STREAM.
    EmptyData,
}

impl Abuse {
    /// GOAWAY debug data / `ConnectionError` reason.
    pub fn reason(self) -> &'static str {
        match self {
            Abuse::Reset => "too many stream resets",
            Abuse::Control => "too many control frames",
            Abuse::EmptyData => "too many empty DATA frames",
        }
    }
}

/// Counters for the current window.
#[derive(Debug, Clone)]
pub struct Budget {
    window: Duration,
    opened: Option<Instant>,
    max: [u32; 3],
    used: [u32; 3],
}

impl Budget {
    /// Budgets per `window`: resets, control frames, empty DATA frames.
    pub fn new(window: Duration, resets: u32, control: u32, empty_data: u32) -> Self {
        Budget {
            window,
            opened: None,
            max: [resets, control, empty_data],
            used: [0; 3],
        }
    }

    fn slot(kind: Abuse) -> usize {
        match kind {
            Abuse::Reset => 0,
            Abuse::Control => 1,
            Abuse::EmptyData => 2,
        }
    }

    /// Count one `kind` at `now`; `Err` once the window's budget is spent.
    pub fn charge(&mut self, kind: Abuse, now: Instant) -> Result<(), Abuse> {
        match self.opened {
            Some(t) if now.saturating_duration_since(t) < self.window => {}
            _ => {
                self.opened = Some(now);
                self.used = [0; 3];
            }
        }
        let i = Self::slot(kind);
        let (Some(used), Some(max)) = (self.used.get_mut(i), self.max.get(i)) else {
            return Ok(());
        };
        *used = used.saturating_add(1);
        if *used > *max { Err(kind) } else { Ok(()) }
    }

    /// Used so far in the current window (tests, metrics).
    pub fn used(&self, kind: Abuse) -> u32 {
        self.used.get(Self::slot(kind)).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_trips_then_resets_with_the_window() {
        let t0 = Instant::now();
        let mut b = Budget::new(Duration::from_secs(10), 2, 5, 1);
        assert!(b.charge(Abuse::Reset, t0).is_ok());
        assert!(b.charge(Abuse::Reset, t0).is_ok());
        assert_eq!(b.charge(Abuse::Reset, t0), Err(Abuse::Reset));
        assert!(b.charge(Abuse::Control, t0).is_ok());
        let later = t0 + Duration::from_secs(11);
        assert!(b.charge(Abuse::Reset, later).is_ok());
        assert_eq!(b.used(Abuse::Reset), 1);
        assert_eq!(b.used(Abuse::Control), 0);
    }
}
