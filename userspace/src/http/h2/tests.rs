//! `ServerConn` driven by an in-memory client: frames built by hand, the
//! server's output parsed back and asserted. One test per RFC rule and per
//! attack, plus a no-panic property test on pseudo-random input.

use std::time::{Duration, Instant};

use super::frame::{self, flag, kind, setting};
use super::hpack;
use super::*;
use crate::http::{HttpError, Limits};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn code(&self) -> u32 {
        let at = if self.kind == kind::GOAWAY { 4 } else { 0 };
        frame::be_u32(&self.payload, at).unwrap_or(u32::MAX)
    }
}

fn parse_frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut v = Vec::new();
    while let Some(h) = frame::FrameHeader::parse(bytes) {
        let end = frame::HEADER_LEN + h.len as usize;
        v.push(Frame {
            kind: h.kind,
            flags: h.flags,
            stream: h.stream.0,
            payload: bytes[frame::HEADER_LEN..end].to_vec(),
        });
        bytes = &bytes[end..];
    }
    assert!(bytes.is_empty(), "trailing partial frame in output");
    v
}

fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::write_header(&mut out, payload.len(), kind, flags, StreamId(stream));
    out.extend_from_slice(payload);
    out
}

fn u32s(vals: &[u32]) -> Vec<u8> {
    vals.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn settings_payload(params: &[(u16, u32)]) -> Vec<u8> {
    params
        .iter()
        .flat_map(|(id, v)| {
            let mut b = id.to_be_bytes().to_vec();
            b.extend_from_slice(&v.to_be_bytes());
            b
        })
        .collect()
}

/// Literals without indexing (Huffman when shorter): leaves the server's
/// dynamic table alone.
fn lit_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in fields {
        hpack::encode_int(&mut b, 0, 4, 0);
        hpack::encode_str(&mut b, n.as_bytes());
        hpack::encode_str(&mut b, v.as_bytes());
    }
    b
}

/// The client side of a connection under test.
struct Client {
    conn: ServerConn,
    now: Instant,
    dec: hpack::Decoder,
}

const GET: [(&str, &str); 4] = [
    (":method", "GET"),
    (":scheme", "https"),
    (":authority", "example.com"),
    (":path", "/"),
];

impl Client {
    fn new() -> Client {
        Client::with(H2Settings::default(), Limits::default())
    }

    /// Handshake done: preface + SETTINGS sent, server SETTINGS ACKed,
    /// output and events drained.
    fn with(settings: H2Settings, limits: Limits) -> Client {
        Client::with_client_settings(settings, limits, &[])
    }

    fn with_client_settings(settings: H2Settings, limits: Limits, client: &[(u16, u32)]) -> Client {
        let mut c = Client {
            conn: ServerConn::new(settings, limits),
            now: Instant::now(),
            dec: hpack::Decoder::new(4096),
        };
        let mut hello = frame::PREFACE.to_vec();
        hello.extend(raw(kind::SETTINGS, 0, 0, &settings_payload(client)));
        hello.extend(raw(kind::SETTINGS, flag::ACK, 0, &[]));
        c.send(&hello);
        let out = c.output();
        assert!(
            out.iter()
                .any(|f| f.kind == kind::SETTINGS && f.flags == flag::ACK)
        );
        assert!(c.events().is_empty());
        c
    }

    fn send(&mut self, bytes: &[u8]) {
        let n = self.conn.handle_input(bytes, self.now);
        assert_eq!(n, bytes.len(), "input not fully consumed");
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.send(&raw(kind, flags, stream, payload));
    }

    fn output(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        self.conn.poll_output(&mut out);
        parse_frames(&out)
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }

    fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        lit_block(fields)
    }

    fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end_stream: bool) {
        let block = self.block(fields);
        let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
        self.frame(kind::HEADERS, flags, stream, &block);
    }

    fn get(&mut self, stream: u32) {
        self.headers(stream, &GET, true);
    }

    fn post(&mut self, stream: u32, extra: &[(&str, &str)]) {
        let mut f = GET.to_vec();
        f[0] = (":method", "POST");
        f.extend_from_slice(extra);
        self.headers(stream, &f, false);
    }

    fn data(&mut self, stream: u32, data: &[u8], end_stream: bool) {
        let flags = if end_stream { flag::END_STREAM } else { 0 };
        self.frame(kind::DATA, flags, stream, data);
    }

    fn decode(&mut self, payload: &[u8]) -> Vec<(String, String)> {
        let mut v = Vec::new();
        self.dec
            .decode(payload, |n, val| {
                v.push((
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(val).into_owned(),
                ))
            })
            .unwrap();
        v
    }

    /// The GOAWAY code sent by the server, asserting a ConnectionError.
    fn goaway_code(&mut self) -> ErrorCode {
        let out = self.output();
        let g = out
            .iter()
            .find(|f| f.kind == kind::GOAWAY)
            .expect("no GOAWAY sent");
        let code = ErrorCode(g.code());
        let events = self.events();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::ConnectionError { error, .. } if *error == code)),
            "{events:?}"
        );
        assert!(self.conn.is_closed());
        code
    }

    fn rst_codes(&mut self) -> Vec<(u32, ErrorCode)> {
        self.output()
            .iter()
            .filter(|f| f.kind == kind::RST_STREAM)
            .map(|f| (f.stream, ErrorCode(f.code())))
            .collect()
    }
}

fn request_of(events: &[Event]) -> &H2Request {
    events
        .iter()
        .find_map(|e| match e {
            Event::Request { head, .. } => Some(head),
            _ => None,
        })
        .expect("no Request event")
}

// ----- connection setup ---------------------------------------------------

#[test]
fn first_output_is_settings_then_connection_window_update() {
    let mut conn = ServerConn::new(H2Settings::default(), Limits::default());
    assert!(conn.wants_write());
    let mut out = Vec::new();
    conn.poll_output(&mut out);
    let f = parse_frames(&out);
    assert_eq!(f[0].kind, kind::SETTINGS);
    let p = &f[0].payload;
    let get = |id: u16| {
        p.chunks(6)
            .find(|c| u16::from_be_bytes([c[0], c[1]]) == id)
            .map(|c| u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
    };
    assert_eq!(get(setting::MAX_CONCURRENT_STREAMS), Some(100));
    assert_eq!(get(setting::INITIAL_WINDOW_SIZE), Some(1 << 20));
    assert_eq!(get(setting::MAX_HEADER_LIST_SIZE), Some(32768));
    assert_eq!(get(setting::ENABLE_PUSH), Some(0));
    assert_eq!(get(setting::HEADER_TABLE_SIZE), Some(4096));
    assert_eq!(f[1].kind, kind::WINDOW_UPDATE);
    assert_eq!(f[1].stream, 0);
    assert_eq!(f[1].code(), (4 << 20) - 65535);
    assert!(!conn.wants_write());
}

#[test]
fn settings_open_the_connection_even_if_credit_is_released_first() {
    // The proxy may forward request DATA (and release its credit) before it
    // takes the first output: SETTINGS must still come first (§3.4).
    let mut conn = ServerConn::new(H2Settings::default(), Limits::default());
    let now = Instant::now();
    let mut input = frame::PREFACE.to_vec();
    input.extend(raw(kind::SETTINGS, 0, 0, &[]));
    let head = lit_block(&[
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "a.test"),
        (":path", "/"),
    ]);
    input.extend(raw(kind::HEADERS, flag::END_HEADERS, 1, &head));
    input.extend(raw(kind::DATA, 0, 1, &[7u8; 1000]));
    assert_eq!(conn.handle_input(&input, now), input.len());
    while conn.poll_event().is_some() {}
    conn.release_capacity(StreamId(1), 1000);
    let mut out = Vec::new();
    conn.poll_output(&mut out);
    let frames = parse_frames(&out);
    assert_eq!(
        frames.first().map(|f| (f.kind, f.flags)),
        Some((kind::SETTINGS, 0))
    );
    assert!(
        frames
            .iter()
            .any(|f| f.kind == kind::WINDOW_UPDATE && f.stream == 1)
    );
}

#[test]
fn preface_may_arrive_in_pieces() {
    let mut conn = ServerConn::new(H2Settings::default(), Limits::default());
    let now = Instant::now();
    assert_eq!(conn.handle_input(&frame::PREFACE[..5], now), 5);
    assert_eq!(conn.handle_input(&frame::PREFACE[5..], now), 19);
    // A partial frame is left to the caller.
    let s = raw(kind::SETTINGS, 0, 0, &[]);
    assert_eq!(conn.handle_input(&s[..4], now), 0);
    assert_eq!(conn.handle_input(&s, now), 9);
    assert!(conn.poll_event().is_none());
}

#[test]
fn bad_preface_is_protocol_error() {
    let mut conn = ServerConn::new(H2Settings::default(), Limits::default());
    let now = Instant::now();
    assert_eq!(conn.handle_input(b"GET / HTTP/1.1\r\n", now), 16);
    assert!(conn.is_closed());
    assert_eq!(conn.error(), Some(ErrorCode::PROTOCOL_ERROR));
    assert!(matches!(
        conn.poll_event(),
        Some(Event::ConnectionError {
            error: ErrorCode::PROTOCOL_ERROR,
            ..
        })
    ));
}

#[test]
fn first_frame_must_be_settings() {
    let mut conn = ServerConn::new(H2Settings::default(), Limits::default());
    let mut b = frame::PREFACE.to_vec();
    b.extend(raw(kind::PING, 0, 0, &[0; 8]));
    conn.handle_input(&b, Instant::now());
    assert_eq!(conn.error(), Some(ErrorCode::PROTOCOL_ERROR));
}

#[test]
fn ping_is_answered_with_same_payload() {
    let mut c = Client::new();
    c.frame(kind::PING, 0, 0, b"12345678");
    let out = c.output();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, kind::PING);
    assert_eq!(out[0].flags, flag::ACK);
    assert_eq!(out[0].payload, b"12345678");
    // A PING ACK is not answered.
    c.frame(kind::PING, flag::ACK, 0, b"12345678");
    assert!(c.output().is_empty());
}

#[test]
fn settings_and_ping_errors() {
    let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
        (
            raw(
                kind::SETTINGS,
                0,
                0,
                &settings_payload(&[(setting::ENABLE_PUSH, 2)]),
            ),
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            raw(
                kind::SETTINGS,
                0,
                0,
                &settings_payload(&[(setting::INITIAL_WINDOW_SIZE, 1 << 31)]),
            ),
            ErrorCode::FLOW_CONTROL_ERROR,
        ),
        (
            raw(
                kind::SETTINGS,
                0,
                0,
                &settings_payload(&[(setting::MAX_FRAME_SIZE, 100)]),
            ),
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            raw(
                kind::SETTINGS,
                0,
                0,
                &settings_payload(&[(setting::MAX_FRAME_SIZE, 1 << 24)]),
            ),
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            raw(kind::SETTINGS, 0, 0, &[0; 5]),
            ErrorCode::FRAME_SIZE_ERROR,
        ),
        (
            raw(kind::SETTINGS, flag::ACK, 0, &[0; 6]),
            ErrorCode::FRAME_SIZE_ERROR,
        ),
        (raw(kind::SETTINGS, 0, 1, &[]), ErrorCode::PROTOCOL_ERROR),
        (raw(kind::PING, 0, 0, &[0; 7]), ErrorCode::FRAME_SIZE_ERROR),
        (raw(kind::PING, 0, 1, &[0; 8]), ErrorCode::PROTOCOL_ERROR),
        (
            raw(kind::GOAWAY, 0, 0, &[0; 7]),
            ErrorCode::FRAME_SIZE_ERROR,
        ),
        (
            raw(kind::PUSH_PROMISE, flag::END_HEADERS, 1, &[0; 4]),
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            raw(kind::WINDOW_UPDATE, 0, 0, &[0; 3]),
            ErrorCode::FRAME_SIZE_ERROR,
        ),
        (
            raw(kind::WINDOW_UPDATE, 0, 0, &u32s(&[0])),
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            raw(kind::RST_STREAM, 0, 0, &u32s(&[0])),
            ErrorCode::PROTOCOL_ERROR,
        ),
        (raw(kind::DATA, 0, 0, b"x"), ErrorCode::PROTOCOL_ERROR),
        (
            raw(kind::HEADERS, flag::END_HEADERS, 0, &[0x82]),
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            raw(kind::PRIORITY, 0, 0, &[0; 5]),
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            raw(kind::CONTINUATION, flag::END_HEADERS, 1, &[0x82]),
            ErrorCode::PROTOCOL_ERROR,
        ),
    ];
    for (i, (bytes, code)) in cases.into_iter().enumerate() {
        let mut c = Client::new();
        c.send(&bytes);
        assert_eq!(c.goaway_code(), code, "case {i}");
    }
}

#[test]
fn unknown_frame_types_are_ignored() {
    let mut c = Client::new();
    c.frame(0x42, 0xff, 0, b"whatever");
    c.frame(0x42, 0, 3, b"whatever");
    assert!(c.output().is_empty());
    assert!(c.events().is_empty());
    c.get(1);
    assert_eq!(c.events().len(), 1);
}

#[test]
fn frame_over_max_frame_size_is_frame_size_error() {
    let mut c = Client::new();
    let mut h = Vec::new();
    frame::write_header(&mut h, 16_385, kind::DATA, 0, StreamId(1));
    // Refused from the header alone: no need to buffer the payload.
    c.send(&h);
    assert_eq!(c.goaway_code(), ErrorCode::FRAME_SIZE_ERROR);
}

#[test]
fn input_after_connection_error_is_discarded() {
    let mut c = Client::new();
    c.frame(kind::DATA, 0, 0, b"x");
    c.get(1);
    assert_eq!(c.goaway_code(), ErrorCode::PROTOCOL_ERROR);
    assert!(c.events().is_empty());
    assert_eq!(
        c.conn.send_headers(StreamId(1), 200, &[], true),
        Err(H2Error::ConnectionClosed)
    );
}

// ----- requests and responses ---------------------------------------------

#[test]
fn get_without_body_round_trip() {
    let mut c = Client::new();
    c.headers(
        1,
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "example.com"),
            (":path", "/index.html?q=1"),
            ("user-agent", "test"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
        ],
        true,
    );
    let ev = c.events();
    let Event::Request {
        stream,
        head,
        end_stream,
    } = &ev[0]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(*stream, StreamId(1));
    assert!(*end_stream);
    assert_eq!(head.method, "GET");
    assert_eq!(head.path, "/index.html?q=1");
    assert_eq!(head.authority, "example.com");
    assert_eq!(head.header("user-agent"), Some(&b"test"[..]));
    assert_eq!(head.header("cookie"), Some(&b"a=1; b=2"[..]));
    assert_eq!(c.conn.active_streams(), 1);

    c.conn
        .send_headers(
            StreamId(1),
            200,
            &[
                ("Content-Type", b"text/plain"),
                ("Connection", b"keep-alive"),
                ("Transfer-Encoding", b"chunked"),
                ("Keep-Alive", b"5"),
                ("X-Custom", b"v"),
            ],
            false,
        )
        .unwrap();
    assert_eq!(c.conn.send_data(StreamId(1), b"hello", true), 5);
    let out = c.output();
    assert_eq!(out[0].kind, kind::HEADERS);
    assert_eq!(out[0].flags, flag::END_HEADERS);
    let fields = c.decode(&out[0].payload.clone());
    assert_eq!(
        fields,
        vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "text/plain".into()),
            ("x-custom".into(), "v".into()),
        ]
    );
    assert_eq!(out[1].kind, kind::DATA);
    assert_eq!(out[1].flags, flag::END_STREAM);
    assert_eq!(out[1].payload, b"hello");
    assert_eq!(c.conn.active_streams(), 0);
    assert_eq!(c.conn.send_data(StreamId(1), b"more", false), 0);
}

#[test]
fn informational_then_final_response_and_trailers() {
    let mut c = Client::new();
    c.get(1);
    c.events();
    assert_eq!(
        c.conn.send_headers(StreamId(1), 101, &[], false),
        Err(H2Error::InvalidStatus)
    );
    assert_eq!(
        c.conn.send_trailers(StreamId(1), &[]),
        Err(H2Error::HeadersNotSent)
    );
    c.conn
        .send_headers(StreamId(1), 103, &[("link", b"</a>")], false)
        .unwrap();
    c.conn.send_headers(StreamId(1), 200, &[], false).unwrap();
    assert_eq!(
        c.conn.send_headers(StreamId(1), 200, &[], false),
        Err(H2Error::HeadersAlreadySent)
    );
    c.conn.send_data(StreamId(1), b"x", false);
    c.conn
        .send_trailers(StreamId(1), &[("Grpc-Status", b"0")])
        .unwrap();
    let out = c.output();
    let kinds: Vec<_> = out.iter().map(|f| (f.kind, f.flags)).collect();
    assert_eq!(
        kinds,
        vec![
            (kind::HEADERS, flag::END_HEADERS),
            (kind::HEADERS, flag::END_HEADERS),
            (kind::DATA, 0),
            (kind::HEADERS, flag::END_HEADERS | flag::END_STREAM),
        ]
    );
    let t = c.decode(&out[3].payload.clone());
    let _ = c.decode(&out[0].payload.clone());
    assert!(t.contains(&("grpc-status".into(), "0".into())));
    assert_eq!(c.conn.active_streams(), 0);
}

#[test]
fn large_response_headers_use_continuation() {
    let mut c = Client::new();
    c.get(1);
    c.events();
    let big = vec![b'a'; 40_000];
    c.conn
        .send_headers(StreamId(1), 200, &[("x-big", &big)], true)
        .unwrap();
    let out = c.output();
    assert_eq!(out[0].kind, kind::HEADERS);
    assert_eq!(out[0].flags, flag::END_STREAM);
    assert!(out[1..].iter().all(|f| f.kind == kind::CONTINUATION));
    assert_eq!(out.last().unwrap().flags, flag::END_HEADERS);
    assert!(out.iter().all(|f| f.payload.len() <= 16_384));
}

#[test]
fn post_body_is_forwarded_and_credited_only_on_release() {
    let s = H2Settings {
        initial_window_size: 65_535,
        ..H2Settings::default()
    };
    let mut c = Client::with(s, Limits::default());
    c.post(1, &[("content-length", "70000")]);
    let ev = c.events();
    assert_eq!(request_of(&ev).content_length, Some(70000));
    for _ in 0..3 {
        c.data(1, &[7; 16_384], false);
    }
    c.data(1, &[7; 16_383], false);
    let ev = c.events();
    assert_eq!(ev.len(), 4);
    assert!(ev.iter().all(|e| matches!(
        e,
        Event::Data {
            stream: StreamId(1),
            end_stream: false,
            ..
        }
    )));
    // No automatic credit.
    assert!(c.output().is_empty());
    assert!(!c.conn.wants_write());
    // One more octet overflows the stream window: stream error.
    c.data(1, b"x", false);
    assert_eq!(c.rst_codes(), vec![(1, ErrorCode::FLOW_CONTROL_ERROR)]);
    assert!(matches!(
        c.events()[..],
        [Event::StreamReset {
            stream: StreamId(1),
            code: ErrorCode::FLOW_CONTROL_ERROR,
            by_peer: false
        }]
    ));

    // Fresh stream: release_capacity produces WINDOW_UPDATEs.
    c.post(3, &[]);
    c.events();
    c.data(3, &[1; 1000], false);
    c.events();
    c.conn.release_capacity(StreamId(3), 1000);
    assert!(c.conn.wants_write());
    let out = c.output();
    let wu: Vec<_> = out
        .iter()
        .filter(|f| f.kind == kind::WINDOW_UPDATE)
        .map(|f| (f.stream, f.code()))
        .collect();
    // (The discarded octet of stream 1 was credited with its RST.)
    assert_eq!(wu, vec![(0, 1000), (3, 1000)]);
}

#[test]
fn connection_receive_window_overflow_is_flow_control_error() {
    let s = H2Settings {
        connection_window: 65_535,
        initial_window_size: 1 << 20,
        ..H2Settings::default()
    };
    let mut c = Client::with(s, Limits::default());
    c.post(1, &[]);
    for _ in 0..3 {
        c.data(1, &[0; 16_384], false);
    }
    c.data(1, &[0; 16_383], false);
    assert!(!c.conn.is_closed());
    c.data(1, b"z", false);
    assert_eq!(c.goaway_code(), ErrorCode::FLOW_CONTROL_ERROR);
}

#[test]
fn padded_frames_are_accepted_and_padding_credited() {
    let mut c = Client::new();
    let block = c.block(&GET);
    let mut p = vec![3];
    p.extend(&block);
    p.extend([0; 3]);
    c.frame(kind::HEADERS, flag::END_HEADERS | flag::PADDED, 1, &p);
    c.events();
    c.post(3, &[]);
    c.events();
    c.frame(kind::DATA, flag::PADDED, 3, b"\x04abcd\0\0\0\0");
    let ev = c.events();
    assert!(matches!(&ev[..], [Event::Data { data, .. }] if data == b"abcd"));
    let wu: Vec<_> = c
        .output()
        .iter()
        .filter(|f| f.kind == kind::WINDOW_UPDATE)
        .map(|f| (f.stream, f.code()))
        .collect();
    assert_eq!(wu, vec![(0, 5), (3, 5)]);
}

#[test]
fn padding_longer_than_payload_is_protocol_error() {
    let mut c = Client::new();
    c.post(1, &[]);
    c.frame(kind::DATA, flag::PADDED, 1, b"\x05abcd");
    assert_eq!(c.goaway_code(), ErrorCode::PROTOCOL_ERROR);
    let mut c = Client::new();
    let mut p = vec![200];
    p.extend(c.block(&GET));
    c.frame(kind::HEADERS, flag::END_HEADERS | flag::PADDED, 1, &p);
    assert_eq!(c.goaway_code(), ErrorCode::PROTOCOL_ERROR);
}

#[test]
fn headers_with_continuation() {
    let mut c = Client::new();
    let block = c.block(&GET);
    let (a, b) = block.split_at(3);
    c.frame(kind::HEADERS, flag::END_STREAM, 1, a);
    assert!(c.events().is_empty());
    c.frame(kind::CONTINUATION, 0, 1, &[]);
    c.frame(kind::CONTINUATION, flag::END_HEADERS, 1, b);
    assert_eq!(request_of(&c.events()).path, "/");
}

#[test]
fn frame_interleaved_in_header_block_is_protocol_error() {
    for other in [
        raw(kind::PING, 0, 0, &[0; 8]),
        raw(kind::CONTINUATION, flag::END_HEADERS, 3, &[0x82]),
        raw(kind::DATA, 0, 1, b"x"),
        raw(0x42, 0, 0, b""),
    ] {
        let mut c = Client::new();
        let block = c.block(&GET);
        c.frame(kind::HEADERS, 0, 1, &block);
        c.send(&other);
        assert_eq!(c.goaway_code(), ErrorCode::PROTOCOL_ERROR);
    }
}

#[test]
fn priority_is_accepted_and_ignored() {
    let mut c = Client::new();
    c.frame(kind::PRIORITY, 0, 5, &[0, 0, 0, 3, 16]);
    c.frame(kind::PRIORITY, 0, 7, &[0x80, 0, 0, 0, 255]);
    assert!(c.output().is_empty());
    let block = c.block(&GET);
    let mut p = vec![0x80, 0, 0, 0, 200];
    p.extend(&block);
    c.frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM | flag::PRIORITY,
        1,
        &p,
    );
    assert_eq!(request_of(&c.events()).method, "GET");
    // PRIORITY on idle stream 5 did not open it: 3 is still usable.
    c.get(3);
    assert_eq!(c.events().len(), 1);
    // Wrong length on an open stream: stream error.
    c.frame(kind::PRIORITY, 0, 3, &[0; 4]);
    assert_eq!(c.rst_codes(), vec![(3, ErrorCode::FRAME_SIZE_ERROR)]);
    // Wrong length on an idle stream: connection error.
    c.frame(kind::PRIORITY, 0, 99, &[0; 4]);
    assert_eq!(c.goaway_code(), ErrorCode::FRAME_SIZE_ERROR);
}

#[test]
fn stream_depending_on_itself_is_reset() {
    let mut c = Client::new();
    let block = c.block(&GET);
    let mut p = u32s(&[1]);
    p.push(16);
    p.extend(&block);
    c.frame(kind::HEADERS, flag::END_HEADERS | flag::PRIORITY, 1, &p);
    assert!(c.events().is_empty());
    assert_eq!(c.rst_codes(), vec![(1, ErrorCode::PROTOCOL_ERROR)]);
}

#[test]
fn stream_id_rules() {
    // Even id.
    let mut c = Client::new();
    c.get(2);
    assert_eq!(c.goaway_code(), ErrorCode::PROTOCOL_ERROR);
    // Decreasing id.
    let mut c = Client::new();
    c.get(5);
    c.get(3);
    assert_eq!(c.goaway_code(), ErrorCode::PROTOCOL_ERROR);
    // Frames on idle streams.
    for f in [
        raw(kind::DATA, 0, 1, b"x"),
        raw(kind::RST_STREAM, 0, 1, &u32s(&[8])),
        raw(kind::WINDOW_UPDATE, 0, 1, &u32s(&[1])),
    ] {
        let mut c = Client::new();
        c.send(&f);
        assert_eq!(c.goaway_code(), ErrorCode::PROTOCOL_ERROR);
    }
}

#[test]
fn frames_on_half_closed_and_closed_streams() {
    let mut c = Client::new();
    c.get(1);
    c.events();
    // Half-closed (remote): DATA is a stream error STREAM_CLOSED.
    c.data(1, b"late", false);
    assert_eq!(c.rst_codes(), vec![(1, ErrorCode::STREAM_CLOSED)]);
    assert!(matches!(
        c.events()[..],
        [Event::StreamReset {
            stream: StreamId(1),
            code: ErrorCode::STREAM_CLOSED,
            by_peer: false
        }]
    ));
    // Closed after a normal exchange: WINDOW_UPDATE / RST / PRIORITY are
    // tolerated, DATA is STREAM_CLOSED.
    c.get(3);
    c.events();
    c.conn.send_headers(StreamId(3), 204, &[], true).unwrap();
    c.output();
    c.frame(kind::WINDOW_UPDATE, 0, 3, &u32s(&[10]));
    c.frame(kind::RST_STREAM, 0, 3, &u32s(&[8]));
    c.frame(kind::PRIORITY, 0, 3, &[0, 0, 0, 0, 1]);
    assert!(c.output().is_empty());
    assert!(c.events().is_empty());
    c.data(3, b"x", false);
    assert_eq!(c.rst_codes(), vec![(3, ErrorCode::STREAM_CLOSED)]);
}

#[test]
fn client_reset_cancels_stream() {
    let mut c = Client::new();
    c.post(1, &[]);
    c.events();
    c.frame(kind::RST_STREAM, 0, 1, &u32s(&[8]));
    assert_eq!(
        c.events(),
        vec![Event::StreamReset {
            stream: StreamId(1),
            code: ErrorCode::CANCEL,
            by_peer: true
        }]
    );
    assert_eq!(c.conn.active_streams(), 0);
    assert_eq!(
        c.conn.send_headers(StreamId(1), 200, &[], true),
        Err(H2Error::StreamClosed)
    );
    assert_eq!(c.conn.send_capacity(StreamId(1)), 0);
    assert!(c.output().is_empty(), "no RST in answer to a RST");
}

#[test]
fn proxy_reset_is_sent_and_late_frames_ignored() {
    let mut c = Client::new();
    c.post(1, &[]);
    c.events();
    c.conn.reset(StreamId(1), ErrorCode::INTERNAL_ERROR);
    assert_eq!(c.rst_codes(), vec![(1, ErrorCode::INTERNAL_ERROR)]);
    // In-flight DATA after our RST is ignored but credited to the connection.
    c.data(1, b"abc", false);
    assert!(c.events().is_empty());
    let out = c.output();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].kind, out[0].stream, out[0].code()),
        (kind::WINDOW_UPDATE, 0, 3)
    );
}

#[test]
fn hundred_streams_then_refused() {
    let mut c = Client::new();
    for i in 0..100 {
        c.post(1 + 2 * i, &[]);
    }
    assert_eq!(c.events().len(), 100);
    assert_eq!(c.conn.active_streams(), 100);
    c.get(201);
    assert!(c.events().is_empty());
    assert_eq!(c.rst_codes(), vec![(201, ErrorCode::REFUSED_STREAM)]);
    // Data already in flight on the refused stream is ignored.
    c.data(201, b"x", true);
    assert!(c.events().is_empty());
    // Once one finishes, a new stream is accepted.
    c.frame(kind::RST_STREAM, 0, 1, &u32s(&[8]));
    c.events();
    c.get(203);
    assert_eq!(request_of(&c.events()).method, "GET");
}

// ----- flow control, send direction ---------------------------------------

#[test]
fn send_window_limits_data_and_window_update_wakes_proxy() {
    let mut c = Client::with_client_settings(
        H2Settings::default(),
        Limits::default(),
        &[(setting::INITIAL_WINDOW_SIZE, 10)],
    );
    c.get(1);
    c.events();
    c.conn.send_headers(StreamId(1), 200, &[], false).unwrap();
    assert_eq!(c.conn.send_capacity(StreamId(1)), 10);
    assert_eq!(c.conn.send_data(StreamId(1), &[b'a'; 25], true), 10);
    assert_eq!(c.conn.send_capacity(StreamId(1)), 0);
    assert_eq!(c.conn.send_data(StreamId(1), &[b'a'; 15], true), 0);
    let out = c.output();
    assert_eq!(out.last().unwrap().payload.len(), 10);
    assert_eq!(out.last().unwrap().flags, 0, "END_STREAM only if all taken");
    c.frame(kind::WINDOW_UPDATE, 0, 1, &u32s(&[5]));
    assert_eq!(
        c.events(),
        vec![Event::CapacityAvailable {
            stream: StreamId(1)
        }]
    );
    assert_eq!(c.conn.send_capacity(StreamId(1)), 5);
    // A SETTINGS change of the initial window applies to open streams.
    c.frame(
        kind::SETTINGS,
        0,
        0,
        &settings_payload(&[(setting::INITIAL_WINDOW_SIZE, 20)]),
    );
    assert_eq!(c.conn.send_capacity(StreamId(1)), 15);
    c.frame(
        kind::SETTINGS,
        0,
        0,
        &settings_payload(&[(setting::INITIAL_WINDOW_SIZE, 0)]),
    );
    assert_eq!(c.conn.send_capacity(StreamId(1)), 0, "window went negative");
}

#[test]
fn connection_send_window_is_shared() {
    let mut c = Client::new();
    c.get(1);
    c.get(3);
    c.events();
    for id in [1, 3] {
        c.conn.send_headers(StreamId(id), 200, &[], false).unwrap();
    }
    assert_eq!(
        c.conn.send_data(StreamId(1), &vec![0; 65_535], false),
        65_535
    );
    assert_eq!(c.conn.send_capacity(StreamId(3)), 0);
    assert_eq!(c.conn.send_data(StreamId(3), b"x", false), 0);
    let out = c.output();
    assert!(
        out.iter()
            .filter(|f| f.kind == kind::DATA)
            .all(|f| f.payload.len() <= 16_384)
    );
    c.frame(kind::WINDOW_UPDATE, 0, 0, &u32s(&[100]));
    assert_eq!(
        c.events(),
        vec![Event::CapacityAvailable {
            stream: StreamId(3)
        }]
    );
    assert_eq!(c.conn.send_capacity(StreamId(3)), 100);
}

#[test]
fn blocked_streams_are_woken_in_order_and_their_list_stays_small() {
    let mut c = Client::new();
    c.get(1);
    c.events();
    c.conn.send_headers(StreamId(1), 200, &[], false).unwrap();
    assert_eq!(
        c.conn.send_data(StreamId(1), &vec![0; 65_535], false),
        65_535
    );
    let _ = c.output();
    // Blocked on the shut connection window, then reset by the client:
    // nothing wakes them, so the list is pruned as it grows.
    for i in 0..40 {
        let id = 101 + 2 * i;
        c.get(id);
        c.events();
        c.conn.send_headers(StreamId(id), 200, &[], false).unwrap();
        assert_eq!(c.conn.send_data(StreamId(id), b"x", false), 0);
        c.frame(kind::RST_STREAM, 0, id, &u32s(&[8]));
        c.events();
        // At most 2 × open streams (two here) + 16, plus the one pushed.
        assert!(c.conn.blocked_len() <= 21, "{}", c.conn.blocked_len());
    }
    // Blocked in the order 203, 201: woken in stream order.
    for id in [201, 203] {
        c.get(id);
        c.events();
        c.conn.send_headers(StreamId(id), 200, &[], false).unwrap();
    }
    for id in [203, 201] {
        assert_eq!(c.conn.send_data(StreamId(id), b"x", false), 0);
    }
    c.frame(kind::WINDOW_UPDATE, 0, 0, &u32s(&[100]));
    assert_eq!(
        c.events(),
        vec![
            Event::CapacityAvailable {
                stream: StreamId(201)
            },
            Event::CapacityAvailable {
                stream: StreamId(203)
            }
        ]
    );
    assert_eq!(c.conn.blocked_len(), 0);
}

#[test]
fn window_update_overflow() {
    let mut c = Client::new();
    c.get(1);
    c.events();
    c.frame(kind::WINDOW_UPDATE, 0, 1, &u32s(&[(1 << 31) - 1]));
    assert_eq!(c.rst_codes(), vec![(1, ErrorCode::FLOW_CONTROL_ERROR)]);
    c.frame(kind::WINDOW_UPDATE, 0, 0, &u32s(&[(1 << 31) - 1]));
    assert_eq!(c.goaway_code(), ErrorCode::FLOW_CONTROL_ERROR);
    // Through SETTINGS: an open stream's window over 2^31-1.
    let mut c = Client::new();
    c.get(1);
    c.frame(kind::WINDOW_UPDATE, 0, 1, &u32s(&[(1 << 31) - 65_536]));
    c.frame(
        kind::SETTINGS,
        0,
        0,
        &settings_payload(&[(setting::INITIAL_WINDOW_SIZE, 65_537)]),
    );
    assert_eq!(c.goaway_code(), ErrorCode::FLOW_CONTROL_ERROR);
}

#[test]
fn peer_max_frame_size_bounds_our_frames() {
    let mut c = Client::with_client_settings(
        H2Settings::default(),
        Limits::default(),
        &[(setting::MAX_FRAME_SIZE, 20_000)],
    );
    c.get(1);
    c.events();
    c.conn.send_headers(StreamId(1), 200, &[], false).unwrap();
    c.conn.send_data(StreamId(1), &vec![0; 50_000], true);
    let sizes: Vec<_> = c
        .output()
        .iter()
        .filter(|f| f.kind == kind::DATA)
        .map(|f| f.payload.len())
        .collect();
    assert_eq!(sizes, vec![20_000, 20_000, 10_000]);
}

// ----- malformed requests -------------------------------------------------

#[test]
fn malformed_request_is_a_stream_error_and_never_a_request() {
    let mut c = Client::new();
    c.post(1, &[("X-Upper", "v")]);
    // §8.1.1: RST_STREAM(PROTOCOL_ERROR), no response, nothing for the proxy.
    assert!(c.events().is_empty());
    assert_eq!(c.rst_codes(), vec![(1, ErrorCode::PROTOCOL_ERROR)]);
    assert_eq!(c.conn.active_streams(), 0);
    // Body sent meanwhile is ignored (and credited to the connection).
    c.data(1, b"body", false);
    assert!(c.events().is_empty());
    let out = c.output();
    assert!(
        out.iter()
            .all(|f| f.kind == kind::WINDOW_UPDATE && f.stream == 0)
    );
    // The connection goes on.
    c.get(3);
    assert_eq!(request_of(&c.events()).path, "/");
}

#[test]
fn every_malformed_shape_is_a_stream_error() {
    let mut cases: Vec<Vec<(&str, &str)>> = vec![
        GET[1..].to_vec(),
        vec![GET[0], GET[1], GET[2]],
        vec![GET[0], GET[2], GET[3]],
        [&GET[..], &[(":path", "/again")]].concat(),
        [&GET[..], &[(":method", "GET")]].concat(),
        [&GET[..], &[(":scheme", "https")]].concat(),
        [&GET[..], &[(":foo", "x")]].concat(),
        [&GET[..], &[(":status", "200")]].concat(),
        [&GET[..1], &[("accept", "x")], &GET[1..]].concat(),
        [&GET[..], &[("Accept", "x")]].concat(),
        [&GET[..], &[("connection", "close")]].concat(),
        [&GET[..], &[("keep-alive", "1")]].concat(),
        [&GET[..], &[("proxy-connection", "1")]].concat(),
        [&GET[..], &[("upgrade", "h2c")]].concat(),
        [&GET[..], &[("transfer-encoding", "chunked")]].concat(),
        [&GET[..], &[("te", "gzip")]].concat(),
        [&GET[..], &[("x", "a\nb")]].concat(),
        [&GET[..], &[("content-length", "1")]].concat(),
    ];
    let mut empty_path = GET.to_vec();
    empty_path[3] = (":path", "");
    cases.push(empty_path);
    for fields in cases {
        let mut c = Client::new();
        c.headers(1, &fields, true);
        assert!(c.events().is_empty(), "{fields:?}");
        assert_eq!(
            c.rst_codes(),
            vec![(1, ErrorCode::PROTOCOL_ERROR)],
            "{fields:?}"
        );
    }
}

#[test]
fn connect_is_refused_with_a_stream_error() {
    let mut c = Client::new();
    c.headers(
        1,
        &[(":method", "CONNECT"), (":authority", "example.com:443")],
        false,
    );
    assert!(c.events().is_empty());
    assert_eq!(c.rst_codes(), vec![(1, ErrorCode::REFUSED_STREAM)]);
}

fn reset_by_server(events: &[Event], id: u32) -> bool {
    matches!(
        events,
        [Event::StreamReset {
            stream,
            code: ErrorCode::PROTOCOL_ERROR,
            by_peer: false,
        }] if *stream == StreamId(id)
    )
}

#[test]
fn content_length_mismatch_is_malformed() {
    // Shorter than declared.
    let mut c = Client::new();
    c.post(1, &[("content-length", "5")]);
    c.events();
    c.data(1, b"abc", true);
    assert!(reset_by_server(&c.events(), 1), "nothing of it handed out");
    assert_eq!(c.rst_codes(), vec![(1, ErrorCode::PROTOCOL_ERROR)]);
    // Longer than declared, in one frame: nothing of it is handed out.
    c.post(3, &[("content-length", "2")]);
    c.events();
    c.data(3, b"abc", false);
    assert!(reset_by_server(&c.events(), 3));
    assert_eq!(c.rst_codes(), vec![(3, ErrorCode::PROTOCOL_ERROR)]);
    // Declared but END_STREAM on HEADERS.
    c.headers(5, &[&GET[..], &[("content-length", "1")]].concat(), true);
    assert!(c.events().is_empty());
    assert_eq!(c.rst_codes(), vec![(5, ErrorCode::PROTOCOL_ERROR)]);
    // After the response started: the same stream error.
    c.post(7, &[("content-length", "1")]);
    c.events();
    c.conn.send_headers(StreamId(7), 200, &[], false).unwrap();
    c.output();
    c.data(7, b"ab", false);
    assert_eq!(c.rst_codes(), vec![(7, ErrorCode::PROTOCOL_ERROR)]);
    assert!(reset_by_server(&c.events(), 7));
}

#[test]
fn a_body_reaching_its_content_length_is_held_until_end_stream() {
    // Exactly the declared length, then more: the last octets were held,
    // so the proxy never saw a complete request.
    let mut c = Client::new();
    c.post(1, &[("content-length", "6")]);
    c.events();
    c.data(1, b"abc", false);
    assert!(matches!(
        &c.events()[..],
        [Event::Data {
            end_stream: false,
            ..
        }]
    ));
    c.data(1, b"def", false);
    assert!(c.events().is_empty(), "the last DATA waits for END_STREAM");
    assert!(c.conn.buffered_bytes() >= 3);
    c.data(1, b"g", false);
    assert!(reset_by_server(&c.events(), 1));
    assert_eq!(c.rst_codes(), vec![(1, ErrorCode::PROTOCOL_ERROR)]);
    // Exactly the declared length, then an empty END_STREAM: handed out.
    c.post(3, &[("content-length", "3")]);
    c.events();
    c.data(3, b"abc", false);
    assert!(c.events().is_empty());
    c.data(3, b"", true);
    assert_eq!(
        c.events(),
        vec![Event::Data {
            stream: StreamId(3),
            data: b"abc".to_vec(),
            end_stream: true
        }]
    );
    // Or ended by trailers.
    c.post(5, &[("content-length", "1")]);
    c.events();
    c.data(5, b"x", false);
    c.headers(5, &[("x-t", "1")], true);
    assert_eq!(
        c.events(),
        vec![Event::Data {
            stream: StreamId(5),
            data: b"x".to_vec(),
            end_stream: true
        }]
    );
}

#[test]
fn content_length_zero_is_held_until_end_stream() {
    // The head alone would be a complete request for a backend: it waits.
    let mut c = Client::new();
    c.post(1, &[("content-length", "0")]);
    assert!(c.events().is_empty());
    c.data(1, b"x", true);
    assert!(c.events().is_empty(), "never reached the proxy");
    assert_eq!(c.rst_codes(), vec![(1, ErrorCode::PROTOCOL_ERROR)]);
    // An empty END_STREAM DATA completes it: a request without body.
    c.post(3, &[("content-length", "0")]);
    c.data(3, b"", false);
    assert!(c.events().is_empty());
    c.data(3, b"", true);
    let ev = c.events();
    assert!(
        matches!(&ev[..], [Event::Request { stream: StreamId(3), end_stream: true, head }] if head.content_length == Some(0)),
        "{ev:?}"
    );
    // Trailers complete it too.
    c.post(5, &[("content-length", "0")]);
    c.headers(5, &[("x-t", "1")], true);
    assert!(matches!(
        &c.events()[..],
        [Event::Request {
            end_stream: true,
            ..
        }]
    ));
    // With END_STREAM on the HEADERS it goes out at once.
    c.headers(7, &[&GET[..], &[("content-length", "0")]].concat(), true);
    assert!(matches!(
        &c.events()[..],
        [Event::Request {
            end_stream: true,
            ..
        }]
    ));
}

#[test]
fn body_over_max_body_is_413_and_content_length_too() {
    let limits = Limits {
        max_body: 10,
        ..Limits::default()
    };
    let mut c = Client::with(H2Settings::default(), limits);
    c.post(1, &[("content-length", "11")]);
    assert_eq!(
        c.events(),
        vec![Event::Rejected {
            stream: StreamId(1),
            error: HttpError::LimitBody
        }]
    );
    c.post(3, &[]);
    c.events();
    c.data(3, b"0123456789", false);
    assert!(matches!(c.events()[..], [Event::Data { .. }]));
    c.data(3, b"x", false);
    assert_eq!(
        c.events(),
        vec![Event::Rejected {
            stream: StreamId(3),
            error: HttpError::LimitBody
        }]
    );
    let e = HttpError::LimitBody;
    crate::http::answer::Answer::error(e, "rid")
        .send_h2(&mut c.conn, StreamId(3), "x-portier-error", false)
        .unwrap();
    // The client is still sending: asked to stop with NO_ERROR (§8.1).
    assert_eq!(c.rst_codes(), vec![(3, ErrorCode::NO_ERROR)]);
}

#[test]
fn request_trailers() {
    let mut c = Client::new();
    c.post(1, &[("te", "trailers")]);
    c.events();
    c.data(1, b"abc", false);
    c.headers(1, &[("grpc-timeout", "1S")], true);
    let ev = c.events();
    assert_eq!(
        ev[1],
        Event::Trailers {
            stream: StreamId(1),
            headers: vec![("grpc-timeout".into(), b"1S".to_vec())]
        }
    );
    // Trailers with a pseudo-header are malformed.
    c.post(3, &[]);
    c.events();
    c.output();
    c.headers(3, &[(":path", "/")], true);
    assert!(reset_by_server(&c.events(), 3));
    assert_eq!(c.rst_codes(), vec![(3, ErrorCode::PROTOCOL_ERROR)]);
    // A second HEADERS without END_STREAM is malformed.
    c.post(5, &[]);
    c.events();
    c.headers(5, &[("x", "y")], false);
    assert!(reset_by_server(&c.events(), 5));
}

#[test]
fn header_list_over_limit_is_431_and_hpack_stays_in_sync() {
    let mut c = Client::new();
    // Insert an entry into the dynamic table in the same block as a huge
    // header list: the entry must still be added.
    let mut block = Vec::new();
    hpack::encode_int(&mut block, 0, 6, 0x40);
    hpack::encode_str(&mut block, b"x-kept");
    hpack::encode_str(&mut block, b"yes");
    block.extend(lit_block(&GET));
    let filler = vec![b'f'; 4000];
    for _ in 0..9 {
        hpack::encode_int(&mut block, 0, 4, 0);
        hpack::encode_str(&mut block, b"x-filler");
        hpack::encode_str(&mut block, &filler);
    }
    // 36 KiB decoded: split over HEADERS + CONTINUATION.
    let third = block.len() / 3;
    let (a, b) = block.split_at(third);
    let (b, d) = b.split_at(third);
    c.frame(kind::HEADERS, flag::END_STREAM, 1, a);
    c.frame(kind::CONTINUATION, 0, 1, b);
    c.frame(kind::CONTINUATION, flag::END_HEADERS, 1, d);
    assert_eq!(
        c.events(),
        vec![Event::Rejected {
            stream: StreamId(1),
            error: HttpError::LimitHeaderSection
        }]
    );
    // Next request refers to dynamic index 62 = x-kept: yes.
    let mut block = Vec::new();
    block.extend(lit_block(&GET));
    block.push(0x80 | 62);
    c.frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        3,
        &block,
    );
    assert_eq!(request_of(&c.events()).header("x-kept"), Some(&b"yes"[..]));
}

#[test]
fn single_field_over_8k_is_431() {
    let mut c = Client::new();
    let big = "v".repeat(8200);
    c.headers(1, &[&GET[..], &[("x-big", big.as_str())]].concat(), true);
    assert_eq!(
        c.events(),
        vec![Event::Rejected {
            stream: StreamId(1),
            error: HttpError::LimitHeaderLine
        }]
    );
}

#[test]
fn hpack_garbage_is_compression_error() {
    let mut c = Client::new();
    c.frame(kind::HEADERS, flag::END_HEADERS, 1, &[0x80]);
    assert_eq!(c.goaway_code(), ErrorCode::COMPRESSION_ERROR);
}

// ----- GOAWAY -------------------------------------------------------------

#[test]
fn client_goaway_is_reported_and_closes_when_idle() {
    let mut c = Client::new();
    c.get(1);
    c.events();
    let mut p = u32s(&[0, 0]);
    p.extend(b"bye");
    c.frame(kind::GOAWAY, 0, 0, &p);
    assert_eq!(
        c.events(),
        vec![Event::GoAway {
            last_stream: StreamId(0),
            error: ErrorCode::NO_ERROR
        }]
    );
    assert!(!c.conn.is_closed());
    c.conn.send_headers(StreamId(1), 204, &[], true).unwrap();
    assert!(c.conn.is_closed());
}

#[test]
fn graceful_goaway_two_steps() {
    let mut c = Client::new();
    c.get(1);
    c.events();
    c.conn.goaway(true);
    let out = c.output();
    assert_eq!(out[0].kind, kind::GOAWAY);
    assert_eq!(out[0].code(), 0);
    assert_eq!(frame::be_u32(&out[0].payload, 0), Some((1 << 31) - 1));
    assert_eq!(out[1].kind, kind::PING);
    let ping = out[1].payload.clone();
    // A stream started before the client saw the GOAWAY is still served.
    c.get(3);
    assert_eq!(c.events().len(), 1);
    c.frame(kind::PING, flag::ACK, 0, &ping);
    let out = c.output();
    assert_eq!(out[0].kind, kind::GOAWAY);
    assert_eq!(frame::be_u32(&out[0].payload, 0), Some(3));
    // Streams above the last id are ignored, frames on them too.
    c.get(5);
    c.data(5, b"x", false);
    assert!(c.events().is_empty());
    assert!(!c.conn.is_closed());
    c.conn.send_headers(StreamId(1), 204, &[], true).unwrap();
    c.conn.send_headers(StreamId(3), 204, &[], true).unwrap();
    assert!(c.conn.is_closed());
}

#[test]
fn immediate_goaway_carries_last_stream() {
    let mut c = Client::new();
    c.get(7);
    c.conn.goaway(false);
    let out = c.output();
    assert_eq!(out[0].kind, kind::GOAWAY);
    assert_eq!(frame::be_u32(&out[0].payload, 0), Some(7));
}

// ----- attacks --------------------------------------------------------------

#[test]
fn attack_rapid_reset_is_enhance_your_calm() {
    let mut c = Client::new();
    let mut id = 1;
    while !c.conn.is_closed() && id < 1000 {
        c.get(id);
        c.frame(kind::RST_STREAM, 0, id, &u32s(&[8]));
        id += 2;
    }
    // Budget 200 per window: the 201st reset trips it.
    assert_eq!(id, 1 + 2 * 201);
    assert_eq!(c.goaway_code(), ErrorCode::ENHANCE_YOUR_CALM);
}

#[test]
fn resets_spread_over_windows_are_fine() {
    let mut c = Client::new();
    let mut id = 1;
    for _ in 0..3 {
        for _ in 0..150 {
            c.get(id);
            c.frame(kind::RST_STREAM, 0, id, &u32s(&[8]));
            id += 2;
        }
        c.now += Duration::from_secs(11);
    }
    assert!(!c.conn.is_closed());
}

#[test]
fn attack_made_you_reset_window_update_zero() {
    let mut c = Client::new();
    let mut id = 1;
    while !c.conn.is_closed() && id < 1000 {
        c.get(id);
        c.frame(kind::WINDOW_UPDATE, 0, id, &u32s(&[0]));
        id += 2;
    }
    assert_eq!(id, 1 + 2 * 201);
    assert_eq!(c.goaway_code(), ErrorCode::ENHANCE_YOUR_CALM);
}

#[test]
fn attack_made_you_reset_data_on_half_closed_stream() {
    let mut c = Client::new();
    let mut id = 1;
    while !c.conn.is_closed() && id < 1000 {
        c.get(id);
        c.data(id, b"x", false);
        id += 2;
    }
    assert_eq!(id, 1 + 2 * 201);
    assert_eq!(c.goaway_code(), ErrorCode::ENHANCE_YOUR_CALM);
}

#[test]
fn attack_made_you_reset_malformed_headers_and_client_resets_share_budget() {
    let mut c = Client::new();
    let mut id = 1;
    while !c.conn.is_closed() && id < 1000 {
        if id % 4 == 1 {
            c.headers(id, &[&GET[..], &[("connection", "x")]].concat(), true);
        } else {
            c.get(id);
            c.frame(kind::RST_STREAM, 0, id, &u32s(&[8]));
        }
        id += 2;
    }
    assert_eq!(id, 1 + 2 * 201);
    assert_eq!(c.goaway_code(), ErrorCode::ENHANCE_YOUR_CALM);
}

#[test]
fn attack_made_you_reset_flow_control_violation() {
    let s = H2Settings {
        initial_window_size: 65_535,
        connection_window: (1 << 31) - 1,
        ..H2Settings::default()
    };
    let mut c = Client::with(s, Limits::default());
    let mut id = 1;
    while !c.conn.is_closed() && id < 1000 {
        c.post(id, &[]);
        for _ in 0..4 {
            c.data(id, &[0; 16_384], false);
        }
        id += 2;
    }
    assert_eq!(id, 1 + 2 * 201);
    assert_eq!(c.goaway_code(), ErrorCode::ENHANCE_YOUR_CALM);
}

#[test]
fn attack_continuation_flood_by_frame_count() {
    let mut c = Client::new();
    let block = c.block(&GET);
    c.frame(kind::HEADERS, 0, 1, &block);
    for _ in 0..16 {
        c.frame(kind::CONTINUATION, 0, 1, &[]);
    }
    assert!(!c.conn.is_closed());
    c.frame(kind::CONTINUATION, 0, 1, &[]);
    assert_eq!(c.goaway_code(), ErrorCode::ENHANCE_YOUR_CALM);
}

#[test]
fn attack_continuation_flood_by_size() {
    let mut c = Client::new();
    c.frame(kind::HEADERS, 0, 1, &[0; 16_384]);
    for _ in 0..3 {
        c.frame(kind::CONTINUATION, 0, 1, &[0; 16_384]);
    }
    assert!(!c.conn.is_closed());
    c.frame(kind::CONTINUATION, 0, 1, &[0]);
    assert_eq!(c.goaway_code(), ErrorCode::ENHANCE_YOUR_CALM);
}

#[test]
fn attack_hpack_bomb_is_refused_431() {
    let mut c = Client::new();
    // Block 1: one 4,000-octet entry added to the dynamic table.
    let mut block = Vec::new();
    block.extend(lit_block(&GET));
    hpack::encode_int(&mut block, 0, 6, 0x40);
    hpack::encode_str(&mut block, b"x-bomb");
    hpack::encode_int(&mut block, 4000, 7, 0);
    block.extend(std::iter::repeat_n(b'b', 4000));
    c.frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block,
    );
    assert_eq!(
        request_of(&c.events()).header("x-bomb").map(<[u8]>::len),
        Some(4000)
    );
    // Block 2: 10,000 one-octet references to it: 40 MB decoded.
    let mut block = Vec::new();
    block.extend(lit_block(&GET));
    block.extend(std::iter::repeat_n(0x80 | 62, 10_000));
    c.frame(kind::HEADERS, flag::END_STREAM, 3, &block[..8000]);
    c.frame(kind::CONTINUATION, flag::END_HEADERS, 3, &block[8000..]);
    assert_eq!(
        c.events(),
        vec![Event::Rejected {
            stream: StreamId(3),
            error: HttpError::LimitHeaderSection
        }]
    );
    // The table cannot be grown past the advertised 4,096 octets.
    c.frame(kind::HEADERS, flag::END_HEADERS, 5, &[0x3f, 0xe2, 0x3f]);
    assert_eq!(c.goaway_code(), ErrorCode::COMPRESSION_ERROR);
}

#[test]
fn header_list_size_counts_32_octets_per_field() {
    // 1,000 one-octet fields: 1,000 octets of names, but 33,000 by the RFC
    // 9113 §6.5.2 / RFC 7541 §4.1 size (+32 each) > 32 KiB. The field
    // count cap is lifted so only the size can refuse it.
    let limits = Limits {
        max_headers: 100_000,
        ..Limits::default()
    };
    let mut c = Client::with(H2Settings::default(), limits);
    let mut block = lit_block(&GET);
    // Literal with incremental indexing of "x": "" once, then index 62.
    block.extend([0x40, 0x01, b'x', 0x00]);
    block.extend(std::iter::repeat_n(0x80 | 62, 999));
    c.frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block,
    );
    assert_eq!(
        c.events(),
        vec![Event::Rejected {
            stream: StreamId(1),
            error: HttpError::LimitHeaderSection
        }]
    );
    // 900 of them (29,700 + the pseudo-headers) fit.
    let mut block = lit_block(&GET);
    block.extend(std::iter::repeat_n(0x80 | 62, 900));
    c.frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        3,
        &block,
    );
    assert_eq!(request_of(&c.events()).headers.len(), 900);
}

#[test]
fn fields_per_request_are_capped() {
    let mut c = Client::new();
    let mut block = lit_block(&GET);
    block.extend([0x40, 0x01, b'x', 0x01, b'y']);
    block.extend(std::iter::repeat_n(0x80 | 62, 100));
    c.frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block,
    );
    assert_eq!(
        c.events(),
        vec![Event::Rejected {
            stream: StreamId(1),
            error: HttpError::LimitTooManyHeaders
        }]
    );
    let mut block = lit_block(&GET);
    block.extend(std::iter::repeat_n(0x80 | 62, 100));
    c.frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        3,
        &block,
    );
    assert_eq!(request_of(&c.events()).headers.len(), 100);
}

#[test]
fn priority_depending_on_itself_is_a_stream_error_even_when_idle() {
    let mut c = Client::new();
    // Idle stream 3: RST_STREAM, the connection lives.
    c.frame(kind::PRIORITY, 0, 3, &[0, 0, 0, 3, 16]);
    assert_eq!(c.rst_codes(), vec![(3, ErrorCode::PROTOCOL_ERROR)]);
    // Open stream 5.
    c.post(5, &[]);
    c.events();
    c.frame(kind::PRIORITY, 0, 5, &[0x80, 0, 0, 5, 16]);
    assert_eq!(c.rst_codes(), vec![(5, ErrorCode::PROTOCOL_ERROR)]);
    assert!(matches!(
        c.events()[..],
        [Event::StreamReset { by_peer: false, .. }]
    ));
    c.get(7);
    assert_eq!(request_of(&c.events()).path, "/");
}

/// The "HTTP/2 bomb" (CVE-2026-49975): streams whose header lists are
/// inflated from the HPACK table, with a send window that never opens.
fn bomb_client(stall: Duration) -> Client {
    let settings = H2Settings {
        stall_timeout: stall,
        ..H2Settings::default()
    };
    let mut c = Client::with_client_settings(
        settings,
        Limits::default(),
        &[(setting::INITIAL_WINDOW_SIZE, 0)],
    );
    // One 4,000-octet entry in the table.
    let mut block = lit_block(&GET);
    hpack::encode_int(&mut block, 0, 6, 0x40);
    hpack::encode_str(&mut block, b"x-bomb");
    hpack::encode_int(&mut block, 4000, 7, 0);
    block.extend(std::iter::repeat_n(b'b', 4000));
    c.frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block,
    );
    c.events();
    c.conn.send_headers(StreamId(1), 200, &[], true).unwrap();
    c.output();
    c
}

fn bomb_streams(c: &mut Client, ids: impl Iterator<Item = u32>) {
    for id in ids {
        // 7 one-octet references: 28 KB of fields from 7 octets.
        let mut block = lit_block(&GET);
        block.extend(std::iter::repeat_n(0x80 | 62, 7));
        c.frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            id,
            &block,
        );
        let ev = c.events();
        assert_eq!(request_of(&ev).headers.len(), 7);
        // The proxy answers; nothing of the body can be sent.
        c.conn.send_headers(StreamId(id), 200, &[], false).unwrap();
        assert_eq!(c.conn.send_data(StreamId(id), &[0; 1000], false), 0);
    }
    c.output();
}

#[test]
fn attack_streams_stalled_on_a_zero_window_are_reaped() {
    let mut c = bomb_client(Duration::from_secs(10));
    bomb_streams(&mut c, (1..=50).map(|i| 1 + 2 * i));
    assert_eq!(c.conn.active_streams(), 50);
    // Stream 101 is served by a client that opens its window in time.
    let t0 = c.now;
    let mut reaped_at = None;
    while reaped_at.is_none() {
        let at = c.conn.next_deadline().expect("a sweep is armed");
        assert!(at > c.now, "no busy timer");
        c.now = at;
        if c.now - t0 < Duration::from_secs(9) {
            c.frame(kind::WINDOW_UPDATE, 0, 101, &u32s(&[100]));
        }
        c.conn.handle_timeout(c.now);
        let ev: Vec<Event> = c
            .events()
            .into_iter()
            .filter(|e| !matches!(e, Event::CapacityAvailable { .. }))
            .collect();
        if !ev.is_empty() {
            assert!(
                ev.iter().all(|e| matches!(
                    e,
                    Event::StreamReset {
                        code: ErrorCode::CANCEL,
                        by_peer: false,
                        ..
                    }
                )),
                "{ev:?}"
            );
            assert_eq!(ev.len(), 49, "all but the one whose window opened");
            reaped_at = Some(c.now - t0);
        }
    }
    let took = reaped_at.unwrap();
    assert!(
        took >= Duration::from_secs(10) && took <= Duration::from_secs(15),
        "{took:?}"
    );
    let rst = c.rst_codes();
    assert_eq!(rst.len(), 49);
    assert!(rst.iter().all(|&(_, code)| code == ErrorCode::CANCEL));
    assert_eq!(c.conn.active_streams(), 1);
    // Stream 101 stalls again once it has spent its window.
    assert_eq!(c.conn.send_data(StreamId(101), &[0; 1000], false), 100);
    for _ in 0..3 {
        c.now = c.conn.next_deadline().unwrap();
        c.conn.handle_timeout(c.now);
    }
    assert_eq!(c.conn.active_streams(), 0);
    assert_eq!(c.conn.next_deadline(), None, "nothing left to sweep");
    // Late frames on reaped streams are ignored; the connection serves on.
    c.frame(kind::WINDOW_UPDATE, 0, 3, &u32s(&[10]));
    c.frame(kind::WINDOW_UPDATE, 0, 0, &u32s(&[10]));
    c.get(103);
    assert_eq!(request_of(&c.events()).path, "/");
}

#[test]
fn attack_bomb_memory_is_bounded_and_freed() {
    let mut c = bomb_client(Duration::from_secs(2));
    let base = c.conn.buffered_bytes();
    assert!(base <= 4096, "the HPACK table is bounded: {base}");
    // 100 streams carrying 2.8 MB of decoded fields from ~3 KB of input:
    // the connection hands them out, it does not keep them.
    bomb_streams(&mut c, (1..=100).map(|i| 1 + 2 * i));
    assert_eq!(c.conn.active_streams(), 100);
    assert!(c.conn.buffered_bytes() <= base + 1024);
    // The 101st is refused (max concurrent streams).
    c.get(203);
    assert_eq!(c.rst_codes(), vec![(203, ErrorCode::REFUSED_STREAM)]);
    // Every stream, and so everything the proxy holds for it, goes.
    for _ in 0..3 {
        c.now = c.conn.next_deadline().unwrap();
        c.conn.handle_timeout(c.now);
    }
    let reset = c
        .events()
        .iter()
        .filter(|e| matches!(e, Event::StreamReset { .. }))
        .count();
    assert_eq!(reset, 100);
    c.output();
    assert_eq!(c.conn.active_streams(), 0);
    assert_eq!(c.conn.buffered_bytes(), base);
}

#[test]
fn a_stalled_connection_window_reaps_too_and_timeouts_are_spurious_safe() {
    let mut c = Client::new();
    c.conn = ServerConn::new(
        H2Settings {
            stall_timeout: Duration::from_secs(4),
            ..H2Settings::default()
        },
        Limits::default(),
    );
    let mut hello = frame::PREFACE.to_vec();
    hello.extend(raw(kind::SETTINGS, 0, 0, &[]));
    c.send(&hello);
    c.output();
    c.get(1);
    c.events();
    // Early and repeated timeouts do nothing.
    c.conn.handle_timeout(c.now);
    c.conn.handle_timeout(c.now + Duration::from_secs(1));
    c.conn.send_headers(StreamId(1), 200, &[], false).unwrap();
    // The connection window (65,535) is used up by the response.
    assert_eq!(c.conn.send_data(StreamId(1), &[0; 70_000], false), 65_535);
    c.output();
    // A stream without a response yet is not stalled.
    c.get(3);
    c.events();
    for _ in 0..3 {
        c.now = c.conn.next_deadline().unwrap();
        c.conn.handle_timeout(c.now);
    }
    assert_eq!(c.rst_codes(), vec![(1, ErrorCode::CANCEL)]);
    assert_eq!(c.conn.active_streams(), 1);
}

fn flood(frame_bytes: &[u8], budget: usize) {
    let mut c = Client::new();
    for i in 0..budget {
        c.send(frame_bytes);
        assert!(!c.conn.is_closed(), "closed after {i} frames");
        c.output();
    }
    c.send(frame_bytes);
    assert_eq!(c.goaway_code(), ErrorCode::ENHANCE_YOUR_CALM);
}

#[test]
fn attack_ping_flood() {
    // The handshake's SETTINGS and ACK count too.
    flood(&raw(kind::PING, 0, 0, &[0; 8]), 1000 - 2);
}

#[test]
fn attack_settings_flood() {
    flood(&raw(kind::SETTINGS, 0, 0, &[]), 1000 - 2);
}

#[test]
fn attack_priority_flood() {
    flood(&raw(kind::PRIORITY, 0, 9, &[0, 0, 0, 0, 1]), 1000 - 2);
}

#[test]
fn attack_window_update_flood() {
    flood(&raw(kind::WINDOW_UPDATE, 0, 0, &u32s(&[1])), 1000 - 2);
}

#[test]
fn window_updates_earned_by_data_are_free() {
    let mut c = Client::new();
    c.get(1);
    c.events();
    c.conn.send_headers(StreamId(1), 200, &[], false).unwrap();
    for _ in 0..2000 {
        assert_eq!(c.conn.send_data(StreamId(1), b"x", false), 1);
        c.output();
        c.frame(kind::WINDOW_UPDATE, 0, 1, &u32s(&[1]));
        c.frame(kind::WINDOW_UPDATE, 0, 0, &u32s(&[1]));
    }
    assert!(!c.conn.is_closed());
}

#[test]
fn attack_empty_data_flood() {
    let mut c = Client::new();
    c.post(1, &[]);
    for _ in 0..100 {
        c.data(1, b"", false);
    }
    assert!(!c.conn.is_closed());
    c.data(1, b"", false);
    assert_eq!(c.goaway_code(), ErrorCode::ENHANCE_YOUR_CALM);
}

#[test]
fn attack_repeated_stream_excess() {
    let s = H2Settings {
        max_concurrent_streams: 2,
        ..H2Settings::default()
    };
    let mut c = Client::with(s, Limits::default());
    c.post(1, &[]);
    c.post(3, &[]);
    let mut id = 5;
    while !c.conn.is_closed() && id < 1000 {
        c.get(id);
        id += 2;
    }
    assert_eq!(id, 5 + 2 * 201);
    assert_eq!(c.goaway_code(), ErrorCode::ENHANCE_YOUR_CALM);
}

#[test]
fn attack_client_never_reads_control_output_is_bounded() {
    let s = H2Settings {
        max_control_frames_per_window: u32::MAX,
        ..H2Settings::default()
    };
    let mut c = Client::with(s, Limits::default());
    let ping = raw(kind::PING, 0, 0, &[0; 8]);
    let mut sent = 0;
    while !c.conn.is_closed() && sent < 100_000 {
        c.send(&ping);
        sent += 1;
    }
    // 17-octet ACKs: 64 KiB / 17 = 3855.
    assert_eq!(sent, 64 * 1024 / 17 + 1);
    assert_eq!(c.goaway_code(), ErrorCode::ENHANCE_YOUR_CALM);
}

#[test]
fn attack_client_never_reads_data_is_bounded() {
    let mut c = Client::with_client_settings(
        H2Settings::default(),
        Limits::default(),
        &[(setting::INITIAL_WINDOW_SIZE, (1 << 31) - 1)],
    );
    c.frame(kind::WINDOW_UPDATE, 0, 0, &u32s(&[(1 << 31) - 1 - 65_535]));
    c.get(1);
    c.events();
    c.conn.send_headers(StreamId(1), 200, &[], false).unwrap();
    let big = vec![0; 1 << 20];
    let mut taken = 0;
    for _ in 0..10 {
        taken += c.conn.send_data(StreamId(1), &big, false);
    }
    assert!(taken <= 256 * 1024, "{taken}");
    assert_eq!(c.conn.send_capacity(StreamId(1)), 0);
    c.output();
    assert_eq!(
        c.events(),
        vec![Event::CapacityAvailable {
            stream: StreamId(1)
        }]
    );
    assert!(c.conn.send_capacity(StreamId(1)) > 0);
}

// ----- robustness -------------------------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Pseudo-random input after a valid handshake: raw bytes, and frames
/// with valid headers but random types, flags, ids and payloads. Checks no
/// panic, `consumed <= len`, and that a failed connection stays failed.
#[test]
fn random_input_never_panics() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for case in 0..3000 {
        let mut c = Client::new();
        let mut buf = Vec::new();
        let frames = 1 + rng.below(12);
        for _ in 0..frames {
            if case % 3 == 0 {
                let n = rng.below(64) as usize;
                buf.extend((0..n).map(|_| rng.next() as u8));
                continue;
            }
            let kind = rng.below(11) as u8;
            let flags = rng.next() as u8;
            let stream = (rng.below(8) as u32) * if rng.below(4) == 0 { 2 } else { 1 };
            let len = rng.below(40) as usize;
            let mut payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if kind == kind::HEADERS && rng.below(2) == 0 {
                payload = c.block(&GET);
            }
            buf.extend(raw(kind, flags, stream, &payload));
        }
        // Feed in random pieces.
        let mut pending: Vec<u8> = Vec::new();
        let mut pos = 0;
        while pos < buf.len() {
            let n = 1 + rng.below(50) as usize;
            let end = (pos + n).min(buf.len());
            pending.extend_from_slice(&buf[pos..end]);
            pos = end;
            let used = c.conn.handle_input(&pending, c.now);
            assert!(used <= pending.len());
            pending.drain(..used);
            let _ = c.events();
            let mut out = Vec::new();
            c.conn.poll_output(&mut out);
            let _ = c.conn.wants_write();
            // Exercise the proxy side on whatever streams exist.
            for id in [1, 3, 5, 7] {
                let _ = c
                    .conn
                    .send_headers(StreamId(id), 200, &[("a", b"b")], false);
                let _ = c.conn.send_data(StreamId(id), b"xyz", rng.below(2) == 0);
                c.conn.release_capacity(StreamId(id), 3);
            }
        }
        if c.conn.error().is_some() {
            assert!(c.conn.is_closed());
            assert_eq!(c.conn.handle_input(b"more", c.now), 4);
        }
    }
}

#[test]
fn random_hpack_blocks_never_panic() {
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let mut d = hpack::Decoder::new(4096);
    for _ in 0..5000 {
        let n = rng.below(80) as usize;
        let block: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        let mut size = 0usize;
        if d.decode(&block, |a, b| size += a.len() + b.len()).is_err() {
            d = hpack::Decoder::new(4096);
        }
        assert!(d.table_size() <= 4096);
    }
}
