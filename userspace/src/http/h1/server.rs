//! The client-facing HTTP/1.x connection machine: which request the
//! connection is on, when it may read the next head, and its timers.
//!
//! ```text
//!  Idle ──first byte──► ReadingHead ──whole head──► Busy ──response done──► Idle (keep-alive)
//!   │ idle timeout          │ header timeout (408)     │  └──close──► Closing
//!   ▼                       ▼                          └─ 101 ──► Tunnel ──silence──► closed
//!  closed               Closing ◄── malformed head (4xx) / EOF before a whole head
//! ```
//!
//! Owns: the lifecycle of one client connection, pipelining (the next head
//! is only looked at once the previous response is done, so responses keep
//! the order of requests), keep-alive, and its timers (`Timer`).
//! Must not: touch sockets, read the clock, or know what serves a request.
//! Fed by: the reactor (buffered client bytes, EOF, response ends, `now`).
//! Emits: [`Input`] per call, [`Expired`] from `handle_timeout`.

use std::time::{Duration, Instant};

use super::{RequestHead, parse_request_head};
use crate::http::{HttpError, Limits};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Between requests (or before the first).
    Idle,
    /// Part of a head arrived.
    ReadingHead,
    /// A request is being served; input is its body, read by its owner.
    Busy,
    /// Upgraded: bytes pass through untouched.
    Tunnel,
    /// Closes once its output is sent; input is ignored.
    Closing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// A head must arrive whole (also: the first one after accept).
    Header = 0,
    /// Keep-alive idle between requests.
    Idle = 1,
    /// No traffic either way on an upgraded connection.
    Tunnel = 2,
}

/// The timeouts a connection runs on (from the snapshot).
#[derive(Clone, Copy, Debug)]
pub struct ServerTimeouts {
    pub header: Duration,
    pub keepalive: Duration,
    pub tunnel: Duration,
}

/// What the buffered input means now.
#[derive(Debug)]
pub enum Input {
    /// A whole request head: its first `used` bytes of the buffer.
    Head {
        head: Box<RequestHead>,
        used: usize,
        /// When its first byte arrived.
        started: Instant,
    },
    /// Refuse with this error (answer, then close).
    Refuse(HttpError),
    /// Nothing to do until more bytes come (or the request ends).
    Wait,
    /// Nothing more will come: close once the output is sent.
    Close,
}

/// A timer of the connection expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// A head did not arrive whole in time: answer 408, then close.
    HeaderTimeout,
    /// Idle (or a dead tunnel, or nothing ever sent): close.
    Close,
}

/// One connection's machine. Its timers are exclusive by state (a head
/// being read, idle between requests, a tunnel), so they share one slot
/// tagged with which timer it is; and the timeouts come with each call
/// rather than living here: an idle connection's slot stays small.
#[derive(Debug)]
pub struct ServerConn {
    state: State,
    head_started: Option<Instant>,
    timer: Option<(Instant, Timer)>,
}

impl ServerConn {
    /// A connection just accepted: its first head has the header timeout.
    pub fn new(now: Instant, t: &ServerTimeouts) -> ServerConn {
        ServerConn {
            state: State::Idle,
            head_started: None,
            timer: Some((now + t.header, Timer::Header)),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Waiting for a head (reads are capped at the header section limit).
    pub fn wants_head(&self) -> bool {
        matches!(self.state, State::Idle | State::ReadingHead)
    }

    /// When the head being read began.
    pub fn head_started(&self) -> Option<Instant> {
        self.head_started
    }

    /// Look at the buffered input. Only heads are this machine's: in `Busy`
    /// and `Tunnel` the bytes belong to the request body or the tunnel.
    pub fn handle_input(
        &mut self,
        buf: &[u8],
        eof: bool,
        now: Instant,
        limits: &Limits,
        t: &ServerTimeouts,
    ) -> Input {
        match self.state {
            State::Busy | State::Tunnel => return Input::Wait,
            State::Closing => return Input::Close,
            State::Idle | State::ReadingHead => {}
        }
        if buf.is_empty() {
            if eof {
                // Everything asked was answered: close.
                self.state = State::Closing;
                return Input::Close;
            }
            return Input::Wait;
        }
        if self.state == State::Idle {
            self.state = State::ReadingHead;
            self.head_started = Some(now);
            self.timer = Some((now + t.header, Timer::Header));
        }
        match parse_request_head(buf, limits) {
            Err(e) => {
                self.state = State::Closing;
                self.timer = None;
                Input::Refuse(e)
            }
            Ok(None) if eof => {
                // Half a head and no more coming.
                self.state = State::Closing;
                Input::Close
            }
            Ok(None) => Input::Wait,
            Ok(Some((head, used))) => {
                self.state = State::Busy;
                self.timer = None;
                let started = self.head_started.take().unwrap_or(now);
                Input::Head {
                    head: Box::new(head),
                    used,
                    started,
                }
            }
        }
    }

    /// The response to the current request is complete (or Portier answered
    /// a head itself): wait for the next head, or close.
    pub fn response_done(&mut self, close: bool, now: Instant, t: &ServerTimeouts) {
        self.head_started = None;
        self.timer = None;
        if close {
            self.state = State::Closing;
        } else {
            self.state = State::Idle;
            self.timer = Some((now + t.keepalive, Timer::Idle));
        }
    }

    /// The backend switched protocols (101): bytes pass through.
    pub fn upgraded(&mut self, now: Instant, t: &ServerTimeouts) {
        self.state = State::Tunnel;
        self.tunnel_activity(now, t);
    }

    /// Traffic on the tunnel, either way: its idle clock starts again.
    pub fn tunnel_activity(&mut self, now: Instant, t: &ServerTimeouts) {
        if self.state == State::Tunnel {
            self.timer = Some((now + t.tunnel, Timer::Tunnel));
        }
    }

    /// Close once the output is sent (shutdown, tunnel ended).
    pub fn close(&mut self) {
        self.state = State::Closing;
        self.timer = None;
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timer.map(|(at, _)| at)
    }

    /// What an expired timer means. A spurious call returns `None`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Expired> {
        let (at, t) = self.timer?;
        if at > now {
            return None;
        }
        self.timer = None;
        let expired = match (self.state, t) {
            (State::ReadingHead, Timer::Header) => Expired::HeaderTimeout,
            (State::Idle, Timer::Idle | Timer::Header) => Expired::Close,
            (State::Tunnel, Timer::Tunnel) => Expired::Close,
            _ => return None,
        };
        self.state = State::Closing;
        Some(expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: ServerTimeouts = ServerTimeouts {
        header: Duration::from_secs(10),
        keepalive: Duration::from_secs(60),
        tunnel: Duration::from_secs(30),
    };

    fn head(input: Input) -> (RequestHead, usize) {
        match input {
            Input::Head { head, used, .. } => (*head, used),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pipelined_heads_come_one_response_at_a_time() {
        let t0 = Instant::now();
        let l = Limits::default();
        let mut c = ServerConn::new(t0, &T);
        let wire = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        let (a, used) = head(c.handle_input(wire, false, t0, &l, &T));
        assert_eq!(a.target, "/a");
        let rest = &wire[used..];
        assert!(
            matches!(c.handle_input(rest, false, t0, &l, &T), Input::Wait),
            "busy with /a"
        );
        c.response_done(false, t0, &T);
        let (b, used) = head(c.handle_input(rest, false, t0, &l, &T));
        assert_eq!((b.target.as_str(), used), ("/b", rest.len()));
        c.response_done(false, t0, &T);
        assert!(matches!(
            c.handle_input(b"", true, t0, &l, &T),
            Input::Close
        ));
        assert_eq!(c.state(), State::Closing);
    }

    #[test]
    fn a_slow_head_gets_the_header_timeout_from_its_first_byte() {
        let t0 = Instant::now();
        let l = Limits::default();
        let mut c = ServerConn::new(t0, &T);
        c.response_done(false, t0, &T);
        let t1 = t0 + Duration::from_secs(30);
        assert!(matches!(
            c.handle_input(b"GET / HT", false, t1, &l, &T),
            Input::Wait
        ));
        assert_eq!(c.head_started(), Some(t1));
        assert_eq!(
            c.next_deadline(),
            Some(t1 + T.header),
            "idle timer replaced"
        );
        assert_eq!(c.handle_timeout(t1 + Duration::from_secs(9)), None);
        assert_eq!(
            c.handle_timeout(t1 + T.header),
            Some(Expired::HeaderTimeout)
        );
    }

    #[test]
    fn an_idle_connection_closes_after_keepalive_and_a_silent_one_after_the_header_timeout() {
        let t0 = Instant::now();
        let mut silent = ServerConn::new(t0, &T);
        assert_eq!(silent.handle_timeout(t0 + T.header), Some(Expired::Close));
        let mut idle = ServerConn::new(t0, &T);
        let l = Limits::default();
        head(idle.handle_input(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false, t0, &l, &T));
        assert_eq!(
            idle.next_deadline(),
            None,
            "the request's own timers run meanwhile"
        );
        idle.response_done(false, t0, &T);
        assert_eq!(
            idle.handle_timeout(t0 + T.keepalive - Duration::from_millis(1)),
            None
        );
        assert_eq!(idle.handle_timeout(t0 + T.keepalive), Some(Expired::Close));
    }

    #[test]
    fn malformed_heads_are_refused_and_half_heads_at_eof_close() {
        let t0 = Instant::now();
        let l = Limits::default();
        let mut c = ServerConn::new(t0, &T);
        match c.handle_input(
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false,
            t0,
            &l,
            &T,
        ) {
            Input::Refuse(e) => assert_eq!(e, HttpError::PeerConflictingContentLength),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.state(), State::Closing);
        let mut half = ServerConn::new(t0, &T);
        assert!(matches!(
            half.handle_input(b"GET / HT", true, t0, &l, &T),
            Input::Close
        ));
    }

    #[test]
    fn a_tunnel_lives_while_traffic_flows() {
        let t0 = Instant::now();
        let l = Limits::default();
        let mut c = ServerConn::new(t0, &T);
        head(c.handle_input(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", false, t0, &l, &T));
        c.upgraded(t0, &T);
        let t1 = t0 + Duration::from_secs(20);
        c.tunnel_activity(t1, &T);
        assert_eq!(c.handle_timeout(t0 + T.tunnel), None);
        assert_eq!(c.handle_timeout(t1 + T.tunnel), Some(Expired::Close));
    }
}
