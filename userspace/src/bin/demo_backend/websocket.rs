//! `/ws`: the demo backend's WebSocket echo (RFC 6455).
//!
//! Owns: the opening handshake (§4.2) and its refusals (400, 426 with
//! `Sec-WebSocket-Version: 13`), the client frame parser (§5.2: masking
//! required, no RSV bits, short unfragmented control frames, frames refused
//! before their payload arrives when over [`MAX_WS_MESSAGE`]), reassembly of
//! fragmented messages, ping/pong, UTF-8 checks on text, and the close
//! handshake with its status codes (§7.4.1).
//! Must not: be used for anything but `/ws` on an HTTP/1.1 connection; no
//! extensions, no subprotocols. Fed by: `Conn::respond` (`conn.rs`), with
//! frames that arrived with the handshake kept in the connection's buffer.
//! Emits: unmasked server frames.

use std::io::{self, Write};

use base64::Engine;
use portier::http::h1::{BodyKind, RequestHead};

use crate::conn::{Conn, Next};
use crate::response::Framing;

/// Largest WebSocket message (one frame or a reassembled fragmented one).
pub const MAX_WS_MESSAGE: usize = 1 << 20;
/// RFC 6455 §1.3.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;
/// RFC 6455 §7.4.1 status codes.
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_INVALID_DATA: u16 = 1007;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2):
/// base64(SHA-1(key + GUID)).
pub fn websocket_accept(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

impl Conn<'_> {
    /// The `/ws` handshake (RFC 6455 §4.2), then the echo loop.
    pub fn websocket(&mut self, head: &RequestHead) -> io::Result<Next> {
        let header = |name| head.header(name).and_then(|v| std::str::from_utf8(v).ok());
        let upgrade_ok = head
            .upgrade
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        let key = header("sec-websocket-key").filter(|k| !k.is_empty());
        let refusal = if head.method != "GET" || head.body != BodyKind::None || !upgrade_ok {
            Some((400, "/ws: expected a GET with Upgrade: websocket\n"))
        } else if key.is_none() {
            Some((400, "/ws: missing Sec-WebSocket-Key\n"))
        } else if header("sec-websocket-version") != Some("13") {
            Some((426, "/ws: Sec-WebSocket-Version must be 13\n"))
        } else {
            None
        };
        if let Some((status, text)) = refusal {
            let mut out = Vec::with_capacity(256);
            let framing = Framing::Length(text.len() as u64);
            self.push_head(head, status, "text/plain", framing, true, &mut out);
            if status == 426 {
                // RFC 6455 §4.4: say which version we speak.
                out.truncate(out.len() - 2);
                out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n\r\n");
            }
            out.extend_from_slice(text.as_bytes());
            self.stream.write_all(&out)?;
            return Ok(Next::Close);
        }
        let accept = websocket_accept(key.unwrap_or_default());
        let handshake = format!(
            "HTTP/1.1 101 Switching Protocols\r\nX-Backend: {}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
            self.name
        );
        self.stream.write_all(handshake.as_bytes())?;
        self.websocket_echo()?;
        Ok(Next::Close)
    }

    fn websocket_echo(&mut self) -> io::Result<()> {
        // A fragmented message being reassembled: its opcode and payload.
        let mut message: Option<(u8, Vec<u8>)> = None;
        loop {
            let frame = match self.read_frame()? {
                WsRead::Frame(frame) => frame,
                WsRead::Fail(code) => return self.ws_close(code),
                WsRead::Eof => return Ok(()),
            };
            let (opcode, payload) = match (frame.opcode, message.take()) {
                (OP_CLOSE, _) => {
                    // RFC 6455 §5.5.1: echo the status code, then close.
                    let mut out = Vec::new();
                    match frame.payload.get(..2) {
                        _ if frame.payload.len() == 1 => return self.ws_close(CLOSE_PROTOCOL),
                        Some(code) => encode_frame(OP_CLOSE, code, &mut out),
                        None => encode_frame(OP_CLOSE, &[], &mut out),
                    }
                    self.stream.write_all(&out)?;
                    return Ok(());
                }
                (OP_PING, partial) => {
                    message = partial;
                    let mut out = Vec::new();
                    encode_frame(OP_PONG, &frame.payload, &mut out);
                    self.stream.write_all(&out)?;
                    continue;
                }
                (OP_PONG, partial) => {
                    message = partial;
                    continue;
                }
                (OP_CONTINUATION, None) => return self.ws_close(CLOSE_PROTOCOL),
                (OP_CONTINUATION, Some((opcode, mut payload))) => {
                    if payload.len() + frame.payload.len() > MAX_WS_MESSAGE {
                        return self.ws_close(CLOSE_TOO_BIG);
                    }
                    payload.extend_from_slice(&frame.payload);
                    (opcode, payload)
                }
                (_, Some(_)) => return self.ws_close(CLOSE_PROTOCOL),
                (opcode, None) => (opcode, frame.payload),
            };
            if !frame.fin {
                message = Some((opcode, payload));
                continue;
            }
            if opcode == OP_TEXT && std::str::from_utf8(&payload).is_err() {
                // RFC 6455 §8.1.
                return self.ws_close(CLOSE_INVALID_DATA);
            }
            let mut out = Vec::with_capacity(payload.len() + 10);
            encode_frame(opcode, &payload, &mut out);
            self.stream.write_all(&out)?;
        }
    }

    fn read_frame(&mut self) -> io::Result<WsRead> {
        loop {
            match parse_frame(self.pending()) {
                Ok(Some((frame, n))) => {
                    self.consume(n);
                    return Ok(WsRead::Frame(frame));
                }
                Ok(None) => {
                    if !self.fill()? {
                        return Ok(WsRead::Eof);
                    }
                }
                Err(code) => return Ok(WsRead::Fail(code)),
            }
        }
    }

    fn ws_close(&mut self, code: u16) -> io::Result<()> {
        let mut out = Vec::new();
        encode_frame(OP_CLOSE, &code.to_be_bytes(), &mut out);
        self.stream.write_all(&out)
    }
}

enum WsRead {
    Frame(Frame),
    Fail(u16),
    Eof,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// One client frame.
pub struct Frame {
    fin: bool,
    opcode: u8,
    /// Unmasked payload.
    payload: Vec<u8>,
}

/// Parse one client frame at the start of `buf` (RFC 6455 §5.2).
/// `Ok(None)`: incomplete. `Err(code)`: close with that status code. Frames
/// are refused before their payload arrives if too large.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, u16> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    if b0 & 0x70 != 0 {
        // RSV bits without a negotiated extension (§5.2).
        return Err(CLOSE_PROTOCOL);
    }
    let control = opcode & 0x08 != 0;
    match opcode {
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
        _ => return Err(CLOSE_PROTOCOL),
    }
    if b1 & 0x80 == 0 {
        // §5.1: a client MUST mask every frame.
        return Err(CLOSE_PROTOCOL);
    }
    let (len, rest) = match b1 & 0x7F {
        126 => match rest {
            [a, b, rest @ ..] => (u64::from(u16::from_be_bytes([*a, *b])), rest),
            _ => return Ok(None),
        },
        127 => match rest.split_first_chunk::<8>() {
            Some((len, rest)) => (u64::from_be_bytes(*len), rest),
            None => return Ok(None),
        },
        len => (u64::from(len), rest),
    };
    if control && (!fin || len > 125) {
        // §5.5: control frames are short and never fragmented.
        return Err(CLOSE_PROTOCOL);
    }
    let len = match usize::try_from(len) {
        Ok(len) if len <= MAX_WS_MESSAGE => len,
        _ => return Err(CLOSE_TOO_BIG),
    };
    let Some((mask, rest)) = rest.split_first_chunk::<4>() else {
        return Ok(None);
    };
    let Some(masked) = rest.get(..len) else {
        return Ok(None);
    };
    let payload = masked
        .iter()
        .zip(mask.iter().cycle())
        .map(|(b, m)| b ^ m)
        .collect();
    let used = buf.len() - rest.len() + len;
    Ok(Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        used,
    )))
}

/// Append an unmasked, final server frame (RFC 6455 §5.2).
fn encode_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => out.push(len as u8),
        len @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}
