//! HTTP/2 client connections in the reactor: the sans-IO `http::h2`
//! connection fed from the (TLS) socket, each stream an exchange.
//! (Wired in with the HTTP/2 server codec; until then no client negotiates h2
//! and these are never reached with a stream id other than 0.)

use mio::Token;

use super::proxy::Reactor;
use crate::http::h1::ResponseHead;

impl Reactor {
    pub(super) fn h2_release_request_capacity(&mut self, _xid: usize, _bytes: usize) {}

    pub(super) fn h2_stream_finished(&mut self, _client: Token, _sid: u32) {}

    pub(super) fn h2_fail_stream(
        &mut self,
        client: Token,
        _sid: u32,
        _status: u16,
        _code: &str,
        _id: &str,
        _started: bool,
    ) {
        self.close_client(client);
    }

    pub(super) fn h2_reset_stream(&mut self, client: Token, _sid: u32) {
        self.close_client(client);
    }

    pub(super) fn h2_stream_room(&self, _client: Token, _sid: u32) -> bool {
        false
    }

    pub(super) fn h2_response_head(&mut self, xid: usize, _up: Token, _head: ResponseHead) -> bool {
        self.drop_exchange(xid);
        false
    }

    pub(super) fn h2_response_body(&mut self, xid: usize, _up: Token) {
        self.drop_exchange(xid);
    }
}
