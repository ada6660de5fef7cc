//! `cargo xtask run --region`: a whole region on loopback. Three etcd
//! members, the two demo backends, the region seeded with `portier region
//! import`, and three `portier` nodes (no XDP, no HTTPS listener) reading
//! it; a change made through one node's admin API serves on the others.
//!
//! Owns: `target/demo/region/` (etcd data dirs and every node's cache
//! wiped at each start, so every run begins from the same seed; a new
//! region key each run; the admin token kept), the fixed ports below, and
//! every process it starts. Each is its own process group (a Ctrl-C in the
//! terminal reaches only xtask, which then stops them in order: nodes,
//! backends, etcd) and is killed by the kernel if xtask dies first.
//! Must not: touch the normal demo's files or ports (the backends' 9001
//! and 9002 excepted: the two demos do not run together).
//! Fed by: `main` after `setup` and the release build. Emits: the
//! instructions on stderr, logs under `target/demo/region/`.
//!
//! ```text
//!   start: ports free? -> etcd x3 -> healthy -> backends -> import
//!          -> nodes x3 -> every node serves demo.localhost -> print
//!   run:   until SIGINT/SIGTERM, or a process exits by itself
//!   stop:  (also on any error midway) nodes: SIGTERM, 15 s, SIGKILL;
//!          backends, etcd: SIGTERM, 3 s, SIGKILL
//! ```

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{DEMO_BACKENDS, demo_backend_release, demo_pebble, portier_release, root, run_cmd};

/// Nodes: plain HTTP and admin API, node `i` on the `i`-th of each.
const NODE_HTTP: [&str; 3] = ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"];
const NODE_ADMIN: [&str; 3] = ["127.0.0.1:9091", "127.0.0.1:9092", "127.0.0.1:9093"];
/// etcd members: client and peer ports (the layout of etcd's own Procfile,
/// shifted off 2379/2380 so a system etcd does not clash).
const ETCD_CLIENT: [u16; 3] = [12379, 22379, 32379];
const ETCD_PEER: [u16; 3] = [12380, 22380, 32380];
const PREFIX: &str = "/portier";

const ETCD_HEALTHY: Duration = Duration::from_secs(30);
const NODES_SERVING: Duration = Duration::from_secs(30);

/// Set by SIGINT/SIGTERM; the start-up waits and the run loop poll it.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: i32) {
    STOP.store(true, Ordering::SeqCst);
}

const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

unsafe extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Processes of one kind, stopped together when this goes away: SIGTERM
/// to every one still running, then SIGKILL to those left after `grace`.
struct Group {
    what: &'static str,
    grace: Duration,
    children: Vec<(String, Child)>,
}

impl Group {
    fn new(what: &'static str, grace: Duration) -> Group {
        Group {
            what,
            grace,
            children: Vec::new(),
        }
    }

    /// Spawn `cmd` as `name`, owned by this group from then on.
    fn spawn(&mut self, name: &str, cmd: &mut Command) -> anyhow::Result<()> {
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        self.children.push((name.to_string(), child));
        Ok(())
    }

    /// The first member that exited by itself, with its status.
    fn exited(&mut self) -> Option<String> {
        self.children
            .iter_mut()
            .find_map(|(name, c)| match c.try_wait() {
                Ok(Some(status)) => Some(format!("{name} exited ({status})")),
                _ => None,
            })
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let pids: Vec<String> = self
            .children
            .iter()
            .map(|(name, c)| format!("{name} {}", c.id()))
            .collect();
        for (_, c) in &mut self.children {
            if let Ok(None) = c.try_wait() {
                // SAFETY: our own child, not reaped yet (try_wait just said
                // so), so the pid is still its.
                unsafe { kill(c.id() as i32, SIGTERM) };
            }
        }
        let deadline = Instant::now() + self.grace;
        for (_, c) in &mut self.children {
            loop {
                match c.try_wait() {
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Ok(None) => {
                        // SAFETY: as above, not reaped yet.
                        unsafe { kill(c.id() as i32, SIGKILL) };
                        let _ = c.wait();
                        break;
                    }
                    _ => break,
                }
            }
        }
        if !pids.is_empty() {
            eprintln!("xtask: stopped {} (pid {})", self.what, pids.join(", "));
        }
    }
}

/// A command killed by the kernel if xtask dies, with ETCD* variables and
/// proxies of the environment removed (etcd and etcdctl obey them).
fn command(program: impl AsRef<OsStr>) -> Command {
    let mut c = demo_pebble::command(program, None);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("ETCD") || k.to_ascii_lowercase().ends_with("_proxy") {
            c.env_remove(k.as_ref());
        }
    }
    c
}

/// `path` (truncated) as both stdout and stderr of `cmd`.
fn log_to<'c>(cmd: &'c mut Command, path: &Path) -> anyhow::Result<&'c mut Command> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(cmd.stdout(file.try_clone()?).stderr(file))
}

fn endpoints() -> Vec<String> {
    ETCD_CLIENT
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect()
}

fn interrupted() -> anyhow::Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted while starting");
    }
    Ok(())
}

/// `setup` and the release build are done; run the region demo until
/// SIGINT/SIGTERM.
pub fn run() -> anyhow::Result<()> {
    let dir = root().join("target/demo/region");
    ports_free()?;
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
    // Same start every run: no etcd data, no node caches from last time.
    for sub in ["etcd", "node-1", "node-2", "node-3", "seed-cache"] {
        let path = dir.join(sub);
        if path.exists() {
            std::fs::remove_dir_all(&path).with_context(|| format!("wiping {}", path.display()))?;
        }
    }
    std::fs::create_dir_all(dir.join("etcd"))?;
    let token = dir.join("admin.token");
    crate::demo_token(&token)?;
    let key = dir.join("region.key");
    run_cmd(
        Command::new(portier_release())
            .args(["region", "keygen", "--out"])
            .arg(&key)
            .stdout(Stdio::null()),
    )?;

    // Declared first, dropped last: etcd outlives the nodes' goodbyes.
    let mut etcd = Group::new("etcd members", Duration::from_secs(3));
    start_etcd(&dir.join("etcd"), &mut etcd)?;
    let mut backends = Group::new("demo backends", Duration::from_secs(3));
    for (i, addr) in DEMO_BACKENDS.iter().enumerate() {
        let name = format!("backend-{}", i + 1);
        let mut cmd = command(demo_backend_release());
        cmd.args(["--listen", addr, "--name", &name]);
        backends.spawn(&name, log_to(&mut cmd, &dir.join(format!("{name}.log")))?)?;
    }
    let seed = dir.join("seed.toml");
    std::fs::write(
        &seed,
        format!(
            "# The region demo's seed, written by `cargo xtask run --region`:\n\
             # `portier region import` makes the region's apps exactly these.\n\
             {region}\n\
             [[apps]]\n\
             name = \"demo\"\n\
             domains = [\"demo.localhost\"]\n\
             backends = [\"{b1}\", \"{b2}\"]\n",
            region = region_section("seed", &key, &dir.join("seed-cache")),
            b1 = DEMO_BACKENDS[0],
            b2 = DEMO_BACKENDS[1],
        ),
    )?;
    run_cmd(
        Command::new(portier_release())
            .args(["region", "import", "--config"])
            .arg(&seed),
    )?;
    interrupted()?;

    let mut nodes = Group::new("portier nodes", Duration::from_secs(15));
    for i in 0..NODE_HTTP.len() {
        let name = format!("node-{}", i + 1);
        let node_dir = dir.join(&name);
        std::fs::create_dir_all(node_dir.join("certs"))?;
        let config = node_dir.join("portier.toml");
        std::fs::write(&config, node_config(i, &node_dir, &token, &key))?;
        let mut cmd = command(portier_release());
        // Logs go to a file: no colour codes in it.
        cmd.arg("--config").arg(&config).env("NO_COLOR", "1");
        nodes.spawn(&name, log_to(&mut cmd, &node_dir.join("portier.log"))?)?;
    }
    wait_serving(&mut [&mut etcd, &mut backends, &mut nodes])?;
    print_instructions(&dir, &token);

    let why = loop {
        if STOP.load(Ordering::SeqCst) {
            break None;
        }
        if let Some(why) = [&mut nodes, &mut backends, &mut etcd]
            .into_iter()
            .find_map(Group::exited)
        {
            break Some(why);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("\nxtask: stopping the region demo");
    drop(nodes);
    drop(backends);
    drop(etcd);
    match why {
        None => Ok(()),
        Some(why) => bail!("{why} (logs in {})", dir.display()),
    }
}

/// Every fixed port of the demo can be bound now (a clear error instead of
/// a process failing halfway through).
fn ports_free() -> anyhow::Result<()> {
    let fixed = NODE_HTTP
        .iter()
        .chain(NODE_ADMIN.iter())
        .chain(DEMO_BACKENDS.iter())
        .map(|a| a.to_string())
        .chain(
            ETCD_CLIENT
                .iter()
                .chain(ETCD_PEER.iter())
                .map(|p| format!("127.0.0.1:{p}")),
        );
    for addr in fixed {
        TcpListener::bind(&addr).with_context(|| {
            format!("{addr} is taken: is another demo (`cargo xtask run [--region]`) running?")
        })?;
    }
    Ok(())
}

/// Three members forming a new cluster, each logging to `m<i>.log`; returns
/// once `etcdctl endpoint health` passes on all three.
fn start_etcd(dir: &Path, group: &mut Group) -> anyhow::Result<()> {
    let initial: Vec<String> = ETCD_PEER
        .iter()
        .enumerate()
        .map(|(i, p)| format!("m{}=http://127.0.0.1:{p}", i + 1))
        .collect();
    for (i, (client, peer)) in ETCD_CLIENT.iter().zip(ETCD_PEER).enumerate() {
        let name = format!("m{}", i + 1);
        let client = format!("http://127.0.0.1:{client}");
        let peer = format!("http://127.0.0.1:{peer}");
        let mut cmd = command("etcd");
        cmd.args(["--name", &name])
            .arg("--data-dir")
            .arg(dir.join(&name))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "portier-region-demo"])
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        group.spawn(
            &format!("etcd {name}"),
            log_to(&mut cmd, &dir.join(format!("{name}.log")))?,
        )?;
    }
    let deadline = Instant::now() + ETCD_HEALTHY;
    loop {
        interrupted()?;
        if let Some(why) = group.exited() {
            bail!("{why} (see {}/m*.log)", dir.display());
        }
        let out = command("etcdctl")
            .args(["--endpoints", &endpoints().join(",")])
            .args(["--dial-timeout", "1s", "--command-timeout", "2s"])
            .args(["endpoint", "health"])
            .output()
            .context("running etcdctl (apt-get install etcd-client)")?;
        if out.status.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "etcd not healthy within {ETCD_HEALTHY:?}: {} (see {}/m*.log)",
                String::from_utf8_lossy(&out.stderr).trim(),
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn region_section(node: &str, key: &Path, cache: &Path) -> String {
    let list: Vec<String> = endpoints().iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "[region]\n\
         endpoints = [{list}]\n\
         prefix = \"{PREFIX}\"\n\
         node = \"{node}\"\n\
         key_file = \"{key}\"\n\
         cache_dir = \"{cache}\"\n",
        list = list.join(", "),
        key = key.display(),
        cache = cache.display(),
    )
}

/// Node `i`'s file: its listener and admin API; its apps come from etcd.
fn node_config(i: usize, node_dir: &Path, token: &Path, key: &Path) -> String {
    format!(
        "# Region demo node {n}, written by `cargo xtask run --region`.\n\
         # No [[apps]]: they live in etcd. No [xdp], no HTTPS listener.\n\
         [server]\n\
         http = [\"{http}\"]\n\
         threads = 1\n\
         \n\
         [tls]\n\
         cert_dir = \"{certs}\"\n\
         \n\
         [admin]\n\
         listen = \"{admin}\"\n\
         token_file = \"{token}\"\n\
         \n\
         {region}",
        n = i + 1,
        http = NODE_HTTP[i],
        admin = NODE_ADMIN[i],
        certs = node_dir.join("certs").display(),
        token = token.display(),
        region = region_section(&format!("node-{}", i + 1), key, &node_dir.join("cache")),
    )
}

/// Until every node answers 200 for demo.localhost (it has read the
/// region) and accepts connections on its admin port.
fn wait_serving(groups: &mut [&mut Group]) -> anyhow::Result<()> {
    let deadline = Instant::now() + NODES_SERVING;
    loop {
        interrupted()?;
        if let Some(why) = groups.iter_mut().find_map(|g| g.exited()) {
            bail!("{why} (logs in target/demo/region/)");
        }
        let http_ok = NODE_HTTP
            .iter()
            .all(|a| http_status(a, "demo.localhost") == Some(200));
        let admin_ok = NODE_ADMIN.iter().all(|a| TcpStream::connect(a).is_ok());
        if http_ok && admin_ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "not every node serves demo.localhost within {NODES_SERVING:?} \
                 (see target/demo/region/node-*/portier.log)"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Status code of `GET /` with `Host: host` at `addr`, if it answers.
fn http_status(addr: &str, host: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()
}

fn print_instructions(dir: &Path, token: &Path) {
    let token = token
        .strip_prefix(root())
        .unwrap_or(token)
        .display()
        .to_string();
    let etcd = ETCD_CLIENT
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    eprintln!(
        "\nPortier region demo — files and logs in {dir}\n\
         etcd: 3 members, clients on {etcd} (data wiped at each start)\n\
         nodes: node-1 http://{h1} (admin {a1}), node-2 http://{h2} (admin {a2}),\n\
         \x20      node-3 http://{h3} (admin {a3}); admin token in {token}\n\
         The region holds app `demo` (demo.localhost → {b1}, {b2}). In another terminal:\n\
         \x20 curl -s -H 'Host: demo.localhost' http://{h2}/      # served by node 2\n\
         \x20 cargo xtask domains add demo shop.localhost --admin http://{a1} --token-file {token}   # told to node 1\n\
         \x20 curl -s -H 'Host: shop.localhost' http://{h3}/      # node 3 serves what node 1 was told\n\
         \x20 cargo xtask nodes --admin http://{a3} --token-file {token}   # the 3 nodes, seen from node 3\n\
         \x20 cargo xtask apps --admin http://{a2} --token-file {token}\n\
         \x20 etcdctl --endpoints {etcd} get --prefix {PREFIX}/v1/apps/\n\
         Stop with Ctrl-C (nodes, backends and etcd members are stopped).\n",
        dir = dir.display(),
        h1 = NODE_HTTP[0],
        h2 = NODE_HTTP[1],
        h3 = NODE_HTTP[2],
        a1 = NODE_ADMIN[0],
        a2 = NODE_ADMIN[1],
        a3 = NODE_ADMIN[2],
        b1 = DEMO_BACKENDS[0],
        b2 = DEMO_BACKENDS[1],
    );
}
