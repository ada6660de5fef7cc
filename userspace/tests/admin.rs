//! The admin API of the real `portier` binary, in front of real
//! `portier-demo-backend` processes on loopback: authentication and the
//! token file's mode, domains and backends changed live and seen in
//! routing and round-robin, drain (kept when an edit or a SIGHUP rebuilds
//! the balancer), refused changes (wildcard ownership, bad
//! addresses) that change nothing, persistence across a restart,
//! `/metrics` read by the Python `prometheus_client` parser, certificate
//! upload served by SNI, and `/xdp/*` without XDP.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::netns::Portier;
use support::proc::{Backend, Conn, Response, free_port, get};

const TOKEN: &str = "s3cret-admin-token-0123456789";

/// A portier with the admin API on, its config and token in a temp dir.
struct Node {
    dir: PathBuf,
    config: PathBuf,
    http: SocketAddr,
    admin: SocketAddr,
    portier: Option<Portier>,
}

impl Node {
    /// `server_extra` goes into `[server]`; `rest` after `[admin]`.
    fn start(server_extra: &str, rest: &str) -> Node {
        let node = Node::prepare(server_extra, rest, 0o600);
        node.launch()
    }

    fn prepare(server_extra: &str, rest: &str, token_mode: u32) -> Node {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let dir = std::env::temp_dir().join(format!(
            "portier-admin-it-{}-{}",
            std::process::id(),
            http.port()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let token = dir.join("admin.token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(token_mode))
            .expect("chmod");
        let config = dir.join("portier.toml");
        let text = format!(
            "# Written by the admin test; this comment must survive edits.\n[server]\nhttp = [\"{http}\"]\nthreads = 2\n{server_extra}\n\n[admin]\nlisten = \"{admin}\"\ntoken_file = \"{}\"\nunix_socket = \"{}\"\n\n{rest}\n",
            token.display(),
            dir.join("admin.sock").display()
        );
        std::fs::write(&config, text).expect("config");
        Node {
            dir,
            config,
            http,
            admin,
            portier: None,
        }
    }

    fn launch(mut self) -> Node {
        self.portier = Some(Portier::start(None, &self.config));
        self
    }

    fn restart(&mut self) {
        if let Some(mut p) = self.portier.take() {
            p.stop();
        }
        self.portier = Some(Portier::start(None, &self.config));
    }

    fn file(&self) -> String {
        std::fs::read_to_string(&self.config).expect("read config")
    }

    /// One admin request with the right token.
    fn api(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        self.raw(
            method,
            path,
            Some(TOKEN),
            body.map(|b| b.to_string()).as_deref(),
        )
    }

    fn raw(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Response {
        let mut c = Conn::open(self.admin);
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n");
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            req.push_str("\r\n");
        }
        c.send(req.as_bytes());
        c.response()
    }

    /// `X-Backend` of a GET through the proxy (None: not proxied).
    fn backend_for(&self, host: &str) -> Option<String> {
        let r = get(self.http, host, "/");
        (r.status == 200).then(|| r.header("x-backend").map(str::to_string))?
    }

    fn app(&self, name: &str) -> Value {
        let r = self.api("GET", &format!("/apps/{name}"), None);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut p) = self.portier.take() {
            p.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn app(name: &str, owner: &str, domains: &[&str], backends: &[&Backend]) -> String {
    let d: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
    let b: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!(
        "[[apps]]\nname = \"{name}\" # app {name}\nowner = \"{owner}\"\ndomains = [{}]\nbackends = [{}]\n\n",
        d.join(", "),
        b.join(", ")
    )
}

fn reason(r: &Response) -> String {
    r.json()["reason"].as_str().unwrap_or_default().to_string()
}

#[test]
fn requests_need_the_token_and_errors_are_json() {
    let a = Backend::start("a");
    let node = Node::start("", &app("shop", "o", &["shop.test"], &[&a]));
    let r = node.raw("GET", "/apps", None, None);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "unauthorized");
    assert!(r.header("www-authenticate").is_some());
    let r = node.raw("GET", "/apps", Some("wrong-token-wrong-token"), None);
    assert_eq!(r.status, 401);
    assert_eq!(reason(&r), "wrong bearer token");
    // Mutations too: nothing changes without the token.
    let before = node.file();
    let r = node.raw(
        "POST",
        "/apps/shop/domains",
        None,
        Some(r#"{"domain":"x.test"}"#),
    );
    assert_eq!(r.status, 401);
    assert_eq!(node.file(), before);

    let r = node.api("GET", "/apps", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["apps"][0]["name"], "shop");
    assert_eq!(r.json()["apps"][0]["backends"][0]["state"], "up");

    let r = node.api("GET", "/nope", None);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
    let r = node.api("DELETE", "/apps", None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    let r = node.raw("POST", "/apps/shop/domains", Some(TOKEN), Some("{not json"));
    assert_eq!(r.status, 400);
    assert!(reason(&r).contains("not JSON"), "{}", reason(&r));
    let r = node.api("POST", "/apps/shop/domains", Some(&json!({"name": "x"})));
    assert_eq!(r.status, 400);
    assert!(reason(&r).contains("missing `domain`"));

    // The unix socket answers the same API.
    let mut s =
        std::os::unix::net::UnixStream::connect(node.dir.join("admin.sock")).expect("unix socket");
    let mode = std::fs::metadata(node.dir.join("admin.sock"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "socket is private");
    s.write_all(
        format!("GET /apps/shop HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"shop.test\""), "{out}");
}

#[test]
fn token_file_readable_by_others_or_missing_stops_portier() {
    for (mode, remove, expected) in [
        (0o644, false, "readable by group/others"),
        (0o640, false, "readable by group/others"),
        (0o600, true, "cannot read the token file"),
    ] {
        let node = Node::prepare("", "", mode);
        let token = node.dir.join("admin.token");
        if remove {
            std::fs::remove_file(&token).expect("rm");
        }
        let out = Command::new(support::proc::bin())
            .arg("--config")
            .arg(&node.config)
            .stdin(Stdio::null())
            .output()
            .expect("run portier");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "portier started: {stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(stderr.contains(&token.display().to_string()), "{stderr}");
        assert!(!stderr.contains("portier: ready"), "{stderr}");
    }
}

#[test]
fn added_domain_is_routed_removed_one_is_not_and_both_survive_a_restart() {
    let a = Backend::start("a");
    let mut node = Node::start("", &app("shop", "o", &["shop.test"], &[&a]));
    assert_eq!(node.backend_for("new.test"), None);
    let r = node.api(
        "POST",
        "/apps/shop/domains",
        Some(&json!({"domain": "New.Test"})),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["domains"], json!(["shop.test", "new.test"]));
    assert_eq!(node.backend_for("new.test").as_deref(), Some("a"));
    let r = node.api("DELETE", "/apps/shop/domains/shop.test", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(node.http, "shop.test", "/").status, 404);

    let file = node.file();
    assert!(file.contains("this comment must survive"), "{file}");
    assert!(file.contains("# app shop"), "{file}");
    assert!(file.contains("\"new.test\""), "{file}");
    assert!(!file.contains("\"shop.test\""), "{file}");

    node.restart();
    assert_eq!(node.app("shop")["domains"], json!(["new.test"]));
    assert_eq!(node.backend_for("new.test").as_deref(), Some("a"));
    assert_eq!(get(node.http, "shop.test", "/").status, 404);
}

/// Which backends answer `n` requests in a row.
fn rotation(node: &Node, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| node.backend_for("shop.test").expect("proxied"))
        .collect()
}

#[test]
fn backends_added_removed_and_drained_change_the_rotation() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let mut node = Node::start("", &app("shop", "o", &["shop.test"], &[&a]));
    assert_eq!(rotation(&node, 3), ["a", "a", "a"]);

    let r = node.api(
        "POST",
        "/apps/shop/backends",
        Some(&json!({"address": b.addr.to_string()})),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let mut seen = rotation(&node, 4);
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b"]);

    // Drain a: no new request reaches it; the API shows it draining.
    let r = node.api(
        "POST",
        &format!("/apps/shop/backends/{}/drain", a.addr),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["backends"][0]["state"], "draining");
    assert_eq!(rotation(&node, 6), ["b"; 6]);
    let stats = node.api("GET", "/stats", None).json();
    assert_eq!(stats["apps"][0]["backends"][0]["draining"], true);
    // Draining survives a change that rebuilds the app's balancer.
    let r = node.api(
        "PATCH",
        "/apps/shop/settings",
        Some(&json!({"max_conns_per_backend": 10})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["backends"][0]["state"], "draining");
    assert_eq!(rotation(&node, 4), ["b"; 4]);
    let r = node.api(
        "POST",
        &format!("/apps/shop/backends/{}/undrain", a.addr),
        None,
    );
    assert_eq!(r.status, 200);
    let mut seen = rotation(&node, 4);
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b"]);

    let r = node.api("DELETE", &format!("/apps/shop/backends/{}", a.addr), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(rotation(&node, 4), ["b"; 4]);
    let r = node.api("POST", "/apps/shop/backends/127.0.0.1:1/drain", None);
    assert_eq!(r.status, 404);

    node.restart();
    let backends = node.app("shop")["backends"].clone();
    assert_eq!(backends.as_array().map(Vec::len), Some(1));
    assert_eq!(backends[0]["address"], b.addr.to_string());
    assert_eq!(rotation(&node, 2), ["b", "b"]);
}

/// SIGHUP the node and wait for its answer (reloaded or refused).
fn sighup(node: &mut Node) -> String {
    let p = node.portier.as_mut().expect("running");
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(p.child.id() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match p.lines.recv_timeout(left) {
            Ok(l) if l.contains("configuration reloaded") || l.contains("reload refused") => {
                return l;
            }
            Ok(_) => {}
            Err(_) => panic!("portier did not answer SIGHUP"),
        }
    }
}

#[test]
fn draining_survives_a_sighup_that_rebuilds_the_balancer() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let c = Backend::start("c");
    let mut node = Node::start("", &app("shop", "o", &["shop.test"], &[&a, &b]));
    let r = node.api(
        "POST",
        &format!("/apps/shop/backends/{}/drain", a.addr),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(rotation(&node, 4), ["b"; 4]);

    // Edit the file by hand (a new backend: the app's balancer is rebuilt)
    // and SIGHUP, the way an operator or config management would.
    let text = node.file().replace(
        &format!("\"{}\"]", b.addr),
        &format!("\"{}\", \"{}\"]", b.addr, c.addr),
    );
    assert!(text.contains(&c.addr.to_string()), "{text}");
    std::fs::write(&node.config, text).expect("write");
    let answer = sighup(&mut node);
    assert!(answer.contains("configuration reloaded"), "{answer}");

    // Strict rotation skipping a: b, b, c over and over; a gets nothing.
    let seen = rotation(&node, 9);
    assert!(
        !seen.iter().any(|s| s == "a"),
        "drained a got requests: {seen:?}"
    );
    assert!(seen.iter().any(|s| s == "c"), "{seen:?}");
    let backends = node.app("shop")["backends"].clone();
    assert_eq!(backends.as_array().map(Vec::len), Some(3), "{backends}");
    assert_eq!(backends[0]["address"], a.addr.to_string());
    assert_eq!(backends[0]["state"], "draining", "{backends}");
    assert_eq!(backends[2]["state"], "up", "{backends}");
    let stats = node.api("GET", "/stats", None).json();
    assert_eq!(stats["apps"][0]["backends"][0]["draining"], true);

    // Undrained, it takes requests again.
    let r = node.api(
        "POST",
        &format!("/apps/shop/backends/{}/undrain", a.addr),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut seen = rotation(&node, 6);
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b", "c", "c"]);
}

#[test]
fn invalid_changes_are_refused_with_the_reason_and_change_nothing() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let node = Node::start(
        "",
        &format!(
            "{}{}",
            app("wild", "alice", &["*.y.test"], &[&a]),
            app("other", "bob", &["b.test"], &[&b])
        ),
    );
    let before = node.file();
    let refused = |method: &str, path: &str, body: Option<Value>, status: u16, says: &str| {
        let r = node.api(method, path, body.as_ref());
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert!(reason(&r).contains(says), "{method} {path}: {}", reason(&r));
        assert_eq!(node.file(), before, "{method} {path} changed the file");
    };
    // A name under someone else's wildcard: the validator's own message.
    refused(
        "POST",
        "/apps/other/domains",
        Some(json!({"domain": "x.y.test"})),
        409,
        "belongs to another owner (app wild)",
    );
    refused(
        "POST",
        "/apps/other/domains",
        Some(json!({"domain": "*.y.test"})),
        409,
        "another owner",
    );
    refused(
        "POST",
        "/apps/other/backends",
        Some(json!({"address": "not-an-address"})),
        400,
        "is not an ip:port address",
    );
    refused(
        "POST",
        "/apps/other/domains",
        Some(json!({"domain": "bad host"})),
        400,
        "not a host name",
    );
    refused(
        "POST",
        "/apps/other/domains",
        Some(json!({"domain": "b.test"})),
        409,
        "already has domain",
    );
    refused(
        "DELETE",
        &format!("/apps/other/backends/{}", b.addr),
        None,
        409,
        "no backends",
    );
    refused(
        "PATCH",
        "/apps/other/settings",
        Some(json!({"canonical_domain": "elsewhere.test"})),
        409,
        "not one of its domains",
    );
    refused(
        "PATCH",
        "/apps/other/settings",
        Some(json!({"max_conns_per_backend": 0})),
        409,
        "at least 1",
    );
    refused(
        "PATCH",
        "/apps/other/settings",
        Some(json!({"colour": "blue"})),
        400,
        "unknown setting `colour`",
    );
    refused(
        "PATCH",
        "/apps/other/settings",
        Some(json!({"force_https": "yes"})),
        400,
        "true or false",
    );
    refused(
        "POST",
        "/apps/ghost/domains",
        Some(json!({"domain": "g.test"})),
        404,
        "no app named ghost",
    );
    // The running state did not move either.
    assert_eq!(node.app("other")["domains"], json!(["b.test"]));
    assert_eq!(node.backend_for("x.y.test").as_deref(), Some("a"));
    assert_eq!(node.backend_for("b.test").as_deref(), Some("b"));
    let stats = node.api("GET", "/stats", None).json();
    assert_eq!(stats["reloads"]["ok"], 0, "{stats}");
}

#[test]
fn settings_patch_applies_live_and_persists() {
    let a = Backend::start("a");
    let mut node = Node::start(
        "",
        &app("shop", "o", &["shop.test", "www.shop.test"], &[&a]),
    );
    assert_eq!(get(node.http, "www.shop.test", "/p").status, 200);
    let r = node.api(
        "PATCH",
        "/apps/shop/settings",
        Some(&json!({"canonical_domain": "shop.test", "compress": false, "hsts_max_age": 60})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["settings"]["canonical_domain"], "shop.test");
    assert_eq!(r.json()["settings"]["compress"], false);
    let resp = get(node.http, "www.shop.test", "/p?q=1");
    assert_eq!(resp.status, 301);
    assert_eq!(resp.header("location"), Some("http://shop.test/p?q=1"));

    let r = node.api(
        "PATCH",
        "/apps/shop/settings",
        Some(&json!({"force_https": true})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let resp = get(node.http, "shop.test", "/x");
    assert_eq!(resp.status, 301);
    assert!(
        resp.header("location")
            .is_some_and(|l| l.starts_with("https://shop.test")),
        "{resp:?}"
    );
    node.restart();
    let s = node.app("shop")["settings"].clone();
    assert_eq!(s["force_https"], true);
    assert_eq!(s["hsts_max_age"], 60);
    assert_eq!(s["canonical_domain"], "shop.test");
}

#[test]
fn reload_rereads_the_file_and_refuses_an_invalid_one() {
    let a = Backend::start("a");
    let node = Node::start("", &app("shop", "o", &["shop.test"], &[&a]));
    let text = node
        .file()
        .replace("\"shop.test\"", "\"shop.test\", \"hand.test\"");
    std::fs::write(&node.config, text).expect("write");
    let r = node.api("POST", "/reload", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(node.backend_for("hand.test").as_deref(), Some("a"));

    std::fs::write(
        &node.config,
        node.file().replace("backends = [", "backendz = ["),
    )
    .expect("write");
    let r = node.api("POST", "/reload", None);
    assert_eq!(r.status, 409);
    assert!(reason(&r).contains("backendz"), "{}", reason(&r));
    assert_eq!(node.backend_for("hand.test").as_deref(), Some("a"));
    let stats = node.api("GET", "/stats", None).json();
    assert_eq!(stats["reloads"]["ok"], 1);
    assert_eq!(stats["reloads"]["failed"], 1);
}

#[test]
fn metrics_parse_with_the_prometheus_client_parser() {
    let a = Backend::start("a");
    let node = Node::start("", &app("shop", "o", &["shop.test"], &[&a]));
    for _ in 0..3 {
        assert_eq!(node.backend_for("shop.test").as_deref(), Some("a"));
    }
    let r = node.api("GET", "/metrics", None);
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{r:?}"
    );
    let script = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"#;
    let mut child = Command::new(python_with_prometheus_client())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (apt install python3-prometheus-client)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&r.body)
        .expect("feed");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        r.text()
    );
    let families: Value = serde_json::from_slice(&out.stdout).expect("json");
    let sample = |name: &str, label: (&str, &str)| -> Option<f64> {
        families.as_object()?.values().find_map(|f| {
            f["samples"]
                .as_array()?
                .iter()
                .find_map(|s| (s[0] == name && s[1][label.0] == label.1).then(|| s[2].as_f64())?)
        })
    };
    for (family, kind) in [
        ("portier_backend_up", "gauge"),
        ("portier_backend_draining", "gauge"),
        ("portier_backend_in_flight", "gauge"),
        ("portier_queue_depth", "gauge"),
        ("portier_reloads", "counter"),
        ("portier_responses", "counter"),
        ("portier_requests", "counter"),
        ("portier_app_requests", "counter"),
        ("portier_request_duration_seconds", "histogram"),
    ] {
        assert_eq!(families[family]["type"], kind, "{family}: {families}");
    }
    let backend = a.addr.to_string();
    assert_eq!(
        sample("portier_backend_up", ("backend", backend.as_str())),
        Some(1.0)
    );
    assert_eq!(
        sample("portier_responses_total", ("class", "2xx")),
        Some(3.0)
    );
    assert_eq!(sample("portier_reloads_total", ("result", "ok")), Some(0.0));
    // Per app, by method class and status class.
    let per_app = families["portier_app_requests"]["samples"]
        .as_array()
        .and_then(|v| {
            v.iter().find(|s| {
                s[1]["app"] == "shop" && s[1]["method"] == "read" && s[1]["status"] == "2xx"
            })
        })
        .and_then(|s| s[2].as_f64());
    assert_eq!(per_app, Some(3.0), "{families}");
}

/// Debian's `python3-prometheus-client` lives in /usr/bin/python3's path,
/// which a pyenv `python3` first on PATH does not see: take the first
/// interpreter that can import the parser.
fn python_with_prometheus_client() -> &'static str {
    ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|py| {
            Command::new(py)
                .args(["-c", "import prometheus_client.parser"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("no python3 with prometheus_client: apt install python3-prometheus-client")
}

fn s_client_subject(port: u16, sni: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", sni])
        .stdin(Stdio::null())
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_default()
        .to_string()
}

fn write_pem(dir: &Path, file: &str, names: &[&str]) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let pem = portier::tls::self_signed_pem(&names).expect("rcgen");
    std::fs::write(dir.join(format!("{file}.pem")), pem).expect("write cert");
}

#[test]
fn uploaded_certificate_is_listed_and_served_by_sni() {
    let a = Backend::start("a");
    let https = free_port();
    let certs = std::env::temp_dir().join(format!(
        "portier-admin-certs-{}-{https}",
        std::process::id()
    ));
    std::fs::create_dir_all(&certs).expect("mkdir");
    write_pem(&certs, "default", &["default.localhost"]);
    let node = Node::start(
        &format!(
            "https = [\"127.0.0.1:{https}\"]\n[tls]\ncert_dir = \"{}\"\nreload_interval_ms = 100\n",
            certs.display()
        ),
        &app("shop", "o", &["up.test"], &[&a]),
    );
    assert!(s_client_subject(https, "up.test").contains("default.localhost"));

    let pem = portier::tls::self_signed_pem(&["up.test".to_string()]).expect("rcgen");
    let put = |name: &str, body: &str| {
        node.raw(
            "PUT",
            &format!("/certificates/{name}"),
            Some(TOKEN),
            Some(body),
        )
    };
    // Refused: garbage, a key that does not match, a name it does not cover,
    // a name that would leave the directory. Nothing is written.
    let r = put("up.test", "not a pem");
    assert_eq!(r.status, 400, "{}", r.text());
    let other = portier::tls::self_signed_pem(&["up.test".to_string()]).expect("rcgen");
    let cert_only = pem
        .split("-----BEGIN PRIVATE KEY-----")
        .next()
        .unwrap_or_default();
    let key_only = other
        .find("-----BEGIN PRIVATE KEY-----")
        .map(|i| &other[i..])
        .unwrap_or_default();
    let r = put("up.test", &format!("{cert_only}{key_only}"));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(reason(&r).contains("does not match"), "{}", reason(&r));
    let r = put("elsewhere.test", &pem);
    assert_eq!(r.status, 400);
    assert!(
        reason(&r).contains("does not cover elsewhere.test"),
        "{}",
        reason(&r)
    );
    let r = put("..%2Fescape", &pem);
    assert_eq!(r.status, 400);
    let files: Vec<String> = std::fs::read_dir(&certs)
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["default.pem"], "refused uploads left files");

    let r = put("up.test", &pem);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["names"], json!(["up.test"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let subject = s_client_subject(https, "up.test");
        if subject.contains("up.test") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SNI never served the upload: {subject}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let list = node.api("GET", "/certificates", None).json();
    let certs_json = list["certificates"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = certs_json
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["default", "up.test"]);
    let up = &certs_json[1];
    assert!(
        up["not_after"].as_str().is_some_and(|d| d.ends_with('Z')),
        "{up}"
    );
    assert!(
        up["days_left"]
            .as_i64()
            .is_some_and(|d| (89..=90).contains(&d)),
        "self-signed: 90 days: {up}"
    );
    let mode = std::fs::metadata(certs.join("up.test.pem"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "key file is private");
    // Expiry is exported as a metric, per certificate file.
    let metrics = node.api("GET", "/metrics", None).text();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("portier_certificate_expiry_timestamp_seconds{certificate=\"up.test\"}")
        })
        .unwrap_or_else(|| panic!("expiry metric: {metrics}"))
        .to_string();
    let at: i64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("timestamp");
    assert_eq!(Some(at), up["not_after_unix"].as_i64(), "{line}");
    drop(node);
    let _ = std::fs::remove_dir_all(&certs);
}

#[test]
fn xdp_endpoints_answer_409_with_a_reason_when_xdp_is_off() {
    let a = Backend::start("a");
    let node = Node::start("", &app("shop", "o", &["shop.test"], &[&a]));
    let before = node.file();
    for (method, path, body) in [
        ("GET", "/xdp/stats", None),
        ("GET", "/xdp/blocklist", None),
        (
            "POST",
            "/xdp/blocklist",
            Some(json!({"cidr": "192.0.2.0/24"})),
        ),
        ("DELETE", "/xdp/blocklist/192.0.2.0/24", None),
        ("DELETE", "/xdp/blocklist/192.0.2.0%2F24", None),
    ] {
        let r = node.api(method, path, body.as_ref());
        assert_eq!(r.status, 409, "{method} {path}: {}", r.text());
        assert_eq!(r.json()["error"], "xdp_not_running");
        assert!(reason(&r).contains("XDP is not running"), "{}", reason(&r));
    }
    assert_eq!(node.file(), before);
}
