//! The backend-facing HTTP/1.1 connection machine: one keep-alive
//! connection to an app container, carrying one request at a time.
//!
//! ```text
//!  Connecting ──connected──► Sending ──response head──► Receiving ──response end──► Idle (pool)
//!       │                      ▲  (request going out,        │                      │  │
//!       │                      │   head awaited)             └─ 101 ──► Tunnel      │  └─ idle timeout / any byte ──► Closed
//!       └──────────────────────┴──────────── reuse ◄────────────────────────────────┘
//!  any failure ──► Closed (what it means for the request: sched::retry, from `written`, `reused`)
//! ```
//!
//! Owns: the connection's lifecycle, whether it may carry another request
//! (the backend's keep-alive, a clean end), the facts the retry rules need
//! (request bytes written, taken from the pool), and its timers (pool idle,
//! tunnel idle). The request's own connect and read timeouts are the
//! exchange's.
//! Must not: touch sockets or read the clock. Fed by: the reactor.

use std::time::{Duration, Instant};

use super::ResponseHead;
use crate::timer::TimerTable;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// TCP connect in progress.
    Connecting,
    /// The request is going out; its response head is awaited.
    Sending,
    /// The response head arrived; its body is being read.
    Receiving,
    /// Idle in the pool, ready for another request.
    Idle,
    /// Upgraded: bytes pass through untouched.
    Tunnel,
    /// Done with; the reactor drops it.
    Closed,
}

#[derive(Clone, Copy, Debug)]
enum Timer {
    /// Idle in the pool past the backend keep-alive.
    PoolIdle = 0,
    /// No traffic either way on an upgraded connection.
    Tunnel = 1,
}

#[derive(Debug)]
pub struct ClientConn {
    state: State,
    /// Taken from the idle pool (a failure may just be a stale connection).
    reused: bool,
    /// Request bytes written for the current request.
    written: u64,
    /// The backend allows another request on this connection.
    keep_alive: bool,
    timers: TimerTable<2>,
}

impl ClientConn {
    /// A new connection, connecting.
    pub fn connecting() -> ClientConn {
        ClientConn {
            state: State::Connecting,
            reused: false,
            written: 0,
            keep_alive: true,
            timers: TimerTable::default(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_connecting(&self) -> bool {
        self.state == State::Connecting
    }

    pub fn reused(&self) -> bool {
        self.reused
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// The TCP connection is up: the request goes out.
    pub fn connected(&mut self) {
        if self.state == State::Connecting {
            self.state = State::Sending;
        }
    }

    /// Taken from the pool for a new request; false if it cannot be (not
    /// idle). The caller checks the socket is still open.
    pub fn reuse(&mut self) -> bool {
        if self.state != State::Idle {
            return false;
        }
        self.state = State::Sending;
        self.reused = true;
        self.written = 0;
        self.keep_alive = true;
        self.timers.clear_all();
        true
    }

    /// Request bytes reached the socket.
    pub fn wrote(&mut self, n: usize) {
        self.written += n as u64;
    }

    /// The final response head arrived.
    pub fn head(&mut self, head: &ResponseHead) {
        self.keep_alive = head.keep_alive;
        if self.state == State::Sending {
            self.state = State::Receiving;
        }
    }

    /// The response ended. `clean`: the request body went out whole and no
    /// byte is left over either way. Returns whether the connection goes to
    /// the pool (`Idle`, with its idle timer) or must be closed.
    pub fn response_done(&mut self, clean: bool, eof: bool, now: Instant, idle: Duration) -> bool {
        if self.keep_alive && clean && !eof {
            self.state = State::Idle;
            self.reused = true;
            self.timers.set(Timer::PoolIdle as usize, now + idle);
            true
        } else {
            self.state = State::Closed;
            self.timers.clear_all();
            false
        }
    }

    /// The backend switched protocols (101).
    pub fn upgraded(&mut self, now: Instant, idle: Duration) {
        self.state = State::Tunnel;
        self.tunnel_activity(now, idle);
    }

    /// Traffic on the tunnel, either way.
    pub fn tunnel_activity(&mut self, now: Instant, idle: Duration) {
        if self.state == State::Tunnel {
            self.timers.set(Timer::Tunnel as usize, now + idle);
        }
    }

    /// Bytes or EOF from a pooled connection: it can no longer be trusted
    /// with a request.
    pub fn idle_input(&mut self) -> bool {
        if self.state == State::Idle {
            self.state = State::Closed;
            return true;
        }
        false
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// An idle or tunnel timeout: the connection closes. Spurious: false.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.timers.take_expired(now).is_some()
            && matches!(self.state, State::Idle | State::Tunnel)
        {
            self.state = State::Closed;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Limits;
    use crate::http::h1::parse_response_head;

    fn head(text: &[u8]) -> ResponseHead {
        parse_response_head(text, &Limits::default(), false)
            .expect("valid")
            .expect("whole")
            .0
    }

    #[test]
    fn a_clean_keep_alive_response_parks_the_connection_until_its_idle_timeout() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(2);
        let mut c = ClientConn::connecting();
        assert!(c.is_connecting());
        c.connected();
        c.wrote(40);
        c.head(&head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"));
        assert_eq!(c.state(), State::Receiving);
        assert!(c.response_done(true, false, t0, idle));
        assert_eq!(c.state(), State::Idle);
        assert!(!c.handle_timeout(t0 + idle - Duration::from_millis(1)));
        assert!(c.reuse(), "reused before the timeout");
        assert_eq!((c.written(), c.reused()), (0, true));
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn close_eof_or_leftovers_mean_no_reuse() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(2);
        let mut closing = ClientConn::connecting();
        closing.connected();
        closing.head(&head(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        ));
        assert!(!closing.response_done(true, false, t0, idle));
        assert_eq!(closing.state(), State::Closed);
        let mut dirty = ClientConn::connecting();
        dirty.connected();
        dirty.head(&head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!dirty.response_done(false, false, t0, idle));
        let mut idle_then_bytes = ClientConn::connecting();
        idle_then_bytes.connected();
        assert!(idle_then_bytes.response_done(true, false, t0, idle));
        assert!(idle_then_bytes.idle_input());
        assert!(!idle_then_bytes.reuse());
    }

    #[test]
    fn pool_idle_and_tunnel_timeouts_close() {
        let t0 = Instant::now();
        let d = Duration::from_secs(2);
        let mut c = ClientConn::connecting();
        c.connected();
        assert!(c.response_done(true, false, t0, d));
        assert!(c.handle_timeout(t0 + d));
        let mut t = ClientConn::connecting();
        t.connected();
        t.upgraded(t0, d);
        t.tunnel_activity(t0 + d, d);
        assert!(!t.handle_timeout(t0 + d));
        assert!(t.handle_timeout(t0 + d + d));
    }
}
