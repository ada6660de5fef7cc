//! One request's journey, from a routed head to the end of its response:
//! a sans-IO machine the reactor drives with events and the clock.
//!
//! ```text
//!            ┌──────────── queue timeout ─────────────────────────────────┐
//!  Routed ──► Queued(ticket) ──grant──► Connecting ──connected──► AwaitingHead ──head──► Streaming ──► Done
//!    │  └──── slot free ─────────────────┘   │  pooled conn ───────────▲   │                        │
//!    │                                       └─ connect timeout ─┐        └─ read timeout ─┐       │
//!    └──── no backend / queue full ───────────────────────────► Failed(HttpError) ◄────────┘       │
//!          backend cut before any response: back to Routed (retry rules in sched::retry) ◄─────────┘ (cut mid-response: aborted)
//! ```
//!
//! Owns: where the request is, its timers (`Timer`), the facts needed to
//! forward it and to shape the response (gzip, HSTS, sticky cookie,
//! framing), and the response body pipeline (`pipeline`).
//! Must not: touch sockets or read the clock (`now` comes in). It names
//! connections by `ConnId` only; the reactor owns them.
//! Fed by: the reactor (routing result, picks, connection events, the
//! response head). Emits: its state, the timer that expired, the encoded
//! request head, response bytes through `pipeline::pump`.

pub mod pipeline;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::HttpError;
use crate::http::h1::{BodyDecoder, BodyKind, ResponseHead};
use crate::sched::balance::{BackendId, Balancer};
use crate::sched::queue::Ticket;
use crate::timer::TimerTable;
pub use pipeline::{OutMode, Pumped, pump};

/// An exchange's slot in its reactor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExchangeId(pub usize);

/// A connection record of the reactor (client or backend side).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(pub usize);

/// Which client protocol the response goes back over.
pub enum Downstream {
    /// HTTP/1.x; `version` is the minor version (0 or 1).
    H1 { version: u8 },
    /// An HTTP/2 stream.
    H2(H2Stream),
}

/// HTTP/2-only state of an exchange.
pub struct H2Stream {
    pub id: u32,
    /// Response payload ready for DATA but over the send window.
    pub stash: Vec<u8>,
    /// Request payload received but not yet credited back to the client
    /// (WINDOW_UPDATE follows forwarding: request backpressure).
    pub unreleased: usize,
    /// The response body was decoded to its end (what is left is `stash`).
    pub body_done: bool,
}

impl H2Stream {
    pub fn new(id: u32) -> H2Stream {
        H2Stream {
            id,
            stash: Vec::new(),
            unreleased: 0,
            body_done: false,
        }
    }
}

/// Where the request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journey {
    /// Routed to an app, waiting for a pick.
    Routed,
    /// Waiting in the app's queue.
    Queued(Ticket),
    /// A new connection to `backend` is being opened.
    Connecting {
        backend: BackendId,
        upstream: ConnId,
    },
    /// The request is going out (or went); no response head yet.
    AwaitingHead {
        backend: BackendId,
        upstream: ConnId,
    },
    /// The response head went to the client; its body is streaming.
    Streaming {
        backend: BackendId,
        upstream: ConnId,
    },
    /// The response is complete.
    Done,
    /// Answered by Portier, or cut when the response had started; sticky.
    Failed {
        error: HttpError,
        response_started: bool,
    },
}

/// The exchange's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Waiting in the queue (→ 503 `queue_timeout`).
    Queue = 0,
    /// Opening a backend connection (→ 504, backend quarantined).
    Connect = 1,
    /// Waiting for the backend's response bytes (→ 504 or cut).
    Response = 2,
}
const TIMERS: usize = 3;

impl Timer {
    const ALL: [Timer; TIMERS] = [Timer::Queue, Timer::Connect, Timer::Response];
}

/// The timeouts an exchange runs on (from the snapshot).
#[derive(Clone, Copy, Debug)]
pub struct ExchangeTimeouts {
    pub queue: Duration,
    pub connect: Duration,
    pub read: Duration,
}

/// Facts of the request that shape its forwarding and its response.
pub struct RequestFacts {
    /// As received (counters by method class).
    pub method: Box<str>,
    pub is_head: bool,
    /// Safe to send again (RFC 9110 §9.2.2 idempotent method, no body).
    pub idempotent: bool,
    /// Asks for a protocol upgrade (WebSocket).
    pub upgrade: bool,
    /// The client connection stays open after this exchange (HTTP/1.x).
    pub keep_alive: bool,
    pub request_id: String,
}

/// What Portier adds to or changes in the response.
pub struct ResponseExtras {
    /// `Strict-Transport-Security` value (HTTPS, forced).
    pub hsts: Option<String>,
    /// Sticky sessions of the app, and the backend the client's cookie names.
    pub sticky: Option<Arc<crate::sticky::Sticky>>,
    pub preferred: Option<BackendId>,
    pub secure: bool,
    /// The client accepts gzip and the app compresses.
    pub gzip_ok: bool,
}

/// Where the request body comes from.
pub enum RequestBody {
    None,
    /// HTTP/1.x: raw bytes from the client's read buffer, validated by the decoder.
    H1(BodyDecoder),
    /// HTTP/2: DATA payload, already framed for the backend (raw for a known
    /// length, chunk-encoded otherwise); `ended` once END_STREAM arrived.
    H2 {
        pending: Vec<u8>,
        chunked: bool,
        ended: bool,
    },
}

impl RequestBody {
    pub fn is_done(&self) -> bool {
        match self {
            RequestBody::None => true,
            RequestBody::H1(_) => false,
            RequestBody::H2 { pending, ended, .. } => *ended && pending.is_empty(),
        }
    }
}

/// Access-log facts gathered along an exchange.
pub struct LogInfo {
    pub app: String,
    pub host: String,
    pub method: String,
    pub path: String,
    pub tls: Option<&'static str>,
    /// When a backend was picked (end of queueing).
    pub picked: Option<Instant>,
    /// When the backend connection was ready (connected, or taken from the pool).
    pub connected: Option<Instant>,
    /// When the response head arrived.
    pub head: Option<Instant>,
    /// The backend that served it.
    pub backend: Option<std::net::SocketAddr>,
    /// Response body bytes handed to the client.
    pub bytes: u64,
}

/// One request on its way.
pub struct Exchange {
    /// What routing decided: fixed for the journey (but the body, the
    /// log facts and keep-alive, which fill in as it goes).
    pub route: Route,
    /// Backends that failed this request (not tried again for it).
    pub tried: Vec<BackendId>,
    attempts: u32,
    journey: Journey,
    timers: TimerTable<TIMERS>,
    /// Status of the response sent (0 until its head is sent).
    pub status: u16,
    /// How response payload reaches the client.
    pub out: OutMode,
    /// Backend response framing, once its head arrived.
    pub decoder: Option<BodyDecoder>,
    /// The reactor's wheel entry for this exchange (its bookkeeping).
    pub scheduled: Option<Instant>,
}

/// What routing decided for a request, to start an exchange from.
pub struct Route {
    pub client: ConnId,
    pub downstream: Downstream,
    /// When the request's first byte arrived (latency metrics, access log).
    pub started: Instant,
    pub app_stats: Arc<crate::snapshot::AppStats>,
    pub balancer: Arc<Balancer>,
    pub request: RequestFacts,
    /// Encoded request head for the backend (sent again on a retry).
    pub head: Vec<u8>,
    /// Request body still to come from the client.
    pub body: RequestBody,
    pub extras: ResponseExtras,
    pub timeouts: ExchangeTimeouts,
    /// What the access log needs (only when it is on).
    pub log: Option<Box<LogInfo>>,
}

impl Exchange {
    pub fn new(route: Route) -> Exchange {
        Exchange {
            route,
            tried: Vec::new(),
            attempts: 0,
            journey: Journey::Routed,
            timers: TimerTable::default(),
            status: 0,
            out: OutMode::Raw,
            decoder: None,
            scheduled: None,
        }
    }

    pub fn journey(&self) -> Journey {
        self.journey
    }

    /// The HTTP/2 stream id, if the client speaks HTTP/2.
    pub fn stream(&self) -> Option<u32> {
        match &self.route.downstream {
            Downstream::H2(s) => Some(s.id),
            Downstream::H1 { .. } => None,
        }
    }

    pub fn h2_mut(&mut self) -> Option<&mut H2Stream> {
        match &mut self.route.downstream {
            Downstream::H2(s) => Some(s),
            Downstream::H1 { .. } => None,
        }
    }

    /// HTTP/1.x minor version of the client (HTTP/2: 1).
    pub fn client_version(&self) -> u8 {
        match self.route.downstream {
            Downstream::H1 { version } => version,
            Downstream::H2(_) => 1,
        }
    }

    /// The backend slot and connection it holds, from a pick until it ends.
    fn held(&self) -> Option<(BackendId, ConnId)> {
        match self.journey {
            Journey::Connecting { backend, upstream }
            | Journey::AwaitingHead { backend, upstream }
            | Journey::Streaming { backend, upstream } => Some((backend, upstream)),
            _ => None,
        }
    }

    /// The backend holding this request's slot.
    pub fn backend(&self) -> Option<BackendId> {
        self.held().map(|(b, _)| b)
    }

    /// The backend connection serving it.
    pub fn upstream(&self) -> Option<ConnId> {
        self.held().map(|(_, c)| c)
    }

    pub fn ticket(&self) -> Option<Ticket> {
        match self.journey {
            Journey::Queued(t) => Some(t),
            _ => None,
        }
    }

    pub fn is_connecting(&self) -> bool {
        matches!(self.journey, Journey::Connecting { .. })
    }

    /// Part of the response went to the client: it can no longer be
    /// answered by Portier nor retried.
    pub fn response_started(&self) -> bool {
        matches!(
            self.journey,
            Journey::Streaming { .. }
                | Journey::Done
                | Journey::Failed {
                    response_started: true,
                    ..
                }
        )
    }

    /// One more attempt at a backend; refused past the retry budget.
    pub fn try_attempt(&mut self) -> Result<(), HttpError> {
        self.attempts += 1;
        if self.attempts
            > crate::sched::retry::attempts_allowed(self.route.balancer.backends().len())
        {
            return Err(self.fail(HttpError::NoBackend));
        }
        Ok(())
    }

    /// It waits in the queue; the wait does not count as an attempt.
    pub fn queued(&mut self, ticket: Ticket, now: Instant) {
        self.attempts = self.attempts.saturating_sub(1);
        self.journey = Journey::Queued(ticket);
        self.timers
            .set(Timer::Queue as usize, now + self.route.timeouts.queue);
    }

    /// A backend slot and a connection: new (`fresh`, connecting) or pooled.
    pub fn attached(&mut self, backend: BackendId, upstream: ConnId, fresh: bool, now: Instant) {
        self.timers.clear(Timer::Queue as usize);
        if let Some(l) = self.route.log.as_mut() {
            l.picked.get_or_insert(now);
            if !fresh {
                l.connected = Some(now);
            }
        }
        if fresh {
            self.journey = Journey::Connecting { backend, upstream };
            self.timers
                .set(Timer::Connect as usize, now + self.route.timeouts.connect);
        } else {
            self.journey = Journey::AwaitingHead { backend, upstream };
            self.timers
                .set(Timer::Response as usize, now + self.route.timeouts.read);
        }
    }

    /// The new connection is up: the request goes out, the read clock starts.
    pub fn connected(&mut self, now: Instant) {
        if let Journey::Connecting { backend, upstream } = self.journey {
            self.journey = Journey::AwaitingHead { backend, upstream };
            self.timers.clear(Timer::Connect as usize);
            self.timers
                .set(Timer::Response as usize, now + self.route.timeouts.read);
            if let Some(l) = self.route.log.as_mut() {
                l.connected = Some(now);
            }
        }
    }

    /// The backend sent something: its read timeout starts again.
    pub fn backend_progress(&mut self, now: Instant) {
        if matches!(
            self.journey,
            Journey::AwaitingHead { .. } | Journey::Streaming { .. }
        ) {
            self.timers
                .set(Timer::Response as usize, now + self.route.timeouts.read);
        }
    }

    /// The backend connection went away before any response: back to
    /// `Routed` for another pick. Returns the backend whose slot the caller
    /// must release.
    pub fn detach(&mut self) -> Option<BackendId> {
        let backend = self.backend();
        if !self.response_started() {
            self.journey = Journey::Routed;
            self.timers.clear_all();
        }
        backend
    }

    /// The final response head arrived: choose how its body reaches the
    /// client — gzip when eligible, re-framed for an HTTP/1.0 client, raw
    /// otherwise; HTTP/2 always takes the payload. For HTTP/1.x the head's
    /// framing is rewritten to match. Returns the backend's own framing
    /// (what the body decoder must follow).
    pub fn begin_response(
        &mut self,
        head: &mut ResponseHead,
        now: Instant,
        gzip_min_size: u64,
        gzip_level: u32,
    ) -> BodyKind {
        use crate::compress::{rewrite_head, should_compress};
        if let (Journey::AwaitingHead { .. }, Some((backend, upstream))) =
            (self.journey, self.held())
        {
            self.journey = Journey::Streaming { backend, upstream };
        }
        self.status = head.status;
        if let Some(l) = self.route.log.as_mut() {
            l.head = Some(now);
        }
        let backend_kind = head.body;
        let (h1, version) = match self.route.downstream {
            Downstream::H1 { version } => (true, version),
            Downstream::H2(_) => (false, 1),
        };
        let chunked = h1 && version >= 1;
        if self.route.extras.gzip_ok
            && should_compress(head, self.route.request.is_head, gzip_min_size)
        {
            rewrite_head(head);
            if h1 {
                head.body = if chunked {
                    BodyKind::Chunked
                } else {
                    BodyKind::CloseDelimited
                };
            }
            self.out = OutMode::gzip(gzip_level, chunked);
        } else if !h1 {
            self.out = OutMode::Payload { chunked: false };
        } else if version == 0 && backend_kind == BodyKind::Chunked {
            head.body = BodyKind::CloseDelimited;
            self.out = OutMode::Payload { chunked: false };
        } else {
            self.out = OutMode::Raw;
        }
        backend_kind
    }

    /// Fields Portier adds to every response it forwards, whatever the
    /// protocol: the request id, HSTS when forced, and the sticky cookie
    /// when the client is not already bound to the backend that answered.
    pub fn response_extras(&self) -> ResponseFields<'_> {
        let cookie = match (&self.route.extras.sticky, self.backend()) {
            (Some(st), Some(b)) if self.route.extras.preferred != Some(b) => {
                st.set_cookie(b, self.route.extras.secure)
            }
            _ => None,
        };
        ResponseFields {
            request_id: &self.route.request.request_id,
            hsts: self.route.extras.hsts.as_deref(),
            cookie,
        }
    }

    /// The response is complete.
    pub fn finish(&mut self) {
        self.journey = Journey::Done;
        self.timers.clear_all();
    }

    /// Portier answers (or cuts) instead; the error sticks.
    pub fn fail(&mut self, e: HttpError) -> HttpError {
        if let Journey::Failed { error, .. } = self.journey {
            return error;
        }
        let response_started = self.response_started();
        self.journey = Journey::Failed {
            error: e,
            response_started,
        };
        self.timers.clear_all();
        e
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// A timer of this exchange expired: the error it ends with. The
    /// journey is left as it was, so the caller still sees what to undo
    /// (queue place, slot, connection) before it answers or cuts, and
    /// quarantines the backend on `UpstreamConnectTimeout`. A spurious call
    /// returns `None`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<HttpError> {
        let expired = Timer::ALL.get(self.timers.take_expired(now)?).copied()?;
        let e = match (expired, self.journey) {
            (Timer::Queue, Journey::Queued(_)) => HttpError::QueueTimeout,
            (Timer::Connect, Journey::Connecting { .. }) => HttpError::UpstreamConnectTimeout,
            (Timer::Response, Journey::AwaitingHead { .. } | Journey::Streaming { .. }) => {
                HttpError::UpstreamReadTimeout
            }
            // A timer left over from an earlier stage.
            _ => return None,
        };
        Some(e)
    }
}

/// The fields of [`Exchange::response_extras`], borrowed from the exchange
/// but for a sticky cookie (no copy per response).
pub struct ResponseFields<'a> {
    request_id: &'a str,
    hsts: Option<&'a str>,
    cookie: Option<String>,
}

impl ResponseFields<'_> {
    /// As the encoders' `extra`: name/value pairs, in order.
    pub fn pairs(&self) -> Pairs<'_> {
        let mut pairs = Pairs {
            items: [("", &[][..]); 3],
            len: 0,
        };
        pairs.push("X-Request-ID", self.request_id.as_bytes());
        if let Some(h) = self.hsts {
            pairs.push("Strict-Transport-Security", h.as_bytes());
        }
        if let Some(c) = &self.cookie {
            pairs.push("Set-Cookie", c.as_bytes());
        }
        pairs
    }
}

/// Up to three name/value pairs on the stack, seen as a slice.
pub struct Pairs<'a> {
    items: [(&'static str, &'a [u8]); 3],
    len: usize,
}

impl<'a> Pairs<'a> {
    fn push(&mut self, name: &'static str, value: &'a [u8]) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = (name, value);
            self.len += 1;
        }
    }
}

impl<'a> std::ops::Deref for Pairs<'a> {
    type Target = [(&'static str, &'a [u8])];

    fn deref(&self) -> &Self::Target {
        self.items.get(..self.len).unwrap_or_default()
    }
}
