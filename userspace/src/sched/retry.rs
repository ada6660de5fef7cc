//! May a request whose backend failed be tried again? Pure rules, no state
//! (SPEC §3: a request whose backend failed before any byte was sent to it
//! is retried on another backend, so one dying container loses no request).
//!
//! ```text
//!  response started ─────────────────────────────► Abort (cut / RST_STREAM)
//!  nothing of the request written ───────────────► Retry elsewhere (quarantine unless a stale pooled conn)
//!  written, idempotent, fresh connection ────────► Retry elsewhere, quarantine
//!  written, no body, pooled connection ──────────► Retry (the pooled conn was stale)
//!  otherwise ────────────────────────────────────► Fail 502 upstream_connection_failed, quarantine
//! ```

use crate::http::HttpError;

/// What is known when a backend connection fails under a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    /// Request bytes written to this connection.
    pub written: u64,
    /// The connection came from the idle pool (may simply have been stale).
    pub reused: bool,
    /// Safe to repeat (RFC 9110 §9.2.2) and without a body.
    pub idempotent: bool,
    /// The request body is not complete yet (cannot be replayed).
    pub body_pending: bool,
    /// Part of the response already went to the client.
    pub response_started: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The client already has part of a response: end its connection or stream.
    Abort,
    /// Pick a backend again; `quarantine`: the failed one leaves the
    /// rotation (and is not tried again for this request).
    Retry { quarantine: bool },
    /// Answer with this error; the backend is quarantined.
    Fail(HttpError),
}

pub fn after_cut(c: Cut) -> Verdict {
    if c.response_started {
        return Verdict::Abort;
    }
    if c.written == 0 {
        // A stale pooled connection says nothing about the backend.
        return Verdict::Retry {
            quarantine: !c.reused,
        };
    }
    if c.idempotent && !c.reused {
        return Verdict::Retry { quarantine: true };
    }
    if c.reused && !c.body_pending {
        return Verdict::Retry { quarantine: false };
    }
    Verdict::Fail(HttpError::UpstreamConnectionFailed)
}

/// Attempts one request may make before it is answered 503: every backend
/// once, plus two for stale pooled connections.
pub fn attempts_allowed(backends: usize) -> u32 {
    backends as u32 + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut() -> Cut {
        Cut {
            written: 0,
            reused: false,
            idempotent: true,
            body_pending: false,
            response_started: false,
        }
    }

    #[test]
    fn nothing_sent_is_retried_and_a_fresh_refusal_quarantines() {
        assert_eq!(after_cut(cut()), Verdict::Retry { quarantine: true });
        let stale = Cut {
            reused: true,
            ..cut()
        };
        assert_eq!(after_cut(stale), Verdict::Retry { quarantine: false });
    }

    #[test]
    fn a_started_response_cannot_be_retried() {
        let c = Cut {
            response_started: true,
            written: 10,
            ..cut()
        };
        assert_eq!(after_cut(c), Verdict::Abort);
    }

    #[test]
    fn an_idempotent_request_cut_on_a_fresh_connection_is_retried() {
        let c = Cut {
            written: 100,
            ..cut()
        };
        assert_eq!(after_cut(c), Verdict::Retry { quarantine: true });
    }

    #[test]
    fn a_post_cut_after_sending_fails_with_502() {
        let c = Cut {
            written: 100,
            idempotent: false,
            body_pending: true,
            ..cut()
        };
        assert_eq!(
            after_cut(c),
            Verdict::Fail(HttpError::UpstreamConnectionFailed)
        );
        assert_eq!(HttpError::UpstreamConnectionFailed.status(), 502);
    }

    #[test]
    fn a_stale_pooled_connection_gets_one_more_try_without_a_body() {
        let c = Cut {
            written: 100,
            reused: true,
            idempotent: false,
            ..cut()
        };
        assert_eq!(after_cut(c), Verdict::Retry { quarantine: false });
        let with_body = Cut {
            body_pending: true,
            ..c
        };
        assert_eq!(
            after_cut(with_body),
            Verdict::Fail(HttpError::UpstreamConnectionFailed)
        );
    }
}
