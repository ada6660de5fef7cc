//! Streaming HTTP/1.1 body decoding: `Content-Length`, `chunked` and
//! close-delimited bodies (RFC 9112 §6.3, §7.1), without ever buffering.
//!
//! Owns: [`BodyKind`], the [`BodyDecoder`] state machine, the body-size
//! limit while streaming, and trailer-section validation.
//! Must not: copy payload, allocate per chunk, or look at the clock.
//! Fed by: whatever bytes the reactor has read after a head. Emits:
//! [`Decoded`] — how many input bytes were consumed and which of them are
//! payload, so the caller can forward the raw bytes (H1 → H1 pass-through)
//! or just the payload (re-framing, HTTP/2).
//!
//! ```text
//!  Chunked:
//!   Size ──hex──► Size ──SP/HTAB──► SizeBws ──";"──► Ext ──CR──► SizeLf ──LF──┐
//!     │ ";" ─────────────────────────────────────────►│                       │
//!     └─CR──────────────────────────────────────────► SizeLf                  │
//!   size > 0 ◄───────────────────────────────────────────────────────────────┘
//!     └──► Data ──(size bytes)──► DataCr ──CR──► DataLf ──LF──► Size
//!   size = 0 ──► TrailerStart ──tchar──► TrailerName ──":"──► TrailerValue
//!                  │   ▲                                      │ CR
//!                  │   └──────── LF ◄── TrailerLf ◄───────────┘
//!                  └──CR──► TrailerEndLf ──LF──► Done
//!  Length(n): Length ──n bytes──► Done      CloseDelimited: ──EOF──► Done
//! ```
//!
//! Strictness (request smuggling, RFC 9112 §7.1 and §11.2): the size is
//! 1..=16 hex digits; whitespace after it is only allowed before a `;`
//! extension; every line ends in CRLF (bare LF refused); CRLF must follow
//! chunk data exactly; extensions are bounded ([`MAX_CHUNK_EXT`]) and may not
//! hold CTLs; the trailer section is bounded by the header [`Limits`] and
//! validated like a header section. Errors stick.

use std::ops::Range;

use super::head::is_tchar;
use crate::http::{HttpError, Limits};

/// Longest chunk-extension text (from the first `;` to the CR) accepted on
/// one size line.
pub const MAX_CHUNK_EXT: usize = 4096;

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all.
    None,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the connection closes (responses only).
    CloseDelimited,
}

/// One step of decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of `input` consumed (framing and payload). Bytes past this
    /// belong to a later call, or to the next message once `done`.
    pub consumed: usize,
    /// Payload bytes inside `input[..consumed]`, if any.
    pub data: Option<Range<usize>>,
    /// The body is complete.
    pub done: bool,
}

/// Who sent the bytes, to blame errors on the right party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Client,
    Upstream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length { remaining: u64 },
    CloseDelimited,
    Size { size: u64, digits: u8 },
    SizeBws { size: u64 },
    Ext { size: u64, len: usize },
    SizeLf { size: u64 },
    Data { remaining: u64 },
    DataCr,
    DataLf,
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    TrailerEndLf,
    Done,
}

/// Streaming body decoder. Feed it input with [`BodyDecoder::decode`] until
/// `done`; on EOF call [`BodyDecoder::handle_eof`].
///
/// Contract: `decode` consumes every byte it is given unless it returns
/// payload (at most one range per call, so the caller can forward it) or
/// the body ends. `consumed == 0 && !done` means "give me more input".
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    origin: Origin,
    max_body: Option<u64>,
    limits: Limits,
    total: u64,
    trailer_section: usize,
    trailer_fields: usize,
    trailer_line: usize,
    failed: Option<HttpError>,
}

impl BodyDecoder {
    /// Decoder for a client's request body: payload counted against
    /// `limits.max_body` (413), errors are `Peer*` / `Limit*`.
    pub fn for_request(kind: BodyKind, limits: &Limits) -> Self {
        Self::new(kind, limits, Some(limits.max_body), Origin::Client)
    }

    /// Decoder for a backend's response body: no size limit, every error is
    /// `Upstream*` (502).
    pub fn for_response(kind: BodyKind, limits: &Limits) -> Self {
        Self::new(kind, limits, None, Origin::Upstream)
    }

    fn new(kind: BodyKind, limits: &Limits, max_body: Option<u64>, origin: Origin) -> Self {
        let state = match kind {
            BodyKind::None => State::Done,
            BodyKind::Length(n) => State::Length { remaining: n },
            BodyKind::Chunked => State::Size { size: 0, digits: 0 },
            BodyKind::CloseDelimited => State::CloseDelimited,
        };
        BodyDecoder {
            state,
            origin,
            max_body,
            limits: *limits,
            total: 0,
            trailer_section: 0,
            trailer_fields: 0,
            trailer_line: 0,
            failed: None,
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes decoded so far.
    pub fn payload_len(&self) -> u64 {
        self.total
    }

    /// Decode from `input`; see the type doc for the contract.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, HttpError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.try_decode(input).map_err(|e| self.fail(e))
    }

    /// The connection closed. Completes a close-delimited body; any other
    /// unfinished body is an `incomplete_body` error (RFC 9112 §8).
    pub fn handle_eof(&mut self) -> Result<(), HttpError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.state {
            State::Done => Ok(()),
            State::CloseDelimited => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(self.fail(HttpError::PeerIncompleteBody)),
        }
    }

    fn fail(&mut self, e: HttpError) -> HttpError {
        let e = match self.origin {
            Origin::Client => e,
            Origin::Upstream => e.to_upstream(),
        };
        self.failed = Some(e);
        e
    }

    fn count_payload(&mut self, n: u64) -> Result<(), HttpError> {
        self.total = self.total.saturating_add(n);
        match self.max_body {
            Some(max) if self.total > max => Err(HttpError::LimitBody),
            _ => Ok(()),
        }
    }

    fn try_decode(&mut self, input: &[u8]) -> Result<Decoded, HttpError> {
        let mut i = 0usize;
        loop {
            let avail = input.len().saturating_sub(i);
            match self.state {
                State::Done => {
                    return Ok(Decoded {
                        consumed: i,
                        data: None,
                        done: true,
                    });
                }
                State::Length { remaining } => {
                    if let Some(max) = self.max_body
                        && remaining > max.saturating_sub(self.total)
                    {
                        return Err(HttpError::LimitBody);
                    }
                    if remaining == 0 {
                        self.state = State::Done;
                        continue;
                    }
                    let n = take(remaining, avail);
                    if n == 0 {
                        return Ok(Decoded {
                            consumed: i,
                            data: None,
                            done: false,
                        });
                    }
                    let left = remaining - n as u64;
                    self.total += n as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length { remaining: left }
                    };
                    return Ok(Decoded {
                        consumed: i + n,
                        data: Some(i..i + n),
                        done: left == 0,
                    });
                }
                State::CloseDelimited => {
                    if avail == 0 {
                        return Ok(Decoded {
                            consumed: i,
                            data: None,
                            done: false,
                        });
                    }
                    self.count_payload(avail as u64)?;
                    return Ok(Decoded {
                        consumed: input.len(),
                        data: Some(i..input.len()),
                        done: false,
                    });
                }
                State::Data { remaining } => {
                    let n = take(remaining, avail);
                    if n == 0 {
                        return Ok(Decoded {
                            consumed: i,
                            data: None,
                            done: false,
                        });
                    }
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                    return Ok(Decoded {
                        consumed: i + n,
                        data: Some(i..i + n),
                        done: false,
                    });
                }
                _ => {
                    let Some(&b) = input.get(i) else {
                        return Ok(Decoded {
                            consumed: i,
                            data: None,
                            done: false,
                        });
                    };
                    i += 1;
                    self.framing_byte(b)?;
                }
            }
        }
    }

    /// Advance the chunked framing by one byte (RFC 9112 §7.1).
    fn framing_byte(&mut self, b: u8) -> Result<(), HttpError> {
        self.state = match self.state {
            State::Size { size, digits } => match hex_value(b) {
                Some(v) => {
                    // 16 hex digits fill a u64: more is refused outright.
                    if digits >= 16 {
                        return Err(HttpError::PeerInvalidChunkSize);
                    }
                    State::Size {
                        size: (size << 4) | u64::from(v),
                        digits: digits + 1,
                    }
                }
                None if digits == 0 => return Err(HttpError::PeerInvalidChunkSize),
                None => match b {
                    b'\r' => State::SizeLf { size },
                    b';' => State::Ext { size, len: 1 },
                    // BWS before ";" (RFC 9112 §7.1.1).
                    b' ' | b'\t' => State::SizeBws { size },
                    b'\n' => return Err(HttpError::PeerInvalidChunkFraming),
                    _ => return Err(HttpError::PeerInvalidChunkSize),
                },
            },
            State::SizeBws { size } => match b {
                b' ' | b'\t' => State::SizeBws { size },
                b';' => State::Ext { size, len: 1 },
                _ => return Err(HttpError::PeerInvalidChunkSize),
            },
            State::Ext { size, len } => match b {
                b'\r' => State::SizeLf { size },
                _ if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => {
                    if len >= MAX_CHUNK_EXT {
                        return Err(HttpError::LimitChunkExtension);
                    }
                    State::Ext { size, len: len + 1 }
                }
                // Bare LF, NUL and other CTLs.
                _ => return Err(HttpError::PeerInvalidChunkFraming),
            },
            State::SizeLf { size } => {
                if b != b'\n' {
                    return Err(HttpError::PeerInvalidChunkFraming);
                }
                if size == 0 {
                    State::TrailerStart
                } else {
                    // Refuse an oversized chunk before its data arrives.
                    self.count_payload(size)?;
                    State::Data { remaining: size }
                }
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size { size: 0, digits: 0 },
            State::DataCr | State::DataLf => return Err(HttpError::PeerInvalidChunkFraming),
            State::TrailerStart => {
                self.trailer_byte()?;
                self.trailer_line = 0;
                match b {
                    b'\r' => State::TrailerEndLf,
                    b'\n' => return Err(HttpError::PeerInvalidChunkFraming),
                    b' ' | b'\t' => return Err(HttpError::PeerObsFold),
                    _ if is_tchar(b) => {
                        self.trailer_line = 1;
                        State::TrailerName
                    }
                    _ => return Err(HttpError::PeerInvalidHeaderName),
                }
            }
            State::TrailerName => {
                self.trailer_byte()?;
                self.trailer_line_byte()?;
                match b {
                    b':' => State::TrailerValue,
                    _ if is_tchar(b) => State::TrailerName,
                    _ => return Err(HttpError::PeerInvalidHeaderName),
                }
            }
            State::TrailerValue => {
                self.trailer_byte()?;
                match b {
                    b'\r' => State::TrailerLf,
                    b'\n' => return Err(HttpError::PeerInvalidChunkFraming),
                    _ if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => {
                        self.trailer_line_byte()?;
                        State::TrailerValue
                    }
                    _ => return Err(HttpError::PeerInvalidHeaderValue),
                }
            }
            State::TrailerLf => {
                self.trailer_byte()?;
                if b != b'\n' {
                    // CR not followed by LF: a bare CR in the value.
                    return Err(HttpError::PeerInvalidHeaderValue);
                }
                self.trailer_fields += 1;
                if self.trailer_fields > self.limits.max_headers {
                    return Err(HttpError::LimitTooManyHeaders);
                }
                State::TrailerStart
            }
            State::TrailerEndLf => {
                self.trailer_byte()?;
                if b != b'\n' {
                    return Err(HttpError::PeerInvalidChunkFraming);
                }
                State::Done
            }
            // Payload and terminal states never reach here.
            s @ (State::Length { .. }
            | State::CloseDelimited
            | State::Data { .. }
            | State::Done) => s,
        };
        Ok(())
    }

    fn trailer_byte(&mut self) -> Result<(), HttpError> {
        self.trailer_section += 1;
        if self.trailer_section > self.limits.max_header_section {
            return Err(HttpError::LimitHeaderSection);
        }
        Ok(())
    }

    fn trailer_line_byte(&mut self) -> Result<(), HttpError> {
        self.trailer_line += 1;
        if self.trailer_line > self.limits.max_header_line {
            return Err(HttpError::LimitHeaderLine);
        }
        Ok(())
    }
}

fn take(remaining: u64, avail: usize) -> usize {
    usize::try_from(remaining).map_or(avail, |r| r.min(avail))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
