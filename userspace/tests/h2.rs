//! HTTP/2 through the real `portier` (TLS + ALPN h2) to HTTP/1.1 backends,
//! with real clients (curl --http2, nghttp, h2load) and frame-level attacks
//! (tests/h2/attacks.py, Debian's python3-hpack).

mod support;

use std::process::Command;

use support::proc::{Backend, Proxy, app, app_at, free_port};

const HOST: &str = "h2.test";

struct H2Proxy {
    _proxy: Proxy,
    port: u16,
    certs: std::path::PathBuf,
}

impl Drop for H2Proxy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.certs);
    }
}

fn start(backend: &Backend, app_extra: &str) -> H2Proxy {
    start_with(backend, app_extra, "")
}

/// `sections`: more top-level TOML (e.g. `[limits]`) before the app.
fn start_with(backend: &Backend, app_extra: &str, sections: &str) -> H2Proxy {
    start_app(&format!(
        "{sections}\n{}",
        app("h2", HOST, &[backend], app_extra)
    ))
}

fn start_app(apps: &str) -> H2Proxy {
    let certs =
        std::env::temp_dir().join(format!("portier-h2-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&certs).expect("mkdir");
    let pem = portier::tls::self_signed_pem(&[HOST.to_string()]).expect("cert");
    std::fs::write(certs.join("default.pem"), pem).expect("write cert");
    let port = free_port();
    let proxy = Proxy::start(
        &format!(
            "https = [\"127.0.0.1:{port}\"]\n[tls]\ncert_dir = \"{}\"\n",
            certs.display()
        ),
        apps,
    );
    H2Proxy {
        _proxy: proxy,
        port,
        certs,
    }
}

fn curl(port: u16, args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-k",
            "--http2",
            "--max-time",
            "30",
            "--resolve",
            &format!("{HOST}:{port}:127.0.0.1"),
        ])
        .args(args)
        .output()
        .expect("curl");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn url(port: u16, path: &str) -> String {
    format!("https://{HOST}:{port}{path}")
}

#[test]
fn requests_and_large_bodies_both_ways_over_h2() {
    let b = Backend::start("b");
    let p = start(&b, "");
    let (out, err) = curl(
        p.port,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            &url(p.port, "/"),
        ],
    );
    assert_eq!(out, "2 200", "{err}");
    let (out, _) = curl(p.port, &["-D", "-", &url(p.port, "/hello?a=1")]);
    assert!(out.contains("x-request-id:"), "{out}");
    let body = &out[out.find("\r\n\r\n").map_or(0, |i| i + 4)..];
    let echo: serde_json::Value = serde_json::from_str(body).expect("echo");
    assert_eq!(echo["target"], "/hello?a=1");
    assert_eq!(echo["version"], "HTTP/1.1", "the backend speaks HTTP/1.1");
    assert_eq!(
        support::proc::seen_header(&echo, "x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        support::proc::seen_header(&echo, "host").as_deref(),
        Some(format!("{HOST}:{}", p.port).as_str())
    );
    // 4 MB download.
    let (out, _) = curl(
        p.port,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &url(p.port, "/bytes/4000000"),
        ],
    );
    assert_eq!(out, "4000000");
    let (out, _) = curl(
        p.port,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &url(p.port, "/bytes/4000000?chunked=1"),
        ],
    );
    assert_eq!(out, "4000000");
    // 5 MB upload, with and without a known length.
    let file = std::env::temp_dir().join(format!("portier-h2-up-{}", std::process::id()));
    std::fs::write(&file, vec![b'u'; 5_000_000]).expect("write");
    let (out, err) = curl(
        p.port,
        &[
            "--data-binary",
            &format!("@{}", file.display()),
            &url(p.port, "/up"),
        ],
    );
    let echo: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    assert_eq!(echo["body_bytes"], 5_000_000);
    let (out, _) = curl(
        p.port,
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &format!("@{}", file.display()),
            &url(p.port, "/up"),
        ],
    );
    let echo: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(echo["body_bytes"], 5_000_000);
    let _ = std::fs::remove_file(&file);
    // Unknown host: 404 with the error header on that stream.
    let out = Command::new("curl")
        .args([
            "-sk",
            "--http2",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--resolve",
            &format!("nope.test:{}:127.0.0.1", p.port),
        ])
        .arg(format!("https://nope.test:{}/", p.port))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("HTTP/2 404") && text.contains("x-portier-error: unknown_host"),
        "{text}"
    );
}

#[test]
fn one_hundred_concurrent_streams_with_nghttp_and_h2load() {
    let b = Backend::start("b");
    let p = start(&b, "max_conns_per_backend = 200\n");
    let out = Command::new("nghttp")
        .args([
            "-n",
            "-s",
            "-m",
            "100",
            "-H",
            &format!(":authority: {HOST}"),
        ])
        .arg(format!("https://127.0.0.1:{}/slow/100", p.port))
        .output()
        .expect("nghttp");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let responses = text
        .lines()
        .filter(|l| l.contains(" 200 ") && l.contains("/slow/100"))
        .count();
    assert_eq!(responses, 100, "{text}");
    let out = Command::new("h2load")
        .args([
            "-n",
            "2000",
            "-c",
            "2",
            "-m",
            "100",
            "-H",
            &format!(":authority: {HOST}"),
        ])
        .arg(format!("https://127.0.0.1:{}/bytes/1000", p.port))
        .output()
        .expect("h2load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2000 succeeded, 0 failed, 0 errored"),
        "{text}"
    );
}

fn attack(port: u16, name: &str) -> serde_json::Value {
    let out = Command::new("/usr/bin/python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h2/attacks.py"))
        .args([&port.to_string(), HOST, name])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "{name}: {e}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn still_serves(port: u16) {
    let (out, err) = curl(
        port,
        &["-o", "/dev/null", "-w", "%{http_code}", &url(port, "/")],
    );
    assert_eq!(out, "200", "portier still serves after an attack: {err}");
}

/// The server ended the connection (GOAWAY ENHANCE_YOUR_CALM when the
/// client could still read it).
fn cut_off(r: &serde_json::Value) -> bool {
    r["closed"] == true && (r["goaway_code"].is_null() || r["goaway_code"] == 11)
}

#[test]
fn abuse_is_cut_off_and_the_server_keeps_serving() {
    let b = Backend::start("b");
    let p = start(&b, "max_conns_per_backend = 200\n");
    let r = attack(p.port, "rapid_reset");
    // Cut off after a bounded number of streams (the reset budget is 200
    // per window): the GOAWAY says where the server stopped when the
    // client could read it (socket buffers may have taken the whole flood
    // by then); otherwise the client could not even send it all.
    let stopped_early = r["goaway_last_stream"].as_u64().is_some_and(|s| s < 1000)
        || r["sent"].as_u64() < Some(5000);
    assert!(
        cut_off(&r) && stopped_early,
        "rapid reset (CVE-2023-44487): {r}"
    );
    still_serves(p.port);
    let r = attack(p.port, "made_you_reset");
    assert!(cut_off(&r), "server-provoked resets (CVE-2025-8671): {r}");
    still_serves(p.port);
    let r = attack(p.port, "continuation_flood");
    assert!(
        cut_off(&r) && r["continuations_sent"].as_u64() < Some(10000),
        "CONTINUATION flood: {r}"
    );
    still_serves(p.port);
    for flood in [
        "settings_flood",
        "ping_flood",
        "empty_data_flood",
        "window_update_flood",
    ] {
        let r = attack(p.port, flood);
        assert!(cut_off(&r), "{flood}: {r}");
        still_serves(p.port);
    }
}

/// A backend that counts the connections it accepts and answers each one
/// request with 200 and close.
struct CountingBackend {
    addr: std::net::SocketAddr,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingBackend {
    fn start() -> CountingBackend {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    );
                });
            }
        });
        CountingBackend { addr, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn streams_reset_in_the_input_that_opened_them_never_reach_a_backend() {
    let b = CountingBackend::start();
    let p = start_app(&app_at(
        "h2",
        HOST,
        &[b.addr],
        "max_conns_per_backend = 200\n",
    ));
    // Each HEADERS goes out with its RST_STREAM (rapid reset) or with the
    // zero WINDOW_UPDATE that makes the server reset it (MadeYouReset) in
    // one TLS record, so Portier sees both in the same input: a record is
    // decrypted whole, and the attacker is cut off after ~200 resets,
    // far below one read's cap.
    let r = attack(p.port, "rapid_reset");
    assert!(cut_off(&r), "rapid reset: {r}");
    let r = attack(p.port, "made_you_reset");
    assert!(cut_off(&r), "MadeYouReset: {r}");
    assert_eq!(
        b.accepted(),
        0,
        "a backend was connected for a request already reset"
    );
    // The counter counts: one real request is one backend connection.
    still_serves(p.port);
    assert_eq!(b.accepted(), 1);
}

#[test]
fn hpack_bombs_get_431_and_excess_streams_are_refused() {
    let b = Backend::start("b");
    let p = start(&b, "max_conns_per_backend = 200\n");
    let r = attack(p.port, "hpack_bomb");
    assert_eq!(r["statuses"]["1"], "200", "{r}");
    assert_eq!(
        r["statuses"]["3"], "431",
        "the bomb is refused on its stream: {r}"
    );
    let r = attack(p.port, "too_many_streams");
    assert_eq!(r["ok"], 100, "100 concurrent streams served: {r}");
    assert_eq!(
        r["rst_codes"],
        serde_json::json!([7]),
        "the 101st gets REFUSED_STREAM: {r}"
    );
}

#[test]
fn a_client_that_never_reads_does_not_block_others() {
    let b = Backend::start("b");
    let p = start(&b, "max_conns_per_backend = 200\n");
    let port = p.port;
    let hog = std::thread::spawn(move || attack(port, "never_reads"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    still_serves(p.port);
    let (out, _) = curl(
        p.port,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &url(p.port, "/bytes/1000000"),
        ],
    );
    assert_eq!(out, "1000000");
    let r = hog.join().expect("attacker");
    assert_eq!(r["sent"], 20);
}

#[test]
fn shutdown_sends_goaway_and_lets_in_flight_requests_finish() {
    let b = Backend::start("b");
    let mut p = start(&b, "");
    let port = p.port;
    let h2 = std::thread::spawn(move || {
        Command::new("nghttp")
            .args(["-v", "-H", &format!(":authority: {HOST}")])
            .arg(format!("https://127.0.0.1:{port}/slow/1500"))
            .output()
            .expect("nghttp")
    });
    let h1_addr = p._proxy.addr;
    let h1 = std::thread::spawn(move || support::proc::get(h1_addr, HOST, "/slow/1500").status);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let status = p._proxy.portier.stop().expect("portier exits");
    assert!(status.success(), "clean exit: {status}");
    let out = h2.join().expect("nghttp thread");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("recv GOAWAY"),
        "HTTP/2 client told to go away: {text}"
    );
    assert!(
        text.contains(":status: 200"),
        "its in-flight request finished: {text}"
    );
    assert_eq!(
        h1.join().expect("h1 thread"),
        200,
        "the HTTP/1.1 request finished too"
    );
    // Nothing listens any more.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn a_certificate_swap_does_not_break_a_long_h2_download() {
    let b = Backend::start("b");
    let p = start(&b, "");
    let port = p.port;
    let download = std::thread::spawn(move || {
        let (out, err) = curl(
            port,
            &[
                "--limit-rate",
                "3M",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download} %{http_version}",
                &url(port, "/bytes/6000000"),
            ],
        );
        (out, err)
    });
    std::thread::sleep(std::time::Duration::from_millis(600));
    let renewed = portier::tls::self_signed_pem(&["renewed.h2.test".to_string(), HOST.to_string()])
        .expect("cert");
    let tmp = p.certs.join(".default.pem.tmp");
    std::fs::write(&tmp, renewed).expect("write");
    std::fs::rename(&tmp, p.certs.join("default.pem")).expect("swap");
    let (out, err) = download.join().expect("download thread");
    assert_eq!(
        out, "6000000 2",
        "the download in progress completed: {err}"
    );
    // New handshakes get the new certificate.
    let mut served_new = false;
    for _ in 0..40 {
        let o = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                HOST,
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl");
        if String::from_utf8_lossy(&o.stdout).contains("renewed.h2.test") {
            served_new = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(served_new, "new handshakes see the swapped certificate");
}

#[test]
fn redirects_hsts_gzip_and_sticky_sessions_work_over_h2_too() {
    let b1 = Backend::start("b1");
    let b2 = Backend::start("b2");
    let certs = std::env::temp_dir().join(format!(
        "portier-h2f-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&certs).expect("mkdir");
    let pem =
        portier::tls::self_signed_pem(&[HOST.to_string(), format!("www.{HOST}")]).expect("cert");
    std::fs::write(certs.join("default.pem"), pem).expect("write cert");
    let port = free_port();
    let _p = Proxy::start(
        &format!(
            "https = [\"127.0.0.1:{port}\"]\n[tls]\ncert_dir = \"{}\"\n",
            certs.display()
        ),
        &format!(
            "[[apps]]\nname = \"shop\"\ndomains = [\"www.{HOST}\", \"{HOST}\"]\ncanonical_domain = \"www.{HOST}\"\n\
             force_https = true\nsticky_sessions = true\nbackends = [\"{}\", \"{}\"]\n",
            b1.addr, b2.addr
        ),
    );
    let www = format!("www.{HOST}");
    let run = |host: &str, args: &[&str], path: &str| -> String {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-k",
                "--http2",
                "--max-time",
                "20",
                "-D",
                "-",
                "--resolve",
                &format!("{host}:{port}:127.0.0.1"),
            ])
            .args(args)
            .arg(format!("https://{host}:{port}{path}"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Canonical redirect on a stream, with the request id.
    let r = run(HOST, &["-o", "/dev/null"], "/cart?id=7");
    assert!(r.starts_with("HTTP/2 301"), "{r}");
    assert!(
        r.contains(&format!("location: https://www.{HOST}/cart?id=7")),
        "{r}"
    );
    assert!(r.contains("x-request-id:"), "{r}");
    // HSTS and a sticky cookie (Secure over HTTPS) on a proxied response.
    let r = run(&www, &["-o", "/dev/null"], "/");
    assert!(r.starts_with("HTTP/2 200"), "{r}");
    assert!(
        r.contains("strict-transport-security: max-age=31536000"),
        "{r}"
    );
    let cookie_line = r
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("cookie: {r}"))
        .to_string();
    assert!(
        cookie_line.contains("; Secure") && cookie_line.contains("; HttpOnly"),
        "{cookie_line}"
    );
    let cookie = cookie_line
        .trim_start_matches("set-cookie:")
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut bound = std::collections::HashSet::new();
    for i in 0..4 {
        let body = run(
            &www,
            &["-H", &format!("Cookie: {cookie}"), "-o", "-"],
            &format!("/{i}"),
        );
        let json = &body[body.find('{').unwrap_or(0)..];
        let echo: serde_json::Value = serde_json::from_str(json.trim()).expect("echo");
        bound.insert(echo["backend"].as_str().unwrap_or_default().to_string());
        assert!(!body.contains("set-cookie:"), "no new cookie while bound");
    }
    assert_eq!(
        bound.len(),
        1,
        "the cookie binds the HTTP/2 client to one backend: {bound:?}"
    );
    // gzip on a stream, decompressed by curl and compared.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-k",
            "--http2",
            "--compressed",
            "-o",
            "-",
            "-w",
            "\n%{size_download}",
            "--resolve",
            &format!("{www}:{port}:127.0.0.1"),
        ])
        .arg(format!("https://{www}:{port}/bytes/200000"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, downloaded) = text.rsplit_once('\n').expect("size line");
    assert_eq!(body.len(), 200_000, "decompressed body");
    assert!(
        body.bytes()
            .enumerate()
            .all(|(i, b)| b == b'a' + (i % 26) as u8),
        "byte for byte"
    );
    let wire: usize = downloaded.trim().parse().expect("size");
    assert!(wire < 20_000, "compressed on the wire: {wire} bytes");
    let _ = std::fs::remove_dir_all(&certs);
}

#[test]
fn an_idle_h2_connection_lives_past_the_header_timeout() {
    // Requests at 0 s and 2 s, a third at 15 s on the same connection: the
    // header timeout (10 s) must not end an HTTP/2 connection.
    let b = Backend::start("b");
    let p = start(&b, "");
    let r = attack(p.port, "idle_15s");
    assert_eq!(r["goaway_code"], serde_json::Value::Null, "{r}");
    assert_eq!(r["closed"], false, "{r}");
    for sid in ["1", "3", "5"] {
        assert_eq!(r["statuses"][sid], "200", "stream {sid}: {r}");
    }
}

#[test]
fn an_h2_connection_idle_after_a_long_stream_is_closed() {
    // A stream outlives the idle timeout (1.5 s); once it ends the idle
    // clock starts again and the connection gets GOAWAY(NO_ERROR).
    let b = Backend::start("b");
    let p = start_with(&b, "", "[limits]\nkeepalive_timeout_ms = 1500\n");
    let r = attack(p.port, "idle_after_long_stream");
    assert_eq!(r["statuses"]["1"], "200", "{r}");
    assert_eq!(r["goaway_code"], 0, "{r}");
    assert_eq!(r["closed"], true, "{r}");
}
#[test]
fn a_queued_h2_stream_gets_its_queue_timeout() {
    let b = Backend::start("b");
    let p = start_with(
        &b,
        "max_conns_per_backend = 1\n",
        "[limits]\nqueue_timeout_ms = 1000\n",
    );
    let r = attack(p.port, "queued_stream");
    let queued = &r["fields"]["3"];
    assert_eq!(queued[":status"], "503", "{r}");
    assert_eq!(queued["x-portier-error"], "queue_timeout", "{r}");
    assert!(
        queued["x-request-id"]
            .as_str()
            .is_some_and(|id| id.len() == 36),
        "Portier's own answers carry X-Request-ID over HTTP/2 too: {r}"
    );
    assert_eq!(r["fields"]["1"][":status"], "200", "{r}");
}
