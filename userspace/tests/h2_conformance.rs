//! HTTP/2 conformance of the real `portier` (RFC 9113 §3–§8, RFC 7541):
//! `tests/h2/conformance.py` drives raw frames over TLS (ALPN h2; Portier
//! has no cleartext HTTP/2) case by case; every case must pass. The backend
//! is a small recording HTTP/1.1 server: no request the server had to
//! refuse as malformed (paths under `/malformed/`) may reach it.
//! Also the "HTTP/2 bomb" (CVE-2026-49975) end to end: inflated headers on
//! streams pinned by a zero window are reaped and their memory bounded.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::netns::Portier;
use support::proc::free_port;

const HOST: &str = "conf.test";

/// An HTTP/1.1 backend that records each request line it reads and answers
/// `/bytes/<n>` with n octets, anything else with `ok`.
struct RecordingBackend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl RecordingBackend {
    fn start() -> RecordingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for sock in listener.incoming().map_while(Result::ok) {
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve(sock, &log));
            }
        });
        RecordingBackend { addr, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

fn serve(sock: TcpStream, log: &Mutex<Vec<String>>) {
    let mut w = match sock.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(sock);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end().to_string();
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if h.starts_with("transfer-encoding:") && h.contains("chunked") {
                chunked = true;
            }
        }
        if chunked {
            loop {
                let mut size = String::new();
                if r.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                    .unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                if r.read_exact(&mut chunk).is_err() {
                    return;
                }
                if n == 0 {
                    break;
                }
            }
        } else {
            let mut body = vec![0; length];
            if r.read_exact(&mut body).is_err() {
                return;
            }
        }
        if let Ok(mut v) = log.lock() {
            v.push(line.clone());
        }
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("");
        let path = parts.next().unwrap_or("/");
        let body = match path.strip_prefix("/bytes/").and_then(|n| n.parse().ok()) {
            Some(n) => vec![b'x'; n],
            None => b"ok".to_vec(),
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let mut out = head.into_bytes();
        if method != "HEAD" {
            if let Some(ms) = path.strip_prefix("/slow/").and_then(|n| n.parse().ok()) {
                std::thread::sleep(Duration::from_millis(ms));
            }
            out.extend_from_slice(&body);
        }
        if w.write_all(&out).is_err() {
            return;
        }
    }
}

/// A TLS portier in front of `backend`, with the admin API (for metrics).
struct Node {
    portier: Portier,
    port: u16,
    admin: SocketAddr,
    dir: std::path::PathBuf,
}

const TOKEN: &str = "conformance-token-0123456789abcdef";

impl Node {
    fn start(backend: SocketAddr, limits: &str) -> Node {
        // Ports from `free_port` can be taken before portier binds them
        // (another test's connections use ephemeral ports): try others.
        for _ in 0..4 {
            if let Some(node) = Node::try_start(backend, limits) {
                return node;
            }
        }
        panic!("no free ports for portier after 4 tries");
    }

    fn try_start(backend: SocketAddr, limits: &str) -> Option<Node> {
        let port = free_port();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let dir =
            std::env::temp_dir().join(format!("portier-h2conf-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("certs")).expect("mkdir");
        let pem = portier::tls::self_signed_pem(&[HOST.to_string()]).expect("cert");
        std::fs::write(dir.join("certs/default.pem"), pem).expect("cert");
        let token = dir.join("token");
        std::fs::write(&token, TOKEN).expect("token");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let config = dir.join("portier.toml");
        let text = format!(
            "[server]\nhttps = [\"127.0.0.1:{port}\"]\nthreads = 1\n\n[tls]\ncert_dir = \"{}\"\n\n[limits]\n{limits}\n\n[admin]\nlisten = \"{admin}\"\ntoken_file = \"{}\"\n\n[[apps]]\nname = \"conf\"\ndomains = [\"{HOST}\"]\nbackends = [\"{backend}\"]\nmax_conns_per_backend = 300\n",
            dir.join("certs").display(),
            token.display()
        );
        std::fs::write(&config, text).expect("config");
        let Ok(portier) = Portier::try_start(None, &config) else {
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        };
        Some(Node {
            portier,
            port,
            admin,
            dir,
        })
    }

    fn metric(&self, name: &str) -> u64 {
        let mut s = TcpStream::connect(self.admin).expect("admin");
        let req = format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).expect("send");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in metrics"))
    }

    /// Resident memory of the portier process, KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.portier.child.id()))
            .expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn python(script: &str, args: &[String]) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg(format!("{}/tests/h2/{script}", env!("CARGO_MANIFEST_DIR")))
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rfc9113_and_rfc7541_conformance_suite() {
    let backend = RecordingBackend::start();
    let node = Node::start(backend.addr, "");
    let out = python("conformance.py", &[node.port.to_string(), HOST.to_string()]);
    let mut failed = Vec::new();
    let mut ids = Vec::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        let id = v["id"].as_str().unwrap_or("?").to_string();
        if v["ok"] != true {
            failed.push(format!("{id} {}: {}", v["title"], v["detail"]));
        }
        ids.push(id);
    }
    eprintln!("{} conformance cases run", ids.len());
    assert!(ids.len() >= 140, "only {} cases ran", ids.len());
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "case ids are unique");
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
    let leaked: Vec<String> = backend
        .seen()
        .into_iter()
        .filter(|l| l.contains("/malformed/"))
        .collect();
    assert!(
        leaked.is_empty(),
        "malformed requests reached the backend: {leaked:?}"
    );
    assert!(
        backend.seen().len() > 50,
        "the valid requests did reach the backend"
    );
}

#[test]
fn the_suite_can_fail() {
    // A server that is not HTTP/2 at all (a plain TCP sink behind TLS would
    // need a certificate; a closed port is enough): every case fails.
    let port = free_port();
    let out = Command::new("/usr/bin/python3")
        .arg(format!(
            "{}/tests/h2/conformance.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args([&port.to_string(), HOST, "6.9", "hpack/5.2"])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let results: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert!(results.len() > 10);
    assert!(results.iter().all(|v| v["ok"] == false), "{text}");
}

/// The HTTP/2 bomb (CVE-2026-49975) end to end: 100 streams whose header
/// lists are inflated from the HPACK table (28 KB each from a few octets),
/// each asking for 1 MB, with SETTINGS_INITIAL_WINDOW_SIZE = 0 and no
/// WINDOW_UPDATE ever. The server's memory stays bounded; after
/// `h2_stall_timeout_ms` every stream is reset (CANCEL), counted, and the
/// backend connections it pinned are free again.
#[test]
fn http2_bomb_streams_pinned_by_a_zero_window_are_reaped() {
    let backend = RecordingBackend::start();
    let node = Node::start(backend.addr, "h2_stall_timeout_ms = 2000");
    // Warm up (TLS, pools) before measuring.
    let _ = python(
        "attacks.py",
        &[node.port.to_string(), HOST.to_string(), "hpack_bomb".into()],
    );
    let before = node.rss_kib();
    let t0 = Instant::now();
    let port = node.port;
    let attacker = std::thread::spawn(move || {
        python(
            "attacks.py",
            &[
                port.to_string(),
                HOST.to_string(),
                "zero_window_bomb".into(),
            ],
        )
    });
    // Sample RSS while the streams are pinned.
    let mut peak = before;
    while t0.elapsed() < Duration::from_millis(1500) {
        peak = peak.max(node.rss_kib());
        std::thread::sleep(Duration::from_millis(100));
    }
    let r: serde_json::Value =
        serde_json::from_str(attacker.join().expect("attacker").trim()).expect("json");
    eprintln!("bomb: {r} rss before {before} KiB, peak {peak} KiB");
    assert_eq!(r["responses"], 100, "every stream got its headers: {r}");
    assert_eq!(r["data_octets"], 0, "nothing beyond the zero window: {r}");
    assert_eq!(
        r["cancelled"], 100,
        "every stalled stream reset (CANCEL): {r}"
    );
    let reaped_after = r["reaped_after"].as_f64().expect("reaped_after");
    assert!(
        (2.0..=4.5).contains(&reaped_after),
        "reaped between the timeout and 1.5x it (+ slack): {r}"
    );
    assert_eq!(node.metric("portier_http2_streams_stalled_total"), 100);
    // 100 streams x 28 KB of decoded fields and a response each: bounded
    // (the proxy keeps about one response buffer per stream, not 1 MB).
    assert!(
        peak - before < 48 * 1024,
        "RSS grew by {} KiB",
        peak - before
    );
    // The backend connections the streams held are free: a new request is
    // served at once.
    let out = python(
        "attacks.py",
        &[node.port.to_string(), HOST.to_string(), "hpack_bomb".into()],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["statuses"]["1"], "200", "{v}");
    assert!(node.rss_kib() <= peak + 1024);
}
