//! HTTP/1.1 codec costs on the request path: parsing a browser-like request
//! head, encoding it toward a backend with the forwarding headers, parsing a
//! backend response head, and decoding a chunked body.
//! `cargo xtask bench` (or `cargo bench -p portier-bench --bench h1_codec`).

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use portier::http::Limits;
use portier::http::forward::{ForwardInput, Scheme, forward_headers};
use portier::http::h1::{
    BodyDecoder, BodyKind, encode_request_head, parse_request_head, parse_response_head,
};

const REQUEST: &[u8] = b"GET /api/v1/items?page=2&sort=desc HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Cookie: session=8f2a1c9e0b7d4e6f; theme=dark; consent=1\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: application/json; charset=utf-8\r\n\
Content-Length: 1234\r\n\
Cache-Control: no-cache\r\n\
Date: Wed, 25 Nov 2026 17:00:00 GMT\r\n\
Server: puma\r\n\r\n";

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("h1");
    g.throughput(Throughput::Bytes(REQUEST.len() as u64));
    g.bench_function("parse_request_head", |b| {
        b.iter(|| parse_request_head(black_box(REQUEST), &limits))
    });
    let head = match parse_request_head(REQUEST, &limits) {
        Ok(Some((h, _))) => h,
        other => panic!("fixture does not parse: {other:?}"),
    };
    g.bench_function("forward_and_encode_request_head", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            let xff: Vec<&[u8]> = head.header_values("x-forwarded-for").collect();
            let fwd = forward_headers(&ForwardInput {
                peer_ip: "203.0.113.7".parse().expect("ip"),
                peer_trusted: false,
                incoming_xff: &xff,
                scheme: Scheme::Http,
                port: 80,
                incoming_request_id: head.header("x-request-id"),
                generated_id: uuid::Uuid::from_u128(0x1234),
                start: (1_790_000_000, 123),
            });
            encode_request_head(black_box(&head), &fwd.fields(), &mut out);
            out.len()
        })
    });
    g.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    g.bench_function("parse_response_head", |b| {
        b.iter(|| parse_response_head(black_box(RESPONSE), &limits, false))
    });
    let mut chunked = Vec::new();
    for _ in 0..64 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b'x'; 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    g.throughput(Throughput::Bytes(chunked.len() as u64));
    g.bench_function("decode_chunked_64k", |b| {
        b.iter(|| {
            let mut d = BodyDecoder::for_response(BodyKind::Chunked, &limits);
            let mut at = 0;
            while at < chunked.len() {
                match d.decode(&chunked[at..]) {
                    Ok(x) if x.consumed > 0 => at += x.consumed,
                    _ => break,
                }
            }
            at
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
