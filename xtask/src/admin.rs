//! `cargo xtask apps|domains|backends|certs|reload|stats`: the operator's
//! commands, driving a running portier's admin API.
//!
//! Owns: a minimal HTTP/1.1 client (std `TcpStream` or `UnixStream`, one
//! request per connection, `Connection: close`), the bearer token from
//! `--token-file`, and the human-readable tables (`--json` prints the
//! API's JSON as is).
//! Must not: know the configuration format; every change is the API's job
//! (validated, written back, swapped in).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// How to reach the admin API (shared by every admin command).
#[derive(Args, Clone)]
pub struct Conn {
    /// Admin API: http://HOST:PORT or unix:/path/to/admin.sock.
    #[arg(long, default_value = "http://127.0.0.1:9090", global = true)]
    admin: String,
    /// File holding the bearer token ([admin] token_file). Default:
    /// /etc/portier/admin.token, or the demo's target/demo/admin.token when
    /// that one does not exist and the demo's does.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub enum DomainCmd {
    /// Attach a domain to an app.
    Add { app: String, domain: String },
    /// Detach a domain from an app.
    Rm { app: String, domain: String },
}

#[derive(Subcommand)]
pub enum BackendCmd {
    /// Add a backend (ip:port) to an app.
    Add { app: String, address: String },
    /// Remove a backend from an app.
    Rm { app: String, address: String },
    /// Stop sending new requests to a backend (in-flight ones finish).
    Drain { app: String, address: String },
    /// Put a drained backend back in rotation.
    Undrain { app: String, address: String },
}

/// `%`-encode a path segment (addresses carry `:` `[` `]`, CIDRs `/`).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Conn {
    fn token_file(&self) -> PathBuf {
        if let Some(f) = &self.token_file {
            return f.clone();
        }
        let system = PathBuf::from("/etc/portier/admin.token");
        let demo = crate::root().join("target/demo/admin.token");
        if !system.exists() && demo.exists() {
            demo
        } else {
            system
        }
    }

    fn token(&self) -> anyhow::Result<String> {
        let file = self.token_file();
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "reading the admin token from {} (pass --token-file)",
                file.display()
            )
        })?;
        Ok(text.trim().to_string())
    }

    /// One request; the parsed JSON (or text) body of a 2xx answer, else
    /// an error carrying the API's reason.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let token = self.token()?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: portier-admin\r\nAuthorization: Bearer {token}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str("\r\n");
        req.push_str(&body);
        let raw = self.exchange(req.as_bytes())?;
        let (status, body) = parse_response(&raw)?;
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        if !(200..300).contains(&status) {
            let reason = value["reason"].as_str().map(str::to_string);
            bail!(
                "{method} {path}: {status} {}",
                reason.unwrap_or_else(|| value.to_string())
            );
        }
        Ok(value)
    }

    fn exchange(&self, request: &[u8]) -> anyhow::Result<Vec<u8>> {
        let hint = || {
            format!(
                "cannot reach the admin API at {} — is portier running with [admin] enabled?",
                self.admin
            )
        };
        let mut out = Vec::new();
        if let Some(path) = self.admin.strip_prefix("unix:") {
            let mut s = std::os::unix::net::UnixStream::connect(path).with_context(hint)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            s.write_all(request)?;
            s.read_to_end(&mut out)?;
        } else {
            let hostport = self
                .admin
                .strip_prefix("http://")
                .ok_or_else(|| anyhow!("--admin must be http://HOST:PORT or unix:PATH"))?
                .trim_end_matches('/');
            let mut s = std::net::TcpStream::connect(hostport).with_context(hint)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            s.write_all(request)?;
            s.read_to_end(&mut out)?;
        }
        Ok(out)
    }
}

/// Status and body of a `Connection: close` response with Content-Length.
fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("the admin API sent no complete response"))?;
    let head = String::from_utf8_lossy(raw.get(..end).unwrap_or_default());
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line from the admin API"))?;
    Ok((status, raw.get(end + 4..).unwrap_or_default().to_vec()))
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_app(app: &Value) {
    let name = app["name"].as_str().unwrap_or("?");
    let domains: Vec<&str> = app["domains"]
        .as_array()
        .map(|d| d.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    println!("{name} (owner {})", app["owner"].as_str().unwrap_or("?"));
    println!("  domains:  {}", domains.join(" "));
    for b in app["backends"].as_array().into_iter().flatten() {
        println!(
            "  backend   {:<24} {:<12} in-flight {}",
            b["address"].as_str().unwrap_or("?"),
            b["state"].as_str().unwrap_or("?"),
            b["in_flight"]
        );
    }
    if let Some(s) = app["settings"].as_object() {
        let line: Vec<String> = s.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  settings: {}", line.join(" "));
    }
}

pub fn apps(conn: &Conn) -> anyhow::Result<()> {
    let v = conn.call("GET", "/apps", None)?;
    if conn.json {
        return print_json(&v);
    }
    for app in v["apps"].as_array().into_iter().flatten() {
        print_app(app);
    }
    Ok(())
}

fn after_change(conn: &Conn, v: &Value, what: String) -> anyhow::Result<()> {
    if conn.json {
        return print_json(v);
    }
    println!("{what}");
    print_app(v);
    Ok(())
}

pub fn domains(conn: &Conn, cmd: &DomainCmd) -> anyhow::Result<()> {
    let (v, what) = match cmd {
        DomainCmd::Add { app, domain } => (
            conn.call(
                "POST",
                &format!("/apps/{}/domains", segment(app)),
                Some(&json!({ "domain": domain })),
            )?,
            format!("added {domain} to {app}"),
        ),
        DomainCmd::Rm { app, domain } => (
            conn.call(
                "DELETE",
                &format!("/apps/{}/domains/{}", segment(app), segment(domain)),
                None,
            )?,
            format!("removed {domain} from {app}"),
        ),
    };
    after_change(conn, &v, what)
}

pub fn backends(conn: &Conn, cmd: &BackendCmd) -> anyhow::Result<()> {
    let base = |app: &str| format!("/apps/{}/backends", segment(app));
    let (v, what) = match cmd {
        BackendCmd::Add { app, address } => (
            conn.call("POST", &base(app), Some(&json!({ "address": address })))?,
            format!("added {address} to {app}"),
        ),
        BackendCmd::Rm { app, address } => (
            conn.call(
                "DELETE",
                &format!("{}/{}", base(app), segment(address)),
                None,
            )?,
            format!("removed {address} from {app}"),
        ),
        BackendCmd::Drain { app, address } => (
            conn.call(
                "POST",
                &format!("{}/{}/drain", base(app), segment(address)),
                None,
            )?,
            format!("draining {address} of {app}: no new requests"),
        ),
        BackendCmd::Undrain { app, address } => (
            conn.call(
                "POST",
                &format!("{}/{}/undrain", base(app), segment(address)),
                None,
            )?,
            format!("{address} of {app} back in rotation"),
        ),
    };
    after_change(conn, &v, what)
}

pub fn certs(conn: &Conn) -> anyhow::Result<()> {
    let v = conn.call("GET", "/certificates", None)?;
    if conn.json {
        return print_json(&v);
    }
    println!(
        "{:<32} {:<22} {:>9}  names",
        "file", "not after", "days left"
    );
    for c in v["certificates"].as_array().into_iter().flatten() {
        match c["error"].as_str() {
            Some(e) => println!("{:<32} error: {e}", c["name"].as_str().unwrap_or("?")),
            None => {
                let names: Vec<&str> = c["names"]
                    .as_array()
                    .map(|n| n.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                println!(
                    "{:<32} {:<22} {:>9}  {}",
                    c["name"].as_str().unwrap_or("?"),
                    c["not_after"].as_str().unwrap_or("?"),
                    c["days_left"],
                    names.join(" ")
                );
            }
        }
    }
    if let Some(acme) = v.get("acme") {
        println!(
            "\nACME ({} issued, {} failed since start)",
            acme["orders"]["issued"], acme["orders"]["failed"]
        );
        println!("{:<32} {:<16} {:<22} detail", "name", "state", "not after");
        for n in acme["names"].as_array().into_iter().flatten() {
            let s = |k: &str| n[k].as_str().unwrap_or("").to_string();
            let mut state = s("state");
            if n["ordering"].as_bool() == Some(true) {
                state.push_str(" (ordering)");
            }
            let detail = match n["state"].as_str() {
                Some("action_required") => format!(
                    "create TXT {} = \"{}\"",
                    n["action"]["name"].as_str().unwrap_or("?"),
                    n["action"]["value"].as_str().unwrap_or("?")
                ),
                Some("failed") => format!(
                    "{} failure(s), next attempt {}: {}",
                    n["failures"],
                    s("next_attempt"),
                    s("last_error")
                ),
                Some("valid") if n["failures"].as_u64().unwrap_or(0) > 0 => format!(
                    "renewal failing ({}), next attempt {}",
                    s("last_error"),
                    s("next_attempt")
                ),
                Some("valid") => format!("renew at {}", s("renew_at")),
                _ => format!("next attempt {}", s("next_attempt")),
            };
            println!(
                "{:<32} {:<16} {:<22} {detail}",
                s("name"),
                state,
                s("not_after")
            );
        }
    }
    Ok(())
}

/// `certs renew NAME`: order a certificate for NAME now.
pub fn renew(conn: &Conn, name: &str) -> anyhow::Result<()> {
    let v = conn.call("POST", &format!("/certificates/{name}/renew"), None)?;
    if conn.json {
        return print_json(&v);
    }
    println!("ordering {} now", v["renewing"].as_str().unwrap_or(name));
    Ok(())
}

pub fn reload(conn: &Conn) -> anyhow::Result<()> {
    let v = conn.call("POST", "/reload", None)?;
    if conn.json {
        return print_json(&v);
    }
    println!("configuration reloaded");
    Ok(())
}

pub fn stats(conn: &Conn) -> anyhow::Result<()> {
    let v = conn.call("GET", "/stats", None)?;
    if conn.json {
        return print_json(&v);
    }
    println!(
        "reloads: {} ok, {} failed; connections accepted: {}; requests: {} HTTP/1.1, {} HTTP/2",
        v["reloads"]["ok"],
        v["reloads"]["failed"],
        v["connections_accepted"],
        v["requests"]["http1"],
        v["requests"]["http2"]
    );
    if let Some(r) = v["responses"].as_object() {
        let line: Vec<String> = r.iter().map(|(k, n)| format!("{k}={n}")).collect();
        println!("responses: {}", line.join(" "));
    }
    for app in v["apps"].as_array().into_iter().flatten() {
        println!(
            "{}: queue {}/{}, in flight {}",
            app["name"].as_str().unwrap_or("?"),
            app["queue_depth"],
            app["queue_capacity"],
            app["in_flight"]
        );
        for b in app["backends"].as_array().into_iter().flatten() {
            let state = if b["draining"] == true {
                "draining"
            } else if b["up"] == true {
                "up"
            } else {
                "quarantined"
            };
            println!(
                "  {:<24} {:<12} in-flight {}",
                b["address"].as_str().unwrap_or("?"),
                state,
                b["in_flight"]
            );
        }
    }
    Ok(())
}

/// `nodes`: the region's nodes as this node sees them, and its link to etcd.
pub fn nodes(conn: &Conn) -> anyhow::Result<()> {
    let v = conn.call("GET", "/region", None)?;
    if conn.json {
        return print_json(&v);
    }
    let s = &v["status"];
    println!(
        "this node: {}  etcd: {}  revision {}  last sync {}{}",
        s["node"].as_str().unwrap_or("?"),
        if s["connected"].as_bool() == Some(true) {
            "connected"
        } else {
            "DISCONNECTED"
        },
        s["revision"],
        s["last_sync"],
        s["last_error"]
            .as_str()
            .map(|e| format!("  ({e})"))
            .unwrap_or_default()
    );
    println!(
        "{:<24} {:<10} {:>10} {:<8}",
        "node", "version", "revision", "health"
    );
    for n in v["nodes"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:<10} {:>10} {:<8}",
            n["node"].as_str().unwrap_or("?"),
            n["version"].as_str().unwrap_or("?"),
            n["revision"].to_string(),
            if n["healthy"].as_bool() == Some(true) {
                "healthy"
            } else {
                "unhealthy"
            }
        );
    }
    for r in v["refused"].as_array().into_iter().flatten() {
        println!(
            "refused {}: {}",
            r["key"].as_str().unwrap_or("?"),
            r["reason"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("127.0.0.1:80"), "127.0.0.1:80");
        assert_eq!(segment("[::1]:80"), "%5B::1%5D:80");
        assert_eq!(segment("10.0.0.0/8"), "10.0.0.0%2F8");
    }

    #[test]
    fn responses_are_split() {
        let (s, b) = parse_response(b"HTTP/1.1 409 Conflict\r\nA: b\r\n\r\n{}").expect("parse");
        assert_eq!((s, b.as_slice()), (409, &b"{}"[..]));
        assert!(parse_response(b"HTTP/1.1 200").is_err());
    }
}
