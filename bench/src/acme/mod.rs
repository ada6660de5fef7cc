//! `portier-bench acme`: ACME at scale (run by `cargo xtask bench acme`,
//! which builds portier and starts the local Pebble this harness orders
//! from). For each `acme.concurrency` value, a fresh node (two reactor
//! threads, `bench/templates/portier-acme.toml`) with N exact names
//! `n0001.bench.test`… in one app and `load.bench.test` (excluded from
//! ACME) in another:
//!
//! ```text
//!  start ─► "ready" ─► RSS ─► wrk (until all valid) ─► RSS, +2 s quiet RSS, disk ─► wrk (after) ─► stop
//!                      └──── GET /certificates every 50 ms until the first valid, then 250 ms, to the end ────┘
//! ```
//!
//! Before the trials, a control node (same file without `[acme]`) gives
//! the latency and memory of the same load with no ACME at all, and what
//! the load's own connections add to RSS.
//!
//! Pinning (2 cores): portier and the backend on CPU 0 (the proxy CPU of
//! the load harness), wrk on CPU 1 with the CA (Pebble, challtestsrv:
//! remote in real life, so kept off the proxy's CPU) and this harness's
//! polling; the CPU time of each is read from /proc for every window.
//!
//! Owns: the trials, their timings and readings. Processes it starts are
//! stopped by PID ([`Proc`]), also on error; the scratch directory goes
//! with the run.

pub mod admin;
pub mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::load::contestants::{PROXY_CPU, fill};
use crate::load::proc::{
    Mem, Proc, TempDir, cpu_of, free_port, machine_busy_seconds, pinned, run_ok, thread_cpu,
    wait_port,
};
use crate::load::tools::{LOAD_CPU, WRK_LUA, WrkRun, parse_wrk};
use admin::AcmeCounts;

const T_PORTIER: &str = include_str!("../../templates/portier-acme.toml");

/// Host of the app that takes the load (excluded from ACME).
pub const LOAD_HOST: &str = "load.bench.test";
/// Path the load asks for: 64 bytes from the demo backend.
const LOAD_PATH: &str = "/bytes/64";
const TOKEN: &str = "portier-bench-acme-token-0123456789";

pub struct Options {
    pub portier: PathBuf,
    /// Pebble's directory URL and the root of its HTTPS.
    pub directory: String,
    pub ca_roots: PathBuf,
    /// The plain-HTTP port Pebble validates HTTP-01 on.
    pub http_port: u16,
    pub names: usize,
    pub concurrency: Vec<usize>,
    pub quick: bool,
    pub out_dir: PathBuf,
    /// Pebble's and challtestsrv's PIDs (CPU accounting) and their CPUs.
    pub ca_pids: Vec<u32>,
    pub ca_cpus: String,
    pub notes: Vec<String>,
}

/// How the loads run.
#[derive(Debug, Clone, Copy)]
pub struct LoadShape {
    pub connections: u32,
    /// Seconds of the control load, and bounds of the "after" load (which
    /// lasts as long as the issuance window, within them).
    pub control_secs: f64,
    pub after_min_secs: f64,
    pub after_max_secs: f64,
}

impl LoadShape {
    fn of(quick: bool) -> LoadShape {
        if quick {
            LoadShape {
                connections: 50,
                control_secs: 5.0,
                after_min_secs: 5.0,
                after_max_secs: 15.0,
            }
        } else {
            LoadShape {
                connections: 50,
                control_secs: 10.0,
                after_min_secs: 10.0,
                after_max_secs: 30.0,
            }
        }
    }
}

/// CPU seconds used during one window, by whom.
#[derive(Debug, Clone, Default)]
pub struct CpuUse {
    pub window_secs: f64,
    pub portier: f64,
    /// The main thread: the management runtime (ACME, watcher, admin API).
    pub portier_mgmt: f64,
    pub portier_reactors: f64,
    pub backend: f64,
    /// Pebble + challtestsrv.
    pub ca: f64,
    pub wrk: f64,
    /// This harness (polling GET /certificates).
    pub harness: f64,
    /// Everything else the machine ran (both CPUs): /proc/stat busy time
    /// minus all of the above. Another tenant's build shows up here.
    pub others: f64,
}

/// CPU totals at one moment (see [`CpuUse`]).
#[derive(Debug, Clone, Copy, Default)]
struct CpuMark {
    at: Option<Instant>,
    portier: f64,
    mgmt: f64,
    reactors: f64,
    backend: f64,
    ca: f64,
    harness: f64,
    machine: f64,
}

impl CpuMark {
    fn take(portier: u32, backend: &[u32], ca: &[u32]) -> CpuMark {
        let total = |pids: &[u32]| cpu_of(pids).map_or(0.0, |(u, s)| u + s);
        let threads = thread_cpu(portier);
        let sum = |f: &dyn Fn(&str) -> bool| -> f64 {
            threads.iter().filter(|(n, _)| f(n)).map(|(_, s)| s).sum()
        };
        CpuMark {
            at: Some(Instant::now()),
            portier: total(&[portier]),
            mgmt: sum(&|n| n == "portier"),
            reactors: sum(&|n| n.starts_with("portier-reacto")),
            backend: total(backend),
            ca: total(ca),
            harness: total(&[std::process::id()]),
            machine: machine_busy_seconds().unwrap_or(0.0),
        }
    }

    fn until(&self, end: &CpuMark, wrk: f64) -> CpuUse {
        CpuUse {
            window_secs: match (self.at, end.at) {
                (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
                _ => 0.0,
            },
            portier: end.portier - self.portier,
            portier_mgmt: end.mgmt - self.mgmt,
            portier_reactors: end.reactors - self.reactors,
            backend: end.backend - self.backend,
            ca: end.ca - self.ca,
            wrk,
            harness: end.harness - self.harness,
            others: ((end.machine - self.machine)
                - (end.portier - self.portier)
                - (end.backend - self.backend)
                - (end.ca - self.ca)
                - wrk
                - (end.harness - self.harness))
                .max(0.0),
        }
    }
}

/// One load window: what wrk measured and who used the CPUs.
#[derive(Debug, Clone)]
pub struct LoadFigures {
    pub wrk: WrkRun,
    pub cpu: CpuUse,
}

/// GET /certificates timings in one phase.
#[derive(Debug, Clone, Default)]
pub struct PollStats {
    pub count: usize,
    pub median_ms: f64,
    pub max_ms: f64,
    /// Body size of the last answer.
    pub last_bytes: usize,
}

/// The cert_dir and state_dir after the installs.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    /// `n*.pem` files: count, bytes, allocated bytes (st_blocks × 512).
    pub files: usize,
    pub bytes: u64,
    pub allocated: u64,
    pub state_json: u64,
}

/// One trial (one `acme.concurrency`).
#[derive(Debug, Clone)]
pub struct Trial {
    pub concurrency: usize,
    pub names: usize,
    pub first_valid_secs: Option<f64>,
    pub all_valid_secs: Option<f64>,
    /// The last reading of GET /certificates.
    pub last: AcmeCounts,
    /// `portier_acme_orders_total{result="failed"}` from /metrics.
    pub metrics_failed: Option<u64>,
    pub during: Option<LoadFigures>,
    pub after: Option<LoadFigures>,
    pub mem_ready: Mem,
    pub mem_all_valid: Mem,
    pub mem_quiet: Mem,
    pub mem_after_load: Mem,
    pub disk: Disk,
    pub polls_issuing: PollStats,
    pub polls_quiet: PollStats,
    /// (seconds since ready, names valid) at each poll.
    pub timeline: Vec<(f64, usize)>,
    /// Why a part is missing.
    pub problems: Vec<String>,
}

/// The control node (no `[acme]`).
#[derive(Debug, Clone)]
pub struct Control {
    pub mem_ready: Mem,
    pub mem_after_load: Mem,
    pub load: Option<LoadFigures>,
}

/// Run the control node and every trial; the report's paths.
pub fn run(opts: &Options) -> anyhow::Result<(PathBuf, PathBuf)> {
    let started = Instant::now();
    crate::load::setup::ensure_packages()?;
    if !opts.portier.exists() {
        bail!("{} not found (cargo xtask build)", opts.portier.display());
    }
    if opts.names == 0 || opts.names > 9999 {
        bail!("--names: 1 to 9999 (n0001.bench.test…)");
    }
    // The harness polls from the load CPU, like wrk.
    pin_self(LOAD_CPU);
    let shape = LoadShape::of(opts.quick);
    let env = Env::start(opts)?;
    eprintln!(
        "portier-bench: backend on {}, scratch {}",
        env.backend,
        env.dir.path().display()
    );
    let control = run_control(opts, &env, &shape).context("the control node (no [acme])")?;
    let mut trials = Vec::new();
    for &c in &opts.concurrency {
        eprintln!(
            "portier-bench: trial acme.concurrency = {c}, {} names",
            opts.names
        );
        trials.push(run_trial(opts, &env, &shape, c)?);
    }
    drop(env);
    let r = report::Report::new(opts, &shape, control, trials, started.elapsed());
    print!("{}", r.markdown());
    r.write(&opts.out_dir)
}

/// Pin this process (and threads it starts later) to `cpu`.
pub(crate) fn pin_self(cpu: u32) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity
    // get a valid pointer and its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Scratch dir, wrk script and the backend, shared by every node.
struct Env {
    dir: TempDir,
    backend: SocketAddr,
    backend_proc: Proc,
    script: PathBuf,
}

impl Env {
    fn start(opts: &Options) -> anyhow::Result<Env> {
        let dir = TempDir::new("acme")?;
        let bin = opts.portier.with_file_name("portier-demo-backend");
        let backend: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let mut cmd = pinned(PROXY_CPU, &bin.to_string_lossy());
        cmd.args(["--listen", &backend.to_string(), "--name", "x"]);
        let backend_proc = Proc::spawn("backend", cmd, &dir.path().join("backend.log"))?;
        wait_port(backend, Duration::from_secs(10))
            .with_context(|| format!("backend: {}", backend_proc.log_tail()))?;
        let script = dir.path().join("bench.lua");
        std::fs::write(&script, WRK_LUA)?;
        Ok(Env {
            dir,
            backend,
            backend_proc,
            script,
        })
    }

    fn backend_pids(&self) -> Vec<u32> {
        self.backend_proc.tree()
    }
}

/// A node's files and addresses.
struct Node {
    dir: PathBuf,
    http: SocketAddr,
    admin: SocketAddr,
    cert_dir: PathBuf,
    state_dir: PathBuf,
    proc: Option<Proc>,
}

impl Node {
    /// Write the config (with `[acme]` when `concurrency` is given) and
    /// start portier; returns once it printed "ready".
    fn start(
        opts: &Options,
        env: &Env,
        tag: &str,
        concurrency: Option<usize>,
    ) -> anyhow::Result<(Node, Instant)> {
        let dir = env.dir.path().join(tag);
        std::fs::create_dir_all(&dir)?;
        let cert_dir = dir.join("certs");
        let state_dir = dir.join("acme");
        std::fs::create_dir_all(&cert_dir)?;
        // HTTPS needs a certificate to start with: a self-signed default
        // (not counted in the per-certificate figures).
        run_ok(
            Command::new(&opts.portier)
                .args(["self-signed", "--names", LOAD_HOST, "--out"])
                .arg(cert_dir.join("default.pem")),
            Duration::from_secs(30),
        )?;
        let token = dir.join("admin.token");
        std::fs::write(&token, TOKEN)?;
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        // Only the ACME node needs Pebble's HTTP-01 port; the control node
        // takes any.
        let port = if concurrency.is_some() {
            opts.http_port
        } else {
            free_port()?
        };
        let http: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let https: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let acme = match concurrency {
            Some(c) => acme_section(
                &opts.directory,
                &opts.ca_roots,
                &state_dir,
                c,
                (opts.names * 2).max(5000),
            ),
            None => String::new(),
        };
        let config = fill(
            T_PORTIER,
            &[
                ("HTTP_LISTEN", http.to_string()),
                ("HTTPS_LISTEN", https.to_string()),
                ("CERT_DIR", cert_dir.display().to_string()),
                ("ADMIN_LISTEN", admin.to_string()),
                ("TOKEN_FILE", token.display().to_string()),
                ("BACKEND", env.backend.to_string()),
                ("BENCH_DOMAINS", domains(opts.names)),
                ("ACME_SECTION", acme),
            ],
        )?;
        let path = dir.join("portier.toml");
        std::fs::write(&path, config)?;
        let mut cmd = pinned(PROXY_CPU, &opts.portier.to_string_lossy());
        cmd.arg("--config").arg(&path);
        let mut proc = Proc::spawn(&format!("portier ({tag})"), cmd, &dir.join("portier.log"))?;
        wait_ready(&mut proc)?;
        let ready = Instant::now();
        Ok((
            Node {
                dir,
                http,
                admin,
                cert_dir,
                state_dir,
                proc: Some(proc),
            },
            ready,
        ))
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.proc
            .as_ref()
            .and_then(Proc::pid)
            .context("portier is not running")
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }
}

/// The `[acme]` section of a trial's node.
fn acme_section(
    directory: &str,
    roots: &Path,
    state_dir: &Path,
    concurrency: usize,
    per_hour: usize,
) -> String {
    format!(
        "\n[acme]\ndirectory = \"{directory}\"\nca_roots = \"{roots}\"\nstate_dir = \"{state}\"\n\
         contact = [\"mailto:bench@bench.test\"]\nexclude = [\"{LOAD_HOST}\"]\n\
         concurrency = {concurrency}\nmax_orders_per_hour = {per_hour}\nbackoff_secs = [5, 30, 300]\n",
        roots = roots.display(),
        state = state_dir.display(),
    )
}

/// `"n0001.bench.test", "n0002.bench.test", …`
fn domains(n: usize) -> String {
    (1..=n)
        .map(|i| format!("\"{}\"", name(i)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn name(i: usize) -> String {
    format!("n{i:04}.bench.test")
}

/// Wait for portier's "ready" line, checking the log every 2 ms (the
/// first certificate's time counts from here).
fn wait_ready(proc: &mut Proc) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::fs::read_to_string(&proc.log).is_ok_and(|t| t.contains("portier: ready")) {
            return Ok(());
        }
        if !proc.alive() {
            bail!("{} exited before ready: {}", proc.name, proc.log_tail());
        }
        if Instant::now() > deadline {
            bail!("{} not ready after 30 s: {}", proc.name, proc.log_tail());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A wrk run stopped by SIGINT (wrk then prints its summary as if its
/// time were up): keep-alive, one thread on the load CPU.
struct Load {
    proc: Proc,
    out: PathBuf,
}

impl Load {
    fn start(env: &Env, http: SocketAddr, connections: u32, tag: &str) -> anyhow::Result<Load> {
        let out = env.dir.path().join(format!("wrk-{tag}.txt"));
        let mut cmd = pinned(LOAD_CPU, "wrk");
        cmd.args(["-t1", "-c", &connections.to_string()])
            .args(["-d", "3600s", "--timeout", "5s", "--latency", "-s"])
            .arg(&env.script)
            .env("BENCH_DELAY_MS", "0")
            .args(["-H", &format!("Host: {LOAD_HOST}")])
            .arg(format!("http://{http}{LOAD_PATH}"));
        let proc = Proc::spawn(&format!("wrk ({tag})"), cmd, &out)?;
        Ok(Load { proc, out })
    }

    fn cpu(&self) -> f64 {
        self.proc
            .pid()
            .and_then(|p| cpu_of(&[p]))
            .map_or(0.0, |(u, s)| u + s)
    }

    /// SIGINT, wait for the summary, parse it.
    fn finish(mut self) -> anyhow::Result<WrkRun> {
        let pid = self.proc.pid().context("wrk not running")?;
        // SAFETY: kill(2) on the wrk this harness started.
        unsafe {
            libc::kill(pid as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.proc.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.proc.stop();
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        parse_wrk(&text).with_context(|| format!("wrk: {}", text.trim()))
    }
}

/// One reading of GET /certificates.
#[derive(Debug, Clone)]
struct Poll {
    /// Seconds since ready, when the answer was complete.
    at: f64,
    took_ms: f64,
    bytes: usize,
    counts: Result<AcmeCounts, String>,
}

/// GET /certificates on a thread: every 50 ms until a name is valid, then
/// every 250 ms, until stopped.
struct Poller {
    polls: Arc<Mutex<Vec<Poll>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(admin: SocketAddr, ready: Instant) -> Poller {
        let polls = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (polls.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut seen_valid = false;
            while !s.load(Ordering::Relaxed) {
                let tick = Instant::now();
                let poll = match admin::get(admin, TOKEN, "/certificates") {
                    Ok(a) => Poll {
                        at: ready.elapsed().as_secs_f64(),
                        took_ms: a.took.as_secs_f64() * 1e3,
                        bytes: a.body.len(),
                        counts: if a.status == 200 {
                            admin::acme_counts(&a.body).map_err(|e| format!("{e:#}"))
                        } else {
                            Err(format!("status {}", a.status))
                        },
                    },
                    Err(e) => Poll {
                        at: ready.elapsed().as_secs_f64(),
                        took_ms: 0.0,
                        bytes: 0,
                        counts: Err(format!("{e:#}")),
                    },
                };
                seen_valid |= poll.counts.as_ref().is_ok_and(|c| c.valid > 0);
                lock(&p).push(poll);
                let every = Duration::from_millis(if seen_valid { 250 } else { 50 });
                std::thread::sleep(every.saturating_sub(tick.elapsed()));
            }
        });
        Poller {
            polls,
            stop,
            thread: Some(thread),
        }
    }

    fn snapshot(&self) -> Vec<Poll> {
        lock(&self.polls).clone()
    }

    fn len(&self) -> usize {
        lock(&self.polls).len()
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn poll_stats(polls: &[Poll]) -> PollStats {
    let mut ms: Vec<f64> = polls.iter().map(|p| p.took_ms).collect();
    ms.sort_by(f64::total_cmp);
    PollStats {
        count: ms.len(),
        median_ms: ms.get(ms.len() / 2).copied().unwrap_or(0.0),
        max_ms: ms.last().copied().unwrap_or(0.0),
        last_bytes: polls.last().map_or(0, |p| p.bytes),
    }
}

fn run_control(opts: &Options, env: &Env, shape: &LoadShape) -> anyhow::Result<Control> {
    eprintln!("portier-bench: control node (no [acme])");
    let (mut node, _ready) = Node::start(opts, env, "control", None)?;
    let pid = node.pid()?;
    std::thread::sleep(Duration::from_millis(500));
    let mem_ready = Mem::of(pid);
    let load = timed_load(
        env,
        &node,
        shape.control_secs,
        shape.connections,
        "control",
        &[],
    );
    std::thread::sleep(Duration::from_millis(500));
    let mem_after_load = Mem::of(pid);
    node.stop();
    Ok(Control {
        mem_ready,
        mem_after_load,
        load: Some(load?),
    })
}

/// A wrk run of `secs` with the CPU of everyone read around it.
fn timed_load(
    env: &Env,
    node: &Node,
    secs: f64,
    connections: u32,
    tag: &str,
    ca: &[u32],
) -> anyhow::Result<LoadFigures> {
    let pid = node.pid()?;
    let backend = env.backend_pids();
    let load = Load::start(env, node.http, connections, tag)?;
    let before = CpuMark::take(pid, &backend, ca);
    std::thread::sleep(Duration::from_secs_f64(secs));
    let after = CpuMark::take(pid, &backend, ca);
    let wrk_cpu = load.cpu();
    let wrk = load.finish()?;
    Ok(LoadFigures {
        wrk,
        cpu: before.until(&after, wrk_cpu),
    })
}

fn run_trial(
    opts: &Options,
    env: &Env,
    shape: &LoadShape,
    concurrency: usize,
) -> anyhow::Result<Trial> {
    let (mut node, ready) = Node::start(opts, env, &format!("c{concurrency}"), Some(concurrency))?;
    let pid = node.pid()?;
    let backend = env.backend_pids();
    let ca = &opts.ca_pids;
    let mem_ready = Mem::of(pid);
    let mut trial = Trial {
        concurrency,
        names: opts.names,
        first_valid_secs: None,
        all_valid_secs: None,
        last: AcmeCounts::default(),
        metrics_failed: None,
        during: None,
        after: None,
        mem_ready,
        mem_all_valid: Mem::default(),
        mem_quiet: Mem::default(),
        mem_after_load: Mem::default(),
        disk: Disk::default(),
        polls_issuing: PollStats::default(),
        polls_quiet: PollStats::default(),
        timeline: Vec::new(),
        problems: Vec::new(),
    };
    let cpu0 = CpuMark::take(pid, &backend, ca);
    let load = Load::start(
        env,
        node.http,
        shape.connections,
        &format!("c{concurrency}-during"),
    )?;
    let mut poller = Poller::start(node.admin, ready);
    // Bounded: a node that cannot finish still gives its figures so far.
    let limit = Duration::from_secs_f64(30.0 + 0.3 * opts.names as f64);
    loop {
        let polls = poller.snapshot();
        if let Some(p) = polls.last()
            && let Ok(c) = &p.counts
        {
            if trial.first_valid_secs.is_none()
                && let Some(first) = polls
                    .iter()
                    .find(|p| p.counts.as_ref().is_ok_and(|c| c.valid > 0))
            {
                trial.first_valid_secs = Some(first.at);
                eprintln!(
                    "portier-bench: first certificate valid at {:.2} s",
                    first.at
                );
            }
            if c.valid >= opts.names {
                trial.all_valid_secs = Some(p.at);
                eprintln!(
                    "portier-bench: all {} names valid at {:.2} s",
                    opts.names, p.at
                );
                break;
            }
        }
        if ready.elapsed() > limit {
            let msg = format!(
                "not every name valid after {:.0} s: {}",
                limit.as_secs_f64(),
                polls
                    .last()
                    .map(|p| format!("{:?}", p.counts))
                    .unwrap_or_default()
            );
            eprintln!("portier-bench: {msg}");
            trial.problems.push(msg);
            break;
        }
        if !node.proc.as_mut().is_some_and(Proc::alive) {
            bail!(
                "portier exited during the issuance: {}",
                node.proc.as_ref().map(Proc::log_tail).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu1 = CpuMark::take(pid, &backend, ca);
    let wrk_cpu = load.cpu();
    match load.finish() {
        Ok(wrk) => {
            trial.during = Some(LoadFigures {
                wrk,
                cpu: cpu0.until(&cpu1, wrk_cpu),
            })
        }
        Err(e) => trial.problems.push(format!("wrk during: {e:#}")),
    }
    trial.mem_all_valid = Mem::of(pid);
    let issuing = poller.len();
    std::thread::sleep(Duration::from_secs(2));
    trial.mem_quiet = Mem::of(pid);
    trial.disk = disk(&node.cert_dir, &node.state_dir);
    let secs = trial
        .during
        .as_ref()
        .map_or(shape.after_min_secs, |d| d.cpu.window_secs)
        .clamp(shape.after_min_secs, shape.after_max_secs);
    match timed_load(
        env,
        &node,
        secs,
        shape.connections,
        &format!("c{concurrency}-after"),
        ca,
    ) {
        Ok(f) => trial.after = Some(f),
        Err(e) => trial.problems.push(format!("wrk after: {e:#}")),
    }
    std::thread::sleep(Duration::from_millis(500));
    trial.mem_after_load = Mem::of(pid);
    poller.stop();
    let polls = poller.snapshot();
    trial.polls_issuing = poll_stats(&polls[..issuing.min(polls.len())]);
    // The quiet phase: from 2 s after the last install on.
    let quiet_from = trial.all_valid_secs.unwrap_or(f64::MAX) + 2.0;
    let quiet: Vec<Poll> = polls
        .iter()
        .filter(|p| p.at >= quiet_from)
        .cloned()
        .collect();
    trial.polls_quiet = poll_stats(&quiet);
    trial.timeline = polls
        .iter()
        .filter_map(|p| Some((p.at, p.counts.as_ref().ok()?.valid)))
        .collect();
    if let Some(c) = polls.iter().rev().find_map(|p| p.counts.as_ref().ok()) {
        trial.last = c.clone();
    }
    let poll_errors = polls.iter().filter(|p| p.counts.is_err()).count();
    if poll_errors > 0 {
        trial.problems.push(format!(
            "{poll_errors} of {} GET /certificates failed (first: {})",
            polls.len(),
            polls
                .iter()
                .find_map(|p| p.counts.as_ref().err())
                .cloned()
                .unwrap_or_default()
        ));
    }
    trial.metrics_failed = admin::get(node.admin, TOKEN, "/metrics")
        .ok()
        .and_then(|a| metric(&String::from_utf8_lossy(&a.body), FAILED_METRIC));
    node.stop();
    let _ = std::fs::remove_dir_all(&node.dir);
    Ok(trial)
}

const FAILED_METRIC: &str = "portier_acme_orders_total{result=\"failed\"}";

/// The value of one sample line of a Prometheus text exposition.
fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn disk(cert_dir: &Path, state_dir: &Path) -> Disk {
    use std::os::unix::fs::MetadataExt;
    let mut d = Disk::default();
    for e in std::fs::read_dir(cert_dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.ends_with(".bench.test.pem")
            && let Ok(m) = e.metadata()
        {
            d.files += 1;
            d.bytes += m.len();
            d.allocated += m.blocks() * 512;
        }
    }
    d.state_json = std::fs::metadata(state_dir.join("state.json")).map_or(0, |m| m.len());
    d
}

/// `taskset`-style description of where each part runs (report).
pub fn pinning(opts: &Options) -> String {
    format!(
        "portier (2 reactor threads + management thread) and the backend on CPU {PROXY_CPU}; \
         wrk (-t1), Pebble + challtestsrv (CPUs {}) and this harness's polling on CPU {LOAD_CPU}",
        opts.ca_cpus
    )
}

/// `portier --version`, for the report.
pub fn portier_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_domains() {
        assert_eq!(name(7), "n0007.bench.test");
        assert_eq!(domains(2), "\"n0001.bench.test\", \"n0002.bench.test\"");
    }

    #[test]
    fn reads_a_metric() {
        let text = "# HELP x\nportier_acme_orders_total{result=\"issued\"} 12\nportier_acme_orders_total{result=\"failed\"} 3\n";
        assert_eq!(metric(text, FAILED_METRIC), Some(3));
        assert_eq!(metric("", FAILED_METRIC), None);
    }

    #[test]
    fn template_fills_into_a_valid_config() {
        let acme = acme_section(
            "https://127.0.0.1:1/dir",
            Path::new("/r.pem"),
            Path::new("/s"),
            16,
            5000,
        );
        let t = fill(
            T_PORTIER,
            &[
                ("HTTP_LISTEN", "127.0.0.1:1".into()),
                ("HTTPS_LISTEN", "127.0.0.1:2".into()),
                ("CERT_DIR", "/c".into()),
                ("ADMIN_LISTEN", "127.0.0.1:3".into()),
                ("TOKEN_FILE", "/t".into()),
                ("BACKEND", "127.0.0.1:4".into()),
                ("BENCH_DOMAINS", domains(3)),
                ("ACME_SECTION", acme),
            ],
        )
        .expect("filled");
        let config = portier::config::Config::parse(Path::new("t.toml"), &t).expect("valid");
        assert_eq!(config.apps.len(), 2);
        assert_eq!(config.apps[1].domains.len(), 3);
        assert_eq!(config.server.threads, 2);
        let acme = config.acme.expect("[acme]");
        assert_eq!(acme.concurrency, 16);
        assert!(acme.excluded(LOAD_HOST));
        assert!(!acme.excluded("n0001.bench.test"));
    }
}
