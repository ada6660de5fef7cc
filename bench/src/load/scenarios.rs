//! The load scenarios against the running contestants. Every figure is
//! measured in rounds; within a round every contestant runs back to back,
//! in an order rotated each round (the VM drifts ~20% over minutes).
//! Every load also counts the requests that failed (non-2xx/3xx, socket
//! errors, errored streams): a round with any is not a result.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use super::contestants::{Contestant, Env, HOST, Kind};
use super::proc::{cpu_of, rss_bytes};
use super::report::{Figure, Goal, Unit};
use super::tools::{Failed, Wrk, h2load, wrk};

/// How long and how often.
#[derive(Debug, Clone)]
pub struct Settings {
    pub runs: usize,
    /// Seconds per load.
    pub seconds: f64,
    /// Idle keep-alive connections opened for the memory figure.
    pub idle_conns: usize,
}

fn goal(against: &'static str, factor: f64, higher_is_better: bool) -> Option<Goal> {
    Some(Goal {
        subject: "portier",
        against,
        factor,
        higher_is_better,
    })
}

/// Run `f` for every contestant in every round, order rotated per round.
fn rounds(cs: &mut [Contestant], runs: usize, mut f: impl FnMut(usize, &mut Contestant)) {
    let n = cs.len();
    for round in 0..runs {
        for i in 0..n {
            f(round, &mut cs[(i + round) % n]);
        }
    }
}

const WRK_CONNS: u32 = 50;

fn http_url(c: &Contestant, path: &str) -> String {
    format!("http://{}{path}", c.http)
}

/// What one wrk load gave: requests/s, proxy CPU µs per request
/// (user+sys), and the failed requests (None: wrk's output unreadable).
struct Load {
    rps: Result<f64, String>,
    cpu: Result<f64, String>,
    failed: Option<Failed>,
}

impl Load {
    /// Print one round's progress line and record its rate and CPU.
    fn record(
        self,
        label: &str,
        round: usize,
        c: &Contestant,
        rate: &mut Figure,
        cpu: &mut Figure,
    ) {
        eprintln!(
            "  {label} round {round} {}: {:?} / cpu {:?}{}",
            c.id(),
            self.rps,
            self.cpu,
            failed_text(self.failed.as_ref())
        );
        rate.record_run(c.id(), round, self.rps, self.failed.as_ref());
        cpu.record_run(c.id(), round, self.cpu, self.failed.as_ref());
    }
}

/// One wrk load against `c`.
fn wrk_load(c: &mut Contestant, dir: &Path, w: &Wrk<'_>) -> Load {
    let pids = c.pids();
    let before = cpu_of(&pids);
    let run = wrk(dir, w);
    let after = cpu_of(&pids);
    let run = match run {
        Ok(r) => r,
        Err(e) => {
            let e = if c.alive() {
                format!("{e:#}")
            } else {
                format!("{} died: {}", c.id(), c.log_tail())
            };
            return Load {
                rps: Err(e.clone()),
                cpu: Err(e),
                failed: None,
            };
        }
    };
    if run.requests == 0 {
        let why = format!("no request completed ({})", run.failed.describe());
        return Load {
            rps: Err(why.clone()),
            cpu: Err(why),
            failed: Some(run.failed),
        };
    }
    let cpu = match c.kind {
        Kind::Direct => Err("no proxy".to_string()),
        _ => cpu_per_request(before, after, run.requests),
    };
    Load {
        rps: Ok(run.rps()),
        cpu,
        failed: Some(run.failed),
    }
}

/// Microseconds of proxy CPU (utime+stime) per request between two
/// `cpu_of` readings.
fn cpu_per_request(
    before: Option<(f64, f64)>,
    after: Option<(f64, f64)>,
    requests: u64,
) -> Result<f64, String> {
    match (before, after) {
        (Some((u0, s0)), Some((u1, s1))) => Ok((u1 - u0 + s1 - s0) / requests as f64 * 1e6),
        _ => Err("could not read /proc/PID/stat".to_string()),
    }
}

/// " (3 failed: non-2xx/3xx 3)" for the progress lines.
fn failed_text(f: Option<&Failed>) -> String {
    match f {
        Some(f) if f.total() > 0 => format!(" ({} FAILED: {})", f.total(), f.describe()),
        Some(_) => String::new(),
        None => " (failures not counted)".into(),
    }
}

/// HTTP/1.1 keep-alive with one body size: req/s and CPU per request.
fn h1(
    cs: &mut [Contestant],
    dir: &Path,
    s: &Settings,
    path: &str,
    label: &str,
    goals: bool,
) -> Vec<Figure> {
    let id_rps: &'static str = if path == "/64" {
        "h1_64_rps"
    } else {
        "h1_16k_rps"
    };
    let id_cpu: &'static str = if path == "/64" {
        "h1_64_cpu"
    } else {
        "h1_16k_cpu"
    };
    let load = format!("HTTP/1.1 keep-alive, {label} (wrk -c{WRK_CONNS})");
    let mut rps = Figure::new(
        id_rps,
        format!("HTTP/1.1 keep-alive, {label}, req/s (wrk -t1 -c{WRK_CONNS})"),
        Unit::PerSec,
        if goals {
            goal("haproxy", 1.25, true)
        } else {
            None
        },
    )
    .with_load(&load);
    let mut cpu = Figure::new(
        id_cpu,
        format!("proxy CPU per request, {label} (utime+stime)"),
        Unit::Micros,
        if goals {
            goal("haproxy", 0.75, false)
        } else {
            None
        },
    )
    .with_load(&load);
    let host = format!("Host: {HOST}");
    rounds(cs, s.runs, |round, c| {
        let url = http_url(c, path);
        let w = Wrk {
            url: &url,
            connections: WRK_CONNS,
            seconds: s.seconds,
            headers: &[&host],
            delay_ms: 0,
        };
        wrk_load(c, dir, &w).record(id_rps, round, c, &mut rps, &mut cpu);
    });
    if let Some(n) = rps.notes.get_mut("direct") {
        n.push_str(" (load-tool bound)");
    }
    rps.title
        .push_str("; direct = lower bound of the limit (wrk-bound)");
    vec![rps, cpu]
}

/// HTTPS keep-alive (HTTP/1.1 over TLS 1.3) and new full handshakes/s.
fn tls(cs: &mut [Contestant], dir: &Path, s: &Settings) -> Vec<Figure> {
    let mut ka = Figure::new(
        "https_rps",
        format!("HTTPS keep-alive (TLS 1.3, HTTP/1.1), 64 B, req/s (wrk -t1 -c{WRK_CONNS})"),
        Unit::PerSec,
        goal("nginx", 1.3, true),
    )
    .with_load(format!("HTTPS keep-alive, 64 B (wrk -c{WRK_CONNS})"));
    let hs_load = format!("TLS full handshakes, `Connection: close` (wrk -c{WRK_CONNS})");
    let mut hs = Figure::new(
        "handshake_rps",
        "new TLS 1.3 full handshakes/s (no resumption; wrk, `Connection: close`, -c50)",
        Unit::PerSec,
        None,
    )
    .with_load(&hs_load);
    let mut hs_cpu = Figure::new(
        "handshake_cpu",
        "proxy CPU per full handshake (+ its one request)",
        Unit::Micros,
        goal("haproxy", 0.5, false),
    )
    .with_load(&hs_load);
    let host = format!("Host: {HOST}");
    rounds(cs, s.runs, |round, c| {
        let Some(addr) = c.https else {
            let why = c.no_tls.clone().unwrap_or_else(|| "no TLS listener".into());
            for f in [&mut ka, &mut hs, &mut hs_cpu] {
                f.record_run(c.id(), round, Err(why.clone()), None);
            }
            return;
        };
        let url = format!("https://{addr}/64");
        let w = Wrk {
            url: &url,
            connections: WRK_CONNS,
            seconds: s.seconds,
            headers: &[&host],
            delay_ms: 0,
        };
        let l = wrk_load(c, dir, &w);
        eprintln!(
            "  https_rps round {round} {}: {:?}{}",
            c.id(),
            l.rps,
            failed_text(l.failed.as_ref())
        );
        ka.record_run(c.id(), round, l.rps, l.failed.as_ref());
        let w = Wrk {
            url: &url,
            connections: WRK_CONNS,
            seconds: s.seconds,
            headers: &[&host, "Connection: close"],
            delay_ms: 0,
        };
        wrk_load(c, dir, &w).record("handshake_rps", round, c, &mut hs, &mut hs_cpu);
    });
    vec![ka, hs, hs_cpu]
}

const H2_CLIENTS: u32 = 10;
const H2_STREAMS: u32 = 100;

fn http2(cs: &mut [Contestant], s: &Settings) -> Vec<Figure> {
    let load = format!("HTTP/2 over TLS, 64 B (h2load -c{H2_CLIENTS} -m{H2_STREAMS})");
    let mut f = Figure::new(
        "h2_rps",
        format!("HTTP/2 over TLS, 64 B, req/s (h2load -t1 -c{H2_CLIENTS} -m{H2_STREAMS})"),
        Unit::PerSec,
        goal("haproxy", 1.3, true),
    )
    .with_load(&load);
    let mut cpu = Figure::new(
        "h2_cpu",
        "proxy CPU per HTTP/2 request, 64 B (utime+stime)",
        Unit::Micros,
        None,
    )
    .with_load(&load);
    rounds(cs, s.runs, |round, c| {
        let Some(addr) = c.https else {
            let why = c.no_tls.clone().unwrap_or_default();
            f.record_run(c.id(), round, Err(why.clone()), None);
            cpu.record_run(c.id(), round, Err(why), None);
            return;
        };
        let pids = c.pids();
        let before = cpu_of(&pids);
        let run = h2load(
            &format!("https://{addr}/64"),
            H2_CLIENTS,
            H2_STREAMS,
            s.seconds,
            None,
        );
        let after = cpu_of(&pids);
        let (r, failed, used) = match run {
            Ok(r) if r.succeeded == 0 => {
                let why = format!("no request succeeded ({})", r.failures().describe());
                (Err(why.clone()), Some(r.failures()), Err(why))
            }
            Ok(r) => (
                Ok(r.rps),
                Some(r.failures()),
                cpu_per_request(before, after, r.succeeded),
            ),
            Err(e) => (Err(format!("{e:#}")), None, Err(format!("{e:#}"))),
        };
        eprintln!(
            "  h2_rps round {round} {}: {r:?}{}",
            c.id(),
            failed_text(failed.as_ref())
        );
        f.record_run(c.id(), round, r, failed.as_ref());
        cpu.record_run(c.id(), round, used, failed.as_ref());
    });
    vec![f, cpu]
}

/// Pause between requests on each connection in the paced test.
const PACE_MS: u32 = 5;

/// Latency percentiles at half of each contestant's own measured peak.
/// wrk paced by its `delay()` hook: closed loop (each connection waits
/// PACE_MS after a response, then sends the next), so not open-loop like
/// wrk2; the achieved rate is shown next to the percentiles.
fn latency(cs: &mut [Contestant], dir: &Path, s: &Settings, peak: &Figure) -> Vec<Figure> {
    let load = format!("paced at ½ of own peak, 64 B (wrk, {PACE_MS} ms pause)");
    let mut rate = Figure::new(
        "paced_rps",
        format!(
            "paced load at ½ of own peak: achieved req/s (wrk, {PACE_MS} ms pause per connection, connections tuned per round)"
        ),
        Unit::PerSec,
        None,
    )
    .with_load(&load);
    let mut p50 = Figure::new(
        "paced_p50",
        "latency p50 at ½ peak, 64 B",
        Unit::Millis,
        None,
    )
    .with_load(&load);
    let mut p99 = Figure::new(
        "paced_p99",
        "latency p99 at ½ peak, 64 B",
        Unit::Millis,
        goal("haproxy", 1.0, false),
    )
    .with_load(&load);
    let mut p999 = Figure::new(
        "paced_p999",
        "latency p99.9 at ½ peak, 64 B",
        Unit::Millis,
        None,
    )
    .with_load(&load);
    let host = format!("Host: {HOST}");
    // Connections per contestant, corrected after each round towards the
    // target rate (rate ≈ conns / (pause + latency)).
    let mut conns_of: BTreeMap<String, f64> = BTreeMap::new();
    rounds(cs, s.runs, |round, c| {
        let Some(peak) = peak.median(c.id()) else {
            let why = if peak.is_result(c.id()) {
                "no peak figure".to_string()
            } else {
                "no peak figure (its load had failed requests)".to_string()
            };
            for f in [&mut rate, &mut p50, &mut p99, &mut p999] {
                f.record_run(c.id(), round, Err(why.clone()), None);
            }
            return;
        };
        let target = peak / 2.0;
        let guess = conns_of
            .entry(c.id().to_string())
            .or_insert(target * f64::from(PACE_MS + 1) / 1000.0);
        let conns = guess.round().clamp(1.0, 1000.0) as u32;
        let url = http_url(c, "/64");
        let w = Wrk {
            url: &url,
            connections: conns,
            seconds: s.seconds,
            headers: &[&host],
            delay_ms: PACE_MS,
        };
        match wrk(dir, &w) {
            Ok(r) if r.requests > 0 => {
                eprintln!(
                    "  paced round {round} {}: {conns} conns, {:.0} req/s (target {target:.0}), p99 {} µs{}",
                    c.id(),
                    r.rps(),
                    r.p99_us,
                    failed_text(Some(&r.failed))
                );
                *guess = f64::from(conns) * target / r.rps().max(1.0);
                let f = Some(&r.failed);
                rate.record_run(c.id(), round, Ok(r.rps()), f);
                p50.record_run(c.id(), round, Ok(r.p50_us / 1000.0), f);
                p99.record_run(c.id(), round, Ok(r.p99_us / 1000.0), f);
                p999.record_run(c.id(), round, Ok(r.p999_us / 1000.0), f);
            }
            Ok(r) => {
                let why = format!("no request completed ({})", r.failed.describe());
                for f in [&mut rate, &mut p50, &mut p99, &mut p999] {
                    f.record_run(c.id(), round, Err(why.clone()), Some(&r.failed));
                }
            }
            Err(e) => {
                for f in [&mut rate, &mut p50, &mut p99, &mut p999] {
                    f.record_run(c.id(), round, Err(format!("{e:#}")), None);
                }
            }
        }
    });
    vec![rate, p50, p99, p999]
}

/// One `GET path` over `stream`: status and body length.
pub fn get(stream: &mut (impl Read + Write), path: &str) -> Result<(u16, usize), String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())?;
    read_response(stream)
}

fn read_response(stream: &mut impl Read) -> Result<(u16, usize), String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the response head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no Content-Length: {head:?}"))?;
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed in the body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((status, len))
}

/// Open `n` keep-alive connections, one request each, left idle: RSS of
/// the proxy's worker processes after minus before, per connection. A
/// request that fails (connect, I/O, status other than 200) ends the test:
/// one failed request.
fn idle_memory(c: &Contestant, n: usize, tls: bool) -> (Result<f64, String>, Option<Failed>) {
    match idle_memory_run(c, n, tls) {
        Ok(v) => (Ok(v), Some(Failed::none())),
        Err(IdleError::Request(cause, why)) => (Err(why), Some(Failed::of(cause, 1))),
        Err(IdleError::Other(why)) => (Err(why), None),
    }
}

enum IdleError {
    /// A request of the test failed: its cause and the message.
    Request(&'static str, String),
    /// The measurement itself failed (no /proc reading).
    Other(String),
}

/// An idle connection the test keeps open (plain or TLS).
enum Idle {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

fn idle_memory_run(c: &Contestant, n: usize, tls: bool) -> Result<f64, IdleError> {
    if c.kind == Kind::Direct {
        return Err(IdleError::Other("no proxy".into()));
    }
    let addr = if tls {
        c.https
            .ok_or_else(|| IdleError::Other(c.no_tls.clone().unwrap_or("no TLS".into())))?
    } else {
        c.http
    };
    let client = tls_client();
    let pids = c.worker_pids();
    let rss = |pids: &[u32]| -> Result<u64, String> {
        pids.iter()
            .map(|&p| rss_bytes(p).ok_or_else(|| format!("no VmRSS for {p}")))
            .sum()
    };
    std::thread::sleep(Duration::from_millis(300));
    let before = rss(&pids).map_err(IdleError::Other)?;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| IdleError::Request("connect", format!("connect #{i}: {e}")))?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut conn = if tls {
            let name = rustls::pki_types::ServerName::try_from(HOST)
                .map_err(|e| IdleError::Other(e.to_string()))?;
            let session = rustls::ClientConnection::new(client.clone(), name)
                .map_err(|e| IdleError::Other(e.to_string()))?;
            Idle::Tls(Box::new(rustls::StreamOwned::new(session, s)))
        } else {
            Idle::Plain(s)
        };
        let answer = match &mut conn {
            Idle::Plain(s) => get(s, "/64"),
            Idle::Tls(s) => get(s.as_mut(), "/64"),
        };
        match answer.map_err(|e| IdleError::Request("socket", format!("request #{i}: {e}")))? {
            (200, _) => conns.push(conn),
            (st, _) => {
                return Err(IdleError::Request(
                    "non-200",
                    format!("request #{i}: status {st}"),
                ));
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss(&pids).map_err(IdleError::Other)?;
    drop(conns);
    std::thread::sleep(Duration::from_millis(300));
    Ok((after as f64 - before as f64) / n as f64)
}

/// A TLS client for the idle-TLS figure: HTTP/1.1 by ALPN, resumption
/// off (every connection a full handshake), the contestants' self-signed
/// certificate accepted (a benchmark on loopback, nothing to protect).
fn tls_client() -> std::sync::Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct AnyCert(std::sync::Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.resumption = rustls::client::Resumption::disabled();
    std::sync::Arc::new(cfg)
}

/// Until a fresh instance answers 200 (Portier answers 503 until its first
/// health probe of the backend succeeded), at most 10 s.
fn warm_up(c: &Contestant) -> Result<(), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = TcpStream::connect_timeout(&c.http, Duration::from_secs(5))
            .map_err(|e| e.to_string())
            .and_then(|mut s| {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                get(&mut s, "/64")
            });
        match r {
            Ok((200, _)) => return Ok(()),
            other if std::time::Instant::now() > deadline => {
                return Err(format!("fresh instance not answering 200: {other:?}"));
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Each measurement on a freshly started instance of the contestant (warmed
/// by one request), so memory kept from earlier loads or rounds is not
/// reused and hidden.
fn memory(cs: &mut [Contestant], s: &Settings, env: &Env, tls: bool) -> Figure {
    let (id, what, how) = if tls {
        (
            "idle_tls_conn_rss",
            "idle TLS keep-alive connection",
            "TLS 1.3 (full handshake), ",
        )
    } else {
        ("idle_conn_rss", "idle keep-alive connection", "")
    };
    let mut f = Figure::new(
        id,
        format!(
            "RSS per {what} (N={}, worker processes, after − before)",
            s.idle_conns
        ),
        Unit::Bytes,
        goal("nginx", 0.5, false),
    )
    .with_load(format!(
        "{} idle {how}keep-alive connections, one request each (harness client)",
        s.idle_conns
    ));
    rounds(cs, s.runs, |round, c| {
        let (r, failed) = if c.kind == Kind::Direct {
            (Err("no proxy".to_string()), None)
        } else {
            match c.restart(env).map_err(|e| format!("restart: {e:#}")) {
                Err(e) => (Err(e), None),
                Ok(fresh) => match warm_up(&fresh) {
                    Err(e) => (Err(e), None),
                    Ok(()) => idle_memory(&fresh, s.idle_conns, tls),
                },
            }
        };
        eprintln!(
            "  {id} round {round} {}: {r:?}{}",
            c.id(),
            failed_text(failed.as_ref())
        );
        f.record_run(c.id(), round, r, failed.as_ref());
    });
    f
}

/// Every figure of the main table.
pub fn run_all(cs: &mut [Contestant], env: &Env, s: &Settings) -> Vec<Figure> {
    let dir = env.path();
    let mut figs = Vec::new();
    eprintln!("portier-bench: HTTP/1.1 keep-alive, 64 B");
    figs.extend(h1(cs, dir, s, "/64", "64 B", true));
    eprintln!("portier-bench: HTTP/1.1 keep-alive, 16 KiB");
    figs.extend(h1(cs, dir, s, "/16k", "16 KiB", false));
    eprintln!("portier-bench: HTTPS keep-alive and handshakes");
    figs.extend(tls(cs, dir, s));
    eprintln!("portier-bench: HTTP/2");
    figs.extend(http2(cs, s));
    eprintln!("portier-bench: latency at half of the peak");
    let peak = figs[0].clone();
    figs.extend(latency(cs, dir, s, &peak));
    eprintln!("portier-bench: memory per idle connection");
    figs.push(memory(cs, s, env, false));
    figs.push(memory(cs, s, env, true));
    figs
}

/// Smoke: every contestant answers one HTTP/1.1 request, and one HTTP/2
/// request over TLS where it has a TLS listener.
pub fn smoke(cs: &mut [Contestant]) -> Vec<Figure> {
    let mut h1 = Figure::new(
        "smoke_h1",
        "smoke: HTTP/1.1 GET /64, body bytes",
        Unit::Count,
        None,
    )
    .with_load("smoke: one HTTP/1.1 GET (harness client)");
    let mut h2 = Figure::new(
        "smoke_h2",
        "smoke: HTTP/2 over TLS GET /64, requests succeeded",
        Unit::Count,
        None,
    )
    .with_load("smoke: one HTTP/2 GET over TLS (h2load -n1)");
    for c in cs.iter_mut() {
        let (r, failed) = match TcpStream::connect_timeout(&c.http, Duration::from_secs(5)) {
            Err(e) => (Err(e.to_string()), Failed::of("connect", 1)),
            Ok(mut s) => {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                match get(&mut s, "/64") {
                    Ok((200, len)) => (Ok(len as f64), Failed::none()),
                    Ok((st, _)) => (Err(format!("status {st}")), Failed::of("non-200", 1)),
                    Err(e) => (Err(e), Failed::of("socket", 1)),
                }
            }
        };
        h1.record_run(c.id(), 0, r, Some(&failed));
        let (r, failed) = match c.https {
            Some(addr) => match h2load(&format!("https://{addr}/64"), 1, 1, 1.0, Some(1)) {
                Ok(r) if r.succeeded > 0 => (Ok(r.succeeded as f64), Some(r.failures())),
                Ok(r) => (
                    Err(format!(
                        "no request succeeded ({})",
                        r.failures().describe()
                    )),
                    Some(r.failures()),
                ),
                Err(e) => (Err(format!("{e:#}")), None),
            },
            None => (Err(c.no_tls.clone().unwrap_or_default()), None),
        };
        h2.record_run(c.id(), 0, r, failed.as_ref());
    }
    vec![h1, h2]
}

/// Column order of the main table: the baseline build right after Portier.
pub fn columns(baseline: Option<&str>) -> Vec<String> {
    let mut cols = Vec::new();
    for k in Kind::ALL {
        cols.push(k.id().to_string());
        if k == Kind::Portier
            && let Some(b) = baseline
        {
            cols.push(b.to_string());
        }
    }
    cols
}

/// The main table's address of a contestant (for the context lines).
pub fn describe(c: &Contestant) -> String {
    let tls = c
        .https
        .map(|a: SocketAddr| format!(", https {a}"))
        .unwrap_or_default();
    format!("{} (http {}{tls})", c.version, c.http)
}
