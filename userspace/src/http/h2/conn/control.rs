//! Connection-level control: SETTINGS, PING and GOAWAY from the client,
//! and the server's own GOAWAY (graceful two-step shutdown, §6.8).
//!
//! Owns: validating and applying the client's SETTINGS (§6.5.2; a new
//! INITIAL_WINDOW_SIZE adjusts every stream's send window, §6.9.2) and
//! acknowledging them, answering PINGs, noting the client's GOAWAY, and
//! the server's shutdown steps (GOAWAY(2^31-1) + PING, then the final
//! GOAWAY when that PING is acknowledged). Every frame here is charged to
//! the `Control` budget. Must not: touch streams beyond their send windows.
//! Fed by: `ServerConn::handle_frame` and the proxy ([`ServerConn::goaway`]).
//! Emits: `GoAway` events, SETTINGS ACK, PING ACK and GOAWAY frames.

use std::time::Instant;

use super::{ConnState, Res, ServerConn, Shutdown, fatal};
use crate::http::h2::budget::Abuse;
use crate::http::h2::frame::{self, FrameHeader, MAX_WINDOW, be_u32, flag, setting};
use crate::http::h2::{ErrorCode, Event, StreamId};

/// Opaque data of the PING that ends the first step of a graceful GOAWAY.
const GOAWAY_PING: [u8; 8] = *b"portier\x01";

impl ServerConn {
    pub(super) fn on_settings(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
        if h.stream.0 != 0 {
            return Err(fatal(ErrorCode::PROTOCOL_ERROR, "SETTINGS on a stream"));
        }
        if h.has(flag::ACK) {
            if !payload.is_empty() {
                return Err(fatal(
                    ErrorCode::FRAME_SIZE_ERROR,
                    "SETTINGS ACK with payload",
                ));
            }
            return Ok(self.budget.charge(Abuse::Control, now)?);
        }
        if !payload.len().is_multiple_of(6) {
            return Err(fatal(ErrorCode::FRAME_SIZE_ERROR, "SETTINGS length"));
        }
        self.budget.charge(Abuse::Control, now)?;
        for p in payload.chunks_exact(6) {
            let Ok(&[a, b, v0, v1, v2, v3]) = <&[u8; 6]>::try_from(p) else {
                continue;
            };
            let value = u32::from_be_bytes([v0, v1, v2, v3]);
            match u16::from_be_bytes([a, b]) {
                setting::ENABLE_PUSH if value > 1 => {
                    return Err(fatal(ErrorCode::PROTOCOL_ERROR, "ENABLE_PUSH not 0 or 1"));
                }
                setting::INITIAL_WINDOW_SIZE => {
                    if value > MAX_WINDOW {
                        return Err(fatal(
                            ErrorCode::FLOW_CONTROL_ERROR,
                            "INITIAL_WINDOW_SIZE too large",
                        ));
                    }
                    // §6.9.2: adjust every open stream by the difference.
                    let delta = i64::from(value) - i64::from(self.peer_initial_window);
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                        if s.send_window > i64::from(MAX_WINDOW) {
                            return Err(fatal(
                                ErrorCode::FLOW_CONTROL_ERROR,
                                "stream window overflow",
                            ));
                        }
                    }
                    self.peer_initial_window = value;
                }
                setting::MAX_FRAME_SIZE => {
                    if !(frame::MIN_MAX_FRAME_SIZE..=frame::MAX_MAX_FRAME_SIZE).contains(&value) {
                        return Err(fatal(
                            ErrorCode::PROTOCOL_ERROR,
                            "MAX_FRAME_SIZE out of range",
                        ));
                    }
                    self.peer_max_frame = value;
                }
                // HEADER_TABLE_SIZE: our encoder's table is pinned at 0.
                // MAX_CONCURRENT_STREAMS: we never push. MAX_HEADER_LIST_SIZE
                // is advisory. Unknown settings are ignored (§6.5.2).
                _ => {}
            }
        }
        self.control(frame::write_settings_ack)?;
        self.wake_blocked();
        Ok(())
    }

    pub(super) fn on_ping(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
        if h.stream.0 != 0 {
            return Err(fatal(ErrorCode::PROTOCOL_ERROR, "PING on a stream"));
        }
        let data: [u8; 8] = payload
            .try_into()
            .map_err(|_| fatal(ErrorCode::FRAME_SIZE_ERROR, "PING length"))?;
        self.budget.charge(Abuse::Control, now)?;
        if h.has(flag::ACK) {
            if data == GOAWAY_PING && self.shutdown == Shutdown::Draining {
                self.final_goaway();
            }
            return Ok(());
        }
        self.control(|out| frame::write_ping(out, true, data))
    }

    pub(super) fn on_goaway(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
        if h.stream.0 != 0 {
            return Err(fatal(ErrorCode::PROTOCOL_ERROR, "GOAWAY on a stream"));
        }
        let (Some(last), Some(code)) = (be_u32(payload, 0), be_u32(payload, 4)) else {
            return Err(fatal(ErrorCode::FRAME_SIZE_ERROR, "GOAWAY length"));
        };
        self.budget.charge(Abuse::Control, now)?;
        self.peer_goaway = true;
        self.events.push_back(Event::GoAway {
            last_stream: StreamId(last & MAX_WINDOW),
            error: ErrorCode(code),
        });
        Ok(())
    }

    /// Start shutting down (§6.8). `graceful`: GOAWAY(2^31-1) + PING, then
    /// the final GOAWAY(last stream) when the PING is acknowledged;
    /// otherwise (or when already draining) the final GOAWAY now. Open
    /// streams finish; new ones are ignored.
    pub fn goaway(&mut self, graceful: bool) {
        if matches!(self.state, ConnState::Failed(_)) {
            return;
        }
        match self.shutdown {
            Shutdown::Final(_) => {}
            Shutdown::Running if graceful => {
                frame::write_goaway(
                    &mut self.out,
                    StreamId(MAX_WINDOW),
                    ErrorCode::NO_ERROR,
                    b"",
                );
                frame::write_ping(&mut self.out, false, GOAWAY_PING);
                self.shutdown = Shutdown::Draining;
            }
            _ => self.final_goaway(),
        }
    }

    fn final_goaway(&mut self) {
        let last = self.last_stream;
        frame::write_goaway(&mut self.out, last, ErrorCode::NO_ERROR, b"");
        self.shutdown = Shutdown::Final(last);
    }
}
