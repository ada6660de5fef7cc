//! Zero-downtime binary upgrade, tried from outside with the real binary.
//!
//! - Under load (HTTP/1.1 keep-alive, HTTP/2 over TLS, WebSockets held open
//!   across everything; `tests/upgrade/load.py`, a client that retries only
//!   what HTTP lets it), 20 upgrades in a row, alternately `portier
//!   upgrade` (admin API) and SIGUSR2: no request fails, every WebSocket
//!   still echoes after the last one, the XDP program id and the listening
//!   sockets (their inodes) never change, each new process runs as the
//!   unprivileged user with the same capabilities, and every old one exits
//!   once its last connection is gone. Root only (namespace, XDP, setuid).
//! - A binary that cannot start (a broken config) leaves the old process
//!   serving, with the reason in the answer; then an upgrade carries the
//!   drained and quarantined backends and the sticky-cookie key over.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use support::netns::{BpfFs, Netns, Portier};
use support::proc::{Backend, Proxy, admin_call, free_port};
use support::procfs::{nobody, status_field};

const TOKEN: &str = "upgrade-token-0123456789abcdef";
/// CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_BPF (39).
const KEPT: u64 = (1 << 10) | (1 << 12) | (1 << 39);

/// Kills (SIGKILL) every process it was given that still runs, on drop:
/// upgraded processes are not our children.
#[derive(Default)]
struct Pids(Vec<i32>);

impl Drop for Pids {
    fn drop(&mut self) {
        for &p in &self.0 {
            // SAFETY: signalling a pid this test started (directly or by upgrade).
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
}

fn alive(pid: i32) -> bool {
    // A zombie is not serving: look at the state, not only the pid.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn wait_for_new_pid(path: &Path, old: i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(p) = read_pid(path).filter(|&p| p != old) {
            return p;
        }
        assert!(Instant::now() < deadline, "the pid file still names {old}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The id of the XDP program on `lo` in `ns`.
fn xdp_prog_id(ns: &str) -> Option<u64> {
    let out = Command::new("ip")
        .args(["-n", ns, "-d", "link", "show", "dev", "lo"])
        .output()
        .expect("ip link");
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("prog/xdp id ")?;
    text[at + 12..].split_whitespace().next()?.parse().ok()
}

/// Inodes of the listening sockets on `ports` in `ns` (one per reactor
/// thread per port, one for the admin API).
fn listener_inodes(ns: &str, ports: &[u16]) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ss", "-ltnHe"])
        .output()
        .expect("ss");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut inodes: Vec<String> = text
        .lines()
        .filter(|l| ports.iter().any(|p| l.contains(&format!("127.0.0.1:{p} "))))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("ino:"))
                .map(str::to_string)
        })
        .collect();
    inodes.sort();
    inodes
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
}

fn self_signed(dir: &Path, names: &str) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let out = Command::new(support::proc::bin())
        .args(["self-signed", "--names", names, "--out"])
        .arg(dir.join("default.pem"))
        .output()
        .expect("self-signed");
    assert!(out.status.success(), "{out:?}");
}

fn private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn load_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/upgrade/load.py")
}

#[test]
#[ignore = "needs root: network namespace, XDP, setuid"]
fn twenty_upgrades_under_load_lose_nothing() {
    let ns = Netns::new(&format!("pup{}", std::process::id()));
    let fs = BpfFs::new("upgrade");
    let root = &fs.root;
    let (uid, gid) = nobody();
    chown(root, uid, gid);
    let token = root.join("admin.token");
    std::fs::write(&token, TOKEN).expect("token");
    private(&token); // root's: the new processes keep the token handed over
    let certs = root.join("certs");
    self_signed(&certs, "upgrade.test");
    for p in [&certs, &certs.join("default.pem")] {
        chown(p, uid, gid);
    }
    let pid_file = root.join("portier.pid");
    let pins = fs.dir.join("portier");
    let config = root.join("portier.toml");
    let backend_port = 18080;
    std::fs::write(
        &config,
        format!(
            r#"[server]
http = ["127.0.0.1:8080"]
https = ["127.0.0.1:8443"]
threads = 2
user = "nobody"
pid_file = "{pid}"
upgrade_drain_ms = 120000
[tls]
cert_dir = "{certs}"
[admin]
listen = "127.0.0.1:9090"
token_file = "{token}"
[[apps]]
name = "up"
domains = ["upgrade.test"]
backends = ["127.0.0.1:{backend_port}"]
[xdp]
interfaces = ["lo"]
mode = "generic"
pin_dir = "{pins}"
service_ports = [8080, 8443]
allow_tcp_ports = [9090, {backend_port}]
drop_closed_ports = false
bogons = ["0.0.0.0/8"]
"#,
            pid = pid_file.display(),
            certs = certs.display(),
            token = token.display(),
            pins = pins.display(),
        ),
    )
    .expect("config");
    chown(&config, uid, gid);

    let mut pids = Pids::default();
    let mut backend = Command::new("ip")
        .args(["netns", "exec", &ns.0, support::proc::demo_backend_bin()])
        .args([
            "--listen",
            &format!("127.0.0.1:{backend_port}"),
            "--name",
            "b1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo backend");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Command::new("ip")
        .args(["netns", "exec", &ns.0, "curl", "-sf", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{backend_port}/"))
        .status()
        .expect("curl")
        .success()
    {
        assert!(Instant::now() < deadline, "the backend did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    pids.0.push(backend.id() as i32);
    let mut first = Portier::start(Some(&ns.0), &config);
    let first_pid = first.child.id() as i32;
    pids.0.push(first_pid);
    assert_eq!(read_pid(&pid_file), Some(first_pid));
    let prog_id = xdp_prog_id(&ns.0).expect("XDP attached to lo");
    let ports = [8080, 8443, 9090];
    let inodes = listener_inodes(&ns.0, &ports);
    assert_eq!(inodes.len(), 5, "2 threads × 2 ports + admin: {inodes:?}");

    // The load, from inside the namespace.
    let stop_file = root.join("stop");
    let ready_file = root.join("ready");
    let load = Command::new("ip")
        .args(["netns", "exec", &ns.0, "/usr/bin/python3"])
        .arg(load_script())
        .args([
            "--host",
            "127.0.0.1",
            "--http",
            "8080",
            "--https",
            "8443",
            "--max-seconds",
            "240",
        ])
        .arg("--stop-file")
        .arg(&stop_file)
        .arg("--ready-file")
        .arg(&ready_file)
        .stdout(Stdio::piped())
        .spawn()
        .expect("load.py");
    pids.0.push(load.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready_file.exists() {
        assert!(Instant::now() < deadline, "the load did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut serving = first_pid;
    let mut olds = Vec::new();
    let mut last_upgrade = SystemTime::now();
    for round in 0..20 {
        std::thread::sleep(Duration::from_millis(300));
        let new = if round % 2 == 0 {
            let out = Command::new("ip")
                .args(["netns", "exec", &ns.0, support::proc::bin(), "upgrade"])
                .arg("--config")
                .arg(&config)
                .output()
                .expect("portier upgrade");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            // The new process is recorded for the kill guard before any
            // assertion about it can fail and leave it running.
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if let Some(new) = v["new_pid"].as_i64() {
                pids.0.push(new as i32);
            }
            assert!(out.status.success(), "round {round}: {text} {out:?}");
            assert_eq!(v["old_pid"], serving, "{v}");
            assert_eq!(v["xdp_program_id"], prog_id, "{v}");
            let new = v["new_pid"].as_i64().expect("new_pid") as i32;
            assert_eq!(read_pid(&pid_file), Some(new));
            new
        } else {
            // SAFETY: signalling the process this test's upgrades started.
            unsafe { libc::kill(serving, libc::SIGUSR2) };
            let new = wait_for_new_pid(&pid_file, serving);
            pids.0.push(new);
            new
        };
        last_upgrade = SystemTime::now();
        assert!(alive(new), "round {round}: {new} is not running");
        assert_eq!(
            xdp_prog_id(&ns.0),
            Some(prog_id),
            "round {round}: XDP replaced"
        );
        assert_eq!(
            listener_inodes(&ns.0, &ports),
            inodes,
            "round {round}: a listening socket changed"
        );
        assert_eq!(
            status_field(new, "Uid:").split_whitespace().next(),
            Some(uid.to_string().as_str())
        );
        let cap_eff = u64::from_str_radix(&status_field(new, "CapEff:"), 16).expect("CapEff");
        assert_eq!(cap_eff, KEPT, "round {round}: capabilities {cap_eff:x}");
        let cap_amb = u64::from_str_radix(&status_field(new, "CapAmb:"), 16).expect("CapAmb");
        assert_eq!(cap_amb, 0, "round {round}: ambient capabilities left");
        olds.push(serving);
        serving = new;
    }

    // The last process still writes the maps it took over (CAP_BPF kept).
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["-d", r#"{"cidr":"192.0.2.0/24"}"#])
        .arg("http://127.0.0.1:9090/xdp/blocklist")
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201");
    let out = Command::new(support::proc::bin())
        .args(["xdp", "blocklist", "--pin-dir"])
        .arg(&pins)
        .output()
        .expect("portier xdp blocklist");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("192.0.2.0/24"),
        "{out:?}"
    );

    // Let the WebSockets echo once more after the last upgrade, then stop.
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&stop_file, "").expect("stop");
    let out = load.wait_with_output().expect("load.py");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("load.py prints a JSON report");
    eprintln!("load report: {report}");
    let counts = &report["counts"];
    let n = |k: &str| counts[k].as_u64().unwrap_or(0);
    assert_eq!(
        (n("h1_failed"), n("h2_failed"), n("ws_failed")),
        (0, 0, 0),
        "failed requests: {}",
        report["errors"]
    );
    assert!(n("h1_ok") > 100 && n("h2_ok") > 100, "{counts}");
    assert_eq!(n("ws_opened"), 3, "{counts}");
    // The old processes told clients to go: HTTP/1.1 by `Connection:
    // close`, HTTP/2 by GOAWAY; the clients reconnected to the new ones.
    assert!(
        n("h1_told_to_close") >= 20 && n("h2_goaways") >= 20,
        "{counts}"
    );
    let after = last_upgrade
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    for ws in 0..3 {
        let t = report["ws_last_echo"][ws.to_string()]
            .as_f64()
            .unwrap_or(0.0);
        assert!(
            t > after,
            "WebSocket {ws} did not echo after the last upgrade"
        );
    }

    // Every old process exits once its connections are gone.
    assert_eq!(olds.len(), 20, "{olds:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while olds.iter().any(|&p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "old processes still running: {:?}",
            olds.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(alive(serving));
    // A plain stop of the last one detaches the program.
    // SAFETY: signalling the process the last upgrade started.
    unsafe { libc::kill(serving, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(serving) {
        assert!(Instant::now() < deadline, "the last process did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        xdp_prog_id(&ns.0),
        None,
        "XDP still attached after the stop"
    );
    let _ = first.child.try_wait();
    let _ = backend.kill();
    let _ = backend.wait();
}

#[test]
fn a_failed_upgrade_keeps_serving_and_a_good_one_carries_the_state() {
    let b1 = Backend::start("b1");
    let b2 = Backend::start("b2");
    let dead = format!("127.0.0.1:{}", free_port()); // refuses: quarantined
    let admin_port = free_port();
    let dir = std::env::temp_dir().join(format!("portier-upgrade-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let token = dir.join("admin.token");
    std::fs::write(&token, TOKEN).expect("token");
    private(&token);
    let pid_file = dir.join("portier.pid");
    let rest = format!(
        r#"[admin]
listen = "127.0.0.1:{admin_port}"
token_file = "{token}"
[[apps]]
name = "a"
domains = ["a.test"]
backends = ["{dead}", "{b1}", "{b2}"]
sticky_sessions = true
"#,
        token = token.display(),
        b1 = b1.addr,
        b2 = b2.addr,
    );
    let server_extra = format!(
        "pid_file = \"{}\"\nupgrade_timeout_ms = 10000",
        pid_file.display()
    );
    let proxy = Proxy::start(&server_extra, &rest);
    let old = proxy.portier.child.id() as i32;
    let mut pids = Pids::default();

    // Find the dead backend (it gets quarantined), drain b2, bind a cookie.
    let mut cookie = None;
    for _ in 0..6 {
        let out = Command::new("curl")
            .args(["-s", "-D", "-", "-o", "/dev/null", "-H", "Host: a.test"])
            .arg(format!("http://{}/", proxy.addr))
            .output()
            .expect("curl");
        let head = String::from_utf8_lossy(&out.stdout).into_owned();
        if head.contains("X-Backend: b1") || head.contains("x-backend: b1") {
            cookie = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("set-cookie: ")
                        .or_else(|| l.strip_prefix("Set-Cookie: "))
                })
                .and_then(|c| c.split(';').next())
                .map(str::to_string);
        }
    }
    let cookie = cookie.expect("a response from b1 with a sticky cookie");
    let (code, _) = admin_call(
        admin_port,
        TOKEN,
        "POST",
        &format!("/apps/a/backends/{}/drain", b2.addr),
        None,
    );
    assert_eq!(code, 200);
    let states = |port: u16| -> Vec<(String, String)> {
        let (code, v) = admin_call(port, TOKEN, "GET", "/apps/a", None);
        assert_eq!(code, 200, "{v}");
        v["backends"]
            .as_array()
            .expect("backends")
            .iter()
            .map(|b| {
                (
                    b["address"].as_str().unwrap_or("").to_string(),
                    b["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let before = states(admin_port);
    assert!(
        before.contains(&(dead.clone(), "quarantined".into())),
        "{before:?}"
    );
    assert!(before.contains(&(b2.addr.to_string(), "draining".into())));

    // A binary that cannot start: the old one keeps serving.
    let config = std::fs::read_to_string(proxy_config(&proxy)).expect("config");
    std::fs::write(proxy_config(&proxy), format!("{config}\n[server\n")).expect("break it");
    let (code, v) = admin_call(admin_port, TOKEN, "POST", "/upgrade", None);
    assert_eq!(code, 500, "{v}");
    let reason = v["reason"].as_str().unwrap_or("");
    // File, line and column, and why.
    assert!(
        reason.contains("portier.toml:") && reason.contains("invalid table header"),
        "{reason}"
    );
    assert!(alive(old));
    assert_eq!(read_pid(&pid_file), Some(old as i32));
    let r = support::proc::get(proxy.addr, "a.test", "/");
    assert_eq!(r.status, 200);

    // A good one takes everything over. A WebSocket open on the old
    // process keeps it (draining) until a stop cuts the drain short.
    std::fs::write(proxy_config(&proxy), &config).expect("repair");
    let mut ws = support::proc::Conn::open(proxy.addr);
    ws.send(
        b"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let head = ws.read_until(b"\r\n\r\n");
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let (code, v) = admin_call(admin_port, TOKEN, "POST", "/upgrade", None);
    assert_eq!(code, 200, "{v}");
    let new = v["new_pid"].as_i64().expect("new pid") as i32;
    pids.0.push(new);
    assert_ne!(new, old);
    assert_eq!(read_pid(&pid_file), Some(new));
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(old), "the old process left before its WebSocket did");
    // SAFETY: signalling the process this test started.
    unsafe { libc::kill(old, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(old) {
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not cut the drain short"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ws.is_closed(), "the tunnel outlived its process");
    // Served by the new process now (the old one is gone).
    let after = states(admin_port);
    assert!(
        after.contains(&(dead.clone(), "quarantined".into())),
        "{after:?}"
    );
    assert!(
        after.contains(&(b2.addr.to_string(), "draining".into())),
        "{after:?}"
    );
    for _ in 0..4 {
        let out = Command::new("curl")
            .args([
                "-s",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-H",
                "Host: a.test",
                "-H",
            ])
            .arg(format!("Cookie: {cookie}"))
            .arg(format!("http://{}/", proxy.addr))
            .output()
            .expect("curl");
        let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(
            head.contains("x-backend: b1"),
            "the cookie no longer binds: {head}"
        );
    }
    // SAFETY: signalling the process the upgrade started.
    unsafe { libc::kill(new, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(new) {
        assert!(Instant::now() < deadline, "the new process did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn proxy_config(proxy: &Proxy) -> PathBuf {
    proxy.config_path()
}
