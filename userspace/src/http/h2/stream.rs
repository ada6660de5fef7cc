//! One HTTP/2 stream as the server sees it (RFC 9113 §5.1): what it still
//! expects from the client, what the proxy may still send, and its two
//! flow-control windows.
//!
//! Owns: [`Stream`], [`RecvState`], [`SendState`]. Must not: write frames
//! or emit events (see `conn.rs`). Fed by: `conn.rs`. Emits: nothing.
//!
//! The RFC state is derived: `Open` = both sides open,
//! `HalfClosed(remote)` = `RecvState::Closed`, `HalfClosed(local)` =
//! `SendState::Closed`; a stream with both closed is dropped from the map
//! (so "closed" = an id at or below the highest client id, not in the map).

use super::{ErrorCode, Event};

/// What the stream still expects from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvState {
    /// Request body (DATA) or trailers may follow; DATA goes to the proxy.
    Body {
        /// Body octets received so far.
        received: u64,
        /// Declared Content-Length (§8.1.1: must match the DATA total).
        content_length: Option<u64>,
    },
    /// The request was refused: further DATA is dropped and credited back.
    Discarding,
    /// END_STREAM received (half-closed remote).
    Closed,
}

/// What the proxy may still send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendState {
    /// No final response header yet (1xx may have been sent).
    AwaitHeaders,
    /// Final header sent; DATA / trailers may follow.
    Body,
    /// END_STREAM sent (half-closed local).
    Closed,
}

/// RFC 9113 §5.1 names, for documentation and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    Open,
    HalfClosedRemote,
    HalfClosedLocal,
}

#[derive(Debug, Clone)]
pub struct Stream {
    pub recv: RecvState,
    pub send: SendState,
    /// Octets the client may still send on this stream.
    pub recv_window: i64,
    /// Octets released by the proxy, not yet sent as WINDOW_UPDATE.
    pub credit: u64,
    /// Octets the server may still send (may go negative, §6.9.2).
    pub send_window: i64,
    /// The proxy was offered less than it wanted; wake it on capacity.
    pub blocked: bool,
    /// When set, the request was refused: after the proxy's response ends,
    /// reset with this code if the client is still sending.
    pub refused: Option<ErrorCode>,
    /// The last step of a request whose body reached its Content-Length
    /// before END_STREAM: the `Request` itself for `content-length: 0`,
    /// else the last DATA. Handed out (ending the request) only when
    /// END_STREAM arrives, so a request that turns out malformed (more
    /// DATA, §8.1.1) never reaches a backend complete.
    pub held: Option<Box<Event>>,
    /// Consecutive stall sweeps that found the send window at zero with no
    /// window opened in between (see `H2Settings::stall_timeout`).
    pub stall_sweeps: u8,
}

impl Stream {
    pub fn new(recv: RecvState, recv_window: u32, send_window: i64) -> Self {
        Stream {
            recv,
            send: SendState::AwaitHeaders,
            recv_window: i64::from(recv_window),
            credit: 0,
            send_window,
            blocked: false,
            refused: None,
            held: None,
            stall_sweeps: 0,
        }
    }

    pub fn state(&self) -> StreamState {
        match (self.recv, self.send) {
            (_, SendState::Closed) => StreamState::HalfClosedLocal,
            (RecvState::Closed, _) => StreamState::HalfClosedRemote,
            _ => StreamState::Open,
        }
    }

    pub fn recv_closed(&self) -> bool {
        self.recv == RecvState::Closed
    }
}
