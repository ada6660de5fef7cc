//! Connection and stream errors caused by the client, and stream ends.
//!
//! Owns: the connection error (GOAWAY, every stream dropped, §5.4.1),
//! stream errors (RST_STREAM, §5.4.2) and rejected requests, each counted
//! in the `Reset` budget (MadeYouReset, CVE-2025-8671); the bound on
//! reaction frames queued while the client is not reading
//! (`max_pending_control`); the last streams the server reset, whose
//! in-flight frames are tolerated; dropping a stream once both sides are
//! closed. Must not: decide which frame is an error (the frame handlers
//! do). Fed by: the frame handlers and `send.rs`. Emits: `ConnectionError`,
//! `StreamReset { by_peer: false }` and `Rejected` events; GOAWAY and
//! RST_STREAM frames.

use std::time::Instant;

use super::{ConnState, Fatal, Res, ServerConn, fatal};
use crate::http::HttpError;
use crate::http::h2::budget::Abuse;
use crate::http::h2::frame;
use crate::http::h2::request::is_malformed;
use crate::http::h2::stream::{RecvState, SendState};
use crate::http::h2::{ErrorCode, Event, StreamId};

/// Streams the server reset whose in-flight frames are still tolerated.
const RECENT_RESETS: usize = 128;

impl ServerConn {
    pub(super) fn fail(&mut self, f: Fatal) {
        if matches!(self.state, ConnState::Failed(_)) {
            return;
        }
        frame::write_goaway(&mut self.out, self.last_stream, f.code, f.reason.as_bytes());
        self.state = ConnState::Failed(f.code);
        self.streams.clear();
        self.block = None;
        self.events.push_back(Event::ConnectionError {
            error: f.code,
            reason: f.reason,
        });
    }

    /// Queue a frame sent in reaction to the client, bounded by
    /// `max_pending_control` until the next `poll_output`.
    pub(super) fn control(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Res {
        let before = self.out.len();
        write(&mut self.out);
        self.pending_control += self.out.len() - before;
        if self.pending_control > self.settings.max_pending_control as usize {
            return Err(fatal(ErrorCode::ENHANCE_YOUR_CALM, "client is not reading"));
        }
        Ok(())
    }

    pub(super) fn remember_reset(&mut self, id: StreamId) {
        if self.recently_reset.len() >= RECENT_RESETS {
            self.recently_reset.pop_front();
        }
        self.recently_reset.push_back(id);
    }

    /// §5.4.2 stream error caused by the client: RST_STREAM, drop the
    /// stream, tell the proxy if it knew the stream (not one whose request
    /// was still held), and count it
    /// (MadeYouReset, CVE-2025-8671).
    pub(super) fn stream_error(&mut self, id: StreamId, code: ErrorCode, now: Instant) -> Res {
        self.control(|out| frame::write_rst(out, id, code))?;
        let known = self
            .streams
            .remove(&id)
            .is_some_and(|s| !matches!(s.held.as_deref(), Some(Event::Request { .. })));
        if known {
            self.events.push_back(Event::StreamReset {
                stream: id,
                code,
                by_peer: false,
            });
        }
        self.remember_reset(id);
        Ok(self.budget.charge(Abuse::Reset, now)?)
    }

    /// A request the proxy must not forward further. Malformed (§8.1.1):
    /// a stream error PROTOCOL_ERROR. Over a limit: `Rejected` while no
    /// response has started (the proxy answers, then the stream is reset
    /// with NO_ERROR if the client is still sending), else CANCEL.
    pub(super) fn request_error(
        &mut self,
        id: StreamId,
        e: HttpError,
        end: bool,
        now: Instant,
    ) -> Res {
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        if is_malformed(e) {
            // §8.1.1: malformed is a stream error of type PROTOCOL_ERROR.
            return self.stream_error(id, ErrorCode::PROTOCOL_ERROR, now);
        }
        if stream.send != SendState::AwaitHeaders {
            return self.stream_error(id, ErrorCode::CANCEL, now);
        }
        stream.held = None;
        if end || stream.recv_closed() {
            stream.recv = RecvState::Closed;
        } else {
            stream.recv = RecvState::Discarding;
        }
        // §8.1: after a complete response, NO_ERROR asks the client to
        // stop sending.
        stream.refused = Some(ErrorCode::NO_ERROR);
        self.events.push_back(Event::Rejected {
            stream: id,
            error: e,
        });
        Ok(self.budget.charge(Abuse::Reset, now)?)
    }

    /// Drop a stream whose two sides are closed; reset a refused stream
    /// whose response is complete while the client is still sending.
    pub(super) fn maybe_finish(&mut self, id: StreamId) {
        let Some(s) = self.streams.get(&id) else {
            return;
        };
        if s.send != SendState::Closed {
            return;
        }
        if s.recv_closed() {
            self.streams.remove(&id);
        } else if let Some(code) = s.refused {
            frame::write_rst(&mut self.out, id, code);
            self.streams.remove(&id);
            self.remember_reset(id);
        }
    }
}
