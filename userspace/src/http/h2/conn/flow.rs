//! Flow control in both directions (RFC 9113 §5.2, §6.9).
//!
//! Send side: the client's WINDOW_UPDATEs open the connection and stream
//! send windows; what the proxy may send now is the smaller window, bounded
//! by the output room (`max_send_buffer`); a stream that could not send
//! everything is woken with `CapacityAvailable` when room opens.
//! Receive side: the client is credited (WINDOW_UPDATE) only for what the
//! proxy released with `release_capacity`, plus padding and discarded data,
//! never past the advertised windows: request-direction backpressure.
//! Owns: WINDOW_UPDATE handling (free after our DATA, else charged to the
//! `Control` budget), credit flushing, capacity and wake-ups. Must not:
//! account received DATA (see `recv.rs`) or send DATA (see `send.rs`).
//! Fed by: `handle_frame`, `poll_output`, the proxy. Emits:
//! `CapacityAvailable` events and WINDOW_UPDATE frames.

use std::time::Instant;

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
        if conn <= 0 || room == 0 {
            return;
        }
        for (&id, s) in self.streams.iter_mut() {
            if s.blocked && s.send_window > 0 && s.send == SendState::Body {
                s.blocked = false;
                self.events
                    .push_back(Event::CapacityAvailable { stream: id });
            }
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

    /// The proxy forwarded `n` request-body octets of `stream`: credit them
    /// back to the client (WINDOW_UPDATE on the stream and the connection,
    /// sent by the next `poll_output`). Nothing is ever credited otherwise,
    /// except padding and data the server discards.
    pub fn release_capacity(&mut self, stream: StreamId, n: usize) {
        let n = n as u64;
        self.conn_credit = self.conn_credit.saturating_add(n);
        if let Some(s) = self.streams.get_mut(&stream) {
            s.credit = s.credit.saturating_add(n);
        }
    }
}
