//! The proxy's side of a stream: response headers, body, trailers, error
//! responses and resets.
//!
//! Owns: HPACK-encoding response header blocks (split into CONTINUATION
//! at the client's max frame size), HTTP/2 field rules for responses
//! (§8.2.2: connection-specific fields dropped), DATA within the send
//! windows (taking less marks the stream blocked), the send-side stream
//! state, and the free WINDOW_UPDATEs our DATA earns the client. Must not:
//! be called by the frame handlers, or count anything as abuse.
//! Fed by: the proxy. Emits: HEADERS, CONTINUATION, DATA and RST_STREAM
//! frames; [`H2Error`] on misuse.

use super::{ConnState, ServerConn};
use crate::http::h1::head::is_token;
use crate::http::h2::frame;
use crate::http::h2::stream::SendState;
use crate::http::h2::{ErrorCode, H2Error, StreamId};

impl ServerConn {
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
        let digits = [
            b'0' + (status / 100) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
        ];
        let mut block = std::mem::take(&mut self.block_out);
        block.clear();
        self.encoder.begin(&mut block);
        self.encoder.field(b":status", &digits, &mut block);
        for &(name, value) in headers.iter().filter(fit_for_response) {
            self.encoder.field(name.as_bytes(), value, &mut block);
        }
        self.encoder.end();
        frame::write_header_block(
            &mut self.out,
            stream,
            &block,
            end_stream,
            self.peer_max_frame as usize,
        );
        self.keep_block_out(block);
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
            self.set_blocked(stream, !data.is_empty());
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
            if all && end_stream {
                s.send = SendState::Closed;
            }
        }
        self.set_blocked(stream, !all);
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
        let mut block = std::mem::take(&mut self.block_out);
        block.clear();
        self.encoder.begin(&mut block);
        for &(name, value) in headers.iter().filter(fit_for_response) {
            self.encoder.field(name.as_bytes(), value, &mut block);
        }
        self.encoder.end();
        frame::write_header_block(
            &mut self.out,
            stream,
            &block,
            true,
            self.peer_max_frame as usize,
        );
        self.keep_block_out(block);
        if let Some(s) = self.streams.get_mut(&stream) {
            s.send = SendState::Closed;
        }
        self.maybe_finish(stream);
        Ok(())
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
    /// A complete response Portier writes itself (see `http::answer`):
    /// HEADERS, then `body` as DATA when the stream's window takes it all
    /// at once; otherwise the head alone ends the stream (no partial body).
    pub fn respond(
        &mut self,
        stream: StreamId,
        status: u16,
        fields: &[(&str, &[u8])],
        body: &[u8],
    ) -> Result<(), H2Error> {
        let fits = !body.is_empty()
            && self
                .streams
                .get(&stream)
                .is_some_and(|s| s.send_window.min(self.conn_send_window) >= body.len() as i64);
        if !fits {
            return self.send_headers(stream, status, fields, true);
        }
        let len = body.len().to_string();
        let mut headers = fields.to_vec();
        headers.push(("content-length", len.as_bytes()));
        self.send_headers(stream, status, &headers, false)?;
        if self.send_data(stream, body, true) < body.len() {
            self.reset(stream, ErrorCode::INTERNAL_ERROR);
        }
        Ok(())
    }
}

/// A field the response may carry over HTTP/2: a token name, not
/// connection-specific (§8.2.2; `te` only as `trailers`), no CR, LF or NUL
/// in the value. Checked case-insensitively; the encoder lowercases.
fn fit_for_response(&(name, value): &&(&str, &[u8])) -> bool {
    is_token(name.as_bytes())
        && !crate::http::CONNECTION_SPECIFIC
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c))
        && (!name.eq_ignore_ascii_case("te") || value.eq_ignore_ascii_case(b"trailers"))
        && !value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
}

impl ServerConn {
    /// Keep the header block buffer for the next response, unless a large
    /// block grew it (then it is given back).
    fn keep_block_out(&mut self, block: Vec<u8>) {
        if block.capacity() <= 4096 {
            self.block_out = block;
        }
    }
}
