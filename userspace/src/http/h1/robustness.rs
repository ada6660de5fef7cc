//! Cross-cutting tests of the h1 codec: pseudo-random and mutated inputs fed
//! to every parser (no panic, consistent results), every `HttpError` code
//! produced from real bytes, and pipelined requests with bodies.
//!
//! Owns: a tiny xorshift generator (no dependency) and the invariants
//! "consumed ≤ input", "data ⊆ consumed", "parse never panics".
//! Test-only; the real fuzzing lives under `fuzz/` (cargo-fuzz).

use super::{BodyDecoder, BodyKind, parse_request_head, parse_response_head};
use crate::http::{HttpError, Limits};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes biased toward HTTP syntax so the parsers get past the first byte.
const ALPHABET: &[u8] = b"GETPOSTHTP/1.0 \r\n\r\n:;,=\t\0\x7f\xffchunkedContent-LengthTransfer-EncodingHost0123456789abcdefABCDEF";

const SEEDS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No Content\r\n\r\n",
    b"5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\n",
];

fn random_input(rng: &mut XorShift) -> Vec<u8> {
    let len = rng.below(200);
    match rng.below(3) {
        0 => (0..len).map(|_| rng.next() as u8).collect(),
        1 => (0..len)
            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
            .collect(),
        _ => {
            let mut v = SEEDS[rng.below(SEEDS.len())].to_vec();
            for _ in 0..=rng.below(4) {
                let at = rng.below(v.len() + 1);
                match rng.below(3) {
                    0 if at < v.len() => v[at] = ALPHABET[rng.below(ALPHABET.len())],
                    1 => v.insert(at, rng.next() as u8),
                    _ if at < v.len() => {
                        v.remove(at);
                    }
                    _ => {}
                }
            }
            v
        }
    }
}

fn check_body(kind: BodyKind, request: bool, input: &[u8], limits: &Limits) {
    let mut dec = if request {
        BodyDecoder::for_request(kind, limits)
    } else {
        BodyDecoder::for_response(kind, limits)
    };
    let mut pos = 0;
    while let Ok(d) = dec.decode(&input[pos..]) {
        assert!(d.consumed <= input.len() - pos);
        if let Some(r) = &d.data {
            assert!(r.start < r.end && r.end <= d.consumed);
        }
        pos += d.consumed;
        if d.done || d.consumed == 0 {
            break;
        }
    }
    let _ = dec.handle_eof();
}

#[test]
fn random_bytes_never_panic_any_parser() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let small = Limits {
        max_header_section: 96,
        max_header_line: 40,
        max_body: 50,
        max_headers: 4,
    };
    let (mut requests, mut responses) = (0, 0);
    for i in 0..5000 {
        let input = random_input(&mut rng);
        let limits = if i % 2 == 0 { Limits::default() } else { small };
        if let Ok(Some((_, n))) = parse_request_head(&input, &limits) {
            assert!(n <= input.len());
            requests += 1;
        }
        if let Ok(Some((_, n))) = parse_response_head(&input, &limits, i % 3 == 0) {
            assert!(n <= input.len());
            responses += 1;
        }
        for kind in [
            BodyKind::Chunked,
            BodyKind::Length(17),
            BodyKind::CloseDelimited,
        ] {
            check_body(kind, i % 2 == 0, &input, &limits);
        }
    }
    eprintln!("accepted {requests} request heads, {responses} response heads");
    // The mutated seeds must keep exercising the success paths too.
    assert!(requests > 100 && responses > 100, "{requests} {responses}");
}

#[test]
fn every_prefix_of_an_accepted_head_is_incomplete() {
    // Incremental parsing at every split point, on random accepted heads
    // (requests and responses): a strict prefix of an accepted head is
    // always `Ok(None)`, never an error, and any longer buffer reports the
    // same head with the same length.
    let mut rng = XorShift(42);
    let limits = Limits::default();
    let (mut requests, mut responses) = (0, 0);
    for _ in 0..600 {
        let input = random_input(&mut rng);
        if let Ok(Some((head, n))) = parse_request_head(&input, &limits) {
            requests += 1;
            for cut in 0..n {
                assert_eq!(
                    parse_request_head(&input[..cut], &limits),
                    Ok(None),
                    "cut {cut}"
                );
            }
            for cut in n..=input.len() {
                let again = parse_request_head(&input[..cut], &limits);
                assert_eq!(again, Ok(Some((head.clone(), n))));
            }
        }
        if let Ok(Some((head, n))) = parse_response_head(&input, &limits, false) {
            responses += 1;
            for cut in 0..n {
                assert_eq!(
                    parse_response_head(&input[..cut], &limits, false),
                    Ok(None),
                    "cut {cut}"
                );
            }
            let again = parse_response_head(&input, &limits, false);
            assert_eq!(again, Ok(Some((head, n))));
        }
    }
    assert!(requests > 10 && responses > 10, "{requests} {responses}");
}

/// Run `input` through the request path: head, then body to EOF.
fn request_error(input: &[u8], limits: &Limits) -> Option<HttpError> {
    let (head, n) = match parse_request_head(input, limits) {
        Err(e) => return Some(e),
        Ok(None) => return None,
        Ok(Some(x)) => x,
    };
    let mut dec = BodyDecoder::for_request(head.body, limits);
    let mut pos = n;
    loop {
        match dec.decode(&input[pos..]) {
            Err(e) => return Some(e),
            Ok(d) if d.done => return None,
            Ok(d) if d.consumed == 0 => return dec.handle_eof().err(),
            Ok(d) => pos += d.consumed,
        }
    }
}

/// Run `input` through the response path: head, then body to EOF.
fn response_error(input: &[u8]) -> Option<HttpError> {
    let limits = Limits {
        max_header_line: 64,
        ..Limits::default()
    };
    let (head, n) = match parse_response_head(input, &limits, false) {
        Err(e) => return Some(e),
        Ok(None) => return None,
        Ok(Some(x)) => x,
    };
    let mut dec = BodyDecoder::for_response(head.body, &limits);
    let mut pos = n;
    loop {
        match dec.decode(&input[pos..]) {
            Err(e) => return Some(e),
            Ok(d) if d.done => return None,
            Ok(d) if d.consumed == 0 => return dec.handle_eof().err(),
            Ok(d) => pos += d.consumed,
        }
    }
}

#[test]
fn every_error_code_is_produced_by_some_input() {
    let d = Limits::default();
    let tiny = Limits {
        max_header_section: 64,
        max_header_line: 20,
        max_body: 4,
        max_headers: 2,
    };
    let post = |fields: &str, body: &str| {
        format!("POST / HTTP/1.1\r\nHost: x\r\n{fields}\r\n{body}").into_bytes()
    };
    let chunked = |body: &str| post("Transfer-Encoding: chunked\r\n", body);
    let long_ext = format!(
        "1;{}\r\nx\r\n0\r\n\r\n",
        "e".repeat(crate::http::h1::MAX_CHUNK_EXT)
    );
    let cases: Vec<(HttpError, Option<HttpError>)> = vec![
        (
            HttpError::PeerInvalidRequestLine,
            request_error(b"GET  / HTTP/1.1\r\n\r\n", &d),
        ),
        (
            HttpError::PeerUnsupportedVersion,
            request_error(b"GET / HTTP/2.0\r\n\r\n", &d),
        ),
        (
            HttpError::PeerInvalidHeaderName,
            request_error(&post("Bad Name: v\r\n", ""), &d),
        ),
        (
            HttpError::PeerInvalidHeaderValue,
            request_error(&post("A: \0\r\n", ""), &d),
        ),
        (
            HttpError::PeerObsFold,
            request_error(&post("A: b\r\n c\r\n", ""), &d),
        ),
        (
            HttpError::PeerConflictingContentLength,
            request_error(&post("Content-Length: 1\r\nContent-Length: 1\r\n", "a"), &d),
        ),
        (
            HttpError::PeerInvalidContentLength,
            request_error(&post("Content-Length: 1a\r\n", ""), &d),
        ),
        (
            HttpError::PeerContentLengthWithTransferEncoding,
            request_error(
                &post("Content-Length: 1\r\nTransfer-Encoding: chunked\r\n", ""),
                &d,
            ),
        ),
        (
            HttpError::PeerUnknownTransferCoding,
            request_error(&post("Transfer-Encoding: gzip\r\n", ""), &d),
        ),
        (
            HttpError::PeerInvalidTransferEncoding,
            request_error(&post("Transfer-Encoding: chunked, chunked\r\n", ""), &d),
        ),
        (
            HttpError::PeerTransferEncodingInHttp10,
            request_error(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", &d),
        ),
        (
            HttpError::PeerMissingHost,
            request_error(b"GET / HTTP/1.1\r\n\r\n", &d),
        ),
        (
            HttpError::PeerMultipleHost,
            request_error(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", &d),
        ),
        (
            HttpError::PeerInvalidHost,
            request_error(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", &d),
        ),
        (
            HttpError::PeerInvalidChunkSize,
            request_error(&chunked("x\r\n"), &d),
        ),
        (
            HttpError::PeerInvalidChunkFraming,
            request_error(&chunked("1\nx"), &d),
        ),
        (
            HttpError::PeerIncompleteBody,
            request_error(&post("Content-Length: 3\r\n", "ab"), &d),
        ),
        (
            HttpError::LimitHeaderSection,
            request_error(
                &post("A: 1234567890\r\nB: 1234567890\r\nC: 1234567890\r\n", ""),
                &Limits {
                    max_headers: 9,
                    ..tiny
                },
            ),
        ),
        (
            HttpError::LimitHeaderLine,
            request_error(&post("A: 12345678901234567890\r\n", ""), &tiny),
        ),
        (
            HttpError::LimitTooManyHeaders,
            request_error(
                &post("A: 1\r\nB: 2\r\n", ""),
                &Limits {
                    max_headers: 2,
                    ..d
                },
            ),
        ),
        (
            HttpError::LimitUriTooLong,
            request_error(
                format!("GET /{} HTTP/1.1\r\n", "a".repeat(20)).as_bytes(),
                &tiny,
            ),
        ),
        (
            HttpError::LimitBody,
            request_error(&post("Content-Length: 5\r\n", "12345"), &tiny),
        ),
        (
            HttpError::LimitChunkExtension,
            request_error(&chunked(&long_ext), &d),
        ),
        (
            HttpError::UpstreamInvalidResponse,
            response_error(b"HTTP/1.1 2000 OK\r\n\r\n"),
        ),
        (
            HttpError::UpstreamHeaderTooLarge,
            response_error(format!("HTTP/1.1 200 OK\r\nA: {}\r\n\r\n", "a".repeat(80)).as_bytes()),
        ),
        (
            HttpError::UpstreamInvalidFraming,
            response_error(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        ),
        (
            HttpError::UpstreamInvalidChunk,
            response_error(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        ),
        (
            HttpError::UpstreamIncompleteBody,
            response_error(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
        ),
    ];
    for (want, got) in &cases {
        assert_eq!(got.as_ref(), Some(want), "{}", want.code());
    }
    for e in HttpError::CODEC {
        assert!(
            cases.iter().any(|(w, _)| w == e),
            "no case for {}",
            e.code()
        );
    }
}

#[test]
fn pipelined_requests_with_bodies_split_exactly() {
    let wire = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n\
GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
    let limits = Limits::default();
    let mut pos = 0;
    let mut seen = Vec::new();
    while pos < wire.len() {
        let (head, n) = parse_request_head(&wire[pos..], &limits).unwrap().unwrap();
        pos += n;
        let mut dec = BodyDecoder::for_request(head.body, &limits);
        let mut body = Vec::new();
        loop {
            let d = dec.decode(&wire[pos..]).unwrap();
            if let Some(r) = d.data {
                body.extend_from_slice(&wire[pos + r.start..pos + r.end]);
            }
            pos += d.consumed;
            if d.done {
                break;
            }
        }
        seen.push((head.target, body));
    }
    assert_eq!(
        seen,
        [
            ("/a".to_owned(), b"abc".to_vec()),
            ("/b".to_owned(), b"de".to_vec()),
            ("/c".to_owned(), vec![])
        ]
    );
}
