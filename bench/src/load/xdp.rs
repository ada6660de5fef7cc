//! Malformed-packet flood across a veth pair between two network namespaces
//! the harness creates (addresses only inside them, always deleted): packets
//! dropped per second on the node's veth by Portier's XDP program (native
//! mode), by an nftables rule in the netdev ingress hook (behind a bare
//! `XDP_PASS` program, so frames become skbs), and by a bare `XDP_DROP`
//! program (the limit of this setup). With each: the generator's own rate,
//! softirq CPU per dropped packet, and a legitimate client's TCP connects
//! (rate, p50/p99) to a listener in the node's namespace while the flood
//! runs and just before it. Plus the program's in-kernel cost per frame
//! fixture (`BPF_PROG_TEST_RUN` with `repeat`, no device).
//!
//! The flood is a Xmas-scan TCP frame (FIN+PSH+URG, no ACK) to port 80, made
//! by the live-frame generator of [`super::bpf`] in the peer namespace: one
//! thread per CPU runs a two-instruction `XDP_TX` program over the frame
//! with `BPF_F_TEST_XDP_LIVE_FRAMES`, so frames leave the peer's veth as XDP
//! frames at millions per second. On a veth the receiving side runs in the
//! softirq of the CPU that sent (one receive queue, so one CPU at a time
//! drains it): senders and the receiver share both CPUs, and frames the
//! receive ring has no room for are lost before any program sees them. The
//! generator's rate well above the drop rate (and the bare `XDP_DROP` figure
//! above Portier's) shows the receiving side, not the generator, sets the
//! figure.
//!
//! Also here: [`Net`] (used by the SYN flood of `portier-bench attacks`,
//! which paces its frames through an AF_PACKET socket, [`send_frames`]),
//! frame builders and counter readers.

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use portier_common::fixtures;

use super::bpf::{self, Link, Prog, XdpAction};
use super::connects::{self, CONNECT_TIMEOUT, Connects, Listener};
use super::contestants::fill;
use super::proc::{Proc, run_ok};
use super::report::{Figure, Goal, Unit};
use super::tools::LOAD_CPU;

const T_XDP: &str = include_str!("../../templates/portier-xdp.toml");
const T_NFT: &str = include_str!("../../templates/nft-flood.nft");

pub const NODE_MAC: [u8; 6] = [0x02, 0xbe, 0x0c, 0x00, 0x00, 0x01];
pub const PEER_MAC: [u8; 6] = [0x02, 0xbe, 0x0c, 0x00, 0x00, 0x02];
pub const NODE_IP: [u8; 4] = [10, 203, 0, 1];
pub const PEER_IP: [u8; 4] = [10, 203, 0, 2];

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run_ok(Command::new("ip").args(args), Duration::from_secs(20))
}

/// Two namespaces joined by a veth pair; deleted on drop (with the veth),
/// also when making them fails halfway. `ns_a`/`if_a` is the node (the
/// receiving end: Portier, nftables), `ns_b`/`if_b` the peer (flood and
/// clients). Also used by the SYN flood of `portier-bench attacks`.
pub struct Net {
    pub ns_a: String,
    pub ns_b: String,
    pub if_a: String,
    pub if_b: String,
    pub bpffs: PathBuf,
}

impl Net {
    pub fn new(dir: &Path) -> anyhow::Result<Net> {
        let id = std::process::id() % 100_000;
        let net = Net {
            ns_a: format!("pbench-a{id}"),
            ns_b: format!("pbench-b{id}"),
            if_a: format!("pbva{id}"),
            if_b: format!("pbvb{id}"),
            bpffs: dir.join("bpf"),
        };
        for ns in [&net.ns_a, &net.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns])?;
        }
        ip(&[
            "link",
            "add",
            &net.if_a,
            "netns",
            &net.ns_a,
            "address",
            &mac(NODE_MAC),
            "type",
            "veth",
            "peer",
            "name",
            &net.if_b,
            "netns",
            &net.ns_b,
            "address",
            &mac(PEER_MAC),
        ])?;
        let node = format!("{}/24", dotted(NODE_IP));
        let peer = format!("{}/24", dotted(PEER_IP));
        for (ns, ifname, a) in [(&net.ns_a, &net.if_a, &node), (&net.ns_b, &net.if_b, &peer)] {
            ip(&[
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ])?;
            ip(&["-n", ns, "addr", "add", a, "dev", ifname])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", ifname, "up"])?;
        }
        ip(&[
            "-n",
            &net.ns_b,
            "neigh",
            "replace",
            &dotted(NODE_IP),
            "lladdr",
            &mac(NODE_MAC),
            "dev",
            &net.if_b,
            "nud",
            "permanent",
        ])?;
        // And back: nothing to resolve while a flood fills the receive ring.
        ip(&[
            "-n",
            &net.ns_a,
            "neigh",
            "replace",
            &dotted(PEER_IP),
            "lladdr",
            &mac(PEER_MAC),
            "dev",
            &net.if_a,
            "nud",
            "permanent",
        ])?;
        std::fs::create_dir_all(&net.bpffs)?;
        run_ok(
            Command::new("mount")
                .args(["-t", "bpf", "bpf"])
                .arg(&net.bpffs),
            Duration::from_secs(10),
        )?;
        Ok(net)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.bpffs).output();
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

pub fn dotted(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// Source of the flood frames: in the peer's subnet, not the legitimate
/// client's address (its SYN limiter state stays its own).
pub const FLOOD_IP: [u8; 4] = [10, 203, 0, 9];

/// The flood frame: Ethernet + IPv4 + TCP (FIN|PSH|URG, no ACK) from
/// [`FLOOD_IP`]:40000 to the node's port 80, valid checksums, 60 bytes.
pub fn flood_frame() -> Vec<u8> {
    tcp_frame(FLOOD_IP, 40000, 0x29, 0x4000)
}

/// Ethernet + IPv4 + TCP from `src:sport` to the node's port 80 with
/// these `flags` and `window`, valid checksums, padded to 60 bytes.
pub fn tcp_frame(src: [u8; 4], sport: u16, flags: u8, window: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend(NODE_MAC);
    f.extend(PEER_MAC);
    f.extend([0x08, 0x00]);
    let mut iph = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
    iph.extend(src);
    iph.extend(NODE_IP);
    let c = checksum(&iph);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend(&iph);
    let mut tcp = Vec::with_capacity(20);
    tcp.extend(sport.to_be_bytes());
    tcp.extend(80u16.to_be_bytes());
    tcp.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags]);
    tcp.extend(window.to_be_bytes());
    tcp.extend([0, 0, 0, 0]);
    let mut pseudo = Vec::with_capacity(32);
    pseudo.extend(src);
    pseudo.extend(NODE_IP);
    pseudo.extend([0, 6, 0, 20]);
    pseudo.extend(&tcp);
    let c = checksum(&pseudo);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    f.extend(tcp);
    f.resize(60, 0);
    f
}

pub fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for ch in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([ch[0], *ch.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Send `frames` over and over from namespace `ns` on `ifname` for `secs`,
/// as fast as possible or at about `pps` frames per second: frames sent.
pub fn send_frames(
    ns: &str,
    ifname: &str,
    secs: f64,
    frames: Vec<Vec<u8>>,
    pps: Option<u64>,
) -> anyhow::Result<u64> {
    let path = format!("/var/run/netns/{ns}");
    let ifname = ifname.to_string();
    std::thread::spawn(move || -> anyhow::Result<u64> {
        let file = File::open(&path).with_context(|| format!("open {path}"))?;
        // SAFETY: a valid namespace fd; only this thread's namespace changes.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {path}: {}", std::io::Error::last_os_error());
        }
        // SAFETY: cpu_set_t is plain data; pin this thread to the load CPU.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(LOAD_CPU as usize, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); owned right after.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        if raw < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: i32 = 1;
        // SAFETY: valid option pointer and length. Failure only costs speed.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&one as *const i32).cast(),
                4,
            );
        }
        let cname = std::ffi::CString::new(ifname.clone())?;
        // SAFETY: valid C string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {ifname}");
        }
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a sockaddr_ll of the right size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            bail!("bind AF_PACKET: {}", std::io::Error::last_os_error());
        }
        let batch = frames.len();
        let mut iov: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        // SAFETY: zeroed mmsghdr is valid; each points at one iovec above.
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(secs);
        let mut sent: u64 = 0;
        while Instant::now() < deadline {
            if let Some(pps) = pps {
                // Paced: sleep while ahead of the schedule.
                let due = Duration::from_secs_f64(sent as f64 / pps as f64);
                if let Some(ahead) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(ahead);
                }
            }
            // SAFETY: msgs holds `batch` valid headers pointing at live frames.
            let n = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), batch as u32, 0) };
            if n > 0 {
                sent += n as u64;
            }
        }
        Ok(sent)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("flood thread panicked"))?
}

/// Packets dropped by Portier's XDP program (sum of the drop reasons).
pub fn xdp_drops(bin: &Path, pin: &Path) -> anyhow::Result<u64> {
    let out = run_ok(
        Command::new(bin)
            .args(["xdp", "stats", "--json", "--pin-dir"])
            .arg(pin),
        Duration::from_secs(10),
    )?;
    let v: serde_json::Value = serde_json::from_str(&out).context("portier xdp stats --json")?;
    let reasons = v
        .get("reasons")
        .and_then(|r| r.as_array())
        .context("no reasons in stats")?;
    Ok(reasons
        .iter()
        .filter(|r| r.get("action").and_then(|a| a.as_str()) == Some("drop"))
        .filter_map(|r| r.get("packets").and_then(serde_json::Value::as_u64))
        .sum())
}

/// Frames received by `ifname` in namespace `ns` so far (its rx_packets:
/// on a veth with an XDP program, every frame the program saw).
pub fn rx_packets(ns: &str, ifname: &str) -> anyhow::Result<u64> {
    let out = ip(&["-n", ns, "-j", "-s", "link", "show", "dev", ifname])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("ip -j -s link")?;
    v.pointer("/0/stats64/rx/packets")
        .and_then(serde_json::Value::as_u64)
        .with_context(|| format!("no rx packets for {ifname} in {out}"))
}

/// Packets counted by the nftables drop rule.
fn nft_drops(ns: &str, table: &str) -> anyhow::Result<u64> {
    let out = run_ok(
        Command::new("ip").args([
            "netns", "exec", ns, "nft", "-j", "list", "table", "netdev", table,
        ]),
        Duration::from_secs(10),
    )?;
    let v: serde_json::Value = serde_json::from_str(&out).context("nft -j")?;
    let items = v
        .get("nftables")
        .and_then(|n| n.as_array())
        .context("no nftables array")?;
    for item in items {
        let Some(exprs) = item.pointer("/rule/expr").and_then(|e| e.as_array()) else {
            continue;
        };
        for e in exprs {
            if let Some(p) = e
                .pointer("/counter/packets")
                .and_then(serde_json::Value::as_u64)
            {
                return Ok(p);
            }
        }
    }
    bail!("no counter in the nftables rule")
}

/// The XDP program attached to `ifname` in `ns` (its id, from `ip link`).
pub fn xdp_prog_id(ns: &str, ifname: &str) -> anyhow::Result<u32> {
    let out = ip(&["-n", ns, "-d", "-j", "link", "show", "dev", ifname])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("ip -j link")?;
    let xdp = v.pointer("/0/xdp").context("no XDP program attached")?;
    xdp.pointer("/prog/id")
        .or_else(|| xdp.pointer("/attached/0/prog/id"))
        .and_then(serde_json::Value::as_u64)
        .and_then(|id| u32::try_from(id).ok())
        .with_context(|| format!("no XDP program id in {xdp}"))
}

/// Packets dropped by softirq CPU-time so far, all CPUs (/proc/stat, ticks
/// sampled: precise over seconds, not over one packet).
fn softirq_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: f64 = line.split_whitespace().nth(7)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// The CPUs the generator runs on: all of them.
pub fn generator_cpus() -> Vec<usize> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..n).collect()
}

/// Legitimate connects per second: half the fixture policy's per-source
/// SYN rate, so Portier's SYN limiter never drops one of them.
pub const CLIENT_RATE: f64 = fixtures::SYN_RATE as f64 / 2.0;

/// `BPF_PROG_TEST_RUN` repeats per fixture (each run a few tens of ns).
pub const FIXTURE_REPEAT: u32 = 100_000;

/// How long each side is measured, and how often.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub runs: usize,
    /// Seconds of flood per side and round (the client's connects are
    /// scheduled over these; the flood lasts [`CONNECT_TIMEOUT`] longer so
    /// the last connect ends inside it).
    pub secs: f64,
    /// Seconds of the idle client measurement before each flood.
    pub idle_secs: f64,
}

/// Who drops the flood on the node's veth.
#[derive(Debug, Clone)]
enum Side {
    /// A portier build (column name, binary): its XDP program in native mode.
    Portier(String, PathBuf),
    /// A bare `XDP_PASS` program, then an nftables netdev ingress drop rule.
    Nftables,
    /// A bare `XDP_DROP` program: the limit of the setup.
    XdpDrop,
}

pub const NFTABLES: &str = "nftables";
pub const XDP_DROP: &str = "xdp-drop";

impl Side {
    fn name(&self) -> &str {
        match self {
            Side::Portier(n, _) => n,
            Side::Nftables => NFTABLES,
            Side::XdpDrop => XDP_DROP,
        }
    }
}

/// What one side measured in one round.
#[derive(Debug, Default)]
struct Outcome {
    dropped_pps: f64,
    sent_pps: f64,
    arrived_pps: f64,
    drop_per_softirq_sec: Option<f64>,
    /// Per fixture: (name, test run or why not).
    costs: Vec<(&'static str, Result<bpf::TestRun, String>)>,
    idle: Option<Connects>,
    flooded: Option<Connects>,
}

/// What is attached on the node's side while a side is measured.
enum Attached {
    Portier {
        proc: Proc,
        bin: PathBuf,
        pin: PathBuf,
    },
    Nftables {
        _link: Link,
        table: &'static str,
    },
    XdpDrop {
        _link: Link,
    },
}

impl Attached {
    fn start(net: &Net, dir: &Path, side: &Side) -> anyhow::Result<Attached> {
        match side {
            Side::Portier(who, bin) => {
                let tag = super::contestants::file_name(who);
                let pin = net.bpffs.join(&tag);
                let conf = fill(
                    T_XDP,
                    &[
                        ("IFACE", net.if_a.clone()),
                        ("PIN_DIR", pin.display().to_string()),
                    ],
                )?;
                let path = dir.join(format!("{tag}.toml"));
                std::fs::write(&path, conf)?;
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &net.ns_a])
                    .arg(bin)
                    .arg("--config")
                    .arg(&path);
                let mut proc = Proc::spawn(who, cmd, &dir.join(format!("{tag}.log")))?;
                proc.wait_for_log("portier: ready", Duration::from_secs(20))?;
                Ok(Attached::Portier {
                    proc,
                    bin: bin.clone(),
                    pin,
                })
            }
            Side::Nftables => {
                let link = bpf::attach_tiny(&net.ns_a, &net.if_a, XdpAction::Pass)?;
                let table = "portier_bench";
                let rules = fill(
                    T_NFT,
                    &[("TABLE", table.into()), ("IFACE", net.if_a.clone())],
                )?;
                let path = dir.join("flood.nft");
                std::fs::write(&path, rules)?;
                run_ok(
                    Command::new("ip")
                        .args(["netns", "exec", &net.ns_a, "nft", "-f"])
                        .arg(&path),
                    Duration::from_secs(10),
                )?;
                Ok(Attached::Nftables { _link: link, table })
            }
            Side::XdpDrop => Ok(Attached::XdpDrop {
                _link: bpf::attach_tiny(&net.ns_a, &net.if_a, XdpAction::Drop)?,
            }),
        }
    }

    /// Packets dropped so far by whoever drops here.
    fn drops(&self, net: &Net) -> anyhow::Result<u64> {
        match self {
            Attached::Portier { bin, pin, .. } => xdp_drops(bin, pin),
            Attached::Nftables { table, .. } => nft_drops(&net.ns_a, table),
            // It drops every frame it sees.
            Attached::XdpDrop { .. } => rx_packets(&net.ns_a, &net.if_a),
        }
    }

    /// The program whose per-frame cost is measured (none for nftables).
    fn program(&self, net: &Net) -> anyhow::Result<Option<Prog>> {
        match self {
            Attached::Portier { .. } => {
                let id = xdp_prog_id(&net.ns_a, &net.if_a)?;
                Ok(Some(
                    Prog::from_id(id).with_context(|| format!("BPF_PROG_GET_FD_BY_ID {id}"))?,
                ))
            }
            Attached::Nftables { .. } => Ok(None),
            Attached::XdpDrop { .. } => Ok(Some(
                Prog::tiny(XdpAction::Drop).context("BPF_PROG_LOAD of XDP_DROP")?,
            )),
        }
    }

    fn stop(self, net: &Net) -> anyhow::Result<()> {
        match self {
            Attached::Portier { mut proc, .. } => {
                let alive = proc.alive();
                proc.stop();
                if !alive {
                    bail!("portier exited during the measurement: {}", proc.log_tail());
                }
            }
            Attached::Nftables { table, .. } => {
                let _ = Command::new("ip")
                    .args([
                        "netns", "exec", &net.ns_a, "nft", "delete", "table", "netdev", table,
                    ])
                    .output();
            }
            Attached::XdpDrop { .. } => {}
        }
        Ok(())
    }
}

/// The kernel's time per run of `prog` over every fixture frame.
fn fixture_costs(prog: &Prog) -> Vec<(&'static str, Result<bpf::TestRun, String>)> {
    fixtures::table()
        .into_iter()
        .map(|f| {
            let r = if f.frame.len() < 14 {
                Err("shorter than an Ethernet header: BPF_PROG_TEST_RUN refuses it".to_string())
            } else {
                prog.test_run(&f.frame, FIXTURE_REPEAT)
                    .map_err(|e| format!("BPF_PROG_TEST_RUN: {e}"))
            };
            (f.name, r)
        })
        .collect()
}

/// One side, one round: attach, per-frame costs, idle client, flood with
/// the client, detach.
fn measure(net: &Net, dir: &Path, side: &Side, plan: &Plan) -> anyhow::Result<Outcome> {
    let attached = Attached::start(net, dir, side)?;
    let r = measure_attached(net, side, &attached, plan);
    let stopped = attached.stop(net);
    let out = r?;
    stopped?;
    Ok(out)
}

fn measure_attached(net: &Net, side: &Side, at: &Attached, plan: &Plan) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    if let Some(prog) = at.program(net)? {
        out.costs = fixture_costs(&prog);
    }
    // The bare XDP_DROP program drops the client's packets too.
    let client = !matches!(side, Side::XdpDrop);
    let to = SocketAddr::from((NODE_IP, 80));
    if client {
        let n = (CLIENT_RATE * plan.idle_secs).ceil() as usize;
        out.idle = Some(connects::run(
            &net.ns_b,
            to,
            CLIENT_RATE,
            n,
            Duration::ZERO,
        )?);
    }
    let before = at.drops(net)?;
    let rx0 = rx_packets(&net.ns_a, &net.if_a)?;
    let si0 = softirq_seconds();
    let start_delay = Duration::from_millis(200);
    let flooded = client.then(|| {
        let (ns, n) = (net.ns_b.clone(), (CLIENT_RATE * plan.secs).ceil() as usize);
        std::thread::spawn(move || connects::run(&ns, to, CLIENT_RATE, n, start_delay))
    });
    let flood_secs = plan.secs + (start_delay + CONNECT_TIMEOUT).as_secs_f64() + 0.1;
    let sent = bpf::flood(
        &net.ns_b,
        &net.if_b,
        &flood_frame(),
        flood_secs,
        &generator_cpus(),
    );
    let flooded = flooded
        .map(|t| {
            t.join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))?
        })
        .transpose()?;
    let sent = sent?;
    std::thread::sleep(Duration::from_millis(100));
    let si1 = softirq_seconds();
    let dropped = (at.drops(net)? - before) as f64;
    let arrived = (rx_packets(&net.ns_a, &net.if_a)? - rx0) as f64;
    out.dropped_pps = dropped / sent.secs;
    out.arrived_pps = arrived / sent.secs;
    out.sent_pps = sent.frames as f64 / sent.secs;
    out.drop_per_softirq_sec = match (si0, si1) {
        (Some(a), Some(b)) if b - a > 0.05 => Some(dropped / (b - a)),
        _ => None,
    };
    out.flooded = flooded;
    Ok(out)
}

/// The XDP figures: the flood section and the per-frame cost section.
pub struct XdpFigures {
    pub flood: Vec<Figure>,
    pub costs: Vec<Figure>,
    pub notes: Vec<String>,
}

/// The flood figures, empty (ids, titles, units).
fn flood_figures(threads: usize) -> Vec<Figure> {
    let mut f = vec![
        Figure::new(
            "flood_drop_pps",
            "malformed flood (TCP Xmas to :80, 60 B, live XDP frames) over a veth: packets dropped/s",
            Unit::PerSec,
            Some(Goal {
                subject: "portier-xdp",
                against: NFTABLES,
                factor: 3.0,
                higher_is_better: true,
            }),
        ),
        Figure::new(
            "flood_sent_pps",
            format!(
                "generator's frames sent/s in the same runs (BPF_PROG_TEST_RUN live frames, XDP_TX, {threads} threads)"
            ),
            Unit::PerSec,
            None,
        ),
        Figure::new(
            "flood_arrived_pps",
            "frames/s that reached the node's veth (its rx_packets; the rest of those sent found its receive ring full)",
            Unit::PerSec,
            None,
        ),
        Figure::new(
            "flood_drop_per_softirq_sec",
            "packets dropped per softirq CPU-second (all CPUs, /proc/stat)",
            Unit::PerSec,
            None,
        ),
        Figure::new(
            "flood_client_connects",
            format!(
                "legitimate TCP connects/s completed during the flood (offered {CLIENT_RATE:.0}/s, sequential)"
            ),
            Unit::PerSec,
            None,
        ),
        Figure::new(
            "flood_client_p50",
            "legitimate connect time p50 during the flood (completed connects)",
            Unit::Millis,
            None,
        ),
        Figure::new(
            "flood_client_p99",
            "legitimate connect time p99 during the flood (completed connects)",
            Unit::Millis,
            None,
        ),
        Figure::new(
            "flood_client_failed",
            format!(
                "legitimate connects failed during the flood (not done in {} ms)",
                CONNECT_TIMEOUT.as_millis()
            ),
            Unit::Count,
            None,
        ),
        Figure::new(
            "idle_client_p99",
            "legitimate connect time p99 just before the flood (same program attached)",
            Unit::Millis,
            None,
        ),
    ];
    if let Some(failed) = f.iter_mut().find(|f| f.id == "flood_client_failed") {
        failed.higher_is_better = false;
    }
    f
}

fn cost_figure(name: &str, expect: &str) -> Figure {
    Figure::new(
        format!("test_run_ns/{name}"),
        format!("{name} → {expect}"),
        Unit::Nanos,
        None,
    )
}

/// Record `v` in the figure `id` of `figures` (ids from [`flood_figures`]).
fn put(figures: &mut [Figure], id: &str, who: &str, round: usize, v: Result<f64, String>) {
    if let Some(f) = figures.iter_mut().find(|f| f.id == id) {
        f.record(who, round, v);
    }
}

/// Record one round of one side.
fn record(
    flood: &mut [Figure],
    costs: &mut [Figure],
    who: &str,
    round: usize,
    r: &anyhow::Result<Outcome>,
) {
    let o = match r {
        Ok(o) => o,
        Err(e) => {
            for id in ["flood_drop_pps", "flood_sent_pps", "flood_arrived_pps"] {
                put(flood, id, who, round, Err(format!("{e:#}")));
            }
            return;
        }
    };
    put(flood, "flood_drop_pps", who, round, Ok(o.dropped_pps));
    put(flood, "flood_sent_pps", who, round, Ok(o.sent_pps));
    put(flood, "flood_arrived_pps", who, round, Ok(o.arrived_pps));
    let softirq = o
        .drop_per_softirq_sec
        .ok_or_else(|| "no softirq time accounted".to_string());
    put(flood, "flood_drop_per_softirq_sec", who, round, softirq);
    let none = || "no connect completed".to_string();
    if let Some(c) = &o.flooded {
        put(flood, "flood_client_connects", who, round, Ok(c.rate()));
        put(
            flood,
            "flood_client_p50",
            who,
            round,
            c.percentile(0.5).ok_or_else(none),
        );
        put(
            flood,
            "flood_client_p99",
            who,
            round,
            c.percentile(0.99).ok_or_else(none),
        );
        put(
            flood,
            "flood_client_failed",
            who,
            round,
            Ok(c.failed as f64),
        );
    }
    if let Some(c) = &o.idle {
        put(
            flood,
            "idle_client_p99",
            who,
            round,
            c.percentile(0.99).ok_or_else(none),
        );
    }
    for (name, r) in &o.costs {
        let id = format!("test_run_ns/{name}");
        put(
            costs,
            &id,
            who,
            round,
            r.clone().map(|t| f64::from(t.ns_per_run)),
        );
    }
}

/// Fixtures whose verdict in the kernel (some run of the test-run) was not
/// the one the host classifier gives: "name: expected drop, kernel pass".
fn verdict_mismatches(o: &Outcome) -> Vec<String> {
    let table = fixtures::table();
    o.costs
        .iter()
        .filter_map(|(name, r)| {
            let run = r.as_ref().ok()?;
            let f = table.iter().find(|f| f.name == *name)?;
            let want = if f.expect.is_drop() {
                XdpAction::Drop
            } else {
                XdpAction::Pass
            };
            let got = XdpAction::from_retval(run.retval);
            (got != Some(want)).then(|| {
                format!(
                    "{name}: host classifier {}, kernel {}",
                    want.name(),
                    got.map_or_else(|| run.retval.to_string(), |a| a.name().to_string())
                )
            })
        })
        .collect()
}

/// The XDP sections, in rounds with the order rotated each round.
/// `portiers`: (column name, binary) of the current build (`portier-xdp`)
/// and of a baseline build, if any; then nftables and the bare XDP_DROP.
pub fn run(dir: &Path, portiers: &[(String, PathBuf)], plan: &Plan) -> XdpFigures {
    let threads = generator_cpus().len();
    let mut flood = flood_figures(threads);
    let mut costs: Vec<Figure> = fixtures::table()
        .iter()
        .map(|f| cost_figure(f.name, f.expect.name()))
        .collect();
    let mut notes = vec![
        format!(
            "XDP flood: {threads} generator threads (one per CPU) in the peer namespace run BPF_PROG_TEST_RUN with \
         BPF_F_TEST_XDP_LIVE_FRAMES over a two-instruction XDP_TX program (ingress = the peer's veth), each call \
         sized to ~100 ms; the node's veth (one receive queue) drains in the softirq of the CPU that sent, so \
         senders and receiver share the CPUs and frames its ring has no room for are lost before any program \
         sees them. Sides: {} (Portier's program, native mode), nftables (a bare XDP_PASS program so frames become \
         skbs, then a netdev ingress drop rule with a counter), xdp-drop (a bare XDP_DROP program: the setup's \
         limit, counted by the veth's rx_packets). Legitimate client: {CLIENT_RATE:.0} sequential connect()s/s \
         from the peer namespace to a listener on the node's :80, idle for {} s then during {} s of flood \
         (the flood runs until the last connect ends; timeout {} ms).",
            portiers
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            plan.idle_secs,
            plan.secs,
            CONNECT_TIMEOUT.as_millis()
        ),
        format!(
            "Per-frame cost: BPF_PROG_TEST_RUN with repeat {FIXTURE_REPEAT} (no device, no live frames) of the \
         attached program over each frame of portier_common::fixtures (policy: bench/templates/portier-xdp.toml = \
         the fixtures' standard policy); the kernel's average ns per run, including the test-run loop, which the \
         xdp-drop column (a bare XDP_DROP program, same frames) shows alone."
        ),
    ];
    let mut sides: Vec<Side> = portiers
        .iter()
        .map(|(n, b)| Side::Portier(n.clone(), b.clone()))
        .collect();
    sides.push(Side::Nftables);
    sides.push(Side::XdpDrop);
    let fail_all = |flood: &mut Vec<Figure>, why: String| {
        for s in &sides {
            flood[0].record(s.name(), 0, Err(why.clone()));
        }
    };
    if !super::proc::is_root() {
        fail_all(&mut flood, "needs root (network namespaces, bpf)".into());
        return XdpFigures {
            flood,
            costs,
            notes,
        };
    }
    if let Some((_, bin)) = portiers.iter().find(|(_, b)| !b.exists()) {
        fail_all(&mut flood, format!("{} missing", bin.display()));
        return XdpFigures {
            flood,
            costs,
            notes,
        };
    }
    let net = match Net::new(dir) {
        Ok(n) => n,
        Err(e) => {
            fail_all(&mut flood, format!("network namespaces: {e:#}"));
            return XdpFigures {
                flood,
                costs,
                notes,
            };
        }
    };
    let listener = match Listener::start(&net.ns_a, SocketAddr::from((NODE_IP, 80))) {
        Ok(l) => l,
        Err(e) => {
            fail_all(&mut flood, format!("listener: {e:#}"));
            return XdpFigures {
                flood,
                costs,
                notes,
            };
        }
    };
    let mut mismatches: Vec<String> = Vec::new();
    for round in 0..plan.runs {
        let n = sides.len();
        for i in 0..n {
            let side = &sides[(i + round) % n];
            let r = measure(&net, dir, side, plan);
            match &r {
                Ok(o) => {
                    eprintln!(
                        "  flood round {round} {}: dropped {:.0}/s, sent {:.0}/s, arrived {:.0}/s, per softirq-s {:?}, client idle p99 {:?} ms, flooded {:?}/s p50 {:?} p99 {:?} ms failed {:?}",
                        side.name(),
                        o.dropped_pps,
                        o.sent_pps,
                        o.arrived_pps,
                        o.drop_per_softirq_sec.map(|v| v.round()),
                        o.idle.as_ref().and_then(|c| c.percentile(0.99)),
                        o.flooded.as_ref().map(|c| c.rate().round()),
                        o.flooded.as_ref().and_then(|c| c.percentile(0.5)),
                        o.flooded.as_ref().and_then(|c| c.percentile(0.99)),
                        o.flooded.as_ref().map(|c| c.failed),
                    );
                    if matches!(side, Side::Portier(..)) {
                        for m in verdict_mismatches(o) {
                            let m = format!("{}: {m}", side.name());
                            if !mismatches.contains(&m) {
                                mismatches.push(m);
                            }
                        }
                    }
                }
                Err(e) => eprintln!("  flood round {round} {}: {e:#}", side.name()),
            }
            record(&mut flood, &mut costs, side.name(), round, &r);
        }
    }
    drop(listener);
    drop(net);
    if !mismatches.is_empty() {
        notes.push(format!(
            "Kernel verdicts of the per-frame runs that differ from the host classifier's (expected where the \
             program keeps state across the {FIXTURE_REPEAT} runs, e.g. a SYN source over its rate limit): {}.",
            mismatches.join("; ")
        ));
    }
    XdpFigures {
        flood,
        costs,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_the_fixtures_policy() {
        let toml = fill(
            T_XDP,
            &[
                ("IFACE", "pbva1".to_string()),
                ("PIN_DIR", "/sys/fs/bpf/x/portier".to_string()),
            ],
        )
        .expect("template filled");
        let c = portier::config::Config::parse(Path::new("portier-xdp.toml"), &toml)
            .expect("valid portier config");
        let got = c.xdp.policy();
        let want = fixtures::standard_policy();
        assert_eq!(got.config, want.config);
        assert_eq!(got.ports, want.ports);
        assert_eq!(got.block_v4, want.block_v4);
        assert_eq!(got.block_v6, want.block_v6);
        assert_eq!(got.bogon_v4, want.bogon_v4);
    }

    #[test]
    fn flood_frame_is_a_valid_xmas_to_port_80() {
        let f = flood_frame();
        assert_eq!(f.len(), 60);
        assert_eq!(&f[0..6], &NODE_MAC);
        assert_eq!(&f[6..12], &PEER_MAC);
        assert_eq!(f[12..14], [0x08, 0x00]);
        assert_eq!(checksum(&f[14..34]), 0, "IPv4 header checksum");
        assert_eq!(&f[26..30], &FLOOD_IP);
        assert_eq!(&f[30..34], &NODE_IP);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 80);
        assert_eq!(f[47], 0x29, "FIN|PSH|URG, no ACK");
        let mut pseudo = f[26..34].to_vec();
        pseudo.extend([0, 6, 0, 20]);
        pseudo.extend(&f[34..54]);
        assert_eq!(checksum(&pseudo), 0, "TCP checksum");
        // The host classifier drops it with the policy the bench uses.
        let mut p = fixtures::standard_policy();
        let r = portier_common::classify(&portier_common::cursor::SliceCursor(&f), &mut p);
        assert!(r.is_drop(), "{r:?}");
    }

    #[test]
    fn every_fixture_has_a_cost_figure_with_its_own_id() {
        let ids: std::collections::BTreeSet<String> = fixtures::table()
            .iter()
            .map(|f| cost_figure(f.name, f.expect.name()).id.into_owned())
            .collect();
        assert_eq!(ids.len(), fixtures::table().len());
    }

    #[test]
    fn a_failed_side_is_recorded_in_the_rate_figures() {
        let mut flood = flood_figures(2);
        let mut costs = vec![cost_figure("tcp xmas", "drop_tcp_xmas")];
        let r: anyhow::Result<Outcome> = Err(anyhow::anyhow!("boom"));
        record(&mut flood, &mut costs, "nftables", 0, &r);
        assert!(flood[0].cell("nftables").contains("boom"));
        let ok = Outcome {
            dropped_pps: 1e6,
            sent_pps: 5e6,
            costs: vec![(
                "tcp xmas",
                Ok(bpf::TestRun {
                    retval: 1,
                    ns_per_run: 42,
                }),
            )],
            flooded: Some(Connects {
                ms: vec![1.0, 2.0, 3.0],
                failed: 1,
                secs: 1.0,
            }),
            ..Outcome::default()
        };
        record(&mut flood, &mut costs, "portier-xdp", 0, &Ok(ok));
        assert_eq!(flood[0].median("portier-xdp"), Some(1e6));
        assert_eq!(costs[0].median("portier-xdp"), Some(42.0));
        let failed = flood
            .iter()
            .find(|f| f.id == "flood_client_failed")
            .expect("figure");
        assert_eq!(failed.median("portier-xdp"), Some(1.0));
        assert!(!failed.higher_is_better);
    }
}
