//! The real `portier` proxying HTTP/1.1 to real `portier-demo-backend`
//! processes on loopback, driven by raw sockets and curl.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::proc::{Backend, Conn, Proxy, UpgradingBackend, app, app_at, curl, get, seen_header};

const HOST: &str = "demo.localhost";

#[test]
fn injects_forwarding_headers_and_round_robins() {
    let b1 = Backend::start("b1");
    let b2 = Backend::start("b2");
    let p = Proxy::start("", &app("demo", HOST, &[&b1, &b2], ""));
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = get(p.addr, HOST, "/hello?x=1");
        assert_eq!(r.status, 200);
        let echo = r.json();
        seen.push(echo["backend"].as_str().unwrap_or_default().to_string());
        assert_eq!(
            seen_header(&echo, "x-forwarded-for").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            seen_header(&echo, "x-real-ip").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            seen_header(&echo, "x-forwarded-proto").as_deref(),
            Some("http")
        );
        assert_eq!(
            seen_header(&echo, "x-forwarded-port"),
            Some(p.addr.port().to_string())
        );
        let id = seen_header(&echo, "x-request-id").expect("request id sent to the backend");
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        assert_eq!(
            r.header("x-request-id"),
            Some(id.as_str()),
            "echoed on the response"
        );
        let start = seen_header(&echo, "x-request-start").expect("request start");
        let (secs, millis) = start
            .strip_prefix("t=")
            .and_then(|t| t.split_once('.'))
            .expect("t=<secs>.<millis>");
        assert!(
            secs.len() >= 10 && secs.bytes().all(|b| b.is_ascii_digit()),
            "{start}"
        );
        assert!(
            millis.len() == 3 && millis.bytes().all(|b| b.is_ascii_digit()),
            "{start}"
        );
        assert_eq!(echo["target"], "/hello?x=1");
    }
    assert_eq!(seen, ["b1", "b2", "b1", "b2"], "strict round-robin");
}

#[test]
fn request_ids_are_kept_when_sane_and_replaced_otherwise() {
    let b = Backend::start("b");
    let p = Proxy::start("", &app("demo", HOST, &[&b], ""));
    let mut c = Conn::open(p.addr);
    c.send(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Request-ID: abc-123_x\r\n\r\n").as_bytes());
    let r = c.response();
    assert_eq!(
        seen_header(&r.json(), "x-request-id").as_deref(),
        Some("abc-123_x")
    );
    assert_eq!(r.header("x-request-id"), Some("abc-123_x"));
    c.send(
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Request-ID: bad id with spaces\r\n\r\n")
            .as_bytes(),
    );
    let r = c.response();
    let id = seen_header(&r.json(), "x-request-id").expect("id");
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "replaced by a UUID: {id}"
    );
}

#[test]
fn forwarded_for_is_replaced_unless_the_peer_is_trusted() {
    let b = Backend::start("b");
    let untrusted = Proxy::start("", &app("demo", HOST, &[&b], ""));
    let trusted = Proxy::start(
        "trusted_proxies = [\"127.0.0.0/8\"]",
        &app("demo", HOST, &[&b], ""),
    );
    let req = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n");
    let mut c = Conn::open(untrusted.addr);
    c.send(req.as_bytes());
    let echo = c.response().json();
    assert_eq!(
        seen_header(&echo, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    let mut c = Conn::open(trusted.addr);
    c.send(req.as_bytes());
    let echo = c.response().json();
    assert_eq!(
        seen_header(&echo, "x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(
        seen_header(&echo, "x-real-ip").as_deref(),
        Some("203.0.113.9")
    );
}

#[test]
fn unknown_host_is_404_with_the_error_header() {
    let b = Backend::start("b");
    let p = Proxy::start(
        "error_header = \"X-Router-Error\"",
        &app("demo", HOST, &[&b], ""),
    );
    let r = get(p.addr, "nobody.example", "/");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-router-error"), Some("unknown_host"));
    assert!(r.header("x-request-id").is_some());
    assert!(r.text().contains("unknown_host"));
    // Host matching ignores case, port and a trailing dot.
    assert_eq!(get(p.addr, "DEMO.localhost.:8080", "/").status, 200);
}

#[test]
fn header_limits_answer_431() {
    let b = Backend::start("b");
    let p = Proxy::start("", &app("demo", HOST, &[&b], ""));
    let mut c = Conn::open(p.addr);
    let big = "a".repeat(9000);
    c.send(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let r = c.response();
    assert_eq!(r.status, 431);
    assert_eq!(r.header("x-portier-error"), Some("header_too_large"));

    let mut c = Conn::open(p.addr);
    let mut req = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n");
    for i in 0..8 {
        req.push_str(&format!("X-H{i}: {}\r\n", "b".repeat(5000)));
    }
    req.push_str("\r\n");
    c.send(req.as_bytes());
    let r = c.response();
    assert_eq!(r.status, 431);
    assert_eq!(
        r.header("x-portier-error"),
        Some("header_section_too_large")
    );
}

#[test]
fn body_limit_answers_413_up_front_and_mid_stream() {
    let b = Backend::start("b");
    let p = Proxy::start(
        "",
        &format!(
            "[limits]\nmax_body = 1000\n{}",
            app("demo", HOST, &[&b], "")
        ),
    );
    let mut c = Conn::open(p.addr);
    c.send(format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5000\r\n\r\n").as_bytes());
    let r = c.response();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("x-portier-error"), Some("body_too_large"));

    let mut c = Conn::open(p.addr);
    c.send(
        format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes(),
    );
    for _ in 0..3 {
        c.send(format!("1f4\r\n{}\r\n", "x".repeat(500)).as_bytes());
    }
    c.send(b"0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("x-portier-error"), Some("body_too_large"));
    assert!(c.is_closed());
}

#[test]
fn smuggling_shapes_get_400_and_a_closed_connection() {
    let b = Backend::start("b");
    let p = Proxy::start("", &app("demo", HOST, &[&b], ""));
    let cases: &[(&str, &str)] = &[
        (
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "conflicting_content_length",
        ),
        (
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "content_length_with_transfer_encoding",
        ),
        (
            "Transfer-Encoding: gzip, chunked\r\n",
            "unknown_transfer_coding",
        ),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "",
        ),
        ("X-A: b\r\n folded\r\n", "obs_fold"),
        ("X-A: b\rc\r\n", "invalid_header_value"),
        ("X-A: b\0c\r\n", "invalid_header_value"),
        ("Bad Name: x\r\n", "invalid_header_name"),
    ];
    for (headers, code) in cases {
        let mut c = Conn::open(p.addr);
        c.send(format!("POST / HTTP/1.1\r\nHost: {HOST}\r\n{headers}\r\nhello").as_bytes());
        let r = c.response();
        assert_eq!(r.status, 400, "{headers:?}");
        if !code.is_empty() {
            assert_eq!(r.header("x-portier-error"), Some(*code), "{headers:?}");
        }
        assert!(c.is_closed(), "connection closed after {headers:?}");
    }
    // An invalid chunk size mid-body.
    let mut c = Conn::open(p.addr);
    c.send(format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n").as_bytes());
    let r = c.response();
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-portier-error"), Some("invalid_chunk_size"));
}

#[test]
fn slow_header_trickle_gets_408() {
    let b = Backend::start("b");
    let p = Proxy::start(
        "",
        &format!(
            "[limits]\nheader_timeout_ms = 300\n{}",
            app("demo", HOST, &[&b], "")
        ),
    );
    let mut c = Conn::open(p.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: demo.local");
    std::thread::sleep(Duration::from_millis(150));
    c.send(b"host\r\nX-Slow: 1\r\n");
    let r = c.response();
    assert_eq!(r.status, 408);
    assert_eq!(r.header("x-portier-error"), Some("header_timeout"));
}

#[test]
fn keep_alive_and_pipelined_requests_are_answered_in_order() {
    let b1 = Backend::start("b1");
    let b2 = Backend::start("b2");
    let p = Proxy::start("", &app("demo", HOST, &[&b1, &b2], ""));
    let mut c = Conn::open(p.addr);
    let mut batch = String::new();
    for i in 0..5 {
        batch.push_str(&format!("GET /req/{i} HTTP/1.1\r\nHost: {HOST}\r\n\r\n"));
    }
    batch.push_str(&format!(
        "POST /req/5 HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\n\r\nabc"
    ));
    c.send(batch.as_bytes());
    for i in 0..6 {
        let r = c.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["path"], format!("/req/{i}"));
    }
    // Same connection, later.
    c.send(format!("GET /again HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes());
    assert_eq!(c.response().json()["path"], "/again");
}

#[test]
fn bodies_stream_both_ways_chunked_and_sized() {
    let b = Backend::start("b");
    let p = Proxy::start("", &app("demo", HOST, &[&b], ""));
    // 5 MB chunked upload, counted by the backend.
    let mut c = Conn::open(p.addr);
    c.send(
        format!("POST /up HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n")
            .as_bytes(),
    );
    let chunk = vec![b'z'; 64 * 1024];
    let mut total = 0;
    while total < 5_000_000 {
        c.send(format!("{:x}\r\n", chunk.len()).as_bytes());
        c.send(&chunk);
        c.send(b"\r\n");
        total += chunk.len();
    }
    c.send(b"0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.json()["body_bytes"], total as u64);
    // Large downloads, sized and chunked.
    c.send(format!("GET /bytes/3000000 HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes());
    assert_eq!(c.response().body.len(), 3_000_000);
    c.send(format!("GET /bytes/3000000?chunked=1 HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes());
    let r = c.response();
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body.len(), 3_000_000);
    // curl with Expect: 100-continue on a large upload.
    let file = std::env::temp_dir().join(format!("portier-upload-{}", std::process::id()));
    std::fs::write(&file, vec![b'q'; 2_000_000]).expect("write");
    let url = format!("http://{}/expect", p.addr);
    let (code, out) = curl(&[
        "-H",
        &format!("Host: {HOST}"),
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &format!("@{}", file.display()),
        &url,
    ]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, 0);
    let echo: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(echo["body_bytes"], 2_000_000);
}

#[test]
fn http10_client_gets_a_close_delimited_body() {
    let b = Backend::start("b");
    let p = Proxy::start("", &app("demo", HOST, &[&b], ""));
    let mut c = Conn::open(p.addr);
    c.send(format!("GET /bytes/100000?chunked=1 HTTP/1.0\r\nHost: {HOST}\r\n\r\n").as_bytes());
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.header("transfer-encoding").is_none());
    assert_eq!(r.body.len(), 100_000);
}

#[test]
fn full_queue_answers_503_at_once_and_queued_requests_are_served() {
    let b = Backend::start("b");
    let p = Proxy::start(
        "",
        &app(
            "demo",
            HOST,
            &[&b],
            "max_conns_per_backend = 1\nqueue_per_backend = 2\n",
        ),
    );
    let ok = Arc::new(AtomicUsize::new(0));
    let full = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for i in 0..4 {
        let (addr, ok, full) = (p.addr, ok.clone(), full.clone());
        threads.push(std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50 * i));
            let r = get(addr, HOST, "/slow/600");
            match (r.status, r.header("x-portier-error")) {
                (200, _) => ok.fetch_add(1, Ordering::SeqCst),
                (503, Some("queue_full")) => full.fetch_add(1, Ordering::SeqCst),
                other => panic!("unexpected {other:?}"),
            };
        }));
    }
    for t in threads {
        t.join().expect("client thread");
    }
    assert_eq!(ok.load(Ordering::SeqCst), 3, "one active + two queued");
    assert_eq!(
        full.load(Ordering::SeqCst),
        1,
        "the fourth finds the queue full"
    );
}

#[test]
fn waiting_past_the_queue_timeout_answers_503() {
    let b = Backend::start("b");
    let p = Proxy::start(
        "",
        &format!(
            "[limits]\nqueue_timeout_ms = 200\n{}",
            app("demo", HOST, &[&b], "max_conns_per_backend = 1\n")
        ),
    );
    let addr = p.addr;
    let slow = std::thread::spawn(move || get(addr, HOST, "/slow/2500").status);
    std::thread::sleep(Duration::from_millis(400));
    let r = get(p.addr, HOST, "/");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-portier-error"), Some("queue_timeout"));
    assert_eq!(slow.join().expect("slow"), 200);
}

#[test]
fn backend_read_timeout_answers_504() {
    let b = Backend::start("b");
    let p = Proxy::start(
        "",
        &format!(
            "[limits]\nread_timeout_ms = 300\n{}",
            app("demo", HOST, &[&b], "")
        ),
    );
    let r = get(p.addr, HOST, "/slow/3000");
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-portier-error"), Some("upstream_read_timeout"));
}

#[test]
fn all_backends_down_answers_503() {
    let dead = support::proc::free_port();
    let p = Proxy::start(
        "",
        &format!(
            "[[apps]]\nname = \"demo\"\ndomains = [\"{HOST}\"]\nbackends = [\"127.0.0.1:{dead}\"]\n"
        ),
    );
    let r = get(p.addr, HOST, "/");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-portier-error"), Some("no_backend_available"));
}

#[test]
fn refused_backend_is_quarantined_requests_retried_and_it_returns_after_a_probe() {
    let b1 = Backend::start("b1");
    let b2 = Backend::start("b2");
    let dead_port = support::proc::free_port();
    let dead: std::net::SocketAddr = format!("127.0.0.1:{dead_port}").parse().expect("addr");
    let p = Proxy::start(
        "",
        &format!(
            "[[apps]]\nname = \"demo\"\ndomains = [\"{HOST}\"]\nbackends = [\"{}\", \"{}\", \"{dead}\"]\nquarantine_initial_ms = 300\nquarantine_max_ms = 600\n",
            b1.addr, b2.addr
        ),
    );
    // Every request succeeds although one backend in three refuses.
    for _ in 0..9 {
        assert_eq!(get(p.addr, HOST, "/").status, 200);
    }
    // Bring the dead backend to life: a probe puts it back in rotation.
    let _b3 = Backend::start_on("b3", dead_port);
    let mut back = false;
    for _ in 0..60 {
        if get(p.addr, HOST, "/").json()["backend"] == "b3" {
            back = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(back, "the revived backend was never used again");
}

#[test]
fn killing_a_backend_under_load_loses_no_request() {
    let b1 = Backend::start("b1");
    let b2 = Backend::start("b2");
    let mut b3 = Backend::start("b3");
    let b3_port = b3.addr.port();
    let p = Proxy::start(
        "",
        &app(
            "demo",
            HOST,
            &[&b1, &b2, &b3],
            "quarantine_initial_ms = 200\nquarantine_max_ms = 400\n",
        ),
    );
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for _ in 0..4 {
        let (addr, failures, done) = (p.addr, failures.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            let mut seen_b3 = 0;
            for _ in 0..150 {
                let mut c = Conn::open(addr);
                c.send(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes());
                match c.try_response() {
                    Some(r) if r.status == 200 => {
                        if r.json()["backend"] == "b3" {
                            seen_b3 += 1;
                        }
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            seen_b3
        }));
    }
    while done.load(Ordering::SeqCst) < 150 {
        std::thread::sleep(Duration::from_millis(5));
    }
    b3.stop();
    while done.load(Ordering::SeqCst) < 400 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _revived = Backend::start_on("b3", b3_port);
    for t in threads {
        t.join().expect("load thread");
    }
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "no client saw a failure"
    );
    // After the restart b3 serves again.
    let mut back = false;
    for _ in 0..60 {
        if get(p.addr, HOST, "/").json()["backend"] == "b3" {
            back = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(back, "b3 back in rotation after restart");
}

#[test]
fn websocket_upgrade_is_tunnelled() {
    let b = Backend::start("b");
    let p = Proxy::start("", &app("demo", HOST, &[&b], ""));
    let mut s = TcpStream::connect(p.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("handshake");
    let mut c = Conn::from_stream(s);
    let r = c.try_response().expect("101");
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    // A masked text frame "hello".
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 5];
    frame.extend_from_slice(&mask);
    frame.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    c.send(&frame);
    assert_eq!(c.read_exact(7), [0x81, 5, b'h', b'e', b'l', b'l', b'o']);
}

#[test]
fn server_sent_events_arrive_incrementally() {
    let b = Backend::start("b");
    let p = Proxy::start("", &app("demo", HOST, &[&b], ""));
    let mut c = Conn::open(p.addr);
    c.send(format!("GET /sse?events=3&interval_ms=50 HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes());
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "data: 0\n\ndata: 1\n\ndata: 2\n\n");
}

#[test]
fn queued_requests_keep_their_order() {
    let b = Backend::start("b");
    // One reactor thread: order is exact within a thread (across threads it
    // is approximate, see the README).
    let cfg = app("demo", HOST, &[&b], "max_conns_per_backend = 1\n");
    let p = Proxy::start_with_threads(1, "", &cfg);
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 0..6u64 {
        let (addr, order) = (p.addr, order.clone());
        threads.push(std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100 * i));
            let r = get(
                addr,
                HOST,
                &format!("/slow/{}", if i == 0 { 800 } else { 20 }),
            );
            assert_eq!(r.status, 200);
            if let Ok(mut o) = order.lock() {
                o.push(i);
            }
        }));
    }
    for t in threads {
        t.join().expect("client");
    }
    let order = order.lock().map(|o| o.clone()).unwrap_or_default();
    assert_eq!(order, vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn backend_connect_timeout_answers_504_and_quarantines() {
    // A listener whose accept queue is full and never drained: SYNs to it are
    // dropped, so a connect hangs until Portier's connect timeout.
    let stuck = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let stuck_addr = stuck.local_addr().expect("addr");
    // SAFETY: shrink the backlog of our own listening socket.
    unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&stuck), 0) };
    let _fill: Vec<TcpStream> = (0..8)
        .filter_map(|_| TcpStream::connect_timeout(&stuck_addr, Duration::from_millis(200)).ok())
        .collect();
    let p = Proxy::start(
        "",
        &format!(
            "[limits]\nconnect_timeout_ms = 300\n[[apps]]\nname = \"demo\"\ndomains = [\"{HOST}\"]\nbackends = [\"{stuck_addr}\"]\n"
        ),
    );
    let r = get(p.addr, HOST, "/");
    assert_eq!(r.status, 504);
    assert_eq!(
        r.header("x-portier-error"),
        Some("upstream_connect_timeout")
    );
    // The backend is now quarantined: the next request is refused at once.
    let r = get(p.addr, HOST, "/");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-portier-error"), Some("no_backend_available"));
}

#[test]
fn idle_keepalive_and_idle_tunnels_are_closed() {
    let b = Backend::start("b");
    let p = Proxy::start(
        "",
        &format!(
            "[limits]\nkeepalive_timeout_ms = 300\ntunnel_idle_timeout_ms = 300\n{}",
            app("demo", HOST, &[&b], "")
        ),
    );
    let mut c = Conn::open(p.addr);
    c.send(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes());
    assert_eq!(c.response().status, 200);
    assert!(
        c.is_closed(),
        "an idle keep-alive connection is closed after the timeout"
    );

    let mut s = TcpStream::connect(p.addr).expect("connect");
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("handshake");
    let mut ws = Conn::from_stream(s);
    assert_eq!(ws.try_response().map(|r| r.status), Some(101));
    assert!(
        ws.is_closed(),
        "a silent WebSocket is closed after the tunnel idle timeout"
    );
}

/// Backends that record the order requests reach them and answer only
/// when the test releases one response at a time (shared by all of them).
struct Gate {
    state: std::sync::Mutex<(Vec<String>, usize)>,
    changed: std::sync::Condvar,
}

impl Gate {
    fn start(n: usize) -> (Arc<Gate>, Vec<std::net::SocketAddr>) {
        let gate = Arc::new(Gate {
            state: std::sync::Mutex::new((Vec::new(), 0)),
            changed: std::sync::Condvar::new(),
        });
        let mut addrs = Vec::new();
        for _ in 0..n {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            addrs.push(l.local_addr().expect("addr"));
            let gate = gate.clone();
            std::thread::spawn(move || {
                for s in l.incoming().flatten() {
                    let gate = gate.clone();
                    std::thread::spawn(move || gate.serve(s));
                }
            });
        }
        (gate, addrs)
    }

    /// Keep-alive: record each request's path, wait for a release, answer.
    fn serve(&self, mut s: TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                match std::io::Read::read(&mut s, &mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            let mut st = self.state.lock().expect("lock");
            st.0.push(path);
            self.changed.notify_all();
            while st.1 == 0 {
                st = self.changed.wait(st).expect("wait");
            }
            st.1 -= 1;
            drop(st);
            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    }

    fn arrivals(&self) -> Vec<String> {
        self.state.lock().expect("lock").0.clone()
    }

    /// Let one held request be answered, then wait until `n` requests in
    /// all have arrived (the freed slot reached the next in the queue).
    fn release_one_and_wait_for(&self, n: usize) {
        let mut st = self.state.lock().expect("lock");
        st.1 += 1;
        self.changed.notify_all();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while st.0.len() < n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "only {} of {n} requests arrived",
                st.0.len()
            );
            st = self.changed.wait_timeout(st, left).expect("wait").0;
        }
    }
}

#[test]
fn queued_requests_are_served_in_arrival_order_across_reactor_threads() {
    // Two reactor threads, two backends of one slot each, both held busy;
    // 40 requests arrive 40 ms apart on new connections (spread over both
    // reactors by SO_REUSEPORT) and wait in the app's queue. Each freed
    // slot must go to the oldest waiting request, whichever thread holds it.
    let (gate, addrs) = Gate::start(2);
    let backends: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    let cfg = format!(
        "[[apps]]\nname = \"fifo\"\ndomains = [\"{HOST}\"]\nbackends = [{}]\nmax_conns_per_backend = 1\n",
        backends.join(", ")
    );
    let p = Proxy::start_with_threads(2, "", &cfg);
    let send = |path: String| {
        let addr = p.addr;
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .expect("send");
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut out);
            out
        })
    };
    let mut clients = vec![send("/hold/a".into()), send("/hold/b".into())];
    let t0 = std::time::Instant::now();
    while gate.arrivals().len() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "holders never arrived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for i in 0..40 {
        clients.push(send(format!("/n/{i:02}")));
        std::thread::sleep(Duration::from_millis(40));
    }
    assert_eq!(gate.arrivals().len(), 2, "the 40 wait in the queue");
    for k in 0..40 {
        gate.release_one_and_wait_for(3 + k);
    }
    gate.release_one_and_wait_for(42);
    gate.release_one_and_wait_for(42);
    for c in clients {
        let out = c.join().expect("client");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    let order: Vec<String> = gate.arrivals().into_iter().skip(2).collect();
    let want: Vec<String> = (0..40).map(|i| format!("/n/{i:02}")).collect();
    assert_eq!(order, want, "arrival order at the backends");
}

/// `Upgrade: h2c` is not forwarded: the backend (which would switch) sees a
/// plain request, the connection stays HTTP/1.1, and the next request on it
/// is processed — a forged `X-Forwarded-For` replaced.
#[test]
fn non_websocket_upgrades_are_not_forwarded_and_the_connection_stays_http() {
    let b = UpgradingBackend::start(false);
    let p = Proxy::start("", &app_at("demo", HOST, &[b.addr], ""));
    let mut c = Conn::open(p.addr);
    c.send(
        format!(
            "GET /first HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    c.send(
        format!("GET /second HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(c.response().status, 200);
    let seen = b.seen();
    assert_eq!(seen.len(), 2, "two requests, no tunnel: {seen:?}");
    let first = seen[0].to_ascii_lowercase();
    for gone in ["upgrade", "http2-settings", "connection"] {
        assert!(!first.contains(gone), "{gone} forwarded: {first}");
    }
    assert!(
        seen[1].contains("X-Forwarded-For: 127.0.0.1\r\n"),
        "{}",
        seen[1]
    );
    assert!(!seen[1].contains("6.6.6.6"), "{}", seen[1]);
}

/// A backend that switches protocols on a request Portier did not forward
/// as an upgrade gets no tunnel: 502 and the client connection closes;
/// nothing more reaches the backend.
#[test]
fn a_101_to_a_request_not_forwarded_as_an_upgrade_is_a_502_and_closes() {
    let b = UpgradingBackend::start(true);
    let p = Proxy::start("", &app_at("demo", HOST, &[b.addr], ""));
    let mut c = Conn::open(p.addr);
    c.send(
        format!(
            "GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n\
             GET /smuggled HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.response();
    assert_eq!(r.status, 502);
    assert_eq!(
        r.header("x-portier-error"),
        Some("upstream_invalid_response")
    );
    assert!(c.is_closed(), "the client connection closes after the 502");
    std::thread::sleep(Duration::from_millis(200));
    let seen = b.seen();
    assert_eq!(seen.len(), 1, "only the first request reached it: {seen:?}");
    assert!(
        !seen[0].to_ascii_lowercase().contains("upgrade"),
        "{}",
        seen[0]
    );
}

/// Absolute-form targets: routed by their authority, sent to the backend in
/// origin-form with Host = the authority, whatever Host the client sent.
#[test]
fn absolute_form_routes_by_its_authority_and_reaches_the_backend_in_origin_form() {
    let b = Backend::start("b");
    let p = Proxy::start("", &app("demo", HOST, &[&b], ""));
    let mut c = Conn::open(p.addr);
    c.send(format!("GET http://{HOST}/p?q=1 HTTP/1.1\r\nHost: nope.localhost\r\n\r\n").as_bytes());
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["target"], "/p?q=1");
    assert_eq!(seen_header(&echo, "host").as_deref(), Some(HOST));
    let hosts = echo["headers"]
        .as_array()
        .map(|a| a.iter().filter(|h| h[0].as_str() == Some("Host")).count());
    assert_eq!(hosts, Some(1), "one Host: {echo}");
    // The authority decides, not the Host field.
    c.send(format!("GET http://nope.localhost/ HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes());
    let r = c.response();
    assert_eq!(
        (r.status, r.header("x-portier-error")),
        (404, Some("unknown_host"))
    );
    // A real client speaking to Portier as a forward proxy (curl -x).
    let (code, out) = curl(&[
        "-s",
        "-x",
        &format!("http://{}", p.addr),
        &format!("http://{HOST}/via-proxy"),
    ]);
    assert_eq!(code, 0);
    let echo: serde_json::Value = serde_json::from_str(&out).expect("echo");
    assert_eq!(echo["target"], "/via-proxy");
    assert_eq!(seen_header(&echo, "host").as_deref(), Some(HOST));
    assert_eq!(seen_header(&echo, "proxy-connection"), None);
}

/// Field names with `_` never reach the backend (nginx's default), so none
/// can pose as a framing or forwarding field to a CGI-style app.
#[test]
fn header_names_with_underscores_are_dropped() {
    let b = Backend::start("b");
    let p = Proxy::start("", &app("demo", HOST, &[&b], ""));
    let url = format!("http://{}/u", p.addr);
    let (code, out) = curl(&[
        "-s",
        "-H",
        &format!("Host: {HOST}"),
        "-H",
        "X_Forwarded_For: 6.6.6.6",
        "-H",
        "X_Real_Ip: 6.6.6.6",
        "-H",
        "X_Request_Id: forged",
        "-H",
        "Transfer_Encoding: chunked",
        "-H",
        "Content_Length: 5",
        "-H",
        "My_App_Header: 1",
        "-H",
        "X-Kept: yes",
        &url,
    ]);
    assert_eq!(code, 0);
    let echo: serde_json::Value = serde_json::from_str(&out).expect("echo");
    let names: Vec<&str> = echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter_map(|h| h[0].as_str())
        .collect();
    assert!(!names.iter().any(|n| n.contains('_')), "{names:?}");
    assert_eq!(seen_header(&echo, "x-kept").as_deref(), Some("yes"));
    assert_eq!(
        seen_header(&echo, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        seen_header(&echo, "x-real-ip").as_deref(),
        Some("127.0.0.1")
    );
    assert_ne!(
        seen_header(&echo, "x-request-id").as_deref(),
        Some("forged")
    );
}

/// A pooled backend connection that the idle timeout closed must leave the
/// pool: its slot is reused by the next connection, and a stale pool entry
/// pointing there once made a request for the first backend close a busy
/// connection to another one, whose client then waited forever.
#[test]
fn a_backend_connection_closed_while_idle_leaves_the_pool() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let p = Proxy::start_with_threads(
        1,
        "",
        &format!(
            "[limits]\nbackend_keepalive_ms = 200\n{}{}",
            app("one", "one.localhost", &[&a], ""),
            app("two", "two.localhost", &[&b], "")
        ),
    );
    // Client connections first, so that only backend connections take and
    // free slots from here on.
    let (mut one, mut two) = (Conn::open(p.addr), Conn::open(p.addr));
    let get_on = |c: &mut Conn, host: &str, path: &str| {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    };
    get_on(&mut one, "one.localhost", "/");
    assert_eq!(one.response().status, 200);
    // The idle connection to `a` times out and is closed.
    std::thread::sleep(Duration::from_millis(600));
    // A slow request to `b` opens a connection, in the slot just freed.
    get_on(&mut two, "two.localhost", "/slow/1000");
    std::thread::sleep(Duration::from_millis(200));
    // A request for `a` while `b`'s connection is busy.
    get_on(&mut one, "one.localhost", "/");
    assert_eq!(one.response().status, 200);
    let slow = two.try_response().map(|r| r.status);
    assert_eq!(slow, Some(200), "the busy connection to b kept its request");
}
