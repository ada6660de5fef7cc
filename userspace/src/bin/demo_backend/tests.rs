//! Unit tests of the demo backend: a real listener on loopback driven over
//! raw sockets, decoded with the proxy's own HTTP/1.1 codec.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use portier::http::Limits;
use portier::http::h1::{BodyDecoder, BodyKind, ResponseHead, parse_response_head};

use crate::fnv::fnv1a_hex;
use crate::response::PATTERN;
use crate::route::{Route, split_target};
use crate::spawn;
use crate::websocket::{
    CLOSE_PROTOCOL, CLOSE_TOO_BIG, MAX_WS_MESSAGE, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING,
    OP_TEXT, parse_frame, websocket_accept,
};

fn start() -> SocketAddr {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    spawn(any, "t1".to_string()).expect("spawn").0
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Read more; false at EOF.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill(), "EOF before {n} bytes");
        }
        self.buf.drain(..n).collect()
    }

    /// One response: head and decoded payload.
    fn response(&mut self, to_head: bool) -> (ResponseHead, Vec<u8>) {
        let limits = Limits::default();
        let head = loop {
            if let Some((head, n)) =
                parse_response_head(&self.buf, &limits, to_head).expect("valid head")
            {
                self.buf.drain(..n);
                break head;
            }
            assert!(self.fill(), "EOF in head");
        };
        let mut decoder = BodyDecoder::for_response(head.body, &limits);
        let mut body = Vec::new();
        while !decoder.is_done() {
            let step = decoder.decode(&self.buf).expect("valid body");
            if let Some(r) = step.data {
                body.extend_from_slice(&self.buf[r]);
            }
            self.buf.drain(..step.consumed);
            if step.consumed == 0 && !step.done && !self.fill() {
                decoder.handle_eof().expect("complete body");
            }
        }
        (head, body)
    }

    fn at_eof(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).expect("json")
}

fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    assert!(payload.len() < 126);
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

#[test]
fn echoes_request_as_json() {
    let mut c = Client::connect(start());
    c.send(b"POST /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-One: 1\r\nx-two: \xffz\r\nContent-Length: 5\r\n\r\nhello");
    let (head, body) = c.response(false);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-backend"), Some(&b"t1"[..]));
    assert_eq!(head.header("content-type"), Some(&b"application/json"[..]));
    let v = json(&body);
    assert_eq!(v["backend"], "t1");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/a/b");
    assert_eq!(v["target"], "/a/b?x=1");
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(
        v["headers"],
        serde_json::json!([
            ["Host", "h"],
            ["X-One", "1"],
            ["x-two", "\u{fffd}z"],
            ["Content-Length", "5"]
        ])
    );
    assert_eq!(v["body_bytes"], 5);
    assert_eq!(v["body_fnv"], fnv1a_hex(b"hello"));
}

#[test]
fn fnv1a_matches_reference_vectors() {
    assert_eq!(fnv1a_hex(b""), "cbf29ce484222325");
    assert_eq!(fnv1a_hex(b"a"), "af63dc4c8601ec8c");
    assert_eq!(fnv1a_hex(b"foobar"), "85944171f73967e8");
}

#[test]
fn keeps_connection_alive_across_two_requests() {
    let mut c = Client::connect(start());
    c.send(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n");
    let (head, body) = c.response(false);
    assert!(head.keep_alive);
    assert_eq!(json(&body)["path"], "/one");
    c.send(b"GET /two HTTP/1.1\r\nHost: h\r\n\r\n");
    let (_, body) = c.response(false);
    assert_eq!(json(&body)["path"], "/two");
}

#[test]
fn answers_pipelined_requests_in_order() {
    let mut c = Client::connect(start());
    c.send(
        b"GET /slow/50 HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /status/404 HTTP/1.1\r\nHost: h\r\n\r\n\
          HEAD /bytes/10 HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    let (_, body) = c.response(false);
    assert_eq!(json(&body)["path"], "/slow/50");
    let (head, body) = c.response(false);
    assert_eq!(head.status, 404);
    assert_eq!(body, b"404 Not Found\n");
    let (head, body) = c.response(true);
    assert_eq!(head.header("content-length"), Some(&b"10"[..]));
    assert!(body.is_empty());
    let (head, body) = c.response(false);
    assert!(!head.keep_alive);
    assert_eq!(json(&body)["path"], "/last");
    assert!(c.at_eof());
}

#[test]
fn counts_chunked_request_body_sent_in_pieces() {
    let mut c = Client::connect(start());
    c.send(b"PUT /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    thread::sleep(Duration::from_millis(20));
    c.send(b"lo\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n");
    let (_, body) = c.response(false);
    let v = json(&body);
    assert_eq!(v["body_bytes"], 11);
    assert_eq!(v["body_fnv"], fnv1a_hex(b"hello world"));
}

#[test]
fn sends_100_continue_before_reading_expected_body() {
    let mut c = Client::connect(start());
    c.send(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(c.take(25), b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"abc");
    let (_, body) = c.response(false);
    assert_eq!(json(&body)["body_bytes"], 3);
}

#[test]
fn bytes_sends_exact_length_of_the_pattern() {
    let mut c = Client::connect(start());
    c.send(b"GET /bytes/100003 HTTP/1.1\r\nHost: h\r\n\r\n");
    let (head, body) = c.response(false);
    assert_eq!(head.header("content-length"), Some(&b"100003"[..]));
    assert_eq!(body.len(), 100_003);
    assert!(body.iter().enumerate().all(|(i, &b)| b == PATTERN[i % 26]));
}

#[test]
fn bytes_chunked_sends_16k_chunks() {
    let mut c = Client::connect(start());
    c.send(b"GET /bytes/40000?chunked=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    let head = c.take(200);
    let text = String::from_utf8_lossy(&head);
    assert!(text.contains("Transfer-Encoding: chunked\r\n\r\n4000\r\nabc"));
    c.buf.splice(0..0, head);
    let (_, body) = c.response(false);
    assert_eq!(body.len(), 40_000);
    assert!(body.iter().enumerate().all(|(i, &b)| b == PATTERN[i % 26]));
}

#[test]
fn status_endpoint_answers_that_code() {
    let mut c = Client::connect(start());
    c.send(b"GET /status/503 HTTP/1.1\r\nHost: h\r\n\r\nGET /status/204 HTTP/1.1\r\nHost: h\r\n\r\nGET /status/99 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response(false).0.status, 503);
    let (head, body) = c.response(false);
    assert_eq!((head.status, body.len()), (204, 0));
    assert_eq!(c.response(false).0.status, 400);
}

#[test]
fn slow_waits_before_answering() {
    let mut c = Client::connect(start());
    let t = std::time::Instant::now();
    c.send(b"GET /slow/150 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response(false).0.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[test]
fn sse_streams_numbered_events() {
    let mut c = Client::connect(start());
    c.send(b"GET /sse?events=3&interval_ms=10 HTTP/1.1\r\nHost: h\r\n\r\n");
    let (head, body) = c.response(false);
    assert_eq!(head.header("content-type"), Some(&b"text/event-stream"[..]));
    assert_eq!(head.body, BodyKind::Chunked);
    assert_eq!(body, b"data: 0\n\ndata: 1\n\ndata: 2\n\n");
}

#[test]
fn close_endpoint_closes_after_answering() {
    let mut c = Client::connect(start());
    c.send(b"GET /close HTTP/1.1\r\nHost: h\r\n\r\n");
    let (head, _) = c.response(false);
    assert_eq!(head.header("connection"), Some(&b"close"[..]));
    assert!(c.at_eof());
}

#[test]
fn malformed_request_gets_error_and_close() {
    let mut c = Client::connect(start());
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
    let (head, _) = c.response(false);
    assert_eq!(head.status, 400);
    assert_eq!(
        head.header("x-demo-error"),
        Some(&b"content_length_with_transfer_encoding"[..])
    );
    assert_eq!(head.header("x-backend"), Some(&b"t1"[..]));
    assert!(c.at_eof());
}

#[test]
fn websocket_accept_matches_rfc_example() {
    // RFC 6455 §1.3.
    assert_eq!(
        websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn websocket_handshake_then_echoes_masked_text_and_pings() {
    let mut c = Client::connect(start());
    let mut req = b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    // Frames sent together with the handshake are kept, not lost.
    req.extend(masked_frame(OP_TEXT, b"hello"));
    c.send(&req);
    let (head, _) = c.response(false);
    assert_eq!(head.status, 101);
    assert_eq!(
        head.header("sec-websocket-accept"),
        Some(&b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="[..])
    );
    assert_eq!(c.take(7), b"\x81\x05hello");
    c.send(&masked_frame(OP_PING, b"p"));
    assert_eq!(c.take(3), b"\x8a\x01p");
    c.send(&masked_frame(OP_CLOSE, &1000u16.to_be_bytes()));
    assert_eq!(c.take(4), b"\x88\x02\x03\xe8");
    assert!(c.at_eof());
}

#[test]
fn websocket_reassembles_fragments_and_refuses_unmasked_frames() {
    let mut c = Client::connect(start());
    c.send(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
        Sec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5aw==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(c.response(false).0.status, 101);
    let mut first = masked_frame(OP_BINARY, b"ab");
    first[0] &= 0x7F; // not final
    c.send(&first);
    c.send(&masked_frame(OP_PING, b""));
    c.send(&masked_frame(OP_CONTINUATION, b"cd"));
    assert_eq!(c.take(2), b"\x8a\x00");
    assert_eq!(c.take(6), b"\x82\x04abcd");
    c.send(b"\x81\x01x");
    assert_eq!(c.take(4), b"\x88\x02\x03\xea"); // 1002
    assert!(c.at_eof());
}

#[test]
fn websocket_refuses_wrong_version_with_426() {
    let mut c = Client::connect(start());
    c.send(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
        Sec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5aw==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    );
    let (head, _) = c.response(false);
    assert_eq!(head.status, 426);
    assert_eq!(head.header("sec-websocket-version"), Some(&b"13"[..]));
}

#[test]
fn parse_frame_refuses_oversized_frame_before_its_payload() {
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(MAX_WS_MESSAGE as u64 + 1).to_be_bytes());
    assert_eq!(parse_frame(&frame), Err(CLOSE_TOO_BIG));
    assert_eq!(
        parse_frame(&[0x89, 0x80 | 126, 0, 200]),
        Err(CLOSE_PROTOCOL)
    );
    assert_eq!(parse_frame(&[0x81, 0x85, 1, 2]), Ok(None));
}

#[test]
fn route_parses_targets_and_parameters() {
    assert_eq!(
        Route::parse("http://x:8/bytes/7?chunked=1"),
        Route::Bytes {
            n: 7,
            chunked: true
        }
    );
    assert_eq!(
        Route::parse("/sse"),
        Route::Sse {
            events: 5,
            interval_ms: 100,
            content_type: "text/event-stream"
        }
    );
    assert!(matches!(Route::parse("/bytes/x"), Route::BadRequest(_)));
    assert_eq!(Route::parse("/anything?ws"), Route::Echo);
    assert_eq!(split_target("*"), ("*", ""));
}

#[test]
fn http10_client_gets_close_delimited_stream() {
    let mut c = Client::connect(start());
    c.send(b"GET /bytes/30?chunked=1 HTTP/1.0\r\n\r\n");
    let (head, body) = c.response(false);
    assert_eq!(head.body, BodyKind::CloseDelimited);
    assert_eq!(body.len(), 30);
}
