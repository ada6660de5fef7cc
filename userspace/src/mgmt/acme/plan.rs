//! What the ACME service knows about each name and when it acts next, pure
//! (times are Unix seconds passed in, randomness too): the per-name record,
//! the backoff schedule, the renewal point (ARI window or a fraction of the
//! lifetime), and the hourly cap on new orders. Persisted as JSON in the
//! state directory so a restart keeps backoff and never hammers the CA.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Where a name stands, as shown to operators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    /// Not ordered yet, or an order is running.
    Pending,
    /// A certificate serves; renewal is scheduled.
    Valid,
    /// DNS-01 in manual mode: the operator must create this TXT record;
    /// Portier checks the authoritative servers and finishes by itself.
    ActionRequired { record: String, value: String },
    /// The last attempt failed; the next one is at `next_attempt`.
    Failed,
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Valid => "valid",
            Phase::ActionRequired { .. } => "action_required",
            Phase::Failed => "failed",
        }
    }
}

/// One name (`a.example.com` or `*.example.com`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRecord {
    pub phase: Phase,
    /// Failed attempts in a row.
    pub failures: u32,
    pub last_error: Option<String>,
    /// When the next order (or renewal) starts.
    pub next_attempt: i64,
    /// The certificate serving now, if any.
    pub cert: Option<CertFacts>,
    /// Renewal window suggested by the CA (ARI), and when to ask again.
    pub ari_window: Option<(i64, i64)>,
    pub ari_next_check: Option<i64>,
}

/// What the service needs to know of a certificate it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertFacts {
    pub not_before: i64,
    pub not_after: i64,
    /// ARI CertID (`base64url(AKI).base64url(serial)`), for `replaces`.
    pub cert_id: Option<String>,
    /// Issued by this service (else found in the directory).
    pub managed: bool,
}

impl NameRecord {
    /// A name just attached: ordered at once.
    pub fn new(now: i64) -> NameRecord {
        NameRecord {
            phase: Phase::Pending,
            failures: 0,
            last_error: None,
            next_attempt: now,
            cert: None,
            ari_window: None,
            ari_next_check: None,
        }
    }

    /// A name that already has a certificate (found on disk or just issued).
    pub fn serving(cert: CertFacts, unit: f64) -> NameRecord {
        let mut r = NameRecord::new(0);
        r.adopt(cert, unit);
        r
    }

    /// A certificate now serves: valid, failures forgotten, renewal
    /// scheduled (`unit` in [0, 1) picks the point in an ARI window).
    pub fn adopt(&mut self, cert: CertFacts, unit: f64) {
        self.phase = Phase::Valid;
        self.failures = 0;
        self.last_error = None;
        self.ari_window = None;
        self.ari_next_check = None;
        self.next_attempt = renewal_point(cert.not_before, cert.not_after, None, unit);
        self.cert = Some(cert);
    }

    /// The CA suggested a renewal window: renew at a random point of it
    /// (at once if it has started). A window seen before keeps its point.
    pub fn suggest(&mut self, window: (i64, i64), check_again: i64, unit: f64) {
        self.ari_next_check = Some(check_again);
        if self.ari_window == Some(window) {
            return;
        }
        self.ari_window = Some(window);
        if let Some(c) = &self.cert {
            self.next_attempt = renewal_point(c.not_before, c.not_after, Some(window), unit);
        }
    }

    /// An attempt failed: next one after the backoff delay, or later if
    /// the CA said so (Retry-After).
    pub fn fail(&mut self, now: i64, error: String, backoff: &[u64], retry_after: Option<i64>) {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error);
        let delay = backoff_delay(self.failures, backoff) as i64;
        self.next_attempt = (now + delay).max(retry_after.unwrap_or(i64::MIN));
        // A name still served by a valid certificate stays valid (the
        // renewal failed, not the service): the error shows, and metrics
        // alert well before expiry.
        let serving = self.cert.as_ref().is_some_and(|c| c.not_after > now);
        self.phase = if serving { Phase::Valid } else { Phase::Failed };
    }

    /// An order starts: if the process dies during it, the next start
    /// waits as if it had failed (a crash loop never hammers the CA).
    pub fn pessimistic_next(&self, now: i64, backoff: &[u64]) -> i64 {
        now + backoff_delay(self.failures.saturating_add(1), backoff) as i64
    }
}

/// Delay before retry `failures` (1-based): the schedule's entry, the
/// last one repeating.
pub fn backoff_delay(failures: u32, schedule: &[u64]) -> u64 {
    let i = (failures.max(1) as usize - 1).min(schedule.len().saturating_sub(1));
    schedule.get(i).copied().unwrap_or(86_400)
}

/// When to renew: a point of the ARI window picked by `unit` (in [0, 1)),
/// else when a third of the lifetime is left (half for certificates of
/// under 10 days). Never tied to a fixed 90 days.
pub fn renewal_point(not_before: i64, not_after: i64, ari: Option<(i64, i64)>, unit: f64) -> i64 {
    if let Some((start, end)) = ari.filter(|(s, e)| e >= s) {
        return start + ((end - start) as f64 * unit.clamp(0.0, 1.0)) as i64;
    }
    let lifetime = (not_after - not_before).max(0);
    let left = if lifetime < 10 * 86_400 {
        lifetime / 2
    } else {
        lifetime / 3
    };
    not_after - left
}

/// New orders per rolling hour.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCap {
    started: VecDeque<i64>,
}

impl OrderCap {
    /// Take a slot at `now`, or say when the next one frees up.
    pub fn take(&mut self, now: i64, per_hour: u32) -> Result<(), i64> {
        while self.started.front().is_some_and(|&t| t <= now - 3600) {
            self.started.pop_front();
        }
        if self.started.len() >= per_hour as usize {
            return Err(self.started.front().map_or(now, |t| t + 3600));
        }
        self.started.push_back(now);
        Ok(())
    }
}

/// Everything persisted (`state.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Book {
    pub names: BTreeMap<String, NameRecord>,
    pub cap: OrderCap,
    /// The CA asked every client to wait (503 + Retry-After) until then.
    pub paused_until: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const SCHEDULE: [u64; 4] = [60, 600, 6_000, 86_400];

    #[test]
    fn backoff_grows_then_stays_daily() {
        let d: Vec<u64> = (1..=6).map(|n| backoff_delay(n, &SCHEDULE)).collect();
        assert_eq!(d, [60, 600, 6_000, 86_400, 86_400, 86_400]);
        assert_eq!(backoff_delay(0, &SCHEDULE), 60);
    }

    #[test]
    fn failures_back_off_and_honour_retry_after() {
        let mut r = NameRecord::new(1_000);
        r.fail(1_000, "ca down".into(), &SCHEDULE, None);
        assert_eq!((r.failures, r.next_attempt), (1, 1_060));
        assert_eq!(r.phase, Phase::Failed);
        r.fail(1_060, "ca down".into(), &SCHEDULE, None);
        assert_eq!(r.next_attempt, 1_660);
        // Retry-After later than the backoff wins; earlier does not.
        r.fail(2_000, "429".into(), &SCHEDULE, Some(50_000));
        assert_eq!(r.next_attempt, 50_000);
        r.fail(50_000, "429".into(), &SCHEDULE, Some(50_001));
        assert_eq!(r.next_attempt, 50_000 + 86_400);
        assert_eq!(r.pessimistic_next(0, &SCHEDULE), 86_400);
    }

    #[test]
    fn a_failed_renewal_keeps_a_serving_certificate_valid() {
        let cert = CertFacts {
            not_before: 0,
            not_after: 90 * DAY,
            cert_id: None,
            managed: true,
        };
        let mut r = NameRecord::serving(cert, 0.5);
        assert_eq!(r.next_attempt, 60 * DAY);
        r.fail(60 * DAY, "dns".into(), &SCHEDULE, None);
        assert_eq!(r.phase, Phase::Valid);
        assert_eq!(r.last_error.as_deref(), Some("dns"));
        r.fail(91 * DAY, "dns".into(), &SCHEDULE, None);
        assert_eq!(r.phase, Phase::Failed, "expired");
        r.adopt(
            CertFacts {
                not_before: 91 * DAY,
                not_after: 181 * DAY,
                cert_id: None,
                managed: true,
            },
            0.5,
        );
        assert_eq!((r.failures, r.last_error.as_deref()), (0, None));
    }

    #[test]
    fn renewal_follows_lifetime_not_ninety_days() {
        // 90 days: renew with 30 left; 45 days: 15 left; 6 days: 3 left.
        assert_eq!(renewal_point(0, 90 * DAY, None, 0.0), 60 * DAY);
        assert_eq!(renewal_point(0, 45 * DAY, None, 0.0), 30 * DAY);
        assert_eq!(renewal_point(0, 6 * DAY, None, 0.0), 3 * DAY);
        // ARI: a point inside the window.
        assert_eq!(renewal_point(0, 90 * DAY, Some((100, 200)), 0.0), 100);
        assert_eq!(renewal_point(0, 90 * DAY, Some((100, 200)), 0.5), 150);
        assert_eq!(renewal_point(0, 90 * DAY, Some((100, 200)), 1.0), 200);
    }

    #[test]
    fn a_new_ari_window_moves_the_renewal_an_old_one_does_not() {
        let cert = CertFacts {
            not_before: 0,
            not_after: 90 * DAY,
            cert_id: Some("a.b".into()),
            managed: true,
        };
        let mut r = NameRecord::serving(cert, 0.0);
        r.suggest((10, 20), 500, 0.5);
        assert_eq!((r.next_attempt, r.ari_next_check), (15, Some(500)));
        r.suggest((10, 20), 900, 0.9);
        assert_eq!((r.next_attempt, r.ari_next_check), (15, Some(900)));
        r.suggest((30, 40), 900, 0.0);
        assert_eq!(r.next_attempt, 30);
    }

    #[test]
    fn the_hourly_cap_refuses_then_frees_up() {
        let mut cap = OrderCap::default();
        assert_eq!(cap.take(0, 2), Ok(()));
        assert_eq!(cap.take(10, 2), Ok(()));
        assert_eq!(cap.take(20, 2), Err(3600));
        assert_eq!(cap.take(3600, 2), Ok(()));
        assert_eq!(cap.take(3605, 2), Err(3610));
    }

    #[test]
    fn the_book_survives_json() {
        let mut b = Book::default();
        b.names.insert("a.test".into(), NameRecord::new(5));
        let mut r = NameRecord::new(5);
        r.phase = Phase::ActionRequired {
            record: "_acme-challenge.x.test".into(),
            value: "v".into(),
        };
        b.names.insert("*.x.test".into(), r);
        b.cap.take(5, 10).expect("slot");
        let text = serde_json::to_string(&b).expect("json");
        assert_eq!(serde_json::from_str::<Book>(&text).expect("back"), b);
    }
}
