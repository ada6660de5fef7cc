//! Frames from the client that open, feed or end a request stream: DATA,
//! HEADERS and CONTINUATION (header blocks, new streams, trailers),
//! PRIORITY and RST_STREAM.
//!
//! Owns: the §5.1 rules on which of these frames may arrive on an idle,
//! open, half-closed or closed stream; header block assembly with the
//! CONTINUATION flood bounds (`max_header_block`, `max_continuation_frames`);
//! HPACK decoding of every block (to keep the table in sync, §4.3);
//! `max_concurrent_streams` (REFUSED_STREAM); request body accounting
//! against `max_body` and Content-Length; receive-window accounting of DATA
//! (the WINDOW_UPDATEs are sent by `flow.rs`); charging client RST_STREAM to
//! the `Reset` budget (rapid reset). Must not: write frames itself (errors
//! go through `errors.rs`). Fed by: `ServerConn::handle_frame`. Emits:
//! `Request`, `Data`, `Trailers` and `StreamReset { by_peer: true }` events.

use std::time::Instant;

use super::{Fatal, HeaderBlock, Res, ServerConn, fatal};
use crate::http::HttpError;
use crate::http::h2::budget::Abuse;
use crate::http::h2::frame::{self, FrameHeader, MAX_WINDOW, be_u32, flag};
use crate::http::h2::request::{Collector, Refusal, build_request, build_trailers};
use crate::http::h2::stream::{RecvState, Stream};
use crate::http::h2::{ErrorCode, Event, StreamId};

impl ServerConn {
    pub(super) fn on_data(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
        let id = h.stream;
        if id.0 == 0 {
            return Err(fatal(ErrorCode::PROTOCOL_ERROR, "DATA on stream 0"));
        }
        // §6.9.1: the whole payload, padding included, is flow-controlled.
        let len = i64::from(h.len);
        if len > self.conn_recv_window {
            return Err(fatal(
                ErrorCode::FLOW_CONTROL_ERROR,
                "connection receive window exceeded",
            ));
        }
        self.conn_recv_window -= len;
        let end = h.has(flag::END_STREAM);
        let data = frame::strip_padding(h.has(flag::PADDED), payload)
            .ok_or(fatal(ErrorCode::PROTOCOL_ERROR, "invalid DATA padding"))?;
        if data.is_empty() && !end {
            self.budget.charge(Abuse::EmptyData, now)?;
        }
        let flen = u64::from(h.len);
        if self.ignored(id) {
            self.conn_credit += flen;
            return Ok(());
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            if self.is_idle(id) {
                return Err(fatal(ErrorCode::PROTOCOL_ERROR, "DATA on an idle stream"));
            }
            self.conn_credit += flen;
            if self.recently_reset.contains(&id) {
                return Ok(());
            }
            return self.stream_error(id, ErrorCode::STREAM_CLOSED, now);
        };
        if stream.recv_closed() {
            self.conn_credit += flen;
            return self.stream_error(id, ErrorCode::STREAM_CLOSED, now);
        }
        if len > stream.recv_window {
            self.conn_credit += flen;
            return self.stream_error(id, ErrorCode::FLOW_CONTROL_ERROR, now);
        }
        stream.recv_window -= len;
        // Padding is never forwarded: give it back at once.
        let pad = flen - data.len() as u64;
        let dlen = data.len() as u64;
        self.conn_credit += pad;
        stream.credit += pad;
        self.stream_credit |= pad > 0;
        match stream.recv {
            RecvState::Closed => Ok(()),
            RecvState::Discarding => {
                self.conn_credit += dlen;
                stream.credit += dlen;
                self.stream_credit = true;
                if end {
                    stream.recv = RecvState::Closed;
                    self.maybe_finish(id);
                }
                Ok(())
            }
            RecvState::Body {
                received,
                content_length,
            } => {
                let received = received.saturating_add(dlen);
                let error = if received > self.limits.max_body {
                    Some(HttpError::LimitBody)
                } else if content_length.is_some_and(|cl| received > cl) {
                    Some(HttpError::PeerInvalidContentLength)
                } else if end && content_length.is_some_and(|cl| received != cl) {
                    Some(HttpError::PeerIncompleteBody)
                } else {
                    None
                };
                if let Some(e) = error {
                    self.conn_credit += dlen;
                    stream.credit += dlen;
                    self.stream_credit = true;
                    return self.request_error(id, e, end, now);
                }
                stream.recv = if end {
                    RecvState::Closed
                } else {
                    RecvState::Body {
                        received,
                        content_length,
                    }
                };
                if let Some(held) = stream.held.take() {
                    if end {
                        // Nothing followed what was held: the request is
                        // complete (an empty END_STREAM DATA frame, since
                        // more octets would have been an error above).
                        self.events.push_back(*held);
                    } else {
                        stream.held = Some(held);
                    }
                } else if !end && !data.is_empty() && content_length == Some(received) {
                    // The declared length is reached: the last octets wait
                    // for END_STREAM (see `Stream::held`).
                    stream.held = Some(Box::new(Event::Data {
                        stream: id,
                        data: data.to_vec(),
                        end_stream: true,
                    }));
                } else if !data.is_empty() || end {
                    self.events.push_back(Event::Data {
                        stream: id,
                        data: data.to_vec(),
                        end_stream: end,
                    });
                }
                if end {
                    self.maybe_finish(id);
                }
                Ok(())
            }
        }
    }

    pub(super) fn on_headers(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
        let id = h.stream;
        if id.0 == 0 {
            return Err(fatal(ErrorCode::PROTOCOL_ERROR, "HEADERS on stream 0"));
        }
        if id.0.is_multiple_of(2) {
            return Err(fatal(
                ErrorCode::PROTOCOL_ERROR,
                "even stream id from a client",
            ));
        }
        let body = frame::strip_padding(h.has(flag::PADDED), payload)
            .ok_or(fatal(ErrorCode::PROTOCOL_ERROR, "invalid HEADERS padding"))?;
        // §6.2: the priority fields are parsed and ignored, except that a
        // stream cannot depend on itself (§5.3.1).
        let (self_dependent, fragment) = if h.has(flag::PRIORITY) {
            let dep = be_u32(body, 0).ok_or(fatal(
                ErrorCode::FRAME_SIZE_ERROR,
                "HEADERS too short for priority",
            ))?;
            let rest = body.get(5..).ok_or(fatal(
                ErrorCode::FRAME_SIZE_ERROR,
                "HEADERS too short for priority",
            ))?;
            (dep & MAX_WINDOW == id.0, rest)
        } else {
            (false, body)
        };
        let end_stream = h.has(flag::END_STREAM);
        if h.has(flag::END_HEADERS) {
            return self.on_header_block(id, end_stream, self_dependent, fragment, now);
        }
        if fragment.len() > self.settings.max_header_block as usize {
            return Err(self.continuation_flood());
        }
        self.block = Some(HeaderBlock {
            stream: id,
            end_stream,
            self_dependent,
            buf: fragment.to_vec(),
            continuations: 0,
        });
        Ok(())
    }

    fn continuation_flood(&self) -> Fatal {
        fatal(
            ErrorCode::ENHANCE_YOUR_CALM,
            "header block too large (CONTINUATION flood)",
        )
    }

    pub(super) fn on_continuation(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
        let flood = self.continuation_flood();
        let max_block = self.settings.max_header_block as usize;
        let max_frames = self.settings.max_continuation_frames;
        let Some(b) = self.block.as_mut() else {
            return Err(fatal(
                ErrorCode::PROTOCOL_ERROR,
                "CONTINUATION without HEADERS",
            ));
        };
        b.continuations += 1;
        if b.continuations > max_frames || b.buf.len() + payload.len() > max_block {
            return Err(flood);
        }
        b.buf.extend_from_slice(payload);
        if !h.has(flag::END_HEADERS) {
            return Ok(());
        }
        let Some(b) = self.block.take() else {
            return Ok(());
        };
        self.on_header_block(b.stream, b.end_stream, b.self_dependent, &b.buf, now)
    }

    /// A complete header block: decode it (always, to keep the HPACK table
    /// in sync, §4.3), then open a stream or take it as trailers.
    fn on_header_block(
        &mut self,
        id: StreamId,
        end: bool,
        self_dependent: bool,
        block: &[u8],
        now: Instant,
    ) -> Res {
        let mut c = Collector::reusing(
            std::mem::take(&mut self.block_in),
            self.settings.max_header_list_size as usize,
            self.limits,
        );
        let decoded = self.decoder.decode(block, |n, v| c.push(n, v));
        let done = match decoded {
            Ok(()) => self.on_decoded(id, end, self_dependent, &c, now),
            Err(_) => Err(fatal(ErrorCode::COMPRESSION_ERROR, "HPACK decoding failed")),
        };
        // Kept for the next block unless a large one grew it.
        let fields = c.into_fields();
        if fields.capacity_bytes() <= 4096 {
            self.block_in = fields;
        }
        done
    }

    /// A decoded header block: a new stream's request or trailers.
    fn on_decoded(
        &mut self,
        id: StreamId,
        end: bool,
        self_dependent: bool,
        c: &Collector,
        now: Instant,
    ) -> Res {
        if self.ignored(id) {
            return Ok(());
        }
        if self.streams.contains_key(&id) {
            return self.on_trailers(id, end, c, now);
        }
        if id <= self.last_stream {
            if self.recently_reset.contains(&id) {
                return Ok(());
            }
            // §5.1.1: a decreasing (or reused) stream id.
            return Err(fatal(
                ErrorCode::PROTOCOL_ERROR,
                "HEADERS on a closed stream",
            ));
        }
        self.last_stream = id;
        if self_dependent {
            return self.stream_error(id, ErrorCode::PROTOCOL_ERROR, now);
        }
        if self.streams.len() >= self.settings.max_concurrent_streams as usize {
            // §5.1.2: REFUSED_STREAM lets the client retry.
            return self.stream_error(id, ErrorCode::REFUSED_STREAM, now);
        }
        let request = build_request(c, end, &self.limits);
        let content_length = match &request {
            Ok(head) => head.content_length,
            Err(_) => None,
        };
        let recv = if end {
            RecvState::Closed
        } else {
            RecvState::Body {
                received: 0,
                content_length,
            }
        };
        let send_window = i64::from(self.peer_initial_window);
        self.arm_stall_sweep(now);
        match request {
            Ok(head) => {
                let mut stream = Stream::new(recv, self.settings.initial_window_size, send_window);
                // §8.1.1: with `content-length: 0` any DATA would make the
                // request malformed, so it is held until END_STREAM proves
                // it complete (then it goes out as a request without body).
                let hold = !end && content_length == Some(0);
                let event = Event::Request {
                    stream: id,
                    head,
                    end_stream: end || hold,
                };
                if hold {
                    stream.held = Some(Box::new(event));
                } else {
                    self.events.push_back(event);
                }
                self.streams.insert(id, stream);
                Ok(())
            }
            Err(Refusal::Reject(e)) => {
                self.streams.insert(
                    id,
                    Stream::new(recv, self.settings.initial_window_size, send_window),
                );
                self.request_error(id, e, end, now)
            }
            Err(Refusal::Malformed(_)) => self.stream_error(id, ErrorCode::PROTOCOL_ERROR, now),
            Err(Refusal::Reset(code)) => self.stream_error(id, code, now),
        }
    }

    fn on_trailers(&mut self, id: StreamId, end: bool, c: &Collector, now: Instant) -> Res {
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        match stream.recv {
            RecvState::Closed => self.stream_error(id, ErrorCode::STREAM_CLOSED, now),
            // Already refused: a second Rejected would be noise.
            RecvState::Discarding => {
                if end {
                    stream.recv = RecvState::Closed;
                    self.maybe_finish(id);
                }
                Ok(())
            }
            // §8.1: a second HEADERS must end the stream.
            _ if !end => self.request_error(id, HttpError::PeerInvalidRequestLine, false, now),
            RecvState::Body {
                received,
                content_length,
            } => {
                if content_length.is_some_and(|cl| cl != received) {
                    return self.request_error(id, HttpError::PeerIncompleteBody, true, now);
                }
                match build_trailers(c) {
                    Ok(headers) => {
                        stream.recv = RecvState::Closed;
                        // A held step ends the request by itself; its
                        // body had a Content-Length, which an HTTP/1.1
                        // backend cannot follow with trailers anyway.
                        let event = match stream.held.take() {
                            Some(held) => *held,
                            None => Event::Trailers {
                                stream: id,
                                headers,
                            },
                        };
                        self.events.push_back(event);
                        self.maybe_finish(id);
                        Ok(())
                    }
                    Err(e) => self.request_error(id, e, true, now),
                }
            }
        }
    }

    pub(super) fn on_priority(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
        let id = h.stream;
        if id.0 == 0 {
            return Err(fatal(ErrorCode::PROTOCOL_ERROR, "PRIORITY on stream 0"));
        }
        self.budget.charge(Abuse::Control, now)?;
        let idle = self.is_idle(id) || self.ignored(id);
        if payload.len() != 5 {
            // §6.3: a stream error, unless there is no stream to reset.
            if idle {
                return Err(fatal(ErrorCode::FRAME_SIZE_ERROR, "PRIORITY length"));
            }
            return self.stream_error(id, ErrorCode::FRAME_SIZE_ERROR, now);
        }
        let dep = be_u32(payload, 0).unwrap_or(0) & MAX_WINDOW;
        if dep == id.0 {
            // §5.3.1: a stream error even on an idle stream (the stream is
            // not opened by it; the RST_STREAM only answers the frame).
            return self.stream_error(id, ErrorCode::PROTOCOL_ERROR, now);
        }
        Ok(())
    }

    pub(super) fn on_rst_stream(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
        let id = h.stream;
        if id.0 == 0 {
            return Err(fatal(ErrorCode::PROTOCOL_ERROR, "RST_STREAM on stream 0"));
        }
        let code = match (payload.len(), be_u32(payload, 0)) {
            (4, Some(c)) => ErrorCode(c),
            _ => return Err(fatal(ErrorCode::FRAME_SIZE_ERROR, "RST_STREAM length")),
        };
        if self.ignored(id) {
            return Ok(());
        }
        if self.is_idle(id) {
            return Err(fatal(
                ErrorCode::PROTOCOL_ERROR,
                "RST_STREAM on an idle stream",
            ));
        }
        if self.streams.remove(&id).is_some() {
            self.events.push_back(Event::StreamReset {
                stream: id,
                code,
                by_peer: true,
            });
            // Rapid reset (CVE-2023-44487).
            self.budget.charge(Abuse::Reset, now)?;
        } else {
            self.budget.charge(Abuse::Control, now)?;
        }
        Ok(())
    }
}
