//! On-the-fly gzip of responses (SPEC §3 Compression), pure: decides whether
//! a response is compressed, rewrites its head, and compresses its payload
//! as it streams (a sync flush per batch, so slow streams such as SSE still
//! arrive incrementally).

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::http::h1::ResponseHead;

/// Content types compressed (parameters like `; charset=utf-8` ignored).
pub const COMPRESSIBLE: &[&str] = &[
    "text/html",
    "text/plain",
    "text/css",
    "application/x-javascript",
    "text/xml",
    "application/xml",
    "application/rss+xml",
    "application/atom+xml",
    "text/javascript",
    "application/javascript",
    "application/json",
    "text/mathml",
];

/// Does `Accept-Encoding` allow gzip? Honours q-values (`gzip;q=0` = no) and
/// `*` (RFC 9110 §12.5.3).
pub fn accepts_gzip<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut gzip: Option<bool> = None;
    let mut star: Option<bool> = None;
    for v in values {
        for item in String::from_utf8_lossy(v).split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q_positive = true;
            for p in parts {
                let p = p.trim();
                if let Some(q) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                    q_positive = q.trim().parse::<f32>().map(|q| q > 0.0).unwrap_or(false);
                }
            }
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = Some(q_positive),
                "*" => star = Some(q_positive),
                _ => {}
            }
        }
    }
    gzip.or(star).unwrap_or(false)
}

/// Should this response be gzipped? `min_size` applies when the length is
/// known up front (a chunked response of unknown size is compressed).
pub fn should_compress(head: &ResponseHead, is_head_request: bool, min_size: u64) -> bool {
    if is_head_request || head.status < 200 || head.status == 204 || head.status == 304 {
        return false;
    }
    if let Some(enc) = head.header("content-encoding")
        && !enc.trim_ascii().eq_ignore_ascii_case(b"identity")
    {
        return false;
    }
    if head.header("cache-control").is_some_and(|v| {
        String::from_utf8_lossy(v)
            .to_ascii_lowercase()
            .contains("no-transform")
    }) {
        return false;
    }
    let Some(ct) = head.header("content-type") else {
        return false;
    };
    let ct = String::from_utf8_lossy(ct);
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !COMPRESSIBLE.contains(&mime.as_str()) {
        return false;
    }
    match head.body {
        crate::http::h1::BodyKind::Length(n) => n >= min_size,
        crate::http::h1::BodyKind::None => false,
        _ => true,
    }
}

/// Rewrite the head of a response that will be gzipped: no Content-Length,
/// `Content-Encoding: gzip`, `Vary: Accept-Encoding`, strong ETag weakened.
pub fn rewrite_head(head: &mut ResponseHead) {
    head.headers.retain(|n, _| {
        !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("content-encoding")
    });
    let mut has_vary = false;
    head.headers.map_values(|n, v| {
        if n.eq_ignore_ascii_case("etag") && v.first() == Some(&b'"') {
            return Some([&b"W/"[..], v].concat());
        }
        if n.eq_ignore_ascii_case("vary") && !has_vary {
            has_vary = true;
            let s = String::from_utf8_lossy(v).to_ascii_lowercase();
            if !s.contains("accept-encoding") && !s.contains('*') {
                return Some([v, &b", Accept-Encoding"[..]].concat());
            }
        }
        None
    });
    head.headers.push("Content-Encoding", b"gzip");
    if !has_vary {
        head.headers.push("Vary", b"Accept-Encoding");
    }
}

/// A streaming gzip encoder.
pub struct Gzip {
    enc: GzEncoder<Vec<u8>>,
}

impl Gzip {
    pub fn new(level: u32) -> Gzip {
        Gzip {
            enc: GzEncoder::new(
                Vec::with_capacity(16 * 1024),
                Compression::new(level.min(9)),
            ),
        }
    }

    /// Compress `data`; the output so far is appended to `out` after a sync
    /// flush when `flush` (end of a batch), else only what is ready.
    pub fn push(&mut self, data: &[u8], flush: bool, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = self.enc.write_all(data);
        if flush {
            let _ = self.enc.flush();
        }
        out.append(self.enc.get_mut());
    }

    /// The end of the stream (gzip trailer).
    pub fn finish(self, out: &mut Vec<u8>) {
        if let Ok(rest) = self.enc.finish() {
            out.extend_from_slice(&rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Limits;
    use crate::http::h1::parse_response_head;
    use std::io::Read;

    fn head(raw: &str) -> ResponseHead {
        match parse_response_head(raw.as_bytes(), &Limits::default(), false) {
            Ok(Some((h, _))) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn accept_encoding_honours_q_values() {
        assert!(accepts_gzip([&b"gzip, deflate, br"[..]].into_iter()));
        assert!(accepts_gzip([&b"br;q=1.0, GZIP;q=0.5"[..]].into_iter()));
        assert!(!accepts_gzip([&b"gzip;q=0"[..]].into_iter()));
        assert!(!accepts_gzip([&b"gzip;q=0.000, *;q=1"[..]].into_iter()));
        assert!(accepts_gzip([&b"*"[..]].into_iter()));
        assert!(!accepts_gzip([&b"identity"[..]].into_iter()));
        assert!(!accepts_gzip(std::iter::empty()));
    }

    #[test]
    fn decides_by_type_size_encoding_and_no_transform() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 5000\r\n\r\n";
        assert!(should_compress(&head(ok), false, 1024));
        assert!(!should_compress(&head(ok), true, 1024), "HEAD");
        assert!(!should_compress(&head(ok), false, 10_000), "too small");
        let png = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n";
        assert!(!should_compress(&head(png), false, 0));
        let enc = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: br\r\nContent-Length: 5000\r\n\r\n";
        assert!(!should_compress(&head(enc), false, 0));
        let nt = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nCache-Control: public, no-transform\r\nContent-Length: 5000\r\n\r\n";
        assert!(!should_compress(&head(nt), false, 0));
        let nc = "HTTP/1.1 304 Not Modified\r\nContent-Type: text/html\r\n\r\n";
        assert!(!should_compress(&head(nc), false, 0));
        let chunked = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(
            !should_compress(&head(chunked), false, 0),
            "not a listed type"
        );
        let chunked =
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(
            should_compress(&head(chunked), false, 1024),
            "unknown size is compressed"
        );
    }

    #[test]
    fn rewrites_the_head_and_round_trips_the_body() {
        let mut h = head(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nETag: \"abc\"\r\nVary: Cookie\r\n\r\n",
        );
        rewrite_head(&mut h);
        assert!(h.header("content-length").is_none());
        assert_eq!(h.header("content-encoding"), Some(&b"gzip"[..]));
        assert_eq!(h.header("etag"), Some(&b"W/\"abc\""[..]));
        assert_eq!(h.header("vary"), Some(&b"Cookie, Accept-Encoding"[..]));
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut gz = Gzip::new(5);
        let mut out = Vec::new();
        for (i, part) in data.chunks(7000).enumerate() {
            gz.push(part, i % 3 == 0, &mut out);
        }
        gz.finish(&mut out);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn only_the_first_vary_grows_and_weak_or_starred_values_stay() {
        let fields = |h: &ResponseHead| {
            h.headers
                .iter()
                .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
                .collect::<Vec<_>>()
        };
        let mut h = head(
            "HTTP/1.1 200 OK\r\nVary: Cookie\r\nETag: W/\"x\"\r\nVary: Origin\r\nContent-Encoding: identity\r\nContent-Length: 9\r\n\r\n",
        );
        rewrite_head(&mut h);
        assert_eq!(
            fields(&h),
            [
                "Vary: Cookie, Accept-Encoding",
                "ETag: W/\"x\"",
                "Vary: Origin",
                "Content-Encoding: gzip"
            ]
        );
        let mut h = head("HTTP/1.1 200 OK\r\nVary: *\r\n\r\n");
        rewrite_head(&mut h);
        assert_eq!(fields(&h), ["Vary: *", "Content-Encoding: gzip"]);
        let mut h = head("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n");
        rewrite_head(&mut h);
        assert_eq!(
            fields(&h),
            ["Content-Encoding: gzip", "Vary: Accept-Encoding"]
        );
    }
}
