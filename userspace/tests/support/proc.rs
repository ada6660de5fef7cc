//! Real processes on loopback for the integration tests: demo backends and
//! a portier with a given config, each stopped on drop; and a minimal HTTP
//! client over raw sockets (so tests see exactly what went over the wire).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::Portier;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portier")
}

/// The demo/test backend binary (`userspace/src/bin/demo_backend`).
pub fn demo_backend_bin() -> &'static str {
    env!("CARGO_BIN_EXE_portier-demo-backend")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `portier-demo-backend`, killed on drop.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    child: Option<Child>,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        Backend::start_on(name, free_port())
    }

    pub fn start_on(name: &str, port: u16) -> Backend {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut child = Command::new(demo_backend_bin())
            .args(["--listen", &addr.to_string(), "--name", name])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portier-demo-backend");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("listening on") => break,
                Some(Ok(_)) => {}
                _ => panic!("demo-backend {name} did not start"),
            }
            assert!(
                Instant::now() < deadline,
                "demo-backend {name} start timeout"
            );
        }
        std::thread::spawn(move || for _ in lines {});
        Backend {
            addr,
            name: name.to_string(),
            child: Some(child),
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running portier listening on `addr`.
pub struct Proxy {
    pub addr: SocketAddr,
    pub portier: Portier,
    dir: PathBuf,
    threads: usize,
}

impl Proxy {
    /// `body` is the config without the `[server]` http line, which is added.
    pub fn start(server_extra: &str, rest: &str) -> Proxy {
        Proxy::start_with_threads(2, server_extra, rest)
    }

    pub fn start_with_threads(threads: usize, server_extra: &str, rest: &str) -> Proxy {
        // A port from `free_port` can be taken before portier binds it
        // (ephemeral ports of other tests' connections): try another.
        for _ in 0..4 {
            if let Some(p) = Proxy::try_start(threads, server_extra, rest) {
                return p;
            }
        }
        panic!("no free port for portier after 4 tries");
    }

    fn try_start(threads: usize, server_extra: &str, rest: &str) -> Option<Proxy> {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let dir = std::env::temp_dir().join(format!("portier-it-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("portier.toml");
        let text =
            format!("[server]\nhttp = [\"{addr}\"]\nthreads = {threads}\n{server_extra}\n{rest}\n");
        std::fs::write(&path, text).expect("write config");
        let Ok(portier) = Portier::try_start(None, &path) else {
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        };
        Some(Proxy {
            addr,
            portier,
            dir,
            threads,
        })
    }

    /// The configuration file portier was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("portier.toml")
    }

    /// Rewrite the config (same listener) and SIGHUP; returns the line
    /// portier answered with (reloaded or refused).
    pub fn reload(&mut self, server_extra: &str, rest: &str) -> String {
        let http = format!("http = [\"{}\"]", self.addr);
        self.reload_with_http(&http, server_extra, rest)
    }

    /// Like `reload`, with the `http = [...]` line given.
    pub fn reload_with_http(&mut self, http: &str, server_extra: &str, rest: &str) -> String {
        let text = format!(
            "[server]\n{http}\nthreads = {}\n{server_extra}\n{rest}\n",
            self.threads
        );
        std::fs::write(self.dir.join("portier.toml"), text).expect("write config");
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.portier.child.id() as i32, libc::SIGHUP) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.portier.lines.recv_timeout(left) {
                Ok(l) if l.contains("configuration reloaded") || l.contains("reload refused") => {
                    return l;
                }
                Ok(_) => {}
                Err(_) => panic!("portier did not answer the reload"),
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.portier.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn app(name: &str, domain: &str, backends: &[&Backend], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!(
        "[[apps]]\nname = \"{name}\"\ndomains = [\"{domain}\"]\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Header value the echo backend saw (case-insensitive name).
pub fn seen_header(echo: &serde_json::Value, name: &str) -> Option<String> {
    echo["headers"].as_array()?.iter().find_map(|h| {
        let n = h.get(0)?.as_str()?;
        n.eq_ignore_ascii_case(name)
            .then(|| h.get(1)?.as_str().map(str::to_string))?
    })
}

/// A client connection that reads responses one by one.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn from_stream(stream: TcpStream) -> Conn {
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Bytes up to and including `delim`.
    pub fn read_until(&mut self, delim: &[u8]) -> Vec<u8> {
        loop {
            if let Some(i) = find(&self.buf, delim) {
                return self.buf.drain(..i + delim.len()).collect();
            }
            assert!(self.fill(), "connection ended before {delim:?}");
        }
    }

    /// Exactly `n` bytes (buffered first, then from the socket).
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill(), "connection ended before {n} bytes");
        }
        self.buf.drain(..n).collect()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Read one response (to a request that was not HEAD).
    pub fn response(&mut self) -> Response {
        self.try_response().expect("a response")
    }

    pub fn try_response(&mut self) -> Option<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill() {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let body = if (100..200).contains(&status) || status == 204 || status == 304 {
            Vec::new()
        } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            self.read_chunked()?
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < len {
                if !self.fill() {
                    return None;
                }
            }
            self.buf.drain(..len).collect()
        } else {
            while self.fill() {}
            std::mem::take(&mut self.buf)
        };
        Some(Response {
            status,
            headers,
            body,
        })
    }

    fn read_chunked(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                if !self.fill() {
                    return None;
                }
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers until the empty line.
                loop {
                    let end = loop {
                        if let Some(i) = find(&self.buf, b"\r\n") {
                            break i;
                        }
                        if !self.fill() {
                            return None;
                        }
                    };
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        return Some(body);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if !self.fill() {
                    return None;
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// True when the server closed the connection (EOF with nothing pending).
    pub fn is_closed(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .ok();
        let mut b = [0u8; 1];
        // One read: EOF, or a reset (the peer closed with our data unread).
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One GET on a fresh connection.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> Response {
    let mut c = Conn::open(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    c.response()
}

/// Run curl and return (exit code, stdout).
pub fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A raw backend that behaves like an `h2c`-capable server: it answers
/// `101 Switching Protocols` (`Upgrade: h2c`) to a request offering h2c —
/// or to every request when `always` — and then records whatever bytes
/// follow as tunnelled; other requests get `200 ok` on a keep-alive
/// connection. Every request head it received is recorded as text.
pub struct UpgradingBackend {
    pub addr: SocketAddr,
    /// Request heads received, then `TUNNEL:<bytes>` for bytes after a 101.
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl UpgradingBackend {
    pub fn start(always: bool) -> UpgradingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().map_while(Result::ok) {
                let record = record.clone();
                std::thread::spawn(move || Self::serve(s, always, &record));
            }
        });
        UpgradingBackend { addr, seen }
    }

    fn serve(mut s: TcpStream, always: bool, record: &std::sync::Mutex<Vec<String>>) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut tunnel = false;
        loop {
            if tunnel {
                if !buf.is_empty() {
                    let bytes = String::from_utf8_lossy(&buf).into_owned();
                    record.lock().expect("lock").push(format!("TUNNEL:{bytes}"));
                    buf.clear();
                }
            } else if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
                buf.drain(..end + 4);
                let h2c = head
                    .to_ascii_lowercase()
                    .lines()
                    .any(|l| l.starts_with("upgrade:") && l.contains("h2c"));
                record.lock().expect("lock").push(head);
                let answer: &[u8] = if always || h2c {
                    tunnel = true;
                    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                };
                if s.write_all(answer).is_err() {
                    return;
                }
                continue;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }
}

/// `app(...)` for backends given by address.
pub fn app_at(name: &str, domain: &str, backends: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[[apps]]\nname = \"{name}\"\ndomains = [\"{domain}\"]\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// One admin API call with curl: `(status, JSON body or Null)`.
pub fn admin_call(
    port: u16,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut c = Command::new("curl");
    c.args(["-s", "-m", "10", "-X", method, "-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"));
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "-d", b]);
    }
    let out = c
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (json, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    )
}
