//! `portier-bench attacks`: a legitimate client's latency while Portier is
//! attacked (run by `cargo xtask bench attacks`; a short version is
//! `bench/tests/attacks_smoke.rs` in `cargo xtask test`).
//!
//! For each attack: an idle baseline of the legitimate client, then the same
//! client while the attack runs. The legitimate client is two h2load
//! processes at a fixed request rate (`--rps`, open schedule per
//! connection), HTTP/1.1 keep-alive over plain TCP and HTTP/2 over TLS, each
//! request's latency read from h2load's per-request log. Target per attack:
//! attacked p99 <= 2x idle p99 (plus an absolute floor, see [`Options`]) and
//! no legitimate request failed, over both protocols.
//!
//! Attackers are `userspace/tests/h2/attacks.py` processes looping for the
//! duration (slowloris: 5,000 sockets to the HTTP port; rapid reset,
//! MadeYouReset, CONTINUATION flood, HPACK bomb, SETTINGS and PING floods
//! over TLS + h2), and a SYN flood through Portier's XDP program on a veth
//! in network namespaces (AF_PACKET sender, legitimate client in the same
//! peer namespace). Portier (one reactor thread) and the nginx backend run
//! on CPU 0; the legitimate client on CPU 1; attackers on CPU 1 at nice 10
//! (they must not starve the measuring client; the server gets no help).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::load::contestants::{Env, HOST, PROXY_CPU, fill};
use crate::load::proc::{Proc, free_port, pinned, raise_nofile, run_ok, wait_port};
use crate::load::tools::LOAD_CPU;
use crate::load::xdp::{self, NODE_IP, Net, dotted};

const T_PORTIER: &str = include_str!("../templates/portier-attacks.toml");

/// Every attack, in the order they run.
pub const ATTACKS: &[&str] = &[
    "slowloris",
    "rapid_reset",
    "made_you_reset",
    "continuation_flood",
    "hpack_bomb",
    "settings_flood",
    "ping_flood",
    "syn_flood",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub portier: PathBuf,
    /// The demo backend binary (the SYN flood's backend inside its namespace).
    pub demo_backend: PathBuf,
    pub out_dir: PathBuf,
    /// Report file stem (`<date>-attacks`).
    pub stem: String,
    /// Seconds of each measurement (idle and under attack).
    pub seconds: f64,
    /// Rounds per attack, each an idle measurement then an attacked one;
    /// the verdict is on the medians (one 10 s window flips with a noisy
    /// neighbour).
    pub rounds: usize,
    /// Legitimate requests per second, per protocol.
    pub rate: u32,
    pub attacks: Vec<String>,
    pub slowloris_sockets: u32,
    /// SYN flood rate, frames per second.
    pub syn_pps: u64,
    /// Absolute floor of the p99 bound: attacked p99 <= max(2 x idle p99,
    /// idle p99 + floor). At sub-millisecond idle latencies one scheduler
    /// tick or a shared-CPU neighbour moves p99 by more than 2x without the
    /// server being at fault.
    pub floor_us: u64,
}

/// One legitimate client run.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub proto: &'static str,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// The lowest and highest p99 of the rounds behind a median.
    pub p99_min_us: u64,
    pub p99_max_us: u64,
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    match v.len() {
        0 => 0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

/// The rounds of one side, per protocol: requests summed (one failure in
/// any round counts), p50/p99 the medians of the rounds, max the highest.
pub fn combine(rounds: &[Vec<Latency>]) -> Vec<Latency> {
    let Some(first) = rounds.first() else {
        return Vec::new();
    };
    (0..first.len())
        .map(|i| {
            let all: Vec<&Latency> = rounds.iter().filter_map(|r| r.get(i)).collect();
            let p99s: Vec<u64> = all.iter().map(|l| l.p99_us).collect();
            Latency {
                proto: first[i].proto,
                sent: all.iter().map(|l| l.sent).sum(),
                ok: all.iter().map(|l| l.ok).sum(),
                failed: all.iter().map(|l| l.failed).sum(),
                p50_us: median(all.iter().map(|l| l.p50_us).collect()),
                p99_us: median(p99s.clone()),
                max_us: all.iter().map(|l| l.max_us).max().unwrap_or(0),
                p99_min_us: p99s.iter().copied().min().unwrap_or(0),
                p99_max_us: p99s.iter().copied().max().unwrap_or(0),
            }
        })
        .collect()
}

/// One attack's figures.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub attack: String,
    pub idle: Vec<Latency>,
    pub attacked: Vec<Latency>,
    /// What the attacker reported (JSON), or why it did not.
    pub attacker: serde_json::Value,
    pub pass: bool,
    pub why: String,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// h2load's `--log-file`: "start_us<TAB>status<TAB>latency_us" per request
/// (status -1 for an errored stream). Requests asked for but absent from
/// the log (never sent, never finished) are failures too.
pub fn parse_log(proto: &'static str, text: &str, asked: u64) -> Latency {
    let mut lat = Vec::new();
    let mut bad = 0u64;
    for line in text.lines() {
        let mut f = line.split('\t');
        let (Some(_), Some(status), Some(us)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let status: i64 = status.trim().parse().unwrap_or(-1);
        match (status, us.trim().parse::<u64>()) {
            (200..=399, Ok(us)) => lat.push(us),
            _ => bad += 1,
        }
    }
    lat.sort_unstable();
    let ok = lat.len() as u64;
    Latency {
        proto,
        sent: asked,
        ok,
        failed: bad + asked.saturating_sub(ok + bad),
        p50_us: percentile(&lat, 50.0),
        p99_us: percentile(&lat, 99.0),
        max_us: lat.last().copied().unwrap_or(0),
        p99_min_us: percentile(&lat, 99.0),
        p99_max_us: percentile(&lat, 99.0),
    }
}

/// Start one legitimate h2load at `rate` req/s for `seconds` (2 connections).
fn start_legit(
    proto: &'static str,
    url: &str,
    rate: u32,
    seconds: f64,
    netns: Option<&str>,
    log: &Path,
) -> anyhow::Result<(Child, u64)> {
    let _ = std::fs::remove_file(log);
    let clients = 2u32;
    let per_client = (rate / clients).max(1);
    let n = (u64::from(per_client * clients) as f64 * seconds)
        .round()
        .max(1.0) as u64;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args([
                "netns",
                "exec",
                ns,
                "taskset",
                "-c",
                &LOAD_CPU.to_string(),
                "h2load",
            ]);
            c
        }
        None => pinned(LOAD_CPU, "h2load"),
    };
    if proto == "http/1.1" {
        cmd.arg("--h1");
    }
    cmd.args([
        "-t1",
        "-c",
        &clients.to_string(),
        "-m",
        if proto == "http/1.1" { "1" } else { "8" },
        "-n",
        &n.to_string(),
        "--rps",
        &per_client.to_string(),
        "-T",
        "5",
        "-H",
        &format!(":authority: {HOST}"),
        "--log-file",
    ])
    .arg(log)
    .arg(url)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let child = cmd.spawn().context("starting h2load")?;
    Ok((child, n))
}

/// Run the legitimate clients (`urls`: protocol, URL) together; wait for
/// them (bounded) and read their logs.
fn legit(
    urls: &[(&'static str, String)],
    rate: u32,
    seconds: f64,
    netns: Option<&str>,
    dir: &Path,
    tag: &str,
) -> anyhow::Result<Vec<Latency>> {
    let mut running = Vec::new();
    for (i, (proto, url)) in urls.iter().enumerate() {
        let log = dir.join(format!("legit-{i}.log"));
        let (child, n) = start_legit(proto, url, rate, seconds, netns, &log)?;
        running.push((proto, child, n, log));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds + 20.0);
    let mut out = Vec::new();
    for (proto, mut child, n, log) in running {
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                // A client that cannot finish: its missing requests fail.
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // Kept for a closer look: every request's start, status, latency.
        let keep = std::env::temp_dir().join("portier-attacks-logs");
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::write(
            keep.join(format!("{tag}-{}.log", proto.replace('/', ""))),
            &text,
        );
        out.push(parse_log(proto, &text, n));
    }
    Ok(out)
}

/// A looping attacker (attacks.py), started and armed.
struct Attacker {
    child: Child,
    started: Instant,
}

fn attacks_py() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../userspace/tests/h2/attacks.py")
}

impl Attacker {
    fn start(attack: &str, port: u16, seconds: f64, sockets: u32) -> anyhow::Result<Attacker> {
        let mut cmd = Command::new("nice");
        cmd.args(["-n", "10", "taskset", "-c", &LOAD_CPU.to_string()])
            .arg("/usr/bin/python3")
            .arg(attacks_py())
            .args([&port.to_string(), HOST, attack, "--loop"])
            .arg(format!("{seconds:.1}"));
        if attack == "slowloris" {
            cmd.args(["--sockets", &sockets.to_string()]);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting attacks.py")?;
        // Wait for "armed" on stderr (the attack is under way).
        let stderr = child.stderr.take().context("attacker stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.trim() == "armed" {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("attacker {attack} never armed");
        }
        Ok(Attacker {
            child,
            started: Instant::now(),
        })
    }

    /// Wait for the attacker's end (bounded) and read its JSON summary.
    fn finish(mut self, seconds: f64) -> serde_json::Value {
        let deadline = self.started + Duration::from_secs_f64(seconds + 15.0);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let mut text = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut out, &mut text);
        }
        let _ = self.child.wait();
        serde_json::from_str(text.trim())
            .unwrap_or_else(|_| json!({ "error": "no summary", "output": text.trim() }))
    }
}

/// Pass/fail of one attack against its own idle baseline.
fn judge(idle: &[Latency], attacked: &[Latency], floor_us: u64) -> (bool, String) {
    let mut why = Vec::new();
    for (i, a) in idle.iter().zip(attacked) {
        let bound = (2 * i.p99_us).max(i.p99_us + floor_us);
        if a.failed > 0 {
            why.push(format!("{}: {} failed", a.proto, a.failed));
        }
        if i.failed > 0 {
            why.push(format!("{}: {} failed while idle", i.proto, i.failed));
        }
        if a.p99_us > bound {
            why.push(format!(
                "{}: p99 {} us > bound {} us",
                a.proto, a.p99_us, bound
            ));
        }
    }
    (why.is_empty(), why.join("; "))
}

/// Portier and its backend on loopback for the TLS/HTTP attacks.
struct Loopback {
    _env: Env,
    portier: Proc,
    http: SocketAddr,
    https: SocketAddr,
}

fn start_loopback(opts: &Options) -> anyhow::Result<Loopback> {
    let env = Env::start()?;
    let dir = env.path().join("portier");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    std::fs::copy(&env.pem, certs.join("default.pem"))?;
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let conf = fill(
        T_PORTIER,
        &[
            ("HTTP_LISTEN", http.to_string()),
            ("HTTPS_LISTEN", https.to_string()),
            ("CERT_DIR", certs.display().to_string()),
            ("BACKEND", env.backend.to_string()),
            ("EXTRA", String::new()),
        ],
    )?;
    let path = dir.join("portier.toml");
    std::fs::write(&path, conf)?;
    let mut cmd = pinned(PROXY_CPU, &opts.portier.display().to_string());
    cmd.arg("--config").arg(&path);
    let mut portier = Proc::spawn("portier", cmd, &dir.join("out.log"))?;
    portier.wait_for_log("portier: ready", Duration::from_secs(30))?;
    wait_port(http, Duration::from_secs(10))?;
    Ok(Loopback {
        _env: env,
        portier,
        http,
        https,
    })
}

/// The open-file limit of a running process (`/proc/PID/limits`).
fn nofile_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .map(|l| {
                    l.split_whitespace()
                        .skip(3)
                        .take(2)
                        .collect::<Vec<_>>()
                        .join("/")
                })
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Run the attacks; returns the outcomes and the report paths.
pub fn run(opts: &Options) -> anyhow::Result<(Vec<Outcome>, PathBuf, PathBuf)> {
    crate::load::setup::ensure_packages()?;
    // Slowloris holds 5,000 sockets on each side: the attacker (a child)
    // and Portier (a child) inherit this process's raised limit.
    raise_nofile();
    let started = Instant::now();
    let mut outcomes = Vec::new();
    let mut notes = Vec::new();
    let loopback: Vec<&String> = opts.attacks.iter().filter(|a| *a != "syn_flood").collect();
    if !loopback.is_empty() {
        let mut lb = start_loopback(opts)?;
        let pid = lb.portier.pid().unwrap_or(0);
        notes.push(format!(
            "Portier's open-file limit (soft/hard): {} (slowloris needs {} sockets + the legitimate client + backend connections)",
            nofile_of(pid),
            opts.slowloris_sockets
        ));
        let urls = [
            ("http/1.1", format!("http://{}/64", lb.http)),
            ("h2", format!("https://{}/64", lb.https)),
        ];
        for attack in loopback {
            let work = std::env::temp_dir().join(format!("portier-attacks-{}", std::process::id()));
            std::fs::create_dir_all(&work)?;
            let port = if attack == "slowloris" {
                lb.http.port()
            } else {
                lb.https.port()
            };
            let (mut idle, mut attacked, mut summaries) = (Vec::new(), Vec::new(), Vec::new());
            for round in 1..=opts.rounds {
                let tag = format!("{attack}-{round}");
                idle.push(legit(
                    &urls,
                    opts.rate,
                    opts.seconds,
                    None,
                    &work,
                    &format!("{tag}-idle"),
                )?);
                eprintln!(
                    "portier-bench: attack {attack}, round {round}/{}",
                    opts.rounds
                );
                let attacker =
                    Attacker::start(attack, port, opts.seconds + 2.0, opts.slowloris_sockets)?;
                std::thread::sleep(Duration::from_millis(300));
                attacked.push(legit(
                    &urls,
                    opts.rate,
                    opts.seconds,
                    None,
                    &work,
                    &format!("{tag}-attacked"),
                )?);
                summaries.push(attacker.finish(opts.seconds + 2.0));
                if !lb.portier.alive() {
                    bail!("portier died during {attack}: {}", lb.portier.log_tail());
                }
                // Let the attack's connections drain before the next baseline.
                std::thread::sleep(Duration::from_secs(1));
            }
            let _ = std::fs::remove_dir_all(&work);
            outcomes.push(outcome(attack, &idle, &attacked, summaries, opts.floor_us));
        }
        lb.portier.stop();
    }
    if opts.attacks.iter().any(|a| a == "syn_flood") {
        outcomes.push(syn_flood(opts)?);
    }
    let (md, js) = report(opts, &outcomes, &notes, started.elapsed())?;
    Ok((outcomes, md, js))
}

/// One attack's verdict on the medians of its rounds.
fn outcome(
    attack: &str,
    idle: &[Vec<Latency>],
    attacked: &[Vec<Latency>],
    summaries: Vec<serde_json::Value>,
    floor_us: u64,
) -> Outcome {
    let (idle, attacked) = (combine(idle), combine(attacked));
    let (pass, why) = judge(&idle, &attacked, floor_us);
    eprintln!(
        "portier-bench: {attack}: {}",
        if pass { "pass" } else { &why }
    );
    // One summary per round, whatever the number of rounds.
    let attacker = serde_json::Value::Array(summaries);
    Outcome {
        attack: attack.to_string(),
        idle,
        attacked,
        attacker,
        pass,
        why,
    }
}

/// Ethernet + IPv4 + TCP SYN from `src` to the node's port 80, valid checksums.
fn syn_frame(src: [u8; 4], sport: u16) -> Vec<u8> {
    xdp::tcp_frame(src, sport, 0x02, 0xffff)
}

/// Portier with its XDP program on the node side of a veth; a backend in
/// the node namespace; SYNs from spoofed sources of the peer's subnet at
/// `syn_pps` while the legitimate client (peer namespace) measures.
fn syn_flood(opts: &Options) -> anyhow::Result<Outcome> {
    let dir = std::env::temp_dir().join(format!("portier-attacks-syn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let net = Net::new(&dir)?;
    let backend_port = 9001;
    let mut backend = Proc::spawn(
        "backend",
        {
            let mut c = Command::new("ip");
            c.args([
                "netns",
                "exec",
                &net.ns_a,
                "taskset",
                "-c",
                &PROXY_CPU.to_string(),
            ])
            .arg(&opts.demo_backend)
            .args([
                "--listen",
                &format!("127.0.0.1:{backend_port}"),
                "--name",
                "b",
            ]);
            c
        },
        &dir.join("backend.log"),
    )?;
    let pin = net.bpffs.join("portier");
    let node = dotted(NODE_IP);
    let conf = format!(
        "[server]\nhttp = [\"{node}:80\"]\nthreads = 1\n\n\
         [xdp]\ninterfaces = [\"{ifa}\"]\nmode = \"native\"\npin_dir = \"{pin}\"\n\
         service_ports = [80]\ndrop_closed_ports = true\nsyn_rate = 200\nsyn_burst = 400\n\n\
         [[apps]]\nname = \"bench\"\ndomains = [\"{HOST}\"]\nbackends = [\"127.0.0.1:{backend_port}\"]\n",
        ifa = net.if_a,
        pin = pin.display(),
    );
    let path = dir.join("portier.toml");
    std::fs::write(&path, conf)?;
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &net.ns_a,
        "taskset",
        "-c",
        &PROXY_CPU.to_string(),
    ])
    .arg(&opts.portier)
    .arg("--config")
    .arg(&path);
    let mut portier = Proc::spawn("portier-xdp", cmd, &dir.join("portier.log"))?;
    portier.wait_for_log("portier: ready", Duration::from_secs(30))?;
    // One flooding source past its limit (dropped by the limiter), and 64
    // more spread over the subnet, each SYN from a new port.
    let frames: Vec<Vec<u8>> = (0..256u16)
        .map(|i| {
            let src = if i % 2 == 0 {
                [10, 203, 0, 77]
            } else {
                [10, 203, 0, 100 + (i % 64) as u8]
            };
            syn_frame(src, 20_000 + i)
        })
        .collect();
    let url = [("http/1.1", format!("http://{node}:80/"))];
    let work = dir.join("legit");
    std::fs::create_dir_all(&work)?;
    // Reachable before measuring (ARP, listener).
    run_ok(
        Command::new("ip").args([
            "netns",
            "exec",
            &net.ns_b,
            "curl",
            "-sf",
            "-m",
            "5",
            "-H",
            &format!("Host: {HOST}"),
            &format!("http://{node}/"),
        ]),
        Duration::from_secs(10),
    )
    .context("legitimate client cannot reach portier in the namespace")?;
    let (mut idle, mut attacked, mut summaries) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=opts.rounds {
        idle.push(legit(
            &url,
            opts.rate,
            opts.seconds,
            Some(&net.ns_b),
            &work,
            &format!("syn_flood-{round}-idle"),
        )?);
        eprintln!(
            "portier-bench: attack syn_flood, round {round}/{}",
            opts.rounds
        );
        let before = xdp::xdp_drops(&opts.portier, &pin)?;
        let (ns_b, if_b, secs, pps, frames) = (
            net.ns_b.clone(),
            net.if_b.clone(),
            opts.seconds + 1.0,
            opts.syn_pps,
            frames.clone(),
        );
        let flood =
            std::thread::spawn(move || xdp::send_frames(&ns_b, &if_b, secs, frames, Some(pps)));
        std::thread::sleep(Duration::from_millis(500));
        attacked.push(legit(
            &url,
            opts.rate,
            opts.seconds,
            Some(&net.ns_b),
            &work,
            &format!("syn_flood-{round}-attacked"),
        )?);
        let sent = flood
            .join()
            .map_err(|_| anyhow::anyhow!("flood thread panicked"))??;
        std::thread::sleep(Duration::from_millis(100));
        let dropped = xdp::xdp_drops(&opts.portier, &pin)? - before;
        summaries
            .push(json!({ "syns_sent": sent, "xdp_dropped": dropped, "pps_asked": opts.syn_pps }));
        if !portier.alive() {
            break;
        }
    }
    let alive = portier.alive();
    portier.stop();
    backend.stop();
    drop(net);
    let _ = std::fs::remove_dir_all(&dir);
    if !alive {
        bail!("portier died during the SYN flood");
    }
    Ok(outcome(
        "syn_flood",
        &idle,
        &attacked,
        summaries,
        opts.floor_us,
    ))
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// p99 with the range of its rounds when there were several.
fn range(l: &Latency) -> String {
    if l.p99_min_us == l.p99_max_us {
        ms(l.p99_us)
    } else {
        format!(
            "{} [{}–{}]",
            ms(l.p99_us),
            ms(l.p99_min_us),
            ms(l.p99_max_us)
        )
    }
}

fn report(
    opts: &Options,
    outcomes: &[Outcome],
    notes: &[String],
    elapsed: Duration,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(&opts.out_dir)?;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Attacks vs a legitimate client\n\n\
         `portier-bench attacks`: per attack, {k} round(s) of the legitimate client idle, then \
         the same while the attack runs ({s:.0} s each); p50 and p99 are the medians of the \
         rounds (the p99 range in brackets), max the highest, failures summed. Legitimate client: h2load at {r} req/s per protocol \
         (2 connections, `--rps`), HTTP/1.1 keep-alive (plain) and HTTP/2 (TLS), GET of a 64 B \
         body from an nginx backend; latency of every request from h2load's per-request log. \
         Target: attacked p99 <= max(2 x idle p99, idle p99 + {f} ms) and no failed request. \
         Portier: release build, one reactor thread, default limits, pinned to CPU 0 with the \
         backend; legitimate client on CPU 1, attacker on CPU 1 at nice 10. {n} s in all.\n",
        s = opts.seconds,
        k = opts.rounds,
        r = opts.rate,
        f = opts.floor_us as f64 / 1000.0,
        n = elapsed.as_secs()
    );
    let _ = writeln!(
        md,
        "| attack | proto | idle p50 ms | idle p99 ms | attacked p50 ms | attacked p99 ms | attacked max ms | failed (idle/attacked) | verdict |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for o in outcomes {
        for (i, a) in o.idle.iter().zip(&o.attacked) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {}/{} of {} | {} |",
                o.attack,
                a.proto,
                ms(i.p50_us),
                range(i),
                ms(a.p50_us),
                range(a),
                ms(a.max_us),
                i.failed,
                a.failed,
                a.sent,
                if o.pass { "pass" } else { "**FAIL**" }
            );
        }
    }
    let _ = writeln!(md, "\nWhat each attacker reported:\n");
    for o in outcomes {
        let _ = writeln!(
            md,
            "- `{}`: `{}`{}",
            o.attack,
            o.attacker,
            if o.why.is_empty() {
                String::new()
            } else {
                format!(" — {}", o.why)
            }
        );
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "\nNotes:\n");
        for n in notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    let lat = |l: &Latency| {
        json!({"proto": l.proto, "sent": l.sent, "ok": l.ok, "failed": l.failed,
               "p50_us": l.p50_us, "p99_us": l.p99_us, "max_us": l.max_us,
               "p99_min_us": l.p99_min_us, "p99_max_us": l.p99_max_us})
    };
    let js = json!({
        "seconds": opts.seconds,
        "rounds": opts.rounds,
        "rate": opts.rate,
        "floor_us": opts.floor_us,
        "slowloris_sockets": opts.slowloris_sockets,
        "notes": notes,
        "attacks": outcomes.iter().map(|o| json!({
            "attack": o.attack,
            "idle": o.idle.iter().map(lat).collect::<Vec<_>>(),
            "attacked": o.attacked.iter().map(lat).collect::<Vec<_>>(),
            "attacker": o.attacker,
            "pass": o.pass,
            "why": o.why,
        })).collect::<Vec<_>>(),
    });
    let md_path = opts.out_dir.join(format!("{}.md", opts.stem));
    let js_path = opts.out_dir.join(format!("{}.json", opts.stem));
    std::fs::write(&md_path, md)?;
    std::fs::write(&js_path, serde_json::to_string_pretty(&js)?)?;
    Ok((md_path, js_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_make_latencies_and_missing_requests_fail() {
        let log = "1796148488449816\t200\t313\n1796148488449825\t200\t398\n\
                   1796148488450284\t-1\t75\n1796148488450300\t503\t90\n";
        let l = parse_log("h2", log, 5);
        assert_eq!((l.ok, l.failed), (2, 3));
        assert_eq!((l.p50_us, l.p99_us, l.max_us), (313, 398, 398));
    }

    #[test]
    fn judged_against_twice_idle_p99_or_the_floor() {
        let l = |p99_us, failed| Latency {
            proto: "h2",
            p99_us,
            failed,
            ..Latency::default()
        };
        assert!(judge(&[l(1000, 0)], &[l(2000, 0)], 500).0);
        assert!(!judge(&[l(1000, 0)], &[l(2001, 0)], 500).0);
        assert!(judge(&[l(200, 0)], &[l(700, 0)], 500).0);
        assert!(!judge(&[l(1000, 0)], &[l(1000, 1)], 500).0);
    }

    #[test]
    fn rounds_combine_into_medians_and_summed_failures() {
        let l = |p99_us, failed| Latency {
            proto: "h2",
            sent: 10,
            p50_us: p99_us / 2,
            p99_us,
            max_us: p99_us * 2,
            failed,
            ..Latency::default()
        };
        let c = combine(&[vec![l(900, 0)], vec![l(5000, 1)], vec![l(1000, 0)]]);
        assert_eq!(c[0].p99_us, 1000);
        assert_eq!((c[0].p99_min_us, c[0].p99_max_us), (900, 5000));
        assert_eq!((c[0].sent, c[0].failed, c[0].max_us), (30, 1, 10000));
        assert_eq!(
            combine(&[vec![l(900, 0)], vec![l(1100, 0)]])[0].p99_us,
            1000
        );
    }
}
