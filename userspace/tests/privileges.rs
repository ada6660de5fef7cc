//! No root at runtime (`[server] user`): the real `portier` starts as root
//! in a network namespace of the test's own, attaches XDP to its `lo`,
//! binds, then runs as `nobody` with only CAP_NET_BIND_SERVICE,
//! CAP_NET_ADMIN and CAP_BPF in every thread. Reload, a certificate
//! install, an access-log reopen and an XDP blocklist change still work
//! under that user. Root only (namespace, XDP).

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use support::netns::{BpfFs, Netns, Portier};
use support::procfs::{nobody, task_status_field};

const TOKEN: &str = "privileges-token-0123456789";
/// CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_BPF (39).
const KEPT: u64 = (1 << 10) | (1 << 12) | (1 << 39);

#[test]
#[ignore = "needs root: network namespace, XDP, setuid"]
fn runs_as_an_unprivileged_user_with_only_the_capabilities_it_needs() {
    let ns = Netns::new(&format!("ppv{}", std::process::id()));
    let fs = BpfFs::new("privileges");
    let (uid, gid) = nobody();
    let root = &fs.root;
    // Where the config lives must be writable by the user (admin changes
    // are written back next to it); portier gives itself the rest.
    std::os::unix::fs::chown(root, Some(uid), Some(gid)).expect("chown");
    let token = root.join("admin.token");
    std::fs::write(&token, TOKEN).expect("token");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let certs = root.join("certs");
    std::fs::create_dir_all(&certs).expect("certs");
    let out = std::process::Command::new(support::proc::bin())
        .args(["self-signed", "--names", "p.test", "--out"])
        .arg(certs.join("default.pem"))
        .output()
        .expect("self-signed");
    assert!(out.status.success());
    // The operator gives the certificate directory (not empty) to the user:
    // Portier takes over only empty paths or its own.
    for p in [&certs, &certs.join("default.pem")] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown");
    }
    let log = root.join("access.log");
    let config = root.join("portier.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
http = ["127.0.0.1:80"]
https = ["127.0.0.1:443"]
threads = 2
user = "nobody"
[tls]
cert_dir = "{certs}"
reload_interval_ms = 200
[log]
access = "{log}"
[admin]
listen = "127.0.0.1:9090"
token_file = "{token}"
[[apps]]
name = "p"
domains = ["p.test"]
backends = ["127.0.0.1:9"]
[xdp]
interfaces = ["lo"]
mode = "generic"
pin_dir = "{pins}"
service_ports = [80, 443]
allow_tcp_ports = [9090, 9]
drop_closed_ports = false
bogons = ["0.0.0.0/8"]
"#,
            certs = certs.display(),
            log = log.display(),
            token = token.display(),
            pins = fs.dir.join("portier").display(),
        ),
    )
    .expect("config");
    std::os::unix::fs::chown(&config, Some(uid), Some(gid)).expect("chown");
    let mut portier = Portier::start(Some(&ns.0), &config);
    let pid = portier.child.id().to_string();

    // Every thread: the user, and no capability beyond the kept three.
    let tasks: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    assert!(tasks.len() >= 3, "main, reactors, access log: {tasks:?}");
    for task in &tasks {
        let uids = task_status_field(&pid, task, "Uid:");
        assert!(
            uids.split_whitespace().all(|u| u == uid.to_string()),
            "task {task}: Uid {uids}"
        );
        let eff =
            u64::from_str_radix(&task_status_field(&pid, task, "CapEff:"), 16).expect("CapEff");
        let prm =
            u64::from_str_radix(&task_status_field(&pid, task, "CapPrm:"), 16).expect("CapPrm");
        assert_eq!(eff & !KEPT, 0, "task {task}: CapEff {eff:x}");
        assert_eq!(prm & !KEPT, 0, "task {task}: CapPrm {prm:x}");
    }
    // The bounding set (per thread) of the main thread, which every thread
    // started after the drop (reactors, runtime) inherits.
    let bnd = u64::from_str_radix(&task_status_field(&pid, &pid, "CapBnd:"), 16).expect("CapBnd");
    assert_eq!(bnd, KEPT, "bounding set {bnd:x}");
    assert_eq!(
        u64::from_str_radix(&task_status_field(&pid, &pid, "CapEff:"), 16).expect("CapEff"),
        KEPT,
        "the main thread keeps exactly what it needs"
    );
    assert_eq!(task_status_field(&pid, &pid, "NoNewPrivs:"), "1");

    let curl = |args: &[&str]| {
        let mut all = vec!["curl", "-s", "-m", "5"];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&ns.run(&all).stdout).into_owned()
    };
    let auth = format!("Authorization: Bearer {TOKEN}");
    // Reload (SIGHUP), with a change to apply.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).expect("config").replace(
            "domains = [\"p.test\"]",
            "domains = [\"p.test\", \"q.test\"]",
        ),
    )
    .expect("config");
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(portier.child.id() as i32, libc::SIGHUP) };
    portier.wait_for_line("configuration reloaded", Duration::from_secs(10));
    // A certificate installed through the admin API: written as the user.
    let pem = root.join("upload.pem");
    let out = std::process::Command::new(support::proc::bin())
        .args(["self-signed", "--names", "q.test", "--out"])
        .arg(&pem)
        .output()
        .expect("self-signed");
    assert!(out.status.success());
    let put = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "PUT",
        "-H",
        &auth,
        "--data-binary",
        &format!("@{}", pem.display()),
        "http://127.0.0.1:9090/certificates/q.test",
    ]);
    assert_eq!(put, "200");
    assert_eq!(
        std::fs::metadata(certs.join("q.test.pem"))
            .expect("installed")
            .uid(),
        uid
    );
    // Access log reopened after a rotation: the new file is the user's.
    std::fs::rename(&log, root.join("access.log.1")).expect("rotate");
    // SAFETY: as above.
    unsafe { libc::kill(portier.child.id() as i32, libc::SIGUSR1) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Path::new(&log).exists() {
        curl(&[
            "-o",
            "/dev/null",
            "-H",
            "Host: p.test",
            "http://127.0.0.1:80/",
        ]);
        assert!(Instant::now() < deadline, "access log not reopened");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::metadata(&log).expect("log").uid(), uid);
    // The XDP blocklist changed live through the maps (CAP_BPF kept).
    let posted = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "-H",
        &auth,
        "-d",
        r#"{"cidr": "192.0.2.0/24"}"#,
        "http://127.0.0.1:9090/xdp/blocklist",
    ]);
    assert_eq!(posted, "201");
    let list = curl(&["-H", &auth, "http://127.0.0.1:9090/xdp/blocklist"]);
    assert!(list.contains("192.0.2.0/24"), "{list}");
    // Still serving TLS with the reloaded names.
    let code = curl(&[
        "-k",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--resolve",
        "q.test:443:127.0.0.1",
        "https://q.test:443/",
    ]);
    // Routed to the app (whose backend is down: 502, or 503 once it is
    // quarantined), not 404.
    assert!(code == "502" || code == "503", "q.test routes: {code}");
}
