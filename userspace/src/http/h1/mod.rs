//! HTTP/1.1 (RFC 9112) codec, sans-IO.
//!
//! Owns: request/response head parsing (`request.rs`, `response.rs`, on
//! shared line rules in `head.rs`), streaming body decoding (`body.rs`) and
//! encoding (`encode.rs`).
//! The connection machines — `server.rs` (a client's connection to Portier)
//! and `client.rs` (Portier's connection to a backend) — keep the
//! connection state these functions need, sans-IO.
//! Must not: read or write sockets or know about routing. Fed by: byte
//! slices and `now`. Emits: values, byte ranges, bytes, machine events.

pub mod body;
pub mod client;
pub mod encode;
pub mod head;
pub mod request;
pub mod response;
pub mod server;

#[cfg(test)]
mod robustness;

pub use body::{BodyDecoder, BodyKind, Decoded, MAX_CHUNK_EXT};
pub use encode::{
    encode_chunk, encode_last_chunk, encode_request_head, encode_response_head, error_response,
    reason_phrase,
};
pub use head::Headers;
pub use request::{Host, RequestHead, check_host, host_of, parse_host, parse_request_head};
pub use response::{ResponseHead, parse_response_head};
