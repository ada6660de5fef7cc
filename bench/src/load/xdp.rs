//! Malformed-packet flood across a veth pair between two network namespaces
//! the harness creates (addresses only inside them, always deleted): drops
//! per second by Portier's XDP program (native mode on the receiving veth)
//! vs the same drop by an nftables rule in the netdev ingress hook.
//!
//! The flood is a Xmas-scan TCP frame (FIN+PSH+URG, no ACK) to port 80,
//! sent from an AF_PACKET socket (sendmmsg batches, PACKET_QDISC_BYPASS) on
//! a thread pinned to the load CPU. On a veth the receive side runs in the
//! sender's softirq, so one core both sends and drops: the figure is packets
//! dropped per second by that one core.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

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

/// Two namespaces joined by a veth pair; deleted on drop (with the veth).
/// Also used by the SYN flood of `portier-bench attacks`.
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

/// Ethernet + IPv4 + TCP (FIN|PSH|URG, no ACK) to port 80, valid checksums.
fn xmas_frame(src_port: u16) -> Vec<u8> {
    tcp_frame(PEER_IP, src_port, 0x29, 0x4000)
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

/// Send the flood from namespace `ns` on `ifname` for `secs`: frames sent.
fn flood(ns: &str, ifname: &str, secs: f64) -> anyhow::Result<u64> {
    let frames = (0..256).map(|i| xmas_frame(40000 + i as u16)).collect();
    send_frames(ns, ifname, secs, frames, None)
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

/// Softirq time of the load CPU so far, seconds (/proc/stat; 0 when the
/// kernel does not account interrupt time separately).
fn softirq_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat
        .lines()
        .find(|l| l.starts_with(&format!("cpu{LOAD_CPU} ")))?;
    let ticks: f64 = line.split_whitespace().nth(7)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// A flood's outcome: dropped/s, sent/s, dropped per softirq-second.
type Outcome = (f64, f64, Option<f64>);

fn measure(
    net: &Net,
    secs: f64,
    drops: &dyn Fn() -> anyhow::Result<u64>,
) -> anyhow::Result<Outcome> {
    let before = drops()?;
    let si0 = softirq_seconds();
    let t = Instant::now();
    let sent = flood(&net.ns_b, &net.if_b, secs)?;
    let el = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(100));
    let si1 = softirq_seconds();
    let dropped = (drops()? - before) as f64;
    let per_core = match (si0, si1) {
        (Some(a), Some(b)) if b - a > 0.05 => Some(dropped / (b - a)),
        _ => None,
    };
    Ok((dropped / el, sent as f64 / el, per_core))
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

/// One measurement: drops per second with Portier's XDP program attached
/// (`who`'s own pin directory and log: a baseline build may lay out its
/// maps differently; its counters are read with its own binary).
fn run_portier(net: &Net, dir: &Path, who: &str, bin: &Path, secs: f64) -> anyhow::Result<Outcome> {
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
    let mut p = Proc::spawn(who, cmd, &dir.join(format!("{tag}.log")))?;
    p.wait_for_log("portier: ready", Duration::from_secs(20))?;
    let r = measure(net, secs, &|| xdp_drops(bin, &pin));
    p.stop();
    r
}

/// One measurement: drops per second by the nftables rule (no XDP).
fn run_nft(net: &Net, dir: &Path, secs: f64) -> anyhow::Result<Outcome> {
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
    let result = measure(net, secs, &|| nft_drops(&net.ns_a, table));
    let _ = Command::new("ip")
        .args([
            "netns", "exec", &net.ns_a, "nft", "delete", "table", "netdev", table,
        ])
        .output();
    result
}

/// The XDP section: drop rate (and offered rate) for each side, in rounds.
/// `portiers`: (column name, binary) of the current build (`portier-xdp`)
/// and of a baseline build, if any; nftables is the last column.
pub fn run(dir: &Path, portiers: &[(String, PathBuf)], runs: usize, secs: f64) -> Vec<Figure> {
    let mut sides: Vec<&str> = portiers.iter().map(|(n, _)| n.as_str()).collect();
    sides.push("nftables");
    let mut drops = Figure::new(
        "flood_drop_pps",
        "malformed flood (TCP Xmas to :80, 60 B) across a veth: packets dropped/s, one core sending + dropping",
        Unit::PerSec,
        Some(Goal {
            subject: "portier-xdp",
            against: "nftables",
            factor: 3.0,
            higher_is_better: true,
        }),
    );
    let mut offered = Figure::new(
        "flood_sent_pps",
        "flood packets sent/s (AF_PACKET sendmmsg, qdisc bypass) in the same runs",
        Unit::PerSec,
        None,
    );
    let mut core = Figure::new(
        "flood_drop_per_core",
        "packets dropped per softirq-second of the flood core (/proc/stat softirq time)",
        Unit::PerSec,
        None,
    );
    let fail_all = |drops: &mut Figure, offered: &mut Figure, why: String| {
        for who in &sides {
            drops.record(who, 0, Err(why.clone()));
            offered.record(who, 0, Err(why.clone()));
        }
    };
    if !super::proc::is_root() {
        fail_all(
            &mut drops,
            &mut offered,
            "needs root (network namespaces, XDP)".into(),
        );
        return vec![drops, offered];
    }
    if let Some((_, bin)) = portiers.iter().find(|(_, b)| !b.exists()) {
        fail_all(
            &mut drops,
            &mut offered,
            format!("{} missing", bin.display()),
        );
        return vec![drops, offered];
    }
    let net = match Net::new(dir) {
        Ok(n) => n,
        Err(e) => {
            fail_all(
                &mut drops,
                &mut offered,
                format!("network namespaces: {e:#}"),
            );
            return vec![drops, offered];
        }
    };
    for round in 0..runs {
        // Order rotated each round, like the HTTP loads.
        let n = sides.len();
        for i in 0..n {
            let who = sides[(i + round) % n];
            let r = match portiers.iter().find(|(name, _)| name == who) {
                Some((_, bin)) => run_portier(&net, dir, who, bin, secs),
                None => run_nft(&net, dir, secs),
            };
            eprintln!("  flood round {round} {who}: {r:?}");
            match r {
                Ok((d, s, c)) => {
                    drops.record(who, round, Ok(d));
                    offered.record(who, round, Ok(s));
                    core.record(
                        who,
                        round,
                        c.ok_or_else(|| "no softirq time accounted".to_string()),
                    );
                }
                Err(e) => {
                    drops.record(who, round, Err(format!("{e:#}")));
                    offered.record(who, round, Err(format!("{e:#}")));
                }
            }
        }
    }
    drop(net);
    vec![drops, offered, core]
}
