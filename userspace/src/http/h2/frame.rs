//! HTTP/2 framing (RFC 9113 §4, §6): the 9-octet frame header, frame type
//! and flag constants, padding removal, and writers for every frame the
//! server sends.
//!
//! Owns: byte layout only. Must not: keep connection or stream state,
//! decide what a frame means (see `conn.rs`). Fed by: byte slices.
//! Emits: [`FrameHeader`]s, payload slices, appended frame bytes.

use super::{ErrorCode, StreamId};

/// Octets in a frame header (RFC 9113 §4.1).
pub const HEADER_LEN: usize = 9;
/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Initial flow-control window of every stream and of the connection
/// (RFC 9113 §6.9.2).
pub const DEFAULT_WINDOW: u32 = 65_535;
/// Largest flow-control window (RFC 9113 §6.9.1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;
/// Smallest value of SETTINGS_MAX_FRAME_SIZE (RFC 9113 §6.5.2).
pub const MIN_MAX_FRAME_SIZE: u32 = 16_384;
/// Largest value of SETTINGS_MAX_FRAME_SIZE (RFC 9113 §6.5.2).
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;

/// Frame types (RFC 9113 §6).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags (RFC 9113 §6).
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS identifiers (RFC 9113 §6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// A decoded frame header (RFC 9113 §4.1). The reserved bit of the stream
/// identifier is ignored, as required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length (24 bits).
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: StreamId,
}

impl FrameHeader {
    /// Parse the first 9 octets of `buf`; `None` if fewer are available.
    pub fn parse(buf: &[u8]) -> Option<FrameHeader> {
        let h: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(FrameHeader {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            kind: h[3],
            flags: h[4],
            stream: StreamId(u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & MAX_WINDOW),
        })
    }

    /// Whether `f` is set.
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// Read a big-endian u32 at `at`, `None` if out of bounds.
pub fn be_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// Remove the Pad Length octet and the padding of a PADDED frame
/// (RFC 9113 §6.1, §6.2). Padding that is as long as or longer than the
/// rest of the payload is a connection PROTOCOL_ERROR (`None`).
pub fn strip_padding(padded: bool, payload: &[u8]) -> Option<&[u8]> {
    if !padded {
        return Some(payload);
    }
    let (&pad, rest) = payload.split_first()?;
    let keep = rest.len().checked_sub(usize::from(pad))?;
    rest.get(..keep)
}

/// Append a frame header.
pub fn write_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: StreamId) {
    let len = u32::try_from(len)
        .unwrap_or(u32::MAX)
        .min(MAX_MAX_FRAME_SIZE);
    let l = len.to_be_bytes();
    out.extend_from_slice(&[l[1], l[2], l[3], kind, flags]);
    out.extend_from_slice(&(stream.0 & MAX_WINDOW).to_be_bytes());
}

/// Append a SETTINGS frame carrying `params`.
pub fn write_settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    write_header(out, params.len() * 6, kind::SETTINGS, 0, StreamId(0));
    for (id, value) in params {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// Append a SETTINGS frame with the ACK flag (RFC 9113 §6.5.3).
pub fn write_settings_ack(out: &mut Vec<u8>) {
    write_header(out, 0, kind::SETTINGS, flag::ACK, StreamId(0));
}

/// Append a PING (RFC 9113 §6.7).
pub fn write_ping(out: &mut Vec<u8>, ack: bool, data: [u8; 8]) {
    let flags = if ack { flag::ACK } else { 0 };
    write_header(out, 8, kind::PING, flags, StreamId(0));
    out.extend_from_slice(&data);
}

/// Append a GOAWAY (RFC 9113 §6.8); `debug` is opaque diagnostic data.
pub fn write_goaway(out: &mut Vec<u8>, last: StreamId, code: ErrorCode, debug: &[u8]) {
    write_header(out, 8 + debug.len(), kind::GOAWAY, 0, StreamId(0));
    out.extend_from_slice(&(last.0 & MAX_WINDOW).to_be_bytes());
    out.extend_from_slice(&code.0.to_be_bytes());
    out.extend_from_slice(debug);
}

/// Append a RST_STREAM (RFC 9113 §6.4).
pub fn write_rst(out: &mut Vec<u8>, stream: StreamId, code: ErrorCode) {
    write_header(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&code.0.to_be_bytes());
}

/// Append a WINDOW_UPDATE (RFC 9113 §6.9); stream 0 is the connection.
pub fn write_window_update(out: &mut Vec<u8>, stream: StreamId, increment: u32) {
    write_header(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&(increment & MAX_WINDOW).to_be_bytes());
}

/// Append `data` as DATA frames of at most `max_frame` octets; the last
/// one carries END_STREAM if `end_stream`. Empty `data` with `end_stream`
/// writes one empty DATA frame.
pub fn write_data(
    out: &mut Vec<u8>,
    stream: StreamId,
    data: &[u8],
    end_stream: bool,
    max_frame: usize,
) {
    let max_frame = max_frame.max(1);
    if data.is_empty() {
        if end_stream {
            write_header(out, 0, kind::DATA, flag::END_STREAM, stream);
        }
        return;
    }
    let mut chunks = data.chunks(max_frame).peekable();
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let flags = if last && end_stream {
            flag::END_STREAM
        } else {
            0
        };
        write_header(out, chunk.len(), kind::DATA, flags, stream);
        out.extend_from_slice(chunk);
    }
}

/// Append a header block as one HEADERS frame followed by as many
/// CONTINUATION frames as `max_frame` requires (RFC 9113 §6.2, §6.10).
pub fn write_header_block(
    out: &mut Vec<u8>,
    stream: StreamId,
    block: &[u8],
    end_stream: bool,
    max_frame: usize,
) {
    let max_frame = max_frame.max(1);
    let mut chunks = block.chunks(max_frame).peekable();
    let mut first = true;
    if block.is_empty() {
        let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
        write_header(out, 0, kind::HEADERS, flags, stream);
        return;
    }
    while let Some(chunk) = chunks.next() {
        let mut flags = 0;
        if chunks.peek().is_none() {
            flags |= flag::END_HEADERS;
        }
        let kind = if first {
            if end_stream {
                flags |= flag::END_STREAM;
            }
            kind::HEADERS
        } else {
            kind::CONTINUATION
        };
        first = false;
        write_header(out, chunk.len(), kind, flags, stream);
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_ignores_reserved_bit() {
        let mut out = Vec::new();
        write_header(&mut out, 0x012345, kind::HEADERS, 0x25, StreamId(7));
        out[5] |= 0x80;
        let h = FrameHeader::parse(&out).unwrap();
        assert_eq!(h.len, 0x012345);
        assert_eq!(h.kind, kind::HEADERS);
        assert_eq!(h.flags, 0x25);
        assert_eq!(h.stream, StreamId(7));
        assert_eq!(FrameHeader::parse(&out[..8]), None);
    }

    #[test]
    fn padding_rules() {
        assert_eq!(strip_padding(false, b"abc"), Some(&b"abc"[..]));
        assert_eq!(strip_padding(true, b"\x01abc"), Some(&b"ab"[..]));
        assert_eq!(strip_padding(true, b"\x03abc"), Some(&b""[..]));
        assert_eq!(strip_padding(true, b"\x04abc"), None);
        assert_eq!(strip_padding(true, b""), None);
    }

    #[test]
    fn data_is_split_at_max_frame() {
        let mut out = Vec::new();
        write_data(&mut out, StreamId(1), &[7; 10], true, 4);
        let mut lens = Vec::new();
        let mut rest = &out[..];
        while let Some(h) = FrameHeader::parse(rest) {
            lens.push((h.len, h.flags));
            rest = &rest[HEADER_LEN + h.len as usize..];
        }
        assert_eq!(lens, vec![(4, 0), (4, 0), (2, flag::END_STREAM)]);
    }
}
