//! `mini_acme.py` (next to this file) as a process per test: the ACME
//! stand-in for what Pebble 2.4 lacks (ARI `renewalInfo` + `replaces`,
//! profiles, 429 + Retry-After). Plain HTTP on a free loopback port; killed
//! on drop.
//!
//! Owns: the python process. Fed by: the test (`control`). Emits: what the
//! client did (`log`), the CA that signs its certificates (`ca_pem`).
//! The control/log protocol is described in the script's header.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::proc::{Conn, Response};

/// Debian's python (has python3-cryptography), not whatever `python3` is
/// first on PATH.
const PYTHON: &str = "/usr/bin/python3";

pub struct MiniAcme {
    addr: SocketAddr,
    child: Option<Child>,
    /// Held open: the script exits when it closes (this process died).
    _stdin: Option<ChildStdin>,
}

impl MiniAcme {
    /// Starts the stand-in; its http-01 validation fetches from
    /// `127.0.0.1:http_port` with `Host: <identifier>`.
    pub fn start(http_port: u16) -> MiniAcme {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/mini_acme.py");
        // Port 0: the script binds a free port and prints it, so no race.
        let mut child = Command::new(PYTHON)
            .args([script, "0", &http_port.to_string()])
            .env("MINI_ACME_EXIT_ON_STDIN_EOF", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn /usr/bin/python3 mini_acme.py (apt-get install python3-cryptography)");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("mini-acme listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                    break;
                }
            }
            for _ in lines {}
        });
        let mut mini = MiniAcme {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child: Some(child),
            _stdin: stdin,
        };
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(addr) => mini.addr = addr.parse().expect("mini-acme address"),
            Err(_) => panic!("mini-acme did not start (is python3-cryptography installed?)"),
        }
        mini
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/directory`.
    pub fn directory_url(&self) -> String {
        format!("http://{}/directory", self.addr)
    }

    /// POST /_control with a JSON object (see the script's header).
    pub fn control(&self, ctl: serde_json::Value) {
        let r = self.request("POST", "/_control", &ctl.to_string());
        assert_eq!(r.status, 200, "mini-acme control: {}", r.text());
    }

    /// GET /_log: the list of events, oldest first.
    pub fn log(&self) -> serde_json::Value {
        self.request("GET", "/_log", "").json()
    }

    /// The events named `event` ("newOrder", "renewalInfo", ...).
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        match self.log() {
            serde_json::Value::Array(all) => {
                all.into_iter().filter(|e| e["event"] == event).collect()
            }
            other => panic!("mini-acme log is not a list: {other}"),
        }
    }

    /// The root CA (PEM) under which it issues (chains: leaf + intermediate).
    pub fn ca_pem(&self) -> String {
        self.request("GET", "/_ca", "").text()
    }

    /// One plain-HTTP request on a fresh connection.
    pub fn request(&self, method: &str, path: &str, body: &str) -> Response {
        let mut c = Conn::open(self.addr);
        c.send(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                self.addr,
                body.len()
            )
            .as_bytes(),
        );
        c.response()
    }
}

impl Drop for MiniAcme {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
