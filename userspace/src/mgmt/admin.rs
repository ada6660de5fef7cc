//! The admin API server: HTTP/1.1 + JSON on the management runtime, over
//! TCP (`[admin] listen`) and/or a unix socket (`[admin] unix_socket`),
//! every request authenticated with a bearer token (but the status page's
//! static files, which hold no data).
//!
//! Owns: binding the listeners and reading the token at start (so a bad
//! token file stops portier before it serves anything), the connection
//! loop (request heads and bodies parsed by the sans-IO `http::h1` codec,
//! keep-alive, timeouts, a cap on concurrent connections), authentication
//! and the JSON error shape `{"error": code, "reason": text}`.
//! Must not: run on or block a reactor thread. It runs as tokio tasks on
//! the management runtime and reaches the running state only through the
//! `Manager` mutex (`api.rs`), the way SIGHUP does.
//! Fed by: admin clients (`cargo xtask …`, curl, Prometheus). Emits:
//! responses; configuration changes go through `Manager::apply`.
//!
//! ```text
//!  per connection:
//!   ReadingHead ──head──► ReadingBody ──done──► Handling ──► Writing
//!        ▲                                                      │
//!        └───────────────── keep-alive ◄────────────────────────┘
//!   malformed / timeout / EOF ──► closed (after a 400/408 when possible)
//! ```
//!
//! Order per request: parse (400/413/431) → token (401) → route (404/405)
//! → handler.

mod api;
pub mod certs;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, Semaphore};

use crate::config::AdminSettings;
use crate::http::Limits;
use crate::http::h1::{BodyDecoder, parse_request_head, reason_phrase};
use crate::mgmt::manager::Manager;

/// Biggest request body (a PEM chain + key is a few KiB).
const MAX_BODY: u64 = 1024 * 1024;
/// Connections served at once; more are answered 503 and closed.
const MAX_CONNECTIONS: usize = 64;
/// A request head (and body) must arrive within this once started.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle keep-alive connections are closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Admin listening sockets handed from one process to the next.
#[derive(Default)]
pub struct Passed {
    pub tcp: Vec<(std::net::SocketAddr, std::os::fd::OwnedFd)>,
    pub unix: Vec<(PathBuf, std::os::fd::OwnedFd)>,
    /// The token the old process used: the fallback when the token file
    /// cannot be read any more (it is root's, and this process is not).
    pub token: Option<String>,
}

/// The bound, not yet serving, admin API.
pub struct Admin {
    tcp: Vec<std::net::TcpListener>,
    unix: Option<(PathBuf, std::os::unix::net::UnixListener)>,
    token: String,
}

impl Admin {
    /// Read the token and bind every listener; `None` when the API is off.
    /// Errors are meant for the operator: portier refuses to start.
    /// Listeners in `passed` (a binary upgrade's) are used instead of
    /// binding the same address again.
    pub fn bind(
        settings: Option<&AdminSettings>,
        passed: &mut Passed,
    ) -> anyhow::Result<Option<Admin>> {
        let Some(settings) = settings.filter(|s| s.is_enabled()) else {
            return Ok(None);
        };
        let token = match (read_token(&settings.token_file), passed.token.take()) {
            (Ok(t), _) => t,
            (Err(e), Some(t)) => {
                tracing::warn!("{e:#}: keeping the token of the process this one took over from");
                t
            }
            (Err(e), None) => return Err(e),
        };
        let mut tcp = Vec::new();
        for addr in &settings.listen {
            let l = match passed.tcp.iter().position(|(a, _)| a == addr) {
                Some(i) => std::net::TcpListener::from(passed.tcp.swap_remove(i).1),
                None => std::net::TcpListener::bind(addr)
                    .with_context(|| format!("admin API: cannot listen on {addr}"))?,
            };
            l.set_nonblocking(true)?;
            tcp.push(l);
        }
        let unix = match &settings.unix_socket {
            Some(path) => match passed.unix.iter().position(|(p, _)| p == path) {
                Some(i) => {
                    let l = std::os::unix::net::UnixListener::from(passed.unix.swap_remove(i).1);
                    l.set_nonblocking(true)?;
                    Some((path.clone(), l))
                }
                None => Some((path.clone(), bind_unix(path)?)),
            },
            None => None,
        };
        Ok(Some(Admin { tcp, unix, token }))
    }

    /// Duplicates of the listening sockets, for a binary upgrade.
    pub fn share(&self) -> std::io::Result<Passed> {
        use std::os::fd::AsFd;
        let mut out = Passed {
            token: Some(self.token.clone()),
            ..Passed::default()
        };
        for l in &self.tcp {
            out.tcp
                .push((l.local_addr()?, l.as_fd().try_clone_to_owned()?));
        }
        if let Some((path, l)) = &self.unix {
            out.unix
                .push((path.clone(), l.as_fd().try_clone_to_owned()?));
        }
        Ok(out)
    }

    /// Where the API answers, for the start-up log.
    pub fn endpoints(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .tcp
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| format!("http://{a}"))
            .collect();
        if let Some((path, _)) = &self.unix {
            out.push(format!("unix:{}", path.display()));
        }
        out
    }

    /// Serve until the task is aborted. Must run inside the tokio runtime.
    pub async fn serve(self, manager: Arc<Mutex<Manager>>) -> anyhow::Result<()> {
        let ctx = Arc::new(Ctx {
            manager,
            token: self.token,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        });
        let mut tasks = tokio::task::JoinSet::new();
        for l in self.tcp {
            let l = tokio::net::TcpListener::from_std(l)?;
            let ctx = ctx.clone();
            tasks.spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((stream, _)) => spawn_connection(stream, ctx.clone()),
                        Err(e) => accept_failed(e).await,
                    }
                }
            });
        }
        if let Some((_, l)) = self.unix {
            let l = tokio::net::UnixListener::from_std(l)?;
            tasks.spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((stream, _)) => spawn_connection(stream, ctx.clone()),
                        Err(e) => accept_failed(e).await,
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// EMFILE and friends: log, back off a little, keep accepting.
async fn accept_failed(e: std::io::Error) {
    tracing::warn!("admin API: accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The bearer token: the file's content, trimmed. The file must exist and
/// be readable by its owner only.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).with_context(|| {
        format!(
            "admin API: cannot read the token file {} (create it: `head -c 32 /dev/urandom | base64 > {0}; chmod 600 {0}`, or set [admin] token_file)",
            path.display()
        )
    })?;
    // Mode of the file we opened, not of whatever the path names now.
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "admin API: the token file {} is readable by group/others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("admin API: reading {}", path.display()))?;
    let token = text.trim().to_string();
    if token.len() < 16 {
        bail!(
            "admin API: the token in {} is shorter than 16 characters",
            path.display()
        );
    }
    Ok(token)
}

fn bind_unix(path: &Path) -> anyhow::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    // A socket left by a previous run is ours to replace; anything else is not.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!("admin API: {} exists and is not a socket", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("admin API: removing the old {}", path.display()))?;
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("admin API: cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

struct Ctx {
    manager: Arc<Mutex<Manager>>,
    token: String,
    slots: Arc<Semaphore>,
}

fn spawn_connection<S>(mut stream: S, ctx: Arc<Ctx>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match ctx.slots.clone().try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = serve_connection(&mut stream, &ctx).await {
                    tracing::debug!("admin API connection: {e}");
                }
            });
        }
        Err(_) => {
            tokio::spawn(async move {
                let r = Response::error(503, "busy", "too many admin connections");
                let _ = stream.write_all(&r.encode(false)).await;
            });
        }
    }
}

/// An admin request after parsing: method, decoded path segments, body.
pub struct Request {
    pub method: String,
    pub segments: Vec<String>,
    pub body: Vec<u8>,
    /// The `Authorization: Bearer` credential, if any.
    token: Option<String>,
}

/// An admin response; `encode` writes it as HTTP/1.1.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }

    /// `{"error": code, "reason": reason}`.
    pub fn error(status: u16, code: &str, reason: impl std::fmt::Display) -> Response {
        Response::json(
            status,
            &serde_json::json!({ "error": code, "reason": reason.to_string() }),
        )
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    fn encode(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if !keep_alive {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Read more bytes into `buf` within `limit`; `Ok(false)` on EOF.
async fn fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    limit: Duration,
) -> Result<bool, Response> {
    let mut chunk = [0u8; 16 * 1024];
    match tokio::time::timeout(limit, stream.read(&mut chunk)).await {
        Err(_) => Err(Response::error(
            408,
            "timeout",
            "request not received in time",
        )),
        Ok(Err(_)) | Ok(Ok(0)) => Ok(false),
        Ok(Ok(n)) => {
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            Ok(true)
        }
    }
}

async fn serve_connection<S>(stream: &mut S, ctx: &Ctx) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = Limits {
        max_body: MAX_BODY,
        ..Limits::default()
    };
    let mut buf = Vec::new();
    loop {
        let (request, keep_alive) = match read_request(stream, &mut buf, &limits).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(response) => {
                stream.write_all(&response.encode(false)).await?;
                return Ok(());
            }
        };
        let response = handle(ctx, request).await;
        stream.write_all(&response.encode(keep_alive)).await?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// One request off the connection: `Ok(None)` when the client closed
/// between requests; `Err` is the answer to send before closing.
async fn read_request<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    limits: &Limits,
) -> Result<Option<(Request, bool)>, Response>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let bad = |e: crate::http::HttpError| Response::error(e.status(), e.code(), e);
    let (head, len) = loop {
        if let Some(parsed) = parse_request_head(buf, limits).map_err(bad)? {
            break parsed;
        }
        let limit = if buf.is_empty() {
            IDLE_TIMEOUT
        } else {
            REQUEST_TIMEOUT
        };
        if !fill(stream, buf, limit).await? {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(Response::error(
                    400,
                    "incomplete_request",
                    "connection closed mid-head",
                ))
            };
        }
    };
    buf.drain(..len.min(buf.len()));
    if head.expect_continue {
        // RFC 9110 §10.1.1: tell the client to send the body.
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
    }
    let mut decoder = BodyDecoder::for_request(head.body, limits);
    let mut body = Vec::new();
    while !decoder.is_done() {
        let step = decoder.decode(buf).map_err(bad)?;
        if let Some(range) = step.data {
            body.extend_from_slice(buf.get(range).unwrap_or_default());
        }
        buf.drain(..step.consumed.min(buf.len()));
        if step.consumed == 0 && !step.done && !fill(stream, buf, REQUEST_TIMEOUT).await? {
            decoder.handle_eof().map_err(bad)?;
        }
    }
    let path = head.target.split(['?', '#']).next().unwrap_or_default();
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| {
            Response::error(400, "bad_path", "path is not valid percent-encoded UTF-8")
        })?;
    let token = head
        .header("authorization")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_string())
        });
    let request = Request {
        method: head.method.clone(),
        segments,
        body,
        token,
    };
    Ok(Some((request, head.keep_alive)))
}

/// The status page's files (`/ui/`): static, embedded, holding no data —
/// the page fetches everything from the API with the token — so they are
/// the only answers given without a token.
fn status_page(request: &Request) -> Option<Response> {
    if request.method != "GET" || request.segments.first().map(String::as_str) != Some("ui") {
        return None;
    }
    let (content_type, body): (&'static str, &'static str) =
        match request.segments.get(1).map(String::as_str) {
            None | Some("index.html") => (
                "text/html; charset=utf-8",
                include_str!("admin/ui/index.html"),
            ),
            Some("app.js") => (
                "text/javascript; charset=utf-8",
                include_str!("admin/ui/app.js"),
            ),
            Some("style.css") => (
                "text/css; charset=utf-8",
                include_str!("admin/ui/style.css"),
            ),
            Some(_) => return Some(Response::error(404, "not_found", "no such file under /ui/")),
        };
    let mut r = Response::text(200, content_type, body.to_string());
    r.headers.extend([
        (
            "Content-Security-Policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'".to_string(),
        ),
        ("Referrer-Policy", "no-referrer".to_string()),
        ("X-Content-Type-Options", "nosniff".to_string()),
        ("Cache-Control", "no-store".to_string()),
    ]);
    Some(r)
}

async fn handle(ctx: &Ctx, request: Request) -> Response {
    if let Some(page) = status_page(&request) {
        return page;
    }
    let reject = |reason: &str, challenge: &str| {
        let mut r = Response::error(401, "unauthorized", reason);
        r.headers.push(("WWW-Authenticate", challenge.to_string()));
        r
    };
    match &request.token {
        None => return reject("missing bearer token", "Bearer"),
        Some(t) if !constant_time_eq(t.as_bytes(), ctx.token.as_bytes()) => {
            return reject("wrong bearer token", "Bearer error=\"invalid_token\"");
        }
        Some(_) => {}
    }
    api::handle(&ctx.manager, request).await
}

/// Compare without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `%XX` decoding of one path segment; `None` if malformed or not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("10.0.0.0%2F8").as_deref(),
            Some("10.0.0.0/8")
        );
        assert_eq!(
            percent_decode("%5B%3A%3A1%5D:80").as_deref(),
            Some("[::1]:80")
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn token_file_must_be_private_and_long_enough() {
        let dir = std::env::temp_dir().join(format!("portier-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let p = dir.join("t");
        std::fs::write(&p, "0123456789abcdef0123\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read_token(&p).expect_err("world readable").to_string();
        assert!(err.contains("readable by group/others"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_token(&p).expect("ok"), "0123456789abcdef0123");
        std::fs::write(&p, "short").expect("write");
        assert!(read_token(&p).is_err());
        let err = read_token(&dir.join("missing"))
            .expect_err("missing")
            .to_string();
        assert!(err.contains("cannot read the token file"), "{err}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
