//! Flow control in both directions (RFC 9113 §5.2, §6.9).
//!
//! Send side: the client's WINDOW_UPDATEs open the connection and stream
//! send windows; what the proxy may send now is the smaller window, bounded
//! by the output room (`max_send_buffer`); a stream that could not send
//! everything is woken with `CapacityAvailable` when room opens.
//! Receive side: the client is credited (WINDOW_UPDATE) only for what the
//! proxy released with `release_capacity`, plus padding and discarded data,
//! never past the advertised windows: request-direction backpressure.
//! Stall sweep (the "HTTP/2 bomb", CVE-2026-49975: fields inflated from
//! the HPACK table, then pinned in the proxy by a send window the client
//! never opens): every `stall_timeout / 2` the streams whose response is
//! under way (`SendState::Body`) with no send window left (stream or
//! connection) get a mark; a WINDOW_UPDATE that opens their window clears
//! it; the third consecutive mark (the window stayed shut for at least
//! `stall_timeout`) resets the stream with CANCEL and emits `StreamReset`,
//! so the proxy frees what it holds for it. Not counted as abuse.
//! Owns: WINDOW_UPDATE handling (free after our DATA, else charged to the
//! `Control` budget), credit flushing, capacity and wake-ups, the stall
//! sweep. Must not:
//! account received DATA (see `recv.rs`) or send DATA (see `send.rs`).
//! Fed by: `handle_frame`, `poll_output`, the proxy. Emits:
//! `CapacityAvailable` events and WINDOW_UPDATE frames.

use std::time::{Duration, Instant};

use super::{ConnState, Res, ServerConn, fatal};
use crate::http::h2::budget::Abuse;
use crate::http::h2::frame::{self, FrameHeader, MAX_WINDOW, be_u32};
use crate::http::h2::stream::{SendState, Stream};
use crate::http::h2::{ErrorCode, Event, StreamId};

impl ServerConn {
    pub(super) fn on_window_update(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
        let increment = match (payload.len(), be_u32(payload, 0)) {
            (4, Some(v)) => i64::from(v & MAX_WINDOW),
            _ => return Err(fatal(ErrorCode::FRAME_SIZE_ERROR, "WINDOW_UPDATE length")),
        };
        if self.free_window_updates > 0 {
            self.free_window_updates -= 1;
        } else {
            self.budget.charge(Abuse::Control, now)?;
        }
        let id = h.stream;
        if id.0 == 0 {
            if increment == 0 {
                return Err(fatal(
                    ErrorCode::PROTOCOL_ERROR,
                    "WINDOW_UPDATE increment 0",
                ));
            }
            self.conn_send_window += increment;
            for s in self.streams.values_mut() {
                s.stall_sweeps = 0;
            }
            if self.conn_send_window > i64::from(MAX_WINDOW) {
                return Err(fatal(
                    ErrorCode::FLOW_CONTROL_ERROR,
                    "connection window overflow",
                ));
            }
            self.wake_blocked();
            return Ok(());
        }
        if self.ignored(id) {
            return Ok(());
        }
        if self.is_idle(id) {
            return Err(fatal(
                ErrorCode::PROTOCOL_ERROR,
                "WINDOW_UPDATE on an idle stream",
            ));
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            // §6.9: may arrive on a stream we just closed.
            return Ok(());
        };
        if increment == 0 {
            // MadeYouReset: counted by stream_error.
            return self.stream_error(id, ErrorCode::PROTOCOL_ERROR, now);
        }
        stream.send_window += increment;
        stream.stall_sweeps = 0;
        if stream.send_window > i64::from(MAX_WINDOW) {
            return self.stream_error(id, ErrorCode::FLOW_CONTROL_ERROR, now);
        }
        self.wake_blocked();
        Ok(())
    }

    pub(super) fn flush_credit(&mut self, out: &mut Vec<u8>) {
        let max = u64::from(MAX_WINDOW);
        if self.conn_credit > 0 {
            let room = i64::from(self.settings.connection_window) - self.conn_recv_window;
            let n = self.conn_credit.min(max).min(room.max(0) as u64);
            if n > 0 {
                frame::write_window_update(out, StreamId(0), n as u32);
                self.conn_recv_window += n as i64;
            }
            self.conn_credit = 0;
        }
        if !std::mem::take(&mut self.stream_credit) {
            return;
        }
        let initial = i64::from(self.settings.initial_window_size);
        for (&id, s) in self.streams.iter_mut() {
            if s.credit == 0 {
                continue;
            }
            let n = s
                .credit
                .min(max)
                .min((initial - s.recv_window).max(0) as u64);
            s.credit = 0;
            // No point opening the window of a stream that is done sending.
            if n > 0 && !s.recv_closed() {
                frame::write_window_update(out, id, n as u32);
                s.recv_window += n as i64;
            }
        }
    }

    pub(super) fn capacity_of(&self, s: &Stream) -> usize {
        let room = (self.settings.max_send_buffer as usize).saturating_sub(self.out.len());
        let w = s.send_window.min(self.conn_send_window).max(0);
        usize::try_from(w).unwrap_or(usize::MAX).min(room)
    }

    pub(super) fn wake_blocked(&mut self) {
        let conn = self.conn_send_window;
        let room = (self.settings.max_send_buffer as usize).saturating_sub(self.out.len());
        if conn <= 0 || room == 0 || self.blocked.is_empty() {
            return;
        }
        // In stream order, as a walk over the streams would be.
        self.blocked.sort_unstable();
        self.blocked.dedup();
        let (streams, events) = (&mut self.streams, &mut self.events);
        self.blocked.retain(|id| match streams.get_mut(id) {
            Some(s) if s.blocked && s.send == SendState::Body => {
                if s.send_window > 0 {
                    s.blocked = false;
                    events.push_back(Event::CapacityAvailable { stream: *id });
                    false
                } else {
                    true
                }
            }
            _ => false,
        });
    }

    /// How many stream ids the blocked list holds (tests).
    #[cfg(test)]
    pub(crate) fn blocked_len(&self) -> usize {
        self.blocked.len()
    }

    /// Mark `stream` blocked (or not) on its send windows.
    pub(super) fn set_blocked(&mut self, stream: StreamId, blocked: bool) {
        if let Some(s) = self.streams.get_mut(&stream) {
            if blocked && !s.blocked {
                self.blocked.push(stream);
            }
            s.blocked = blocked;
        }
        // Ids of streams gone or unblocked leave at the next wake-up; while
        // the connection window stays shut there is none, so they are
        // pruned here (the list never outgrows the open streams by much).
        if self.blocked.len() > 2 * self.streams.len() + 16 {
            let streams = &self.streams;
            self.blocked
                .retain(|id| streams.get(id).is_some_and(|s| s.blocked));
            self.blocked.sort_unstable();
            self.blocked.dedup();
        }
    }

    /// Octets `send_data` would take now: min(stream window, connection
    /// window, output room); 0 before the response header or after the end.
    pub fn send_capacity(&self, stream: StreamId) -> usize {
        match self.streams.get(&stream) {
            Some(s) if s.send == SendState::Body && !matches!(self.state, ConnState::Failed(_)) => {
                self.capacity_of(s)
            }
            _ => 0,
        }
    }

    /// The proxy has response bytes for `stream` but `send_capacity` is 0:
    /// a `CapacityAvailable` follows when the windows open (as after a
    /// partial `send_data`).
    pub fn want_capacity(&mut self, stream: StreamId) {
        if self
            .streams
            .get(&stream)
            .is_some_and(|s| s.send == SendState::Body)
        {
            self.set_blocked(stream, true);
        }
    }

    /// The proxy forwarded `n` request-body octets of `stream`: credit them
    /// back to the client (WINDOW_UPDATE on the stream and the connection,
    /// sent by the next `poll_output`). Nothing is ever credited otherwise,
    /// except padding and data the server discards.
    pub fn release_capacity(&mut self, stream: StreamId, n: usize) {
        let n = n as u64;
        self.conn_credit = self.conn_credit.saturating_add(n);
        if let Some(s) = self.streams.get_mut(&stream) {
            s.credit = s.credit.saturating_add(n);
            self.stream_credit = true;
        }
    }
}

/// Consecutive marks that reap a stalled stream: marks come every half
/// `stall_timeout`, so three span at least the whole timeout.
const STALL_SWEEPS: u8 = 3;

impl ServerConn {
    fn sweep_period(&self) -> Duration {
        (self.settings.stall_timeout / 2).max(Duration::from_millis(1))
    }

    /// A stream opened at `now`: make sure a sweep is coming.
    pub(super) fn arm_stall_sweep(&mut self, now: Instant) {
        if self.sweep_at.is_none() {
            self.sweep_at = Some(now + self.sweep_period());
        }
    }

    /// Run what is due at `now` (the stall sweep); a call before the
    /// deadline does nothing. Reaped streams come out as
    /// `StreamReset { code: CANCEL, by_peer: false }` events.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.state, ConnState::Failed(_)) || self.sweep_at.is_none_or(|at| at > now) {
            return;
        }
        let conn_open = self.conn_send_window > 0;
        let mut reaped = Vec::new();
        for (&id, s) in self.streams.iter_mut() {
            let stalled = s.send == SendState::Body && (!conn_open || s.send_window <= 0);
            if !stalled {
                s.stall_sweeps = 0;
                continue;
            }
            s.stall_sweeps = s.stall_sweeps.saturating_add(1);
            if s.stall_sweeps >= STALL_SWEEPS {
                reaped.push(id);
            }
        }
        for id in reaped {
            self.streams.remove(&id);
            frame::write_rst(&mut self.out, id, ErrorCode::CANCEL);
            self.remember_reset(id);
            self.events.push_back(Event::StreamReset {
                stream: id,
                code: ErrorCode::CANCEL,
                by_peer: false,
            });
        }
        self.sweep_at = if self.streams.is_empty() {
            None
        } else {
            Some(now + self.sweep_period())
        };
    }
}
