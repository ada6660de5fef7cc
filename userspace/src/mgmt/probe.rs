//! Health probes of quarantined backends (SPEC §3 Scheduling).
//!
//! Owns: starting the probes `Balancer::due_probes` hands out, the probe
//! request, and the judgement of what came back ([`judge`], pure).
//! Must not: touch a reactor or block; it runs on the management tokio
//! runtime (tokio net + time) and reaches the reactors only through the
//! balancers' atomics and, for queued requests, `control.rs`.
//! Fed by: the snapshot's apps (`snapshot::Health`, the parse limits).
//! Emits: `Balancer::probe_result`; queue grants when a backend came back.
//!
//! A probe is one HTTP/1.1 request on a fresh connection:
//!
//! ```text
//!  GET <health_path> HTTP/1.1
//!  Host: <canonical domain | first exact domain | the backend's ip:port>
//!  User-Agent: portier-probe
//!  X-Request-ID: <new UUID>
//!  Accept: */*
//!  Connection: close
//!
//!  connect ─► write request ─► read ─► judge ─┬─ NeedMore ─────────► read
//!     │             │            │            ├─ final head ───────► alive
//!     └─ error ─────┴── EOF, reset, timeout   └─ not HTTP, too big ─► failed
//! ```
//!
//! Alive means the backend answered HTTP: the first final response head,
//! parsed by the same `parse_response_head` (httparse underneath) the proxy
//! uses for forwarded responses, so "well-formed" means exactly what
//! Portier would forward. The status does not matter: quarantine is about
//! a backend that refuses, resets or cuts connections, not about what its
//! application says. The reactor forwards a 500 or a 404 as is and never
//! quarantines for a status, so the probe must not be stricter than the
//! rotation: an app whose `/` answers 500 (or 401, or 404) still serves its
//! other paths, and keeping it out would turn every request into a 503
//! `no_backend_available` that hides the app's own error pages. Interim
//! 1xx heads are skipped (at most [`MAX_INTERIM`]), as the proxy does.
//!
//! Failed: connect refused or failed, the connection closed or reset before
//! a complete head, bytes that are not an HTTP/1.x response head (or one
//! past the header limits), or no complete head within `health_timeout_ms`
//! (connect included). A TCP accept alone proves nothing: a backend that
//! accepts and cuts every request is exactly what quarantine is for.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::control::Control;
use crate::http::h1::parse_response_head;
use crate::http::{HttpError, Limits};

/// How often due probes are looked for.
const TICK: Duration = Duration::from_millis(100);
/// Interim (1xx) heads skipped before the answer counts as garbage.
const MAX_INTERIM: usize = 8;
/// After the verdict the rest of the answer is read and dropped, for at
/// most this long and this many bytes, so that the connection usually ends
/// with a FIN rather than a reset of unread data.
const DRAIN_TIME: Duration = Duration::from_millis(500);
const DRAIN_BYTES: usize = 64 * 1024;
pub const USER_AGENT: &str = "portier-probe";

/// Why a probe failed; every one is the backend's doing.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ProbeError {
    #[error("connect failed: {0}")]
    UpstreamConnect(io::ErrorKind),
    #[error("closed the connection without answering")]
    UpstreamClosed,
    #[error("i/o error: {0}")]
    UpstreamIo(io::ErrorKind),
    #[error("answered something that is not an HTTP response: {0}")]
    UpstreamInvalid(HttpError),
    #[error("more than {MAX_INTERIM} interim responses")]
    UpstreamTooManyInterim,
    #[error("no response within {0:?}")]
    UpstreamTimeout(Duration),
}

/// What the bytes received so far say about the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// No complete final head yet (and the backend has not closed).
    NeedMore,
    /// A well-formed final response head, whatever its status.
    Alive { status: u16 },
}

/// The probe request.
pub fn request(host: &str, path: &str, request_id: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n\
         X-Request-ID: {request_id}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// Judge everything the backend sent so far (`eof`: and then it closed).
pub fn judge(buf: &[u8], eof: bool, limits: &Limits) -> Result<Judgement, ProbeError> {
    let mut rest = buf;
    for _ in 0..=MAX_INTERIM {
        match parse_response_head(rest, limits, false) {
            Ok(Some((head, _))) if !head.is_interim() => {
                return Ok(Judgement::Alive {
                    status: head.status,
                });
            }
            // A complete head is never empty: `n > 0`, so this advances.
            Ok(Some((_, n))) => rest = rest.get(n..).unwrap_or_default(),
            Ok(None) if eof => return Err(ProbeError::UpstreamClosed),
            Ok(None) => return Ok(Judgement::NeedMore),
            Err(e) => return Err(ProbeError::UpstreamInvalid(e)),
        }
    }
    Err(ProbeError::UpstreamTooManyInterim)
}

pub async fn run(control: Arc<Control>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let snapshot = control.snapshot.load_full();
        let now_ms = control.now_ms(Instant::now());
        for app in &snapshot.apps {
            for id in app.balancer.due_probes(now_ms) {
                let Some(addr) = app.balancer.backend(id).map(|b| b.addr) else {
                    continue;
                };
                let host = app.health.host.clone().unwrap_or_else(|| addr.to_string());
                let request_id = uuid::Uuid::new_v4().to_string();
                let req = request(&host, &app.health.path, &request_id);
                let (timeout, limits) = (app.health.timeout, snapshot.limits);
                let balancer = app.balancer.clone();
                let control = control.clone();
                let name = app.name.clone();
                tokio::spawn(async move {
                    let verdict = probe(addr, &req, timeout, &limits).await;
                    let now_ms = control.now_ms(Instant::now());
                    balancer.probe_result(id, verdict.is_ok(), now_ms);
                    match verdict {
                        Ok((status, stream)) => {
                            // Capacity came back: requests waiting in the
                            // app's queue get it, oldest first.
                            control.deliver(balancer.serve_queue(), None);
                            tracing::info!(app = %name, backend = %addr, status, request_id, "backend back in rotation");
                            drain(stream).await;
                        }
                        Err(e) => {
                            tracing::debug!(app = %name, backend = %addr, reason = %e, request_id, next_ms = ?balancer.backoff_ms(id), "probe failed");
                        }
                    }
                });
            }
        }
    }
}

/// One probe: the status of the answer and the connection (to drain).
async fn probe(
    addr: SocketAddr,
    req: &[u8],
    timeout: Duration,
    limits: &Limits,
) -> Result<(u16, TcpStream), ProbeError> {
    tokio::time::timeout(timeout, exchange(addr, req, limits))
        .await
        .unwrap_or(Err(ProbeError::UpstreamTimeout(timeout)))
}

async fn exchange(
    addr: SocketAddr,
    req: &[u8],
    limits: &Limits,
) -> Result<(u16, TcpStream), ProbeError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| ProbeError::UpstreamConnect(e.kind()))?;
    stream.write_all(req).await.map_err(io_error)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(io_error)?;
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Judgement::Alive { status } = judge(&buf, n == 0, limits)? {
            return Ok((status, stream));
        }
    }
}

/// Read and drop what is left of the answer, within the drain budget.
async fn drain(mut stream: TcpStream) {
    let mut chunk = [0u8; 4096];
    let mut left = DRAIN_BYTES;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while left > 0 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

fn io_error(e: io::Error) -> ProbeError {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => ProbeError::UpstreamClosed,
        kind => ProbeError::UpstreamIo(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(buf: &[u8]) -> Result<Judgement, ProbeError> {
        judge(buf, false, &Limits::default())
    }

    #[test]
    fn request_asks_get_with_host_agent_id_and_close() {
        let req = request("www.example.com", "/healthz?x=1", "abc-123");
        assert_eq!(
            String::from_utf8(req).unwrap(),
            "GET /healthz?x=1 HTTP/1.1\r\nHost: www.example.com\r\n\
             User-Agent: portier-probe\r\nX-Request-ID: abc-123\r\nAccept: */*\r\n\
             Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn the_request_is_one_the_proxy_itself_would_accept() {
        let req = request("www.example.com", "/", "abc-123");
        let (head, n) = crate::http::h1::parse_request_head(&req, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(n, req.len());
        assert_eq!(head.header("user-agent"), Some(&b"portier-probe"[..]));
    }

    #[test]
    fn any_status_is_alive() {
        for status in [200, 204, 301, 401, 404, 500, 503] {
            let buf = format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\n\r\n");
            assert_eq!(
                judged(buf.as_bytes()),
                Ok(Judgement::Alive { status }),
                "{status}"
            );
        }
        assert_eq!(
            judged(b"HTTP/1.0 200 OK\r\n\r\nbody follows"),
            Ok(Judgement::Alive { status: 200 })
        );
    }

    #[test]
    fn a_head_is_alive_even_if_the_backend_closes_right_after() {
        assert_eq!(
            judge(b"HTTP/1.1 500 Oops\r\n\r\n", true, &Limits::default()),
            Ok(Judgement::Alive { status: 500 })
        );
    }

    #[test]
    fn an_incomplete_head_needs_more_at_every_split_point() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok";
        let head_len = buf.len() - 2;
        for cut in 0..head_len {
            assert_eq!(judged(&buf[..cut]), Ok(Judgement::NeedMore), "cut {cut}");
        }
        assert_eq!(
            judged(&buf[..head_len]),
            Ok(Judgement::Alive { status: 200 })
        );
    }

    #[test]
    fn closing_without_a_complete_head_is_not_an_answer() {
        let limits = Limits::default();
        assert_eq!(judge(b"", true, &limits), Err(ProbeError::UpstreamClosed));
        assert_eq!(
            judge(b"HTTP/1.1 200 OK\r\nContent-Le", true, &limits),
            Err(ProbeError::UpstreamClosed)
        );
    }

    #[test]
    fn garbage_is_not_an_answer() {
        for buf in [
            &b"hello\r\n\r\n"[..],
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            assert!(
                matches!(judged(buf), Err(ProbeError::UpstreamInvalid(_))),
                "{:?} -> {:?}",
                buf.escape_ascii().to_string(),
                judged(buf)
            );
        }
    }

    #[test]
    fn a_head_past_the_limits_is_not_an_answer() {
        let limits = Limits::default();
        let mut buf = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        buf.resize(limits.max_header_section + 10, b'a');
        assert!(matches!(
            judge(&buf, false, &limits),
            Err(ProbeError::UpstreamInvalid(_))
        ));
    }

    #[test]
    fn interim_heads_are_skipped_but_not_forever() {
        let buf = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
        assert_eq!(judged(buf), Ok(Judgement::NeedMore));
        let mut done = buf.to_vec();
        done.extend_from_slice(b"HTTP/1.1 404 Not Found\r\n\r\n");
        assert_eq!(judged(&done), Ok(Judgement::Alive { status: 404 }));
        let flood = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1);
        assert_eq!(judged(&flood), Err(ProbeError::UpstreamTooManyInterim));
    }
}
