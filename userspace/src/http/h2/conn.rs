//! [`ServerConn`]: one HTTP/2 server connection, sans-IO.
//!
//! Owns: the connection state (preface → first SETTINGS → open → failed),
//! the connection's fields, reading frames off the input and dispatching
//! them, and what the proxy polls (events, output, state). The rest of the
//! connection lives in submodules, each an `impl ServerConn` block:
//! `recv.rs` (DATA, HEADERS/CONTINUATION, trailers, PRIORITY, RST_STREAM),
//! `control.rs` (SETTINGS, PING, GOAWAY both ways), `flow.rs` (both
//! flow-control directions), `errors.rs` (connection and stream errors, the
//! abuse charges for resets, stream ends) and `send.rs` (the proxy's
//! response calls).
//! Must not: do I/O, read the clock, or buffer a body (DATA is handed out
//! as it arrives; the client is only credited for what the proxy releases).
//! Fed by: client bytes and the proxy's response calls.
//! Emits: [`Event`]s and frame bytes. See the module doc of `h2` for the
//! state diagram and the abuse table.

mod control;
mod errors;
mod flow;
mod recv;
mod send;

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use super::budget::{Abuse, Budget};
use super::frame::{self, FrameHeader, MAX_WINDOW, flag, kind, setting};
use super::hpack::{Decoder, Encoder};
use super::stream::Stream;
use super::{ErrorCode, Event, H2Settings, StreamId};
use crate::http::Limits;
use crate::http::fields::Fields;

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
    /// The response header block being encoded (kept between responses).
    block_out: Vec<u8>,
    /// Where a request's header block is decoded into (kept between
    /// requests, like `block_out`).
    block_in: Fields,
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
    /// Some stream's `credit` grew since the last flush (so a flush need
    /// not visit every stream when none did).
    stream_credit: bool,
    /// Streams marked blocked, maybe no longer (checked when waking), so
    /// a wake-up visits these rather than every stream.
    blocked: Vec<StreamId>,
    out: Vec<u8>,
    /// Octets queued in reaction to the client since the last poll_output.
    pending_control: usize,
    /// WINDOW_UPDATEs the client may send for free (earned by our DATA).
    free_window_updates: u32,
    events: VecDeque<Event>,
    budget: Budget,
    /// Next stall sweep (see `flow.rs`); armed while streams exist.
    sweep_at: Option<Instant>,
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
            block_out: Vec::new(),
            block_in: Fields::new(),
            streams: BTreeMap::new(),
            last_stream: StreamId(0),
            recently_reset: VecDeque::new(),
            block: None,
            peer_initial_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::MIN_MAX_FRAME_SIZE,
            conn_send_window: i64::from(frame::DEFAULT_WINDOW),
            conn_recv_window: i64::from(s.connection_window),
            conn_credit: 0,
            stream_credit: false,
            blocked: Vec::new(),
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
            sweep_at: None,
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

    // ----- output and state -------------------------------------------------

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

    /// Next event for the proxy.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// There are frames to write.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
            || (!matches!(self.state, ConnState::Failed(_))
                && (self.conn_credit > 0 || self.stream_credit))
    }

    /// Nothing more will happen: a connection error was sent, or a GOAWAY
    /// was exchanged and every stream finished. Flush `poll_output`, then
    /// close the transport.
    /// The last GOAWAY went out (at once, or after the graceful PING came
    /// back): no stream will start any more, so once the open ones are done
    /// the connection may close.
    pub fn goaway_is_final(&self) -> bool {
        matches!(self.shutdown, Shutdown::Final(_))
    }

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

    /// Octets this connection buffers itself: queued output, a header
    /// block waiting for END_HEADERS, held request steps, and the HPACK
    /// table. What the proxy holds per stream is freed when the stream
    /// ends, is reset, or is reaped by the stall sweep.
    pub fn buffered_bytes(&self) -> usize {
        let held = self
            .streams
            .values()
            .filter_map(|s| s.held.as_deref())
            .map(|e| match e {
                Event::Data { data, .. } => data.len(),
                Event::Request { head, .. } => {
                    head.headers
                        .iter()
                        .map(|(n, v)| n.len() + v.len())
                        .sum::<usize>()
                        + head.path.len()
                        + head.authority.len()
                }
                _ => 0,
            })
            .sum::<usize>();
        self.out.len()
            + self.block.as_ref().map_or(0, |b| b.buf.len())
            + held
            + self.decoder.table_size()
    }

    /// When [`ServerConn::handle_timeout`] wants to be called (the stall
    /// sweep), if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            ConnState::Failed(_) => None,
            _ => self.sweep_at,
        }
    }
}
