//! `portier-bench region`: a region at the size of the region issue (run by
//! `cargo xtask bench region`, which builds the release portier first).
//! 10,000 apps × 10 domains (100 of them wildcards) seeded into a 3-member
//! etcd, then:
//!
//! ```text
//!  seed ─► cold start of node A (to serving the last app) ─► RSS ─► empty-region node (RSS)
//!       ─► nodes B, C ─► 100 admin writes on A, each polled on A, B, C until served
//!       ─► B, C stopped ─► wrk on A: baseline vs 1,000 changes/s to etcd, interleaved
//!       ─► A stopped, etcd killed ─► A again: cold start from its cache_dir
//! ```
//!
//! Pinning (2 cores): the portier nodes and the two demo backends on CPU 0
//! (the proxy CPU of the other harnesses); etcd, wrk, the change writer
//! and this harness's polling on CPU 1 (etcd is remote in real life).
//!
//! Owns: the run, its timings and readings. Processes it starts are
//! stopped by PID ([`Proc`], also on error and when the harness dies); the
//! scratch directory (etcd data, node files) goes with the run.

pub mod etcd;
pub mod report;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use portier::mgmt::region::keys::Keys;
use serde_json::{Value, json};

use crate::load::contestants::{PROXY_CPU, fill};
use crate::load::proc::{Mem, Proc, TempDir, free_port, pinned, run_ok, thread_cpu, wait_port};
use crate::load::tools::{LOAD_CPU, Wrk, WrkRun, wrk};
use etcd::{ChangeRun, Etcd, percentile};

const T_PORTIER: &str = include_str!("../../templates/portier-region.toml");
const TOKEN: &str = "portier-bench-region-token-0123456789";
const PREFIX: &str = "/portier-bench";
/// Host of the app that takes the load (never changed by the run).
pub const LOAD_HOST: &str = "load.bench.test";
const LOAD_PATH: &str = "/bytes/64";
/// Every this many apps, one of the app's domains is a wildcard.
const WILDCARD_EVERY: usize = 100;

pub struct Options {
    pub portier: PathBuf,
    pub out_dir: PathBuf,
    pub apps: usize,
    pub domains_per_app: usize,
    /// Admin writes of the propagation test.
    pub writes: usize,
    /// Changes per second written to etcd, and for how long.
    pub change_rate: u32,
    pub change_secs: f64,
    /// Rounds of (baseline, changes) under paced load.
    pub rounds: usize,
    pub notes: Vec<String>,
}

/// A node's start: from spawn to its plain-HTTP port answering anything,
/// and to the last app of the region answering 200.
#[derive(Debug, Clone, Default)]
pub struct ColdStart {
    pub listening_secs: f64,
    pub serving_secs: f64,
    /// 2 s after serving.
    pub mem: Mem,
    /// The node's own account of its first apply (GET /region).
    pub first_apply_secs: Option<f64>,
}

/// One admin write and when each node served it.
#[derive(Debug, Clone)]
pub struct WriteTiming {
    pub host: String,
    pub status: u16,
    /// Until the admin API answered.
    pub admin_ms: f64,
    /// Per node (A, B, C): until it answered 200 for the new host.
    pub nodes_ms: Vec<Option<f64>>,
}

impl WriteTiming {
    /// Until all three served it (None: one never did).
    pub fn all_ms(&self) -> Option<f64> {
        self.nodes_ms
            .iter()
            .try_fold(0.0f64, |acc, n| n.map(|v| acc.max(v)))
    }
}

/// One load window on node A.
#[derive(Debug, Clone)]
pub struct Window {
    pub label: String,
    pub paced: bool,
    pub changes: Option<ChangeRun>,
    pub wrk: WrkRun,
    /// Applies of the region's apps on the node during the window, and
    /// their total and longest sampled duration.
    pub applies: u64,
    pub apply_secs_sum: f64,
    pub apply_last_max: f64,
    /// CPU seconds of portier's management thread and reactors.
    pub mgmt_cpu: f64,
    pub reactors_cpu: f64,
    /// When the writer finished (wrk still running): the writer's last
    /// acknowledged revision minus the node's applied revision, and the
    /// time until the node had applied that put.
    pub lag_at_end: Option<i64>,
    pub catch_up_secs: Option<f64>,
}

pub struct Run {
    pub seeded_revision: i64,
    pub seed_secs: f64,
    pub seed_bytes: usize,
    pub cold: ColdStart,
    pub empty: Mem,
    pub writes: Vec<WriteTiming>,
    pub windows: Vec<Window>,
    pub mem_after_changes: Mem,
    pub from_cache: Option<ColdStart>,
    pub problems: Vec<String>,
}

pub fn run(opts: &Options) -> anyhow::Result<(PathBuf, PathBuf)> {
    let started = Instant::now();
    // wrk (and the load harness's other tools) from Debian when missing.
    crate::load::setup::ensure_packages()?;
    if !Path::new(etcd::ETCD).exists() {
        bail!(
            "{} not found (cargo xtask setup installs etcd-server)",
            etcd::ETCD
        );
    }
    if !opts.portier.exists() {
        bail!("{} not found (cargo xtask build)", opts.portier.display());
    }
    if opts.apps < 2 || opts.domains_per_app == 0 {
        bail!("--apps: at least 2, --domains: at least 1");
    }
    crate::acme::pin_self(LOAD_CPU);
    let dir = TempDir::new("region")?;
    let env = Env::start(opts, dir.path())?;
    eprintln!(
        "portier-bench: etcd {}, backends {} {}, scratch {}",
        env.etcd.endpoints.join(","),
        env.backends[0],
        env.backends[1],
        dir.path().display()
    );
    let r = measure(opts, env)?;
    let rep = report::Report::new(opts, r, started.elapsed());
    print!("{}", rep.markdown());
    rep.write(&opts.out_dir)
}

fn measure(opts: &Options, mut env: Env) -> anyhow::Result<Run> {
    let t = Instant::now();
    let puts = seed_puts(opts, &env);
    let seed_bytes = puts.iter().map(|(k, v)| k.len() + v.len()).sum();
    let seeded_revision = env.etcd.seed(&puts)?;
    let seed_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "portier-bench: seeded {} apps, {} domains ({:.1} MB) in {seed_secs:.1} s, revision {seeded_revision}",
        opts.apps,
        opts.apps * opts.domains_per_app,
        seed_bytes as f64 / 1e6
    );
    let mut problems = Vec::new();
    let last = last_host(opts);

    // Cold start of A, then a node of an empty region for comparison.
    let mut a = Node::new(&env, "node-a", PREFIX)?;
    let cold = a.cold_start(&last)?;
    eprintln!(
        "portier-bench: cold start: listening {:.2} s, serving {:.2} s, RSS {:.1} MB",
        cold.listening_secs,
        cold.serving_secs,
        cold.mem.rss as f64 / 1e6
    );
    let empty = {
        let mut e = Node::new(&env, "node-empty", "/portier-bench-empty")?;
        e.start()?;
        let pid = e.pid()?;
        wait_region_connected(e.admin)?;
        std::thread::sleep(Duration::from_secs(2));
        let m = Mem::of(pid);
        e.stop();
        m
    };

    // Propagation through A to A, B and C.
    let mut b = Node::new(&env, "node-b", PREFIX)?;
    let mut c = Node::new(&env, "node-c", PREFIX)?;
    b.start()?;
    c.start()?;
    for n in [&b, &c] {
        wait_status(n.http, &last, 200, Duration::from_secs(120))
            .with_context(|| format!("{} serving the region", n.name))?;
    }
    let nodes = [a.http, b.http, c.http];
    let mut writes = Vec::new();
    for k in 0..opts.writes {
        let w = propagate(opts, a.admin, &nodes, k)?;
        if w.status != 201 {
            problems.push(format!(
                "write {k} ({}): admin answered {}",
                w.host, w.status
            ));
        }
        writes.push(w);
    }
    let ok: Vec<f64> = writes.iter().filter_map(WriteTiming::all_ms).collect();
    eprintln!(
        "portier-bench: {} writes, {} served by all three; median {:.0} ms",
        writes.len(),
        ok.len(),
        median(&ok)
    );
    b.stop();
    c.stop();

    // Load on A without and with changes.
    let mut windows = Vec::new();
    let shapes: Vec<bool> = std::iter::repeat_n(true, opts.rounds)
        .chain([false])
        .collect();
    // Change numbers go on from window to window: every change really
    // changes an app (a window repeating the previous one's puts would
    // write the values the apps already have, and the node rightly applies
    // nothing).
    let mut next_change = 0u64;
    for (round, paced) in shapes.into_iter().enumerate() {
        for changes in [false, true] {
            let w = load_window(opts, &env, &a, paced, changes, round, next_change)?;
            next_change += w.changes.as_ref().map_or(0, |c| c.planned);
            eprintln!(
                "portier-bench: {}: {:.0} req/s, p99 {:.2} ms, applies {}",
                w.label,
                w.wrk.rps(),
                w.wrk.p99_us / 1e3,
                w.applies
            );
            windows.push(w);
        }
    }
    let mem_after_changes = Mem::of(a.pid()?);

    // etcd gone: A restarted serves its last good state.
    a.stop();
    env.etcd.kill_all();
    let from_cache = match a.cold_start(&last) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(format!("start from the cache: {e:#}"));
            None
        }
    };
    a.stop();
    Ok(Run {
        seeded_revision,
        seed_secs,
        seed_bytes,
        cold,
        empty,
        writes,
        windows,
        mem_after_changes,
        from_cache,
        problems,
    })
}

/// Scratch files, etcd, the region key and the two demo backends.
struct Env {
    dir: PathBuf,
    portier: PathBuf,
    etcd: Etcd,
    backends: [SocketAddr; 2],
    _backend_procs: Vec<Proc>,
    key: PathBuf,
    token: PathBuf,
    keys: Keys,
}

impl Env {
    fn start(opts: &Options, dir: &Path) -> anyhow::Result<Env> {
        let bin = opts.portier.with_file_name("portier-demo-backend");
        let mut procs = Vec::new();
        let mut addrs = Vec::new();
        for name in ["b1", "b2"] {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
            let mut cmd = pinned(PROXY_CPU, &bin.to_string_lossy());
            cmd.args(["--listen", &addr.to_string(), "--name", name]);
            let p = Proc::spawn(name, cmd, &dir.join(format!("{name}.log")))?;
            wait_port(addr, Duration::from_secs(10))
                .with_context(|| format!("backend {name}: {}", p.log_tail()))?;
            procs.push(p);
            addrs.push(addr);
        }
        let etcd = Etcd::start(dir, LOAD_CPU)?;
        let key = dir.join("region.key");
        run_ok(
            Command::new(&opts.portier)
                .args(["region", "keygen", "--out"])
                .arg(&key),
            Duration::from_secs(30),
        )?;
        let token = dir.join("admin.token");
        std::fs::write(&token, TOKEN)?;
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        Ok(Env {
            dir: dir.to_path_buf(),
            portier: opts.portier.clone(),
            etcd,
            backends: [addrs[0], addrs[1]],
            _backend_procs: procs,
            key,
            token,
            keys: Keys::new(PREFIX),
        })
    }
}

fn app_name(i: usize) -> String {
    format!("app-{i:05}")
}

/// App `i`'s domains: `d<j>.app-<i>.bench.test`, the last one a wildcard
/// `*.w.app-<i>.bench.test` for every [`WILDCARD_EVERY`]th app.
fn app_domains(opts: &Options, i: usize) -> Vec<String> {
    let name = app_name(i);
    (0..opts.domains_per_app)
        .map(|j| {
            if j + 1 == opts.domains_per_app && i.is_multiple_of(WILDCARD_EVERY) {
                format!("*.w.{name}.bench.test")
            } else {
                format!("d{j}.{name}.bench.test")
            }
        })
        .collect()
}

/// App `i` as stored in etcd, on backend `backend`.
fn app_json(opts: &Options, i: usize, backend: SocketAddr) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "name": app_name(i),
        "domains": app_domains(opts, i),
        "backends": [backend.to_string()],
    }))
    .unwrap_or_default()
}

/// Every app (on alternating backends), the load app, the apps guard.
fn seed_puts(opts: &Options, env: &Env) -> Vec<(String, Vec<u8>)> {
    let mut puts: Vec<(String, Vec<u8>)> = (0..opts.apps)
        .map(|i| {
            (
                env.keys.app(&app_name(i)),
                app_json(opts, i, env.backends[i % 2]),
            )
        })
        .collect();
    puts.push((
        env.keys.app("load"),
        serde_json::to_vec(&json!({
            "name": "load",
            "domains": [LOAD_HOST],
            "backends": [env.backends[0].to_string()],
            "max_conns_per_backend": 1024,
        }))
        .unwrap_or_default(),
    ));
    puts.push((env.keys.apps_guard(), b"portier-bench seed".to_vec()));
    puts
}

/// The last app's first domain: served once the whole region is.
fn last_host(opts: &Options) -> String {
    format!("d0.{}.bench.test", app_name(opts.apps - 1))
}

/// Change `k`: app `k·7919 mod N` (a permutation: every app once per
/// round), moved to the backend it did not have in the previous round.
fn change(opts: &Options, env: &Env, k: u64) -> (String, Vec<u8>) {
    let n = opts.apps as u64;
    let i = ((k % n) * 7919 % n) as usize;
    let round = (k / n) as usize;
    let backend = env.backends[(i + round + 1) % 2];
    (env.keys.app(&app_name(i)), app_json(opts, i, backend))
}

/// One portier node of the region.
struct Node {
    name: String,
    config: PathBuf,
    log: PathBuf,
    portier: PathBuf,
    http: SocketAddr,
    admin: SocketAddr,
    proc: Option<Proc>,
}

impl Node {
    fn new(env: &Env, name: &str, prefix: &str) -> anyhow::Result<Node> {
        let dir = env.dir.join(name);
        std::fs::create_dir_all(dir.join("certs"))?;
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let endpoints: Vec<String> = env
            .etcd
            .endpoints
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect();
        let text = fill(
            T_PORTIER,
            &[
                ("HTTP_LISTEN", http.to_string()),
                ("CERT_DIR", dir.join("certs").display().to_string()),
                ("ADMIN_LISTEN", admin.to_string()),
                ("TOKEN_FILE", env.token.display().to_string()),
                ("ENDPOINTS", endpoints.join(", ")),
                ("PREFIX", prefix.to_string()),
                ("NODE", name.to_string()),
                ("KEY_FILE", env.key.display().to_string()),
                ("CACHE_DIR", dir.join("cache").display().to_string()),
            ],
        )?;
        let config = dir.join("portier.toml");
        std::fs::write(&config, text)?;
        Ok(Node {
            name: name.to_string(),
            config,
            log: dir.join("portier.log"),
            portier: env.portier.clone(),
            http,
            admin,
            proc: None,
        })
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let mut cmd = pinned(PROXY_CPU, &self.portier.to_string_lossy());
        cmd.arg("--config").arg(&self.config);
        self.proc = Some(Proc::spawn(&self.name, cmd, &self.log)?);
        Ok(())
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.proc
            .as_ref()
            .and_then(Proc::pid)
            .with_context(|| format!("{} not running", self.name))
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    /// Start and time it: polls `host` every 5 ms until 200.
    fn cold_start(&mut self, host: &str) -> anyhow::Result<ColdStart> {
        let t0 = Instant::now();
        self.start()?;
        let mut listening = None;
        let deadline = t0 + Duration::from_secs(180);
        let serving = loop {
            match status(self.http, host) {
                Ok(200) => break t0.elapsed().as_secs_f64(),
                Ok(_) => {
                    listening.get_or_insert(t0.elapsed().as_secs_f64());
                }
                Err(_) => {
                    if let Some(p) = self.proc.as_mut()
                        && !p.alive()
                    {
                        bail!("{} exited: {}", self.name, p.log_tail());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("{}: {host} not served within 180 s", self.name);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        std::thread::sleep(Duration::from_secs(2));
        let first_apply_secs = region_status(self.admin)
            .ok()
            .and_then(|s| s["applies"].as_u64().filter(|n| *n >= 1).map(|_| s))
            .and_then(|s| s["apply_seconds_sum"].as_f64());
        Ok(ColdStart {
            listening_secs: listening.unwrap_or(serving),
            serving_secs: serving,
            mem: Mem::of(self.pid()?),
            first_apply_secs,
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `GET /bytes/1` with `Host: host` on a new connection: the status.
fn status(addr: SocketAddr, host: &str) -> anyhow::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /bytes/1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    std::str::from_utf8(&head[9..12])?
        .parse()
        .context("status code")
}

fn wait_status(addr: SocketAddr, host: &str, want: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if status(addr, host).ok() == Some(want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{host} on {addr}: no {want} within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An admin API call with the token, `Connection: close`: status, body.
fn admin_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of head")?;
    let code = std::str::from_utf8(raw.get(9..12).context("short answer")?)?.parse()?;
    Ok((code, raw[end + 4..].to_vec()))
}

/// `GET /region`'s `status` object.
fn region_status(admin: SocketAddr) -> anyhow::Result<Value> {
    let (code, body) = admin_call(admin, "GET", "/region", None)?;
    if code != 200 {
        bail!("GET /region: {code}");
    }
    let v: Value = serde_json::from_slice(&body)?;
    Ok(v["status"].clone())
}

fn wait_region_connected(admin: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if region_status(admin).is_ok_and(|s| s["connected"] == true) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the empty-region node never connected to etcd");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Write `k`: a new domain on some app through A's admin API; every node
/// polled every 2 ms (new connection each) until it serves it.
fn propagate(
    opts: &Options,
    admin: SocketAddr,
    nodes: &[SocketAddr],
    k: usize,
) -> anyhow::Result<WriteTiming> {
    let app = app_name(k * 101 % opts.apps);
    let host = format!("p{k}.{app}.bench.test");
    let t0 = Instant::now();
    let give_up = Duration::from_secs(30);
    let pollers: Vec<_> = nodes
        .iter()
        .map(|&addr| {
            let host = host.clone();
            std::thread::spawn(move || {
                while t0.elapsed() < give_up {
                    if status(addr, &host).ok() == Some(200) {
                        return Some(t0.elapsed().as_secs_f64() * 1e3);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                None
            })
        })
        .collect();
    let answer = admin_call(
        admin,
        "POST",
        &format!("/apps/{app}/domains"),
        Some(&format!("{{\"domain\": \"{host}\"}}")),
    );
    let admin_ms = t0.elapsed().as_secs_f64() * 1e3;
    let nodes_ms = pollers
        .into_iter()
        .map(|p| p.join().unwrap_or(None))
        .collect();
    Ok(WriteTiming {
        host,
        status: answer.map_or(0, |(c, _)| c),
        admin_ms,
        nodes_ms,
    })
}

/// CPU seconds of portier's management side (every thread but the
/// reactors: the main thread runs the management runtime) and of its
/// reactors (`portier-reactor`).
fn portier_cpu(pid: u32) -> (f64, f64) {
    let threads = thread_cpu(pid);
    let sum = |reactor: bool| -> f64 {
        threads
            .iter()
            .filter(|(n, _)| n.starts_with("portier-reacto") == reactor)
            .map(|(_, s)| s)
            .sum()
    };
    (sum(false), sum(true))
}

/// wrk on A's load app for `change_secs`, with or without the change load
/// meanwhile; paced (20 connections, 2 ms pause per request) or closed
/// loop (50 connections).
fn load_window(
    opts: &Options,
    env: &Env,
    a: &Node,
    paced: bool,
    changes: bool,
    round: usize,
    first_change: u64,
) -> anyhow::Result<Window> {
    let label = format!(
        "{} {}{}",
        if paced { "paced" } else { "closed-loop" },
        if changes {
            format!("{} changes/s", opts.change_rate)
        } else {
            "baseline".into()
        },
        if paced {
            format!(" (round {})", round + 1)
        } else {
            String::new()
        }
    );
    let pid = a.pid()?;
    let before = region_status(a.admin)?;
    let cpu0 = portier_cpu(pid);
    let stop = Arc::new(AtomicBool::new(false));
    // The node's applied revision and last apply time, every 200 ms.
    let sampler = {
        let stop = stop.clone();
        let admin = a.admin;
        std::thread::spawn(move || {
            let mut samples: Vec<(i64, f64)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = region_status(admin) {
                    samples.push((
                        s["revision"].as_i64().unwrap_or(0),
                        s["last_apply_seconds"].as_f64().unwrap_or(0.0),
                    ));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            samples
        })
    };
    let url = format!("http://{}{LOAD_PATH}", a.http);
    let secs = opts.change_secs;
    let dir = env.dir.clone();
    let load = std::thread::spawn(move || {
        let host = format!("Host: {LOAD_HOST}");
        wrk(
            &dir,
            &Wrk {
                url: &url,
                connections: if paced { 20 } else { 50 },
                seconds: secs,
                headers: &[&host],
                delay_ms: if paced { 2 } else { 0 },
            },
        )
    });
    // etcd revisions the writer saw acknowledged, with when.
    let mut acked: Vec<(Instant, i64)> = Vec::new();
    let change_run = if changes {
        let run = etcd::change_load(&env.etcd, opts.change_rate, secs, |k| {
            change(opts, env, first_change + k)
        });
        acked.push((Instant::now(), run.last_revision));
        Some(run)
    } else {
        std::thread::sleep(Duration::from_secs_f64(secs));
        None
    };
    let wrk_run = load
        .join()
        .map_err(|_| anyhow::anyhow!("wrk thread panicked"))??;
    // Caught up: the node applied the writer's last put.
    let mut catch_up_secs = None;
    let mut lag_at_end = None;
    if let Some(run) = &change_run {
        let writer_end = acked.last().map_or_else(Instant::now, |a| a.0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let rev = region_status(a.admin)
                .ok()
                .and_then(|s| s["revision"].as_i64())
                .unwrap_or(0);
            lag_at_end.get_or_insert((run.last_revision - rev).max(0));
            if rev >= run.last_revision {
                catch_up_secs = Some(writer_end.elapsed().as_secs_f64());
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap_or_default();
    let after = region_status(a.admin)?;
    let cpu1 = portier_cpu(pid);
    let num = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    Ok(Window {
        label,
        paced,
        changes: change_run,
        wrk: wrk_run,
        applies: after["applies"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(before["applies"].as_u64().unwrap_or(0)),
        apply_secs_sum: num(&after, "apply_seconds_sum") - num(&before, "apply_seconds_sum"),
        apply_last_max: samples.iter().map(|s| s.1).fold(0.0, f64::max),
        mgmt_cpu: cpu1.0 - cpu0.0,
        reactors_cpu: cpu1.1 - cpu0.1,
        lag_at_end,
        catch_up_secs,
    })
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    percentile(&s, 50.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            portier: PathBuf::new(),
            out_dir: PathBuf::new(),
            apps: 10_000,
            domains_per_app: 10,
            writes: 100,
            change_rate: 1000,
            change_secs: 10.0,
            rounds: 2,
            notes: Vec::new(),
        }
    }

    #[test]
    fn apps_have_their_domains_and_some_wildcards() {
        let o = opts();
        let d = app_domains(&o, 0);
        assert_eq!(d.len(), 10);
        assert_eq!(d[0], "d0.app-00000.bench.test");
        assert_eq!(d[9], "*.w.app-00000.bench.test");
        assert!(!app_domains(&o, 1).iter().any(|d| d.starts_with('*')));
        assert_eq!(last_host(&o), "d0.app-09999.bench.test");
    }

    #[test]
    fn changes_visit_every_app_once_per_round_and_always_change_it() {
        let o = opts();
        let n = o.apps as u64;
        let mut seen = std::collections::HashSet::new();
        for k in 0..n {
            seen.insert((k % n) * 7919 % n);
        }
        assert_eq!(seen.len(), o.apps, "a permutation");
        // App i starts on backend i % 2; round r puts it on (i + r + 1) % 2.
        for i in [0usize, 1, 2] {
            for r in 0..3 {
                assert_ne!((i + r + 1) % 2, (i + r) % 2);
            }
        }
    }

    #[test]
    fn a_write_counts_when_every_node_served_it() {
        let w = WriteTiming {
            host: "h".into(),
            status: 201,
            admin_ms: 5.0,
            nodes_ms: vec![Some(3.0), Some(9.0), Some(4.0)],
        };
        assert_eq!(w.all_ms(), Some(9.0));
        let lost = WriteTiming {
            nodes_ms: vec![Some(3.0), None, Some(4.0)],
            ..w
        };
        assert_eq!(lost.all_ms(), None);
    }
}
