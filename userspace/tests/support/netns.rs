//! Test hosts in network namespaces: a veth pair between two namespaces the
//! test creates (and always deletes, even when it fails), a private bpffs for
//! the pins, raw AF_PACKET sockets, and running code inside a namespace.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn sh_output(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces joined by a veth pair; deleted on drop.
pub struct VethPair {
    pub ns_a: String,
    pub ns_b: String,
    pub if_a: String,
    pub if_b: String,
}

impl VethPair {
    /// `tag` keeps parallel tests apart; names stay under 16 bytes.
    pub fn new(tag: &str, mac_a: [u8; 6], mac_b: [u8; 6]) -> VethPair {
        let id = std::process::id() % 100_000;
        let pair = VethPair {
            ns_a: format!("ptr{tag}a{id}"),
            ns_b: format!("ptr{tag}b{id}"),
            if_a: format!("pv{tag}a{id}"),
            if_b: format!("pv{tag}b{id}"),
        };
        // A leftover from a killed run would make `ip netns add` fail.
        let _ = Command::new("ip")
            .args(["netns", "del", &pair.ns_a])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &pair.ns_b])
            .output();
        sh(&["ip", "netns", "add", &pair.ns_a]);
        sh(&["ip", "netns", "add", &pair.ns_b]);
        sh(&[
            "ip",
            "link",
            "add",
            &pair.if_a,
            "netns",
            &pair.ns_a,
            "address",
            &mac(mac_a),
            "type",
            "veth",
            "peer",
            "name",
            &pair.if_b,
            "netns",
            &pair.ns_b,
            "address",
            &mac(mac_b),
        ]);
        for (ns, ifname) in [(&pair.ns_a, &pair.if_a), (&pair.ns_b, &pair.if_b)] {
            // No IPv6 autoconfiguration chatter: the counters must only move
            // for what the test sends.
            for key in ["all", "default", ifname.as_str()] {
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
                ]);
            }
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            sh(&["ip", "-n", ns, "link", "set", ifname, "up"]);
        }
        pair
    }

    pub fn addr_a(&self, cidr: &str) {
        sh(&[
            "ip", "-n", &self.ns_a, "addr", "add", cidr, "dev", &self.if_a,
        ]);
    }

    pub fn addr_b(&self, cidr: &str) {
        sh(&[
            "ip", "-n", &self.ns_b, "addr", "add", cidr, "dev", &self.if_b,
        ]);
    }

    /// Permanent neighbour entry in `ns` (no ARP on the wire during the test).
    pub fn neigh(&self, ns: &str, ifname: &str, ip: &str, lladdr: [u8; 6]) {
        sh(&[
            "ip",
            "-n",
            ns,
            "neigh",
            "replace",
            ip,
            "lladdr",
            &mac(lladdr),
            "dev",
            ifname,
            "nud",
            "permanent",
        ]);
    }

    /// Id of the XDP program attached to `if_a`, if any.
    pub fn xdp_prog_id_a(&self) -> Option<u64> {
        let out = sh_output(&[
            "ip", "-n", &self.ns_a, "-d", "-j", "link", "show", &self.if_a,
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let xdp = v.get(0)?.get("xdp")?;
        xdp.get("prog")
            .and_then(|p| p.get("id"))
            .or_else(|| {
                xdp.get("attached")
                    .and_then(|a| a.get(0))
                    .and_then(|a| a.get("prog"))
                    .and_then(|p| p.get("id"))
            })
            .and_then(|id| id.as_u64())
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting the namespaces deletes the veth pair with them.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns_a])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns_b])
            .output();
    }
}

pub fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A scratch directory for one test (`root`, for config files) with a
/// private bpffs mounted at `root/bpf` for the pins; all removed on drop.
pub struct BpfFs {
    pub root: PathBuf,
    pub dir: PathBuf,
}

impl BpfFs {
    pub fn new(tag: &str) -> BpfFs {
        let root = std::env::temp_dir().join(format!("portier-{tag}-{}", std::process::id()));
        let dir = root.join("bpf");
        let _ = Command::new("umount").arg(&dir).output();
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&dir).expect("mkdir");
        sh(&[
            "mount",
            "-t",
            "bpf",
            "bpf",
            dir.to_str().expect("utf-8 path"),
        ]);
        BpfFs { root, dir }
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Run `f` on a thread that has entered network namespace `ns`. Sockets made
/// there stay in that namespace wherever they are used afterwards.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: a valid namespace fd; only this thread's namespace changes.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread panicked")
}

/// A raw AF_PACKET socket bound to one interface.
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Open in the current thread's namespace (call inside `in_netns`).
    pub fn open(ifname: &str) -> PacketSocket {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) call; the fd is owned right after.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32) };
        assert!(
            raw >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: raw is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let cname = std::ffi::CString::new(ifname).expect("ifname");
        // SAFETY: valid C string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        assert!(ifindex != 0, "no interface {ifname}");
        // SAFETY: zeroed sockaddr_ll is valid; we fill the fields bind needs.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a properly sized sockaddr_ll.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
        PacketSocket { fd }
    }

    pub fn send(&self, frame: &[u8]) {
        // SAFETY: frame is a valid buffer of frame.len() bytes.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n,
            frame.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Incoming frames (not our own outgoing ones) until `timeout` passes.
    pub fn received_within(&self, timeout: Duration, mut until: impl FnMut(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            if rc <= 0 {
                continue;
            }
            // SAFETY: zeroed sockaddr_ll is valid for recvfrom to fill.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: buf and from are valid for the sizes given.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    &mut from as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                    &mut len,
                )
            };
            if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            if until(&buf[..n as usize]) {
                return true;
            }
        }
    }

    /// Throw away whatever is queued.
    pub fn drain(&self) {
        self.received_within(Duration::from_millis(20), |_| false);
    }
}

/// A `portier` process, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Portier {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Portier {
    /// Start `portier --config <config>` inside `ns` (or on the host) and
    /// wait for it to say it is ready.
    /// Like `start`, but a start that fails because a port is taken (a
    /// port `free_port` handed out was grabbed meanwhile, e.g. as the
    /// source port of another test's connection) is `Err`, so the caller
    /// can pick other ports; any other failure still panics.
    pub fn try_start(ns: Option<&str>, config: &Path) -> Result<Portier, String> {
        let mut p = Portier::spawn(ns, config);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match p.lines.recv_timeout(left) {
                Ok(line) if line.contains("portier: ready") => return Ok(p),
                Ok(line) if line.contains("Address already in use") => {
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                    return Err(line);
                }
                Ok(_) => {}
                Err(_) => {
                    let status = p.child.try_wait().ok().flatten();
                    panic!("portier did not print \"portier: ready\" (exit status: {status:?})");
                }
            }
        }
    }

    pub fn start(ns: Option<&str>, config: &Path) -> Portier {
        let mut p = Portier::spawn(ns, config);
        p.wait_for_line("portier: ready", Duration::from_secs(30));
        p
    }

    fn spawn(ns: Option<&str>, config: &Path) -> Portier {
        let bin = env!("CARGO_BIN_EXE_portier");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Portier::spawn_cmd(cmd)
    }

    fn spawn_cmd(mut cmd: Command) -> Portier {
        let mut child = cmd.spawn().expect("spawn portier");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[portier] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Portier { child, lines: rx }
    }

    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!("portier did not print {needle:?} (exit status: {status:?})");
                }
            }
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Portier {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// A network namespace with `lo` up, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        sh(&["ip", "netns", "add", name]);
        sh(&["ip", "-n", name, "link", "set", "lo", "up"]);
        Netns(name.to_string())
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A child process killed on drop.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
