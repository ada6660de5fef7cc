//! On-the-fly gzip through the real `portier` (SPEC §3 Compression): the
//! client decompresses and compares byte for byte.

mod support;

use std::io::{Read, Write};

use support::proc::{Backend, Conn, Proxy, app};

const HOST: &str = "gz.test";

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn request(c: &mut Conn, path: &str, extra: &str) -> support::proc::Response {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}\r\n").as_bytes());
    c.response()
}

#[test]
fn large_sized_and_chunked_bodies_are_gzipped_and_round_trip() {
    let b = Backend::start("b");
    let p = Proxy::start("", &app("gz", HOST, &[&b], ""));
    let mut c = Conn::open(p.addr);
    for path in ["/bytes/3000000", "/bytes/3000000?chunked=1"] {
        let r = request(&mut c, path, "Accept-Encoding: br, gzip;q=0.8\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{path}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert!(r.header("content-length").is_none());
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert!(r.body.len() < 100_000, "compressed: {} bytes", r.body.len());
        assert_eq!(gunzip(&r.body), pattern(3_000_000), "{path}");
    }
}

#[test]
fn left_alone_when_refused_tiny_head_or_not_text() {
    let b = Backend::start("b");
    let p = Proxy::start("", &app("gz", HOST, &[&b], ""));
    let mut c = Conn::open(p.addr);
    let r = request(
        &mut c,
        "/bytes/50000",
        "Accept-Encoding: gzip;q=0, deflate\r\n",
    );
    assert!(r.header("content-encoding").is_none());
    assert_eq!(r.body, pattern(50_000));
    let r = request(&mut c, "/bytes/50000", "");
    assert!(r.header("content-encoding").is_none(), "no Accept-Encoding");
    let r = request(&mut c, "/bytes/100", "Accept-Encoding: gzip\r\n");
    assert!(
        r.header("content-encoding").is_none(),
        "below the minimum size"
    );
    assert_eq!(r.body, pattern(100));
    // The JSON echo is small; a 204 / HEAD never is compressed.
    c.send(
        format!("HEAD /bytes/50000 HTTP/1.1\r\nHost: {HOST}\r\nAccept-Encoding: gzip\r\n\r\n")
            .as_bytes(),
    );
    let mut head = vec![0u8; 0];
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.stream.read(&mut buf).expect("head");
        assert!(n > 0);
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(!text.contains("content-encoding"), "{text}");
    // The app can turn it off.
    let off = Proxy::start("", &app("gz", HOST, &[&b], "compress = false\n"));
    let mut c = Conn::open(off.addr);
    let r = request(&mut c, "/bytes/50000", "Accept-Encoding: gzip\r\n");
    assert!(r.header("content-encoding").is_none());
}

#[test]
fn http10_clients_get_close_delimited_gzip() {
    let b = Backend::start("b");
    let p = Proxy::start("", &app("gz", HOST, &[&b], ""));
    let mut c = Conn::open(p.addr);
    c.send(
        format!(
            "GET /bytes/200000?chunked=1 HTTP/1.0\r\nHost: {HOST}\r\nAccept-Encoding: gzip\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.response();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r.header("transfer-encoding").is_none());
    assert_eq!(gunzip(&r.body), pattern(200_000));
}

#[test]
fn a_slow_compressed_stream_still_arrives_event_by_event() {
    let b = Backend::start("b");
    let p = Proxy::start("", &app("gz", HOST, &[&b], ""));
    let mut s = std::net::TcpStream::connect(p.addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(
        format!("GET /sse?events=3&interval_ms=300&type=text/plain HTTP/1.1\r\nHost: {HOST}\r\nAccept-Encoding: gzip\r\n\r\n")
            .as_bytes(),
    )
    .expect("send");
    let mut conn = Conn::from_stream(s);
    // Read the head, then chunks one at a time, decompressing as they come.
    let head = conn.read_until(b"\r\n\r\n");
    assert!(
        String::from_utf8_lossy(&head).contains("Content-Encoding: gzip"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let mut seen = Vec::new();
    loop {
        let size_line = conn.read_until(b"\r\n");
        let size = usize::from_str_radix(String::from_utf8_lossy(&size_line).trim(), 16)
            .expect("chunk size");
        if size == 0 {
            break;
        }
        let data = conn.read_exact(size + 2);
        decoder.write_all(&data[..size]).expect("gzip data");
        decoder.flush().expect("flush");
        let text = String::from_utf8_lossy(decoder.get_ref()).into_owned();
        if seen.last() != Some(&text) && !text.is_empty() {
            seen.push(text);
        }
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("data: 0\n\n"),
        "the first event is decodable on its own, before the others were sent: {seen:?}"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("data: 0\n\ndata: 1\n\ndata: 2\n\n")
    );
}
