//! Quarantine probes of the real `portier`, seen from a misbehaving backend:
//! a small `TcpListener` thread that records when each request (probe or
//! not) reaches it and misbehaves as told — cuts, stays silent, answers
//! garbage or 500, or answers probes and cuts everything else (a flapping
//! backend). A real `portier-demo-backend` keeps the app served meanwhile.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::proc::{Backend, Conn, Proxy, get};

const HOST: &str = "demo.localhost";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// 200 to everything.
    Healthy,
    /// Read the request, close without a byte.
    Cut,
    /// Read the request, never answer (hold the connection until the peer
    /// gives up).
    Silent,
    /// Answer bytes that are not HTTP, then close.
    Garbage,
    /// 500 to everything.
    Error500,
    /// 200 to probes, cut every other request.
    AnswerProbesOnly,
}

const MODES: [Mode; 6] = [
    Mode::Healthy,
    Mode::Cut,
    Mode::Silent,
    Mode::Garbage,
    Mode::Error500,
    Mode::AnswerProbesOnly,
];

/// One request head that reached the backend.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    probe: bool,
    head: String,
}

struct Shared {
    mode: AtomicU8,
    seen: Mutex<Vec<Seen>>,
    /// How long silent connections stayed open until the peer closed them.
    held: Mutex<Vec<Duration>>,
    stop: AtomicBool,
}

/// The misbehaving backend; stops on drop.
struct Flaky {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Flaky {
    fn start(mode: Mode) -> Flaky {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(mode as u8),
            seen: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let s = s.clone();
                    std::thread::spawn(move || serve(conn, &s));
                }
            }
        });
        Flaky {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    fn set(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    fn probes(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.probe).collect()
    }

    fn requests(&self) -> usize {
        self.seen().iter().filter(|s| !s.probe).count()
    }

    fn held(&self) -> Vec<Duration> {
        self.shared
            .held
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: TcpStream, s: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let at = Instant::now();
    let head = String::from_utf8_lossy(&buf).into_owned();
    let probe = head
        .to_ascii_lowercase()
        .contains("\r\nuser-agent: portier-probe\r\n");
    if let Ok(mut seen) = s.seen.lock() {
        seen.push(Seen {
            at,
            probe,
            head: head.clone(),
        });
    }
    let mode = MODES[usize::from(s.mode.load(Ordering::SeqCst))];
    let answer: &[u8] = match mode {
        Mode::Healthy => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nflaky",
        Mode::Error500 => {
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\noops!"
        }
        Mode::Garbage => b"hello, this is not HTTP\r\n\r\n",
        Mode::AnswerProbesOnly if probe => {
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nflaky"
        }
        Mode::Cut | Mode::AnswerProbesOnly => return,
        Mode::Silent => {
            // Until the peer closes (EOF or reset).
            let _ = conn.read(&mut chunk);
            if let Ok(mut held) = s.held.lock() {
                held.push(at.elapsed());
            }
            return;
        }
    };
    let _ = conn.write_all(answer);
}

fn proxy(good: &Backend, flaky: &Flaky, settings: &str) -> Proxy {
    Proxy::start(
        "",
        &format!(
            "[[apps]]\nname = \"demo\"\ndomains = [\"*.wild.localhost\", \"{HOST}\", \"other.localhost\"]\n\
             backends = [\"{}\", \"{}\"]\n{settings}\n",
            good.addr, flaky.addr
        ),
    )
}

/// Which backend answered a request through the proxy.
fn served_by(p: &Proxy) -> (u16, String) {
    let r = get(p.addr, HOST, "/");
    let who = if r.body.starts_with(b"{") {
        r.json()["backend"].as_str().unwrap_or_default().to_string()
    } else {
        r.text()
    };
    (r.status, who)
}

/// Requests until one reaches the flaky backend (which cuts it: quarantine);
/// every client still gets the good backend's answer.
fn quarantine(p: &Proxy, flaky: &Flaky) {
    for _ in 0..4 {
        assert_eq!(served_by(p), (200, "good".to_string()));
        if flaky.requests() > 0 {
            return;
        }
    }
    panic!("no request reached the flaky backend");
}

/// Clients keep asking for `d`: every answer must come from the good
/// backend (the quarantined one is never used).
fn only_good_for(p: &Proxy, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        assert_eq!(served_by(p), (200, "good".to_string()));
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// The backend is back in rotation: a client gets its answer within `d`.
fn comes_back(p: &Proxy, d: Duration, expect: (u16, &str)) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        let (status, who) = served_by(p);
        if who == expect.1 {
            assert_eq!(status, expect.0, "{who}");
            return;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    panic!("the backend never came back ({expect:?})");
}

const FAST: &str = "quarantine_initial_ms = 200\nquarantine_max_ms = 400\nhealth_timeout_ms = 300\nhealth_path = \"/healthz?from=portier\"\n";

/// The no-answer cases: the backend stays out while its probes fail, no
/// client request reaches it, and it comes back once it answers.
fn stays_out_while(mode: Mode) -> (Flaky, Vec<Seen>) {
    let good = Backend::start("good");
    let flaky = Flaky::start(Mode::Cut);
    let p = proxy(&good, &flaky, FAST);
    quarantine(&p, &flaky);
    flaky.set(mode);
    only_good_for(&p, Duration::from_millis(2500));
    let probes = flaky.probes();
    assert!(probes.len() >= 2, "{mode:?}: probes seen: {}", probes.len());
    assert_eq!(
        flaky.requests(),
        1,
        "{mode:?}: only the request that quarantined it reached the backend"
    );
    flaky.set(Mode::Healthy);
    comes_back(&p, Duration::from_secs(3), (200, "flaky"));
    (flaky, probes)
}

#[test]
fn accepting_then_closing_is_not_an_answer_and_probes_ask_http() {
    let (_flaky, probes) = stays_out_while(Mode::Cut);
    let head = &probes[0].head;
    let mut lines = head.split("\r\n");
    assert_eq!(
        lines.next(),
        Some("GET /healthz?from=portier HTTP/1.1"),
        "{head}"
    );
    let field = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    // The first exact domain (no canonical one; the wildcard is skipped).
    assert_eq!(field("host").as_deref(), Some(HOST), "{head}");
    assert_eq!(field("connection").as_deref(), Some("close"));
    assert_eq!(field("user-agent").as_deref(), Some("portier-probe"));
    let ids: Vec<String> = probes
        .iter()
        .map(|p| {
            let id = p
                .head
                .split("\r\n")
                .find_map(|l| l.strip_prefix("X-Request-ID: "))
                .expect("X-Request-ID");
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
            id.to_string()
        })
        .collect();
    assert_ne!(ids[0], ids[1], "a new id per probe");
}

#[test]
fn a_backend_that_never_answers_times_out() {
    let (flaky, _) = stays_out_while(Mode::Silent);
    let held = flaky.held();
    assert!(!held.is_empty());
    for h in held {
        // health_timeout_ms = 300: portier hung up, not the backend.
        assert!(
            h >= Duration::from_millis(250) && h < Duration::from_millis(1500),
            "probe held {h:?}"
        );
    }
}

#[test]
fn a_backend_answering_garbage_stays_out() {
    stays_out_while(Mode::Garbage);
}

#[test]
fn a_backend_answering_500_is_alive() {
    let good = Backend::start("good");
    let flaky = Flaky::start(Mode::Cut);
    let p = proxy(&good, &flaky, FAST);
    quarantine(&p, &flaky);
    flaky.set(Mode::Error500);
    // Back after a probe answered 500; clients see the app's own 500.
    comes_back(&p, Duration::from_secs(2), (500, "oops!"));
    assert!(!flaky.probes().is_empty());
}

#[test]
fn a_flapping_backend_is_probed_ever_later_until_it_proves_stable() {
    let good = Backend::start("good");
    let flaky = Flaky::start(Mode::AnswerProbesOnly);
    let p = proxy(
        &good,
        &flaky,
        "quarantine_initial_ms = 200\nquarantine_max_ms = 1600\nquarantine_stable_ms = 1500\nhealth_timeout_ms = 300\n",
    );
    // Steady load: whenever the flaky backend is back, a request finds it
    // at once and is cut (and retried on the good backend).
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let load = {
        let (addr, stop, failures) = (p.addr, stop.clone(), failures.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                // Not `get`: a failed test stops portier under this thread.
                let status = TcpStream::connect(addr).ok().and_then(|s| {
                    let mut c = Conn::from_stream(s);
                    c.stream
                        .write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
                        .ok()?;
                    c.try_response().map(|r| r.status)
                });
                if status != Some(200) {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while flaky.probes().len() < 5 {
        assert!(Instant::now() < deadline, "probes: {:?}", flaky.probes());
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen = flaky.seen();
    let first_cut = seen.iter().find(|s| !s.probe).expect("a request").at;
    let probes: Vec<Instant> = flaky.probes().iter().map(|s| s.at).collect();
    let intervals: Vec<u64> = std::iter::once(probes[0] - first_cut)
        .chain(probes.windows(2).map(|w| w[1] - w[0]))
        .map(|d| d.as_millis() as u64)
        .collect();
    eprintln!("probe intervals (ms): {intervals:?}");
    // Each probe answered, each return cut at once: the delay doubles from
    // where it was (200, 400, 800, 1600, capped) instead of restarting.
    for (got, want) in intervals.iter().zip([200, 400, 800, 1600, 1600]) {
        assert!(
            *got >= want && *got < want + 600,
            "intervals {intervals:?}, expected about {want}"
        );
    }
    for w in intervals.windows(2).take(3) {
        assert!(w[1] * 2 > w[0] * 3, "growing: {intervals:?}");
    }
    let came_back = seen.iter().filter(|s| !s.probe).count();
    assert!(
        came_back >= 5,
        "it was really back each time (cut requests: {came_back})"
    );

    // Healthy (once a probe let it back, up to 1.6 s from now) for longer
    // than max(stable 1.5 s, last delay 1.6 s)...
    flaky.set(Mode::Healthy);
    let healthy_since = Instant::now();
    let served_after = |t: Instant| {
        flaky
            .seen()
            .iter()
            .filter(|s| !s.probe && s.at > t)
            .map(|s| s.at)
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while served_after(healthy_since).is_empty() {
        assert!(Instant::now() < deadline, "never back while healthy");
        std::thread::sleep(Duration::from_millis(10));
    }
    let back_at = served_after(healthy_since)[0];
    std::thread::sleep(
        (back_at + Duration::from_millis(2200)).saturating_duration_since(Instant::now()),
    );
    let served = served_after(healthy_since).len();
    assert!(served > 5, "it served while healthy ({served})");
    // ...then cut again: the backoff starts over at 200 ms.
    flaky.set(Mode::AnswerProbesOnly);
    let cut_since = Instant::now();
    let before = flaky.probes().len();
    let deadline = Instant::now() + Duration::from_secs(5);
    while flaky.probes().len() == before {
        assert!(Instant::now() < deadline, "no probe after the new cut");
        std::thread::sleep(Duration::from_millis(10));
    }
    let cut_at = flaky
        .seen()
        .iter()
        .find(|s| !s.probe && s.at > cut_since)
        .expect("the cut request")
        .at;
    let reset = (flaky.probes()[before].at - cut_at).as_millis() as u64;
    eprintln!("after a stable period, the next probe came {reset} ms after the cut");
    assert!((200..700).contains(&reset), "{reset} ms");
    stop.store(true, Ordering::SeqCst);
    load.join().expect("load");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "no client saw the flapping"
    );
}
