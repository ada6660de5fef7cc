//! PROXY protocol listeners of the real `portier`, with real senders: an
//! HAProxy started by the test (`send-proxy` and `send-proxy-v2`, plain
//! HTTP and TLS passed through, IPv4 and IPv6 clients) and `curl
//! --haproxy-protocol`, in front of the demo backend, whose echo shows the
//! forwarding headers it got. Untrusted senders, connections without a
//! header, malformed, truncated and slow headers are closed before any
//! answer and counted in `/metrics`; v2 LOCAL keeps the real peer; a reload
//! turns the option off and on for new connections.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::netns::Portier;
use support::proc::{Backend, Conn, curl, free_port, seen_header};

const TOKEN: &str = "proxy-protocol-test-token-0123";
const HOST: &str = "pp.test";

/// A portier with one plain and one TLS listener that both want the PROXY
/// protocol from 127.0.0.1, the admin API, and an access log.
struct Node {
    dir: PathBuf,
    http: u16,
    https: u16,
    admin: u16,
    backend: SocketAddr,
    portier: Portier,
}

impl Node {
    fn start(backend: &Backend) -> Node {
        let (http, https, admin) = (free_port(), free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("portier-pp-it-{}-{http}", std::process::id()));
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).expect("mkdir");
        let pem = portier::tls::self_signed_pem(&[HOST.to_string()]).expect("rcgen");
        std::fs::write(certs.join("default.pem"), pem).expect("cert");
        let token = dir.join("admin.token");
        std::fs::write(&token, TOKEN).expect("token");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let config = dir.join("portier.toml");
        let text = Node::config(&dir, (http, https, admin), backend.addr, true);
        std::fs::write(&config, text).expect("config");
        Node {
            portier: Portier::start(None, &config),
            dir,
            http,
            https,
            admin,
            backend: backend.addr,
        }
    }

    fn config(
        dir: &std::path::Path,
        (http, https, admin): (u16, u16, u16),
        backend: SocketAddr,
        proxy_protocol: bool,
    ) -> String {
        format!(
            "[server]\nthreads = 2\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
             http = [{{ addr = \"127.0.0.1:{}\", proxy_protocol = {proxy_protocol} }}]\n\
             [[server.https]]\naddr = \"127.0.0.1:{}\"\nproxy_protocol = true\n\
             [limits]\nheader_timeout_ms = 1000\n\
             [tls]\ncert_dir = \"{}\"\n\
             [log]\naccess = \"{}\"\n\
             [admin]\nlisten = \"127.0.0.1:{}\"\ntoken_file = \"{}\"\n\
             [[apps]]\nname = \"demo\"\ndomains = [\"{HOST}\"]\nbackends = [\"{}\"]\n",
            http,
            https,
            dir.join("certs").display(),
            dir.join("access.log").display(),
            admin,
            dir.join("admin.token").display(),
            backend,
        )
    }

    fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http))
    }

    /// One counter of `/metrics` (0 when absent).
    fn metric(&self, series: &str) -> u64 {
        let (code, text) = curl(&[
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            &format!("http://127.0.0.1:{}/metrics", self.admin),
        ]);
        assert_eq!(code, 0, "metrics: {text}");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    }

    fn rejected(&self, reason: &str) -> u64 {
        self.metric(&format!(
            "portier_proxy_protocol_rejected_total{{reason=\"{reason}\"}}"
        ))
    }

    fn headers(&self, version: &str) -> u64 {
        self.metric(&format!(
            "portier_proxy_protocol_headers_total{{version=\"{version}\"}}"
        ))
    }

    /// Rewrite the config and SIGHUP; wait for the verdict.
    fn reload(&mut self, proxy_protocol: bool) {
        let ports = (self.http, self.https, self.admin);
        let text = Node::config(&self.dir, ports, self.backend, proxy_protocol);
        std::fs::write(self.dir.join("portier.toml"), text).expect("config");
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.portier.child.id() as i32, libc::SIGHUP) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.portier.lines.recv_timeout(left) {
                Ok(l) if l.contains("configuration reloaded") => return,
                Ok(l) if l.contains("reload refused") => panic!("{l}"),
                Ok(_) => {}
                Err(_) => panic!("portier did not answer the reload"),
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.portier.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// HAProxy in TCP mode on loopback, one frontend per (port, backend line),
/// stopped on drop.
struct Haproxy {
    child: Child,
    dir: PathBuf,
}

impl Haproxy {
    /// `routes`: (frontend binds, `server` line options after the address,
    /// portier port).
    fn start(routes: &[(&[String], &str, u16)]) -> Haproxy {
        let dir = std::env::temp_dir().join(format!(
            "portier-pp-haproxy-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut cfg = String::from(
            "global\n  maxconn 200\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  retries 0\n",
        );
        for (i, (binds, options, port)) in routes.iter().enumerate() {
            cfg.push_str(&format!("\nlisten route{i}\n"));
            for b in *binds {
                cfg.push_str(&format!("  bind {b}\n"));
            }
            cfg.push_str(&format!("  server portier 127.0.0.1:{port} {options}\n"));
        }
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, &cfg).expect("haproxy.cfg");
        let check = Command::new("haproxy")
            .args(["-c", "-f"])
            .arg(&path)
            .output()
            .expect("haproxy -c");
        assert!(
            check.status.success(),
            "haproxy refused its config:\n{cfg}\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn haproxy");
        let h = Haproxy { child, dir };
        // Ready when every bind is listening. Asked of the kernel (`ss`),
        // not by connecting: a connection would reach portier with a
        // header and move the counters under test.
        let deadline = Instant::now() + Duration::from_secs(10);
        for (binds, _, _) in routes {
            for b in *binds {
                let addr: SocketAddr = b.parse().expect("bind address");
                let filter = format!("src {addr}");
                loop {
                    let out = Command::new("ss")
                        .args(["-Hltn", &filter])
                        .output()
                        .expect("ss");
                    if !out.stdout.is_empty() {
                        break;
                    }
                    assert!(Instant::now() < deadline, "haproxy does not listen on {b}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        h
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The echo of one GET by curl with `args`; panics if it failed.
fn echo(args: &[&str]) -> serde_json::Value {
    let (code, body) = curl(&[&["-H", &format!("Host: {HOST}")], args].concat());
    assert_eq!(code, 0, "curl {args:?}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("curl {args:?}: not JSON ({e}): {body}"))
}

/// The client address the backend was told about (both headers agree).
fn client_seen(echo: &serde_json::Value) -> String {
    let xff = seen_header(echo, "x-forwarded-for").expect("X-Forwarded-For");
    assert_eq!(
        seen_header(echo, "x-real-ip").as_deref(),
        Some(xff.as_str()),
        "{echo}"
    );
    xff
}

#[test]
fn haproxy_v1_and_v2_give_the_client_address_over_http_and_https() {
    let backend = Backend::start("pp");
    let node = Node::start(&backend);
    let (v1, v2, v1_tls, v2_tls) = (free_port(), free_port(), free_port(), free_port());
    let both = |p: u16| vec![format!("127.0.0.1:{p}"), format!("[::1]:{p}")];
    let (b1, b2, b3, b4) = (both(v1), both(v2), both(v1_tls), both(v2_tls));
    let _haproxy = Haproxy::start(&[
        (&b1, "send-proxy", node.http),
        (&b2, "send-proxy-v2", node.http),
        (&b3, "send-proxy", node.https),
        (&b4, "send-proxy-v2", node.https),
    ]);

    // Plain HTTP, v1 then v2, from a client address HAProxy sees as
    // 127.0.0.7 (the sender itself is 127.0.0.1). A client that is not a
    // trusted proxy has its X-Forwarded-For replaced, as if it had
    // connected to portier directly.
    for (p, version) in [(v1, "v1"), (v2, "v2")] {
        let e = echo(&[
            "--interface",
            "127.0.0.7",
            "-H",
            "X-Forwarded-For: 203.0.113.9",
            &format!("http://127.0.0.1:{p}/"),
        ]);
        assert_eq!(client_seen(&e), "127.0.0.7", "{version}: {e}");
        // The public port is where the client connected: HAProxy's.
        assert_eq!(
            seen_header(&e, "x-forwarded-port"),
            Some(p.to_string()),
            "{version}"
        );
        assert_eq!(
            seen_header(&e, "x-forwarded-proto").as_deref(),
            Some("http")
        );
        // IPv6 clients: TCP6 in v1, AF_INET6 in v2.
        let e = echo(&["-g", &format!("http://[::1]:{p}/")]);
        assert_eq!(client_seen(&e), "::1", "{version} over IPv6: {e}");
    }
    assert_eq!((node.headers("1"), node.headers("2")), (2, 2));

    // TLS passed through HAProxy: the header comes before the ClientHello;
    // curl negotiates HTTP/2 by ALPN, so both protocols follow the header.
    for (p, version) in [(v1_tls, "v1"), (v2_tls, "v2")] {
        for http in ["--http1.1", "--http2"] {
            let e = echo(&[
                "-k",
                http,
                "--interface",
                "127.0.0.7",
                "--resolve",
                &format!("{HOST}:{p}:127.0.0.1"),
                &format!("https://{HOST}:{p}/"),
            ]);
            assert_eq!(client_seen(&e), "127.0.0.7", "{version} {http}: {e}");
            assert_eq!(
                seen_header(&e, "x-forwarded-proto").as_deref(),
                Some("https")
            );
            assert_eq!(seen_header(&e, "x-forwarded-port"), Some(p.to_string()));
        }
        let e = echo(&["-k", "-g", &format!("https://[::1]:{p}/")]);
        assert_eq!(client_seen(&e), "::1", "{version} TLS over IPv6: {e}");
    }
    assert_eq!((node.headers("1"), node.headers("2")), (5, 5));
    for reason in ["untrusted", "missing", "malformed", "truncated", "timeout"] {
        assert_eq!(node.rejected(reason), 0, "{reason}");
    }

    // The access log names the client from the header too.
    let log = node.dir.join("access.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let clients: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["client"].as_str().map(str::to_string))
            .collect();
        if clients.len() >= 10 {
            assert!(
                clients.iter().all(|c| c == "127.0.0.7" || c == "::1"),
                "{clients:?}"
            );
            assert_eq!(clients.iter().filter(|c| *c == "::1").count(), 4);
            break;
        }
        assert!(Instant::now() < deadline, "access log: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A raw connection from 127.0.0.1 (trusted) that sends `bytes`.
fn raw(node: &Node, bytes: &[u8]) -> Conn {
    let mut c = Conn::open(node.http_addr());
    c.send(bytes);
    c
}

/// Closed with nothing sent back (no HTTP answer to a broken header).
fn closed_silently(c: &mut Conn) -> bool {
    let mut rest = Vec::new();
    match c.stream.read_to_end(&mut rest) {
        Ok(_) => rest.is_empty(),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn bad_senders_are_closed_and_counted_good_ones_served() {
    let backend = Backend::start("pp");
    let mut node = Node::start(&backend);
    let url = format!("http://127.0.0.1:{}/", node.http);
    let host = format!("Host: {HOST}");

    // curl --haproxy-protocol from the trusted address: a v1 header with
    // the connection's own addresses.
    let e = echo(&["--haproxy-protocol", &url]);
    assert_eq!(client_seen(&e), "127.0.0.1");
    let e = echo(&[
        "-k",
        "--haproxy-protocol",
        "--resolve",
        &format!("{HOST}:{}:127.0.0.1", node.https),
        &format!("https://{HOST}:{}/", node.https),
    ]);
    assert_eq!(client_seen(&e), "127.0.0.1");
    assert_eq!(node.headers("1"), 2);

    // Untrusted senders: curl from 127.0.0.9, and an HAProxy whose
    // connections leave from 127.0.0.9. Nothing is read from them.
    let (code, _) = curl(&[
        "--interface",
        "127.0.0.9",
        "--haproxy-protocol",
        "-H",
        &host,
        &url,
    ]);
    assert_ne!(code, 0);
    let front = free_port();
    let binds = [format!("127.0.0.1:{front}")];
    let haproxy = Haproxy::start(&[(&binds, "send-proxy-v2 source 127.0.0.9", node.http)]);
    let (code, _) = curl(&["-H", &host, &format!("http://127.0.0.1:{front}/")]);
    assert_ne!(code, 0);
    drop(haproxy);
    assert_eq!(node.rejected("untrusted"), 2);

    // No header at all: plain HTTP, and TLS straight to the HTTPS listener.
    let (code, _) = curl(&["-H", &host, &url]);
    assert_ne!(code, 0);
    let (code, _) = curl(&["-k", &format!("https://127.0.0.1:{}/", node.https)]);
    assert_ne!(code, 0);
    assert!(closed_silently(&mut raw(
        &node,
        b"GET / HTTP/1.1\r\nHost: pp.test\r\n\r\n"
    )));
    assert_eq!(node.rejected("missing"), 3);

    // Malformed: a leading zero, a bare LF, a v2 version 1, a TLV that
    // runs past the header.
    let mut tlv_overrun = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x11".to_vec();
    tlv_overrun.extend_from_slice(&[127, 0, 0, 5, 127, 0, 0, 1, 0x30, 0x39, 0, 80]);
    tlv_overrun.extend_from_slice(&[0x01, 0x00, 0x09, b'h', b'2']);
    for bad in [
        &b"PROXY TCP4 127.0.0.5 127.0.0.1 01234 80\r\nGET / HTTP/1.1\r\n\r\n"[..],
        b"PROXY TCP4 127.0.0.5 127.0.0.1 1234 80\nGET / HTTP/1.1\r\n\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x11\x11\x00\x0c",
        &tlv_overrun,
    ] {
        assert!(closed_silently(&mut raw(&node, bad)), "{bad:?}");
    }
    assert_eq!(node.rejected("malformed"), 4);

    // Truncated: half a header, then the sender closes its side.
    let mut c = raw(&node, b"PROXY TCP4 127.0.0.5 127.0");
    c.stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    assert!(closed_silently(&mut c));
    assert_eq!(node.rejected("truncated"), 1);

    // Slow: half a header, then nothing. The header timeout (1 s here)
    // closes it; sending the rest later changes nothing.
    let started = Instant::now();
    let mut c = raw(&node, b"PROXY TCP4 127.0.0.5 ");
    std::thread::sleep(Duration::from_millis(300));
    let _ = c.stream.write_all(b"127.0.0.1 ");
    assert!(closed_silently(&mut c));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(node.rejected("timeout"), 1);

    // A well-formed header split over three writes is waited for; v2 LOCAL
    // (a balancer's own health check) keeps the real peer.
    let mut c = raw(&node, b"PROXY TCP4 127.0.0.5");
    std::thread::sleep(Duration::from_millis(100));
    c.send(b" 127.0.0.1 4242 ");
    std::thread::sleep(Duration::from_millis(100));
    c.send(b"80\r\nGET / HTTP/1.1\r\nHost: pp.test\r\n\r\n");
    assert_eq!(client_seen(&c.response().json()), "127.0.0.5");
    let mut local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    local.extend_from_slice(b"GET / HTTP/1.1\r\nHost: pp.test\r\n\r\n");
    let mut c = raw(&node, &local);
    assert_eq!(client_seen(&c.response().json()), "127.0.0.1");
    assert_eq!((node.headers("1"), node.headers("2")), (3, 1));

    // A reload turns the option off for new connections, then on again;
    // the other counters did not move meanwhile.
    node.reload(false);
    let e = echo(&["-H", "X-Forwarded-For: 203.0.113.9", &url]);
    // 127.0.0.1 is a trusted proxy itself: its X-Forwarded-For is kept.
    assert_eq!(
        seen_header(&e, "x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    node.reload(true);
    let (code, _) = curl(&["-H", &host, &url]);
    assert_ne!(code, 0);
    assert_eq!(node.rejected("missing"), 4);
    assert_eq!(
        (
            node.rejected("untrusted"),
            node.rejected("malformed"),
            node.rejected("truncated"),
            node.rejected("timeout")
        ),
        (2, 4, 1, 1)
    );
}
