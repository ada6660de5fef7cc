//! [`ServerConn`]: one HTTP/2 server connection, sans-IO.
//!
//! Owns: the connection lifecycle (preface → open → failed), frame
//! dispatch and every RFC 9113 rule about which frame may arrive when,
//! both flow-control directions, the stream map, GOAWAY, and the abuse
//! budgets. Must not: do I/O, read the clock, or buffer a body (DATA is
//! handed out as it arrives; the client is only credited for what the
//! proxy releases). Fed by: client bytes and the proxy's response calls.
//! Emits: [`Event`]s and frame bytes. See the module doc of `h2` for the
//! state diagram and the abuse table.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use super::budget::{Abuse, Budget};
use super::frame::{self, FrameHeader, MAX_WINDOW, be_u32, flag, kind, setting};
use super::hpack::{Decoder, Encoder};
use super::request::{Collector, Refusal, build_request, build_trailers};
use super::stream::{RecvState, SendState, Stream};
use super::{ErrorCode, Event, H2Error, H2Settings, StreamId};
use crate::http::h1::head::is_token;
use crate::http::h1::reason_phrase;
use crate::http::{HttpError, Limits};

/// Streams the server reset whose in-flight frames are still tolerated.
const RECENT_RESETS: usize = 128;
/// Opaque data of the PING that ends the first step of a graceful GOAWAY.
const GOAWAY_PING: [u8; 8] = *b"portier\x01";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    /// Waiting for the client preface (§3.4); that many octets matched.
    Preface(usize),
    /// Preface matched; the first frame must be SETTINGS (§3.4).
    FirstSettings,
    Open,
    /// A connection error was sent (§5.4.1); input is discarded.
    Failed(ErrorCode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    Running,
    /// GOAWAY(2^31-1) and a PING sent; waiting for the PING ACK.
    Draining,
    /// Final GOAWAY sent: streams above this id are ignored.
    Final(StreamId),
}

/// A header block waiting for END_HEADERS (§6.10).
#[derive(Debug)]
struct HeaderBlock {
    stream: StreamId,
    end_stream: bool,
    self_dependent: bool,
    buf: Vec<u8>,
    continuations: u32,
}

/// A connection error: GOAWAY with this code, then close.
#[derive(Debug, Clone, Copy)]
struct Fatal {
    code: ErrorCode,
    reason: &'static str,
}

fn fatal(code: ErrorCode, reason: &'static str) -> Fatal {
    Fatal { code, reason }
}

impl From<Abuse> for Fatal {
    fn from(a: Abuse) -> Self {
        fatal(ErrorCode::ENHANCE_YOUR_CALM, a.reason())
    }
}

type Res = Result<(), Fatal>;

/// One HTTP/2 server connection. See the `h2` module doc.
#[derive(Debug)]
pub struct ServerConn {
    settings: H2Settings,
    limits: Limits,
    state: ConnState,
    shutdown: Shutdown,
    peer_goaway: bool,
    decoder: Decoder,
    encoder: Encoder,
    streams: BTreeMap<StreamId, Stream>,
    /// Highest client stream id opened or refused (§5.1.1).
    last_stream: StreamId,
    recently_reset: VecDeque<StreamId>,
    block: Option<HeaderBlock>,
    peer_initial_window: u32,
    peer_max_frame: u32,
    conn_send_window: i64,
    conn_recv_window: i64,
    /// Connection octets consumed, not yet sent as WINDOW_UPDATE.
    conn_credit: u64,
    out: Vec<u8>,
    /// Octets queued in reaction to the client since the last poll_output.
    pending_control: usize,
    /// WINDOW_UPDATEs the client may send for free (earned by our DATA).
    free_window_updates: u32,
    events: VecDeque<Event>,
    budget: Budget,
}

impl ServerConn {
    /// A connection that has sent nothing yet; our SETTINGS and the
    /// connection WINDOW_UPDATE are the first output (§3.4).
    pub fn new(settings: H2Settings, limits: Limits) -> Self {
        let mut s = settings;
        s.initial_window_size = s
            .initial_window_size
            .clamp(frame::DEFAULT_WINDOW, MAX_WINDOW);
        s.connection_window = s.connection_window.clamp(frame::DEFAULT_WINDOW, MAX_WINDOW);
        s.max_frame_size = s
            .max_frame_size
            .clamp(frame::MIN_MAX_FRAME_SIZE, frame::MAX_MAX_FRAME_SIZE);
        let mut out = Vec::new();
        frame::write_settings(
            &mut out,
            &[
                (setting::HEADER_TABLE_SIZE, s.header_table_size),
                (setting::ENABLE_PUSH, 0),
                (setting::MAX_CONCURRENT_STREAMS, s.max_concurrent_streams),
                (setting::INITIAL_WINDOW_SIZE, s.initial_window_size),
                (setting::MAX_FRAME_SIZE, s.max_frame_size),
                (setting::MAX_HEADER_LIST_SIZE, s.max_header_list_size),
            ],
        );
        if s.connection_window > frame::DEFAULT_WINDOW {
            frame::write_window_update(
                &mut out,
                StreamId(0),
                s.connection_window - frame::DEFAULT_WINDOW,
            );
        }
        ServerConn {
            settings: s,
            limits,
            state: ConnState::Preface(0),
            shutdown: Shutdown::Running,
            peer_goaway: false,
            decoder: Decoder::new(s.header_table_size as usize),
            encoder: Encoder::new(),
            streams: BTreeMap::new(),
            last_stream: StreamId(0),
            recently_reset: VecDeque::new(),
            block: None,
            peer_initial_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::MIN_MAX_FRAME_SIZE,
            conn_send_window: i64::from(frame::DEFAULT_WINDOW),
            conn_recv_window: i64::from(s.connection_window),
            conn_credit: 0,
            out,
            pending_control: 0,
            free_window_updates: 0,
            events: VecDeque::new(),
            budget: Budget::new(
                s.abuse_window,
                s.max_resets_per_window,
                s.max_control_frames_per_window,
                s.max_empty_data_frames_per_window,
            ),
        }
    }

    // ----- input ---------------------------------------------------------

    /// Consume complete frames from `buf` (the preface first) and return
    /// how many octets were used; keep the rest and call again with more.
    /// Never fails: a connection error queues GOAWAY, emits
    /// [`Event::ConnectionError`], and everything after it is consumed and
    /// ignored.
    pub fn handle_input(&mut self, buf: &[u8], now: Instant) -> usize {
        let mut pos = 0;
        loop {
            let rest = buf.get(pos..).unwrap_or_default();
            match self.state {
                ConnState::Failed(_) => return buf.len(),
                ConnState::Preface(n) => {
                    let want = frame::PREFACE.get(n..).unwrap_or_default();
                    let k = rest.len().min(want.len());
                    if rest.get(..k) != want.get(..k) {
                        self.fail(fatal(
                            ErrorCode::PROTOCOL_ERROR,
                            "invalid connection preface",
                        ));
                        return buf.len();
                    }
                    pos += k;
                    if k < want.len() {
                        self.state = ConnState::Preface(n + k);
                        return pos;
                    }
                    self.state = ConnState::FirstSettings;
                    continue;
                }
                ConnState::FirstSettings | ConnState::Open => {}
            }
            let Some(h) = FrameHeader::parse(rest) else {
                return pos;
            };
            if h.len > self.settings.max_frame_size {
                // §4.2: a frame over SETTINGS_MAX_FRAME_SIZE.
                self.fail(fatal(ErrorCode::FRAME_SIZE_ERROR, "frame too large"));
                return buf.len();
            }
            let end = frame::HEADER_LEN + h.len as usize;
            let Some(payload) = rest.get(frame::HEADER_LEN..end) else {
                return pos;
            };
            pos += end;
            if self.state == ConnState::FirstSettings {
                if h.kind != kind::SETTINGS || h.has(flag::ACK) {
                    self.fail(fatal(
                        ErrorCode::PROTOCOL_ERROR,
                        "first frame is not SETTINGS",
                    ));
                    return buf.len();
                }
                self.state = ConnState::Open;
            }
            if let Err(f) = self.handle_frame(h, payload, now) {
                self.fail(f);
                return buf.len();
            }
        }
    }

    fn handle_frame(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
        if let Some(b) = &self.block
            && (h.kind != kind::CONTINUATION || h.stream != b.stream)
        {
            // §6.10: nothing may interleave a header block.
            return Err(fatal(
                ErrorCode::PROTOCOL_ERROR,
                "frame interleaved in a header block",
            ));
        }
        match h.kind {
            kind::DATA => self.on_data(h, payload, now),
            kind::HEADERS => self.on_headers(h, payload, now),
            kind::PRIORITY => self.on_priority(h, payload, now),
            kind::RST_STREAM => self.on_rst_stream(h, payload, now),
            kind::SETTINGS => self.on_settings(h, payload, now),
            kind::PUSH_PROMISE => Err(fatal(
                ErrorCode::PROTOCOL_ERROR,
                "PUSH_PROMISE from a client",
            )),
            kind::PING => self.on_ping(h, payload, now),
            kind::GOAWAY => self.on_goaway(h, payload, now),
            kind::WINDOW_UPDATE => self.on_window_update(h, payload, now),
            kind::CONTINUATION => self.on_continuation(h, payload, now),
            // §4.1, §5.5: unknown types are ignored (but not free).
            _ => Ok(self.budget.charge(Abuse::Control, now)?),
        }
    }

    /// §5.1: an id the client has not used yet (even ids are ours, and we
    /// never open any).
    fn is_idle(&self, id: StreamId) -> bool {
        id.0.is_multiple_of(2) || id > self.last_stream
    }

    /// §6.8: after the final GOAWAY, streams above its id are ignored.
    fn ignored(&self, id: StreamId) -> bool {
        matches!(self.shutdown, Shutdown::Final(last) if id > last)
    }

    fn on_data(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
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
        match stream.recv {
            RecvState::Closed => Ok(()),
            RecvState::Discarding => {
                self.conn_credit += dlen;
                stream.credit += dlen;
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
                if !data.is_empty() || end {
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

    fn on_headers(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
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

    fn on_continuation(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
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
        let mut c = Collector::new(self.settings.max_header_list_size as usize, self.limits);
        self.decoder
            .decode(block, |n, v| c.push(n, v))
            .map_err(|_| fatal(ErrorCode::COMPRESSION_ERROR, "HPACK decoding failed"))?;
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
        match request {
            Ok(head) => {
                self.streams.insert(
                    id,
                    Stream::new(recv, self.settings.initial_window_size, send_window),
                );
                self.events.push_back(Event::Request {
                    stream: id,
                    head,
                    end_stream: end,
                });
                Ok(())
            }
            Err(Refusal::Reject(e)) => {
                self.streams.insert(
                    id,
                    Stream::new(recv, self.settings.initial_window_size, send_window),
                );
                self.request_error(id, e, end, now)
            }
            Err(Refusal::Reset(code)) => self.stream_error(id, code, now),
        }
    }

    fn on_trailers(&mut self, id: StreamId, end: bool, c: Collector, now: Instant) -> Res {
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
                        self.events.push_back(Event::Trailers {
                            stream: id,
                            headers,
                        });
                        self.maybe_finish(id);
                        Ok(())
                    }
                    Err(e) => self.request_error(id, e, true, now),
                }
            }
        }
    }

    fn on_priority(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
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
        if dep == id.0 && !idle {
            return self.stream_error(id, ErrorCode::PROTOCOL_ERROR, now);
        }
        Ok(())
    }

    fn on_rst_stream(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
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

    fn on_settings(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
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

    fn on_ping(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
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

    fn on_goaway(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
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

    fn on_window_update(&mut self, h: FrameHeader, payload: &[u8], now: Instant) -> Res {
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

    // ----- errors and stream ends ---------------------------------------

    fn fail(&mut self, f: Fatal) {
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
    fn control(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Res {
        let before = self.out.len();
        write(&mut self.out);
        self.pending_control += self.out.len() - before;
        if self.pending_control > self.settings.max_pending_control as usize {
            return Err(fatal(ErrorCode::ENHANCE_YOUR_CALM, "client is not reading"));
        }
        Ok(())
    }

    fn remember_reset(&mut self, id: StreamId) {
        if self.recently_reset.len() >= RECENT_RESETS {
            self.recently_reset.pop_front();
        }
        self.recently_reset.push_back(id);
    }

    /// §5.4.2 stream error caused by the client: RST_STREAM, drop the
    /// stream, tell the proxy if it knew the stream, and count it
    /// (MadeYouReset, CVE-2025-8671).
    fn stream_error(&mut self, id: StreamId, code: ErrorCode, now: Instant) -> Res {
        self.control(|out| frame::write_rst(out, id, code))?;
        if self.streams.remove(&id).is_some() {
            self.events.push_back(Event::StreamReset {
                stream: id,
                code,
                by_peer: false,
            });
        }
        self.remember_reset(id);
        Ok(self.budget.charge(Abuse::Reset, now)?)
    }

    /// A request the proxy must not forward further: `Rejected` while no
    /// response has started (the proxy answers, then the stream is reset
    /// if the client is still sending), else a stream error.
    fn request_error(&mut self, id: StreamId, e: HttpError, end: bool, now: Instant) -> Res {
        let malformed = e.status() == 400;
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        if stream.send != SendState::AwaitHeaders {
            let code = if malformed {
                ErrorCode::PROTOCOL_ERROR
            } else {
                ErrorCode::CANCEL
            };
            return self.stream_error(id, code, now);
        }
        if end || stream.recv_closed() {
            stream.recv = RecvState::Closed;
        } else {
            stream.recv = RecvState::Discarding;
        }
        // §8.1: after a complete response, NO_ERROR asks the client to
        // stop sending; malformed requests get PROTOCOL_ERROR (§8.1.1).
        stream.refused = Some(if malformed {
            ErrorCode::PROTOCOL_ERROR
        } else {
            ErrorCode::NO_ERROR
        });
        self.events.push_back(Event::Rejected {
            stream: id,
            error: e,
        });
        Ok(self.budget.charge(Abuse::Reset, now)?)
    }

    /// Drop a stream whose two sides are closed; reset a refused stream
    /// whose response is complete while the client is still sending.
    fn maybe_finish(&mut self, id: StreamId) {
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

    fn final_goaway(&mut self) {
        let last = self.last_stream;
        frame::write_goaway(&mut self.out, last, ErrorCode::NO_ERROR, b"");
        self.shutdown = Shutdown::Final(last);
    }

    // ----- output ---------------------------------------------------------

    /// Append every queued frame to `out`, WINDOW_UPDATEs for released
    /// capacity first. Call when the transport can take more: until then
    /// the connection holds DATA up to `max_send_buffer` and reaction
    /// frames up to `max_pending_control`.
    pub fn poll_output(&mut self, out: &mut Vec<u8>) {
        // Queued frames first: the server's SETTINGS must open the
        // connection (RFC 9113 §3.4) even when credit was released before
        // the first output was taken.
        out.append(&mut self.out);
        if !matches!(self.state, ConnState::Failed(_)) {
            self.flush_credit(out);
        }
        self.pending_control = 0;
        if !matches!(self.state, ConnState::Failed(_)) {
            self.wake_blocked();
        }
    }

    fn flush_credit(&mut self, out: &mut Vec<u8>) {
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

    /// Next event for the proxy.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// There are frames to write.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
            || (!matches!(self.state, ConnState::Failed(_))
                && (self.conn_credit > 0 || self.streams.values().any(|s| s.credit > 0)))
    }

    /// Nothing more will happen: a connection error was sent, or a GOAWAY
    /// was exchanged and every stream finished. Flush `poll_output`, then
    /// close the transport.
    pub fn is_closed(&self) -> bool {
        match self.state {
            ConnState::Failed(_) => true,
            _ => {
                (self.peer_goaway || matches!(self.shutdown, Shutdown::Final(_)))
                    && self.streams.is_empty()
                    && self.block.is_none()
            }
        }
    }

    /// The error code of the GOAWAY sent for a connection error, if any.
    pub fn error(&self) -> Option<ErrorCode> {
        match self.state {
            ConnState::Failed(c) => Some(c),
            _ => None,
        }
    }

    /// Streams currently open (any non-closed state).
    pub fn active_streams(&self) -> usize {
        self.streams.len()
    }

    fn capacity_of(&self, s: &Stream) -> usize {
        let room = (self.settings.max_send_buffer as usize).saturating_sub(self.out.len());
        let w = s.send_window.min(self.conn_send_window).max(0);
        usize::try_from(w).unwrap_or(usize::MAX).min(room)
    }

    fn wake_blocked(&mut self) {
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

    // ----- the proxy's side -------------------------------------------------

    /// Send the response header. `status` 1xx (except 101) may precede the
    /// final one. Names are lowercased; pseudo-header and connection-specific
    /// fields (§8.2.2) and fields unfit for HTTP/2 are dropped.
    pub fn send_headers(
        &mut self,
        stream: StreamId,
        status: u16,
        headers: &[(&str, &[u8])],
        end_stream: bool,
    ) -> Result<(), H2Error> {
        if matches!(self.state, ConnState::Failed(_)) {
            return Err(H2Error::ConnectionClosed);
        }
        let informational = status < 200;
        if !(100..=999).contains(&status) || status == 101 || (informational && end_stream) {
            return Err(H2Error::InvalidStatus);
        }
        let s = self.streams.get(&stream).ok_or(H2Error::StreamClosed)?;
        match s.send {
            SendState::AwaitHeaders => {}
            SendState::Body => return Err(H2Error::HeadersAlreadySent),
            SendState::Closed => return Err(H2Error::StreamClosed),
        }
        let status = status.to_string();
        let fields = response_fields(headers);
        let mut block = Vec::new();
        self.encoder.encode(
            std::iter::once((&b":status"[..], status.as_bytes()))
                .chain(fields.iter().map(|(n, v)| (n.as_bytes(), *v))),
            &mut block,
        );
        frame::write_header_block(
            &mut self.out,
            stream,
            &block,
            end_stream,
            self.peer_max_frame as usize,
        );
        if !informational && let Some(s) = self.streams.get_mut(&stream) {
            s.send = if end_stream {
                SendState::Closed
            } else {
                SendState::Body
            };
        }
        if end_stream {
            self.maybe_finish(stream);
        }
        Ok(())
    }

    /// Send up to the stream and connection send windows (and the output
    /// bound) of `data`; returns the octets taken. `end_stream` applies only
    /// if everything was taken. Taking less marks the stream blocked: a
    /// `CapacityAvailable` follows when room opens.
    pub fn send_data(&mut self, stream: StreamId, data: &[u8], end_stream: bool) -> usize {
        if matches!(self.state, ConnState::Failed(_)) {
            return 0;
        }
        let Some(s) = self.streams.get(&stream) else {
            return 0;
        };
        if s.send != SendState::Body {
            return 0;
        }
        let n = self.capacity_of(s).min(data.len());
        let all = n == data.len();
        let chunk = data.get(..n).unwrap_or_default();
        if n == 0 && !(all && end_stream) {
            if let Some(s) = self.streams.get_mut(&stream) {
                s.blocked = !data.is_empty();
            }
            return 0;
        }
        let max_frame = self.peer_max_frame as usize;
        frame::write_data(&mut self.out, stream, chunk, all && end_stream, max_frame);
        let frames = u32::try_from(n.div_ceil(max_frame.max(1)).max(1)).unwrap_or(u32::MAX);
        self.free_window_updates = self
            .free_window_updates
            .saturating_add(frames.saturating_mul(2))
            .min(self.settings.max_control_frames_per_window);
        self.conn_send_window -= n as i64;
        if let Some(s) = self.streams.get_mut(&stream) {
            s.send_window -= n as i64;
            s.blocked = !all;
            if all && end_stream {
                s.send = SendState::Closed;
            }
        }
        if all && end_stream {
            self.maybe_finish(stream);
        }
        n
    }

    /// Send trailers, ending the stream.
    pub fn send_trailers(
        &mut self,
        stream: StreamId,
        headers: &[(&str, &[u8])],
    ) -> Result<(), H2Error> {
        if matches!(self.state, ConnState::Failed(_)) {
            return Err(H2Error::ConnectionClosed);
        }
        let s = self.streams.get(&stream).ok_or(H2Error::StreamClosed)?;
        match s.send {
            SendState::Body => {}
            SendState::AwaitHeaders => return Err(H2Error::HeadersNotSent),
            SendState::Closed => return Err(H2Error::StreamClosed),
        }
        let fields = response_fields(headers);
        let mut block = Vec::new();
        self.encoder
            .encode(fields.iter().map(|(n, v)| (n.as_bytes(), *v)), &mut block);
        frame::write_header_block(
            &mut self.out,
            stream,
            &block,
            true,
            self.peer_max_frame as usize,
        );
        if let Some(s) = self.streams.get_mut(&stream) {
            s.send = SendState::Closed;
        }
        self.maybe_finish(stream);
        Ok(())
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

    /// Reset a stream for a reason on the proxy's side (e.g. the backend
    /// failed after the response started). Not counted as abuse.
    pub fn reset(&mut self, stream: StreamId, code: ErrorCode) {
        if matches!(self.state, ConnState::Failed(_)) {
            return;
        }
        if self.streams.remove(&stream).is_some() {
            frame::write_rst(&mut self.out, stream, code);
            self.remember_reset(stream);
        }
    }

    /// Answer a stream with a short error response (like
    /// `h1::error_response`): `status`, `error_header: code`, a plain-text
    /// body, END_STREAM. If the send window cannot take the body, the
    /// header alone ends the stream.
    pub fn reject(
        &mut self,
        stream: StreamId,
        status: u16,
        code: &str,
        error_header: &str,
    ) -> Result<(), H2Error> {
        let body = format!("{status:03} {}: {code}\n", reason_phrase(status));
        let len = body.len().to_string();
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("content-type", b"text/plain; charset=utf-8"),
            (error_header, code.as_bytes()),
        ];
        let fits = self
            .streams
            .get(&stream)
            .is_some_and(|s| s.send_window.min(self.conn_send_window) >= body.len() as i64);
        if !fits {
            return self.send_headers(stream, status, &headers, true);
        }
        headers.push(("content-length", len.as_bytes()));
        self.send_headers(stream, status, &headers, false)?;
        if self.send_data(stream, body.as_bytes(), true) < body.len() {
            self.reset(stream, ErrorCode::INTERNAL_ERROR);
        }
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
}

/// Response fields for HTTP/2: lowercase names; pseudo-header and
/// connection-specific fields dropped (§8.2.2), `te` kept only as
/// `trailers`; names that are not tokens and values with CR, LF or NUL
/// dropped (§8.2.1).
fn response_fields<'a>(headers: &[(&str, &'a [u8])]) -> Vec<(String, &'a [u8])> {
    headers
        .iter()
        .filter_map(|&(name, value)| {
            let name = name.to_ascii_lowercase();
            let drop = !is_token(name.as_bytes())
                || matches!(
                    name.as_str(),
                    "connection"
                        | "keep-alive"
                        | "proxy-connection"
                        | "transfer-encoding"
                        | "upgrade"
                )
                || (name == "te" && !value.eq_ignore_ascii_case(b"trailers"))
                || value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0));
            (!drop).then_some((name, value))
        })
        .collect()
}
