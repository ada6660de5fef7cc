//! HTTP/2 server connection (RFC 9113, HPACK RFC 7541), sans-IO: bytes in,
//! events out, bytes out.
//!
//! Owns: [`ServerConn`] (framing, SETTINGS, flow control, stream states,
//! GOAWAY, abuse budgets), the HPACK codec, and request validation into
//! [`H2Request`]. Must not: do I/O, read the clock (`now` is passed in),
//! spawn threads, buffer a whole body, or panic on input.
//! Fed by: the reactor, with decrypted TLS bytes ([`ServerConn::handle_input`])
//! and the proxy's response ([`ServerConn::send_headers`], `send_data`, ...).
//! Emits: [`Event`]s and frames ([`ServerConn::poll_output`]).
//!
//! # Driving it
//!
//! ```text
//!   TLS plaintext ─► handle_input(buf, now) -> consumed   (keep buf[consumed..])
//!                    poll_output(&mut out)    ─► TLS writer (call when it has room)
//!                    poll_event()             ─► Request / Data / Trailers / Rejected /
//!                                               StreamReset / CapacityAvailable /
//!                                               GoAway / ConnectionError
//!   proxy        ─► send_headers / send_data / send_trailers / reject / reset
//!                   release_capacity(n)  once n body octets went to the backend
//!                   send_capacity() == 0 → stop reading the backend until
//!                                          CapacityAvailable
//! ```
//!
//! * `Request` → start the backend request; `Data` → forward it, then
//!   `release_capacity(stream, len)` (the client gets WINDOW_UPDATEs only
//!   for what was forwarded: request-direction backpressure).
//! * `Rejected { error }` → answer with `reject(stream, error.status(),
//!   error.code(), header)` and cancel any backend work for the stream. It
//!   comes for a limit (431, 414, 413), either instead of `Request` or
//!   later (body over `max_body`) while no response has started. Malformed
//!   requests never come out: they are stream errors (below).
//! * `StreamReset` → cancel backend work (the client reset it, or the server
//!   did because of the client after the response had started).
//! * `ConnectionError` → a GOAWAY is queued: flush `poll_output`, then close.
//!   Every stream is gone. [`ServerConn::is_closed`] is then true.
//!
//! # Stream states (RFC 9113 §5.1; no push, so no reserved states)
//!
//! ```text
//!                          +--------+
//!   HEADERS (new odd id)   |  idle  |   any other frame → conn PROTOCOL_ERROR
//!   ┌──────────────────────|        |   (PRIORITY allowed and ignored, unless
//!   │                      |        |   self-dependent: RST_STREAM, §5.3.1)
//!   │                      +--------+
//!   │ refused (limits, max streams, malformed) → RST / error response
//!   ▼
//! +--------+  client END_STREAM   +------------------+
//! |  open  |─────────────────────►| half-closed      |  DATA/HEADERS → stream
//! |        |                      | (remote)         |  error STREAM_CLOSED
//! +--------+                      +------------------+
//!   │ proxy END_STREAM                     │ proxy END_STREAM
//!   ▼                                      ▼
//! +--------------------+  client     +--------+
//! | half-closed(local) |────────────►| closed |  (dropped from the map)
//! +--------------------+  END_STREAM +--------+
//!   any state ── RST_STREAM sent or received ──► closed
//! ```
//!
//! Closed streams: WINDOW_UPDATE, RST_STREAM and PRIORITY are ignored;
//! DATA/HEADERS → STREAM_CLOSED, except on the last 128 streams the server
//! itself reset, whose in-flight frames are ignored (§5.1 "closed"), DATA
//! still counting toward (and credited back to) the connection window.
//!
//! # Errors
//!
//! Connection errors (§5.4.1) queue GOAWAY(last client stream, code,
//! reason) and emit [`Event::ConnectionError`]; input after that is
//! discarded. Stream errors (§5.4.2) queue RST_STREAM. Malformed requests
//! (§8.1.1, §8.2, §8.3: a bad pseudo-header set, an upper-case or
//! connection-specific field, `te` other than `trailers`, a Content-Length
//! the DATA does not match…) are stream errors PROTOCOL_ERROR with no
//! response and never reach the proxy as a complete request: a body that
//! reaches its Content-Length keeps its last DATA (or, for
//! `content-length: 0`, the whole `Request`) until END_STREAM shows nothing
//! more follows. Limits answer 413/414/431 (see `request.rs`).
//!
//! # Abuse protections (defaults in [`H2Settings`])
//!
//! | attack | defence |
//! |---|---|
//! | rapid reset (CVE-2023-44487) | client RST_STREAM counts in the `Reset` budget → GOAWAY ENHANCE_YOUR_CALM |
//! | MadeYouReset (CVE-2025-8671) | every stream the server resets / refuses / rejects because of the client counts in the same budget |
//! | CONTINUATION flood (CVE-2024-27316) | a header block over `max_header_block` octets or `max_continuation_frames` frames → GOAWAY ENHANCE_YOUR_CALM (it cannot be decoded without buffering it, and must be decoded to keep HPACK in sync, so no 431) |
//! | HPACK bomb | decoded fields are counted, never copied past `max_header_list_size` → 431; table bounded by the advertised SETTINGS_HEADER_TABLE_SIZE; decode work bounded by the block size |
//! | SETTINGS / PING / PRIORITY / WINDOW_UPDATE floods | `Control` budget → ENHANCE_YOUR_CALM (a WINDOW_UPDATE that follows DATA the server sent is free) |
//! | empty DATA flood | `EmptyData` budget → ENHANCE_YOUR_CALM |
//! | too many streams | REFUSED_STREAM, counted in the `Reset` budget |
//! | HTTP/2 bomb (CVE-2026-49975) | +32 octets per field toward `max_header_list_size` and at most `Limits::max_headers` fields (431); a response stream whose send window stays at zero for `stall_timeout` is reset with CANCEL (`StreamReset`), so the proxy frees its buffers and backend |
//! | client that never reads | reaction frames (ACKs, RST_STREAM) queued since the last `poll_output` are bounded by `max_pending_control` → ENHANCE_YOUR_CALM; DATA is bounded by the windows and by `max_send_buffer` |
//!
//! Budgets use a fixed window of `abuse_window` (see `budget.rs`).
//!
//! # GOAWAY on shutdown
//!
//! `goaway(true)` is the two-step graceful shutdown (§6.8): GOAWAY with
//! last-stream-id 2^31-1 plus a PING; when the PING ACK arrives every
//! stream the client started before it has been seen, and the final GOAWAY
//! carries the real last stream id. `goaway(false)` sends the final GOAWAY
//! at once. Streams above the final id are ignored; the connection reports
//! `is_closed()` once every remaining stream has finished.
//!
//! # HPACK
//!
//! Hand-rolled in `hpack.rs` with Huffman tables from `httlib-huffman`,
//! because the candidate crates do not bound work: `hpack` (unmaintained
//! since 2016) and its forks `fluke-hpack` / `loona-hpack` rebuild a
//! 257-entry HashMap Huffman table for every Huffman string, accept size
//! updates anywhere in a block, and their encoder never signals size
//! updates; `httlib-hpack` drains a `Vec` from the front per field
//! (quadratic in the block) and copies every indexed entry (4 KiB per
//! one-octet reference: the HPACK bomb).

pub mod budget;
pub mod conn;
pub mod frame;
pub mod hpack;
pub mod request;
pub mod stream;
pub mod translate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use thiserror::Error;

pub use conn::ServerConn;

use crate::http::HttpError;
use crate::http::fields::Fields;

/// An HTTP/2 stream identifier (RFC 9113 §5.1.1); clients use odd ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u32);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An HTTP/2 error code (RFC 9113 §7); unknown codes are kept as received.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    pub const NO_ERROR: ErrorCode = ErrorCode(0x0);
    pub const PROTOCOL_ERROR: ErrorCode = ErrorCode(0x1);
    pub const INTERNAL_ERROR: ErrorCode = ErrorCode(0x2);
    pub const FLOW_CONTROL_ERROR: ErrorCode = ErrorCode(0x3);
    pub const SETTINGS_TIMEOUT: ErrorCode = ErrorCode(0x4);
    pub const STREAM_CLOSED: ErrorCode = ErrorCode(0x5);
    pub const FRAME_SIZE_ERROR: ErrorCode = ErrorCode(0x6);
    pub const REFUSED_STREAM: ErrorCode = ErrorCode(0x7);
    pub const CANCEL: ErrorCode = ErrorCode(0x8);
    pub const COMPRESSION_ERROR: ErrorCode = ErrorCode(0x9);
    pub const CONNECT_ERROR: ErrorCode = ErrorCode(0xa);
    pub const ENHANCE_YOUR_CALM: ErrorCode = ErrorCode(0xb);
    pub const INADEQUATE_SECURITY: ErrorCode = ErrorCode(0xc);
    pub const HTTP_1_1_REQUIRED: ErrorCode = ErrorCode(0xd);

    /// The RFC name, or `None` for an unknown code.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 14] = [
            "NO_ERROR",
            "PROTOCOL_ERROR",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT",
            "STREAM_CLOSED",
            "FRAME_SIZE_ERROR",
            "REFUSED_STREAM",
            "CANCEL",
            "COMPRESSION_ERROR",
            "CONNECT_ERROR",
            "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY",
            "HTTP_1_1_REQUIRED",
        ];
        NAMES.get(usize::try_from(self.0).ok()?).copied()
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "ErrorCode({:#x})", self.0),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Connection settings and abuse budgets. `Default` gives the documented
/// values; [`ServerConn::new`] clamps each to its RFC range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Settings {
    /// SETTINGS_MAX_CONCURRENT_STREAMS (default 100).
    pub max_concurrent_streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE: per-stream receive window (default
    /// 1 MiB; at least 65,535).
    pub initial_window_size: u32,
    /// Connection receive window, opened by a WINDOW_UPDATE right after
    /// our SETTINGS (default 4 MiB).
    pub connection_window: u32,
    /// SETTINGS_MAX_FRAME_SIZE we accept (default 16,384).
    pub max_frame_size: u32,
    /// SETTINGS_HEADER_TABLE_SIZE: ceiling of the HPACK decoder's dynamic
    /// table (default 4,096).
    pub header_table_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE, RFC size (name + value + 32 per
    /// field); over it → 431 (default 32 KiB, `Limits::max_header_section`).
    pub max_header_list_size: u32,
    /// Octets of one header block (HEADERS + CONTINUATION, padding
    /// removed) before END_HEADERS; over it → GOAWAY ENHANCE_YOUR_CALM
    /// (default 64 KiB).
    pub max_header_block: u32,
    /// CONTINUATION frames in one header block (default 16).
    pub max_continuation_frames: u32,
    /// The window over which the budgets below are counted (default 10 s).
    pub abuse_window: Duration,
    /// Streams reset by the client or by the server because of the client
    /// (including refused and rejected streams) per window (default 200).
    pub max_resets_per_window: u32,
    /// SETTINGS, PING, PRIORITY, unsolicited WINDOW_UPDATE, RST_STREAM on
    /// closed streams and unknown frames per window (default 1,000).
    pub max_control_frames_per_window: u32,
    /// DATA frames with no payload and no END_STREAM per window (default 100).
    pub max_empty_data_frames_per_window: u32,
    /// Octets of frames queued in reaction to the client (SETTINGS/PING
    /// ACKs, RST_STREAM) since the last `poll_output` (default 64 KiB).
    pub max_pending_control: u32,
    /// Octets queued in the output before `send_capacity` drops to 0
    /// (default 256 KiB).
    pub max_send_buffer: u32,
    /// A response stream whose send window (its own or the connection's)
    /// stays at zero this long is reset with CANCEL and forgotten, freeing
    /// what the proxy holds for it (the "HTTP/2 bomb", CVE-2026-49975).
    /// Checked every half of it, so a stall is reaped after between one
    /// and one and a half times this (default 30 s, `[limits]
    /// h2_stall_timeout_ms`).
    pub stall_timeout: Duration,
}

impl Default for H2Settings {
    fn default() -> Self {
        H2Settings {
            max_concurrent_streams: 100,
            initial_window_size: 1 << 20,
            connection_window: 4 << 20,
            max_frame_size: 16_384,
            header_table_size: 4_096,
            max_header_list_size: 32 * 1024,
            max_header_block: 64 * 1024,
            max_continuation_frames: 16,
            abuse_window: Duration::from_secs(10),
            max_resets_per_window: 200,
            max_control_frames_per_window: 1_000,
            max_empty_data_frames_per_window: 100,
            max_pending_control: 64 * 1024,
            max_send_buffer: 256 * 1024,
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// A request as received on one stream. Field names are lowercase;
/// pseudo-header fields, `host` (folded into `authority`) and
/// `content-length` (in `content_length`) are removed; cookie crumbs are
/// joined with `"; "` into one trailing `cookie` field (RFC 9113 §8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2Request {
    pub method: String,
    /// Checked, not forwarded (the backend hears `X-Forwarded-Proto`).
    pub scheme: std::borrow::Cow<'static, str>,
    /// `:authority`, else the Host field (validated as `uri-host[:port]`).
    pub authority: String,
    /// Origin-form path with query, or `*` for `OPTIONS`.
    pub path: String,
    /// Regular fields to forward, with room for a `host` in front.
    pub headers: Fields,
    pub content_length: Option<u64>,
}

impl H2Request {
    /// First value of `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// What the connection tells the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new request; `end_stream`: it has no body.
    Request {
        stream: StreamId,
        head: H2Request,
        end_stream: bool,
    },
    /// Request body octets; call `release_capacity` once forwarded.
    Data {
        stream: StreamId,
        data: Vec<u8>,
        end_stream: bool,
    },
    /// Request trailers (always end the request).
    Trailers {
        stream: StreamId,
        headers: Vec<(String, Vec<u8>)>,
    },
    /// Answer with `reject(stream, error.status(), error.code(), ..)`.
    Rejected { stream: StreamId, error: HttpError },
    /// The stream is gone: `by_peer` = the client sent RST_STREAM;
    /// otherwise the server reset it because of a client error after the
    /// response had started.
    StreamReset {
        stream: StreamId,
        code: ErrorCode,
        by_peer: bool,
    },
    /// The stream's send capacity went from 0 to positive.
    CapacityAvailable { stream: StreamId },
    /// The client sent GOAWAY.
    GoAway {
        last_stream: StreamId,
        error: ErrorCode,
    },
    /// The server sent GOAWAY with this error: flush output, then close.
    ConnectionError {
        error: ErrorCode,
        reason: &'static str,
    },
}

/// Misuse of the proxy-side API, or a stream that no longer exists.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum H2Error {
    /// The stream is unknown, was reset, or has finished.
    #[error("stream is closed")]
    StreamClosed,
    /// A final response header was already sent on this stream.
    #[error("response headers already sent")]
    HeadersAlreadySent,
    /// Trailers or data before the response header.
    #[error("response headers not sent yet")]
    HeadersNotSent,
    /// Status outside 100..=999, 101 (not in HTTP/2, §8.6), or a 1xx
    /// with END_STREAM.
    #[error("invalid status for HTTP/2")]
    InvalidStatus,
    /// The connection failed or is closed.
    #[error("connection is closed")]
    ConnectionClosed,
}
