//! HTTP/1.1 (RFC 9112) codec, sans-IO.
//!
//! Owns: request/response head parsing (`request.rs`, `response.rs`, on
//! shared line rules in `head.rs`), streaming body decoding (`body.rs`) and
//! encoding (`encode.rs`).
//! Must not: read or write sockets, keep connection state, or know about
//! routing; the connection machines (`server.rs` / `client.rs`, later) drive
//! these functions. Fed by: byte slices. Emits: values, byte ranges, bytes.

pub mod body;
pub mod encode;
pub mod head;
pub mod request;
pub mod response;

#[cfg(test)]
mod robustness;

pub use body::{BodyDecoder, BodyKind, Decoded, MAX_CHUNK_EXT};
pub use encode::{
    encode_chunk, encode_last_chunk, encode_request_head, encode_response_head, error_response,
    reason_phrase,
};
pub use head::{Headers, find_header};
pub use request::{Host, RequestHead, parse_host, parse_request_head};
pub use response::{ResponseHead, parse_response_head};
