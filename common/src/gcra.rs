//! Per-source SYN rate limiter: GCRA, the token bucket expressed as one
//! timestamp ("theoretical arrival time").
//!
//! One `u64` per source instead of tokens + timestamp, and no division on the
//! packet path: userspace turns (rate, burst) into an emission interval and a
//! tolerance once, when it writes the config map. Unlike a token bucket that
//! refills in whole tokens, a source that sends faster than the refill
//! granularity is not starved forever: it gets exactly `rate` per second.

/// State of one source, the value of the LRU map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynBucket {
    /// Theoretical arrival time of the next conforming SYN, in ns (monotonic).
    pub tat_ns: u64,
}

/// Emission interval and tolerance for `rate` SYNs per second with bursts of
/// `burst` back-to-back SYNs. `rate == 0` turns the limiter off (interval 0).
pub const fn gcra_params(rate: u32, burst: u32) -> (u64, u64) {
    if rate == 0 {
        return (0, 0);
    }
    let interval = 1_000_000_000u64 / rate as u64;
    let burst = if burst == 0 { 1 } else { burst as u64 };
    (interval, interval * (burst - 1))
}

impl SynBucket {
    /// A source seen for the first time, admitting its first SYN at `now`.
    #[inline(always)]
    pub const fn first(now_ns: u64, interval_ns: u64) -> SynBucket {
        SynBucket {
            tat_ns: now_ns.saturating_add(interval_ns),
        }
    }

    /// Admit one SYN at `now_ns`? Updates the state only when admitted.
    #[inline(always)]
    pub fn admit(&mut self, now_ns: u64, interval_ns: u64, tolerance_ns: u64) -> bool {
        let tat = if self.tat_ns > now_ns {
            self.tat_ns
        } else {
            now_ns
        };
        if tat - now_ns > tolerance_ns {
            return false;
        }
        self.tat_ns = tat.saturating_add(interval_ns);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        // 10/s, burst 5: five back-to-back SYNs pass, the sixth does not.
        let (iv, tol) = gcra_params(10, 5);
        assert_eq!(iv, 100_000_000);
        let mut b = SynBucket::first(0, iv);
        let admitted = (0..9).filter(|_| b.admit(0, iv, tol)).count();
        assert_eq!(admitted, 4, "first() took one, four more fit the burst");
        // 100 ms later exactly one more conforms.
        assert!(b.admit(100_000_000, iv, tol));
        assert!(!b.admit(100_000_000, iv, tol));
        // After a long silence the full burst is back, not more.
        let later = 10_000_000_000;
        let n = (0..20).filter(|_| b.admit(later, iv, tol)).count();
        assert_eq!(n, 5);
    }

    #[test]
    fn flooding_source_still_gets_its_rate() {
        // A source sending every 1 µs for one second at 100/s, burst 1,
        // gets ~100 SYNs through: it is limited, not starved.
        let (iv, tol) = gcra_params(100, 1);
        let mut b = SynBucket::default();
        let mut ok = 0;
        for i in 0..1_000_000u64 {
            if b.admit(i * 1_000, iv, tol) {
                ok += 1;
            }
        }
        assert_eq!(ok, 100);
    }

    #[test]
    fn zero_burst_means_one() {
        assert_eq!(gcra_params(1, 0), (1_000_000_000, 0));
        assert_eq!(gcra_params(0, 10), (0, 0));
    }
}
