//! The body pipeline, one for both directions and both client protocols:
//! decode (validate the HTTP/1.1 framing) → gzip (responses, when chosen)
//! → frame for the receiver. Framing is the only thing HTTP/1.1 and
//! HTTP/2 do differently: raw pass-through or chunks for HTTP/1.1, bare
//! payload (later cut into DATA frames) for HTTP/2.
//!
//! Must not: touch sockets or buffers it was not given; hold a body whole
//! (it stops at `limit` and says how much input it took).

use crate::compress::Gzip;
use crate::http::HttpError;
use crate::http::h1::{BodyDecoder, encode_chunk, encode_last_chunk};

/// How body bytes are written for the receiver.
pub enum OutMode {
    /// HTTP/1.1 framing as received (sized or chunked) passed through:
    /// requests to backends, and responses that need no change.
    Raw,
    /// Payload only: `chunked` re-frames it (HTTP/1.1), else it is
    /// close-delimited (HTTP/1.0) or DATA (HTTP/2).
    Payload { chunked: bool },
    /// Payload gzipped, then framed as for `Payload`. `None` once finished.
    Gzip {
        gz: Option<Box<Gzip>>,
        chunked: bool,
    },
}

impl OutMode {
    pub fn gzip(level: u32, chunked: bool) -> OutMode {
        OutMode::Gzip {
            gz: Some(Box::new(Gzip::new(level))),
            chunked,
        }
    }
}

/// What one call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pumped {
    /// Input bytes taken (the caller drops them).
    pub consumed: usize,
    /// The body ended; its last framing bytes are in `out`.
    pub done: bool,
}

/// Decode body bytes from `input` and append them to `out` in `mode`,
/// until the input is used, `out` holds `limit` bytes or more, or the body
/// ends. `eof`: the sender closed (ends a close-delimited body, or is an
/// error). A compressed stream is flushed at the end of each call, so a
/// slow body still arrives as it goes.
pub fn pump(
    dec: &mut BodyDecoder,
    mode: &mut OutMode,
    input: &[u8],
    eof: bool,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<Pumped, HttpError> {
    let mut consumed = 0;
    let mut done = false;
    let mut zipped = Vec::new();
    while consumed < input.len() && out.len() < limit {
        let rest = input.get(consumed..).unwrap_or_default();
        let d = dec.decode(rest)?;
        let payload = d.data.clone().and_then(|r| rest.get(r));
        match mode {
            OutMode::Raw => out.extend_from_slice(rest.get(..d.consumed).unwrap_or_default()),
            OutMode::Payload { chunked } => {
                if let Some(p) = payload {
                    frame(p, *chunked, out);
                }
            }
            OutMode::Gzip { gz, chunked } => {
                if let (Some(p), Some(gz)) = (payload, gz.as_mut()) {
                    zipped.clear();
                    gz.push(p, false, &mut zipped);
                    frame(&zipped, *chunked, out);
                }
            }
        }
        consumed += d.consumed;
        if d.done {
            done = true;
            break;
        }
        if d.consumed == 0 {
            break;
        }
    }
    if !done && eof && consumed == input.len() {
        dec.handle_eof()?;
        done = true;
    }
    match mode {
        OutMode::Gzip { gz, chunked } => {
            zipped.clear();
            if done {
                if let Some(gz) = gz.take() {
                    gz.finish(&mut zipped);
                }
                frame(&zipped, *chunked, out);
                if *chunked {
                    encode_last_chunk(out);
                }
            } else if consumed > 0
                && let Some(gz) = gz.as_mut()
            {
                gz.push(&[], true, &mut zipped);
                frame(&zipped, *chunked, out);
            }
        }
        OutMode::Payload { chunked: true } if done => encode_last_chunk(out),
        _ => {}
    }
    Ok(Pumped { consumed, done })
}

/// An HTTP/1.1 chunk, or the bytes as they are.
fn frame(data: &[u8], chunked: bool, out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    if chunked {
        encode_chunk(data, out);
    } else {
        out.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Limits;
    use crate::http::h1::BodyKind;

    fn dec(kind: BodyKind) -> BodyDecoder {
        BodyDecoder::for_response(kind, &Limits::default())
    }

    #[test]
    fn raw_passes_chunked_framing_through_byte_for_byte() {
        let input = b"5\r\nhello\r\n0\r\n\r\nNEXT";
        let mut out = Vec::new();
        let p = pump(
            &mut dec(BodyKind::Chunked),
            &mut OutMode::Raw,
            input,
            false,
            &mut out,
            1 << 20,
        )
        .expect("valid");
        assert!(p.done);
        assert_eq!(p.consumed, input.len() - 4, "the next message is left");
        assert_eq!(out, &input[..p.consumed]);
    }

    #[test]
    fn payload_reframes_as_chunks_for_h1_and_bare_for_h2() {
        let input = b"5\r\nhello\r\n0\r\n\r\n";
        let mut h1 = Vec::new();
        pump(
            &mut dec(BodyKind::Chunked),
            &mut OutMode::Payload { chunked: true },
            input,
            false,
            &mut h1,
            1 << 20,
        )
        .expect("valid");
        assert_eq!(h1, b"5\r\nhello\r\n0\r\n\r\n");
        let mut h2 = Vec::new();
        let p = pump(
            &mut dec(BodyKind::Length(5)),
            &mut OutMode::Payload { chunked: false },
            b"hello",
            false,
            &mut h2,
            1 << 20,
        )
        .expect("valid");
        assert!(p.done);
        assert_eq!(h2, b"hello");
    }

    #[test]
    fn stops_at_the_limit_and_resumes() {
        let body = [b'x'; 100];
        let mut d = dec(BodyKind::Length(100));
        let mut mode = OutMode::Payload { chunked: false };
        let mut out = Vec::new();
        let p = pump(&mut d, &mut mode, &body[..40], false, &mut out, 10).expect("valid");
        assert!(!p.done);
        assert!(out.len() >= 10);
        let rest = &body[p.consumed..];
        let q = pump(&mut d, &mut mode, rest, false, &mut out, 1 << 20).expect("valid");
        assert!(q.done);
        assert_eq!(out.len(), 100);
    }

    #[test]
    fn close_delimited_ends_at_eof_and_a_short_sized_body_is_an_error() {
        let mut out = Vec::new();
        let p = pump(
            &mut dec(BodyKind::CloseDelimited),
            &mut OutMode::Raw,
            b"abc",
            true,
            &mut out,
            1 << 20,
        )
        .expect("valid");
        assert!(p.done);
        let e = pump(
            &mut dec(BodyKind::Length(10)),
            &mut OutMode::Raw,
            b"abc",
            true,
            &mut out,
            1 << 20,
        );
        assert!(e.is_err());
    }

    #[test]
    fn gzip_compresses_and_finishes_with_the_last_chunk() {
        let text = "hello hello hello hello hello hello ".repeat(100);
        let input = format!("{:X}\r\n{text}\r\n0\r\n\r\n", text.len());
        let mut mode = OutMode::gzip(6, true);
        let mut out = Vec::new();
        let p = pump(
            &mut dec(BodyKind::Chunked),
            &mut mode,
            input.as_bytes(),
            false,
            &mut out,
            1 << 20,
        )
        .expect("valid");
        assert!(p.done);
        assert!(out.ends_with(b"0\r\n\r\n"));
        assert!(
            out.len() < text.len() / 4,
            "compressed: {} bytes",
            out.len()
        );
    }
}
