//! The Debian package on this machine: `dpkg -i` the .deb `cargo xtask
//! test` built (its path in `PORTIER_DEB`), check what went where with which
//! owner and mode, `portier check` the installed config, verify the unit and
//! the logrotate file, start the installed binary the way the unit would
//! (the unit's capability bounding set, no_new_privs, readiness on a
//! NOTIFY_SOCKET) in a network namespace, then `dpkg --purge` and check
//! nothing is left. The purge also runs when an assertion fails.
//!
//! systemd is not PID 1 here, so the service itself is not started by
//! systemd: ProtectSystem=, ReadWritePaths= and the other sandboxing lines
//! are checked by `systemd-analyze verify` only.
//!
//! Root only; without `PORTIER_DEB` (a plain `cargo test`) it says so and
//! passes.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::netns::{BpfFs, Netns};
use support::procfs::status_field;

const UNIT_PATHS: [&str; 2] = [
    "/usr/lib/systemd/system/portier.service",
    "/lib/systemd/system/portier.service",
];
const CONFIG: &str = "/etc/portier/portier.toml";
/// A config of the test's own next to the real one (group-writable dir, as
/// for admin API write-back), removed before the purge.
const TEST_CONFIG: &str = "/etc/portier/package-test.toml";

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// dpkg, waiting (2 minutes at most) while someone else holds its lock.
fn dpkg(args: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("dpkg");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            return;
        }
        if stderr.contains("lock") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(2));
            continue;
        }
        panic!(
            "dpkg {args:?} failed ({}): {}{stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

fn installed() -> bool {
    let out = run(&["dpkg-query", "-W", "-f=${Status}", "portier"]);
    String::from_utf8_lossy(&out.stdout).contains("installed")
        && !String::from_utf8_lossy(&out.stdout).contains("not-installed")
}

/// `getent DB NAME` fields, if it exists.
fn getent(db: &str, name: &str) -> Option<Vec<String>> {
    let out = run(&["getent", db, name]);
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(':')
            .map(str::to_string)
            .collect()
    })
}

/// Whatever happens to the test, the package leaves with it.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(TEST_CONFIG);
        if installed() || Path::new("/etc/portier").exists() {
            let _ = Command::new("dpkg")
                .args(["--purge", "portier"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output();
        }
    }
}

/// (uid, gid, mode & 0o7777)
fn owner_mode(path: &str) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.uid(), m.gid(), m.permissions().mode() & 0o7777)
}

/// Capability names of the unit's `CapabilityBoundingSet=` as setpriv
/// spells them (`CAP_NET_ADMIN` -> `net_admin`).
fn unit_bounding_set(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet=");
    line.split_whitespace()
        .map(|c| {
            c.strip_prefix("CAP_")
                .expect("CAP_ name")
                .to_ascii_lowercase()
        })
        .collect()
}

/// The next datagram on the notification socket.
fn notified(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
#[ignore = "needs root: dpkg -i, a system user, a network namespace, XDP"]
fn installs_starts_like_the_unit_and_purges_cleanly() {
    let Some(deb) = std::env::var_os("PORTIER_DEB").map(PathBuf::from) else {
        eprintln!(
            "package test skipped: PORTIER_DEB is not set (`cargo xtask test` builds the .deb and sets it)"
        );
        return;
    };
    assert!(deb.is_file(), "PORTIER_DEB={} is not a file", deb.display());
    // Someone else's portier (package, user, files) is not ours to purge.
    assert!(
        !installed(),
        "the portier package is already installed on this machine: remove it first, this test installs and purges it"
    );
    for path in ["/etc/portier", "/var/lib/portier", "/var/log/portier"] {
        assert!(
            !Path::new(path).exists(),
            "{path} exists: this test would purge it"
        );
    }
    assert!(
        getent("passwd", "portier").is_none(),
        "a `portier` user exists already: this test would delete it"
    );

    let _purge = Purge;
    dpkg(&["-i", deb.to_str().expect("utf-8 path")]);
    assert!(installed());

    // What the package holds: portier and nothing of the demo.
    let files = ok(&["dpkg", "-L", "portier"]);
    assert!(files.lines().any(|l| l == "/usr/bin/portier"), "{files}");
    assert!(!files.contains("demo-backend"), "{files}");
    assert!(files.contains("/systemd/system/portier.service"), "{files}");
    let conffiles = ok(&["dpkg-query", "-W", "-f=${Conffiles}", "portier"]);
    for f in [CONFIG, "/etc/logrotate.d/portier"] {
        assert!(conffiles.contains(f), "{f} not a conffile: {conffiles}");
    }
    let unit_path = UNIT_PATHS
        .iter()
        .find(|p| Path::new(p).exists())
        .expect("the unit is installed");
    let unit = std::fs::read_to_string(unit_path).expect("unit");

    // The system user and the layout postinst made.
    let user = getent("passwd", "portier").expect("postinst created the user");
    let (uid, gid): (u32, u32) = (user[2].parse().expect("uid"), user[3].parse().expect("gid"));
    assert!(uid < 1000, "a system user: uid {uid}");
    assert_eq!(user[5], "/var/lib/portier");
    assert_eq!(user[6], "/usr/sbin/nologin");
    assert_eq!(
        getent("group", "portier").expect("its group")[2],
        gid.to_string()
    );
    let adm: u32 = getent("group", "adm").expect("adm")[2]
        .parse()
        .expect("gid");
    assert_eq!(owner_mode("/usr/bin/portier"), (0, 0, 0o755));
    assert_eq!(owner_mode("/etc/portier"), (0, gid, 0o770));
    assert_eq!(owner_mode(CONFIG), (0, gid, 0o640));
    assert_eq!(owner_mode("/etc/portier/admin.token"), (0, 0, 0o600));
    let token = std::fs::read_to_string("/etc/portier/admin.token").expect("token");
    let token = token.trim().to_string();
    assert!(token.len() >= 32, "a random token: {} chars", token.len());
    assert_eq!(owner_mode("/etc/logrotate.d/portier"), (0, 0, 0o644));
    assert_eq!(owner_mode("/var/lib/portier"), (uid, gid, 0o750));
    assert_eq!(owner_mode("/var/lib/portier/certs"), (uid, gid, 0o700));
    assert_eq!(
        owner_mode("/var/lib/portier/certs/default.pem"),
        (uid, gid, 0o600)
    );
    assert_eq!(owner_mode("/var/log/portier"), (uid, adm, 0o750));

    // The installed config is valid as shipped.
    let check = ok(&["/usr/bin/portier", "check", "--config", CONFIG]);
    assert!(check.contains(": ok"), "{check}");

    // The unit, as systemd would load it (the tools work without systemd
    // running; starting it does not).
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let out = run(&["systemd-analyze", "verify", unit_path]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("systemd-analyze verify {unit_path}: {}\n{text}", out.status);
        assert!(out.status.success(), "systemd-analyze verify: {text}");
        assert!(!text.contains("portier.service:"), "{text}");
    } else {
        eprintln!("systemd-analyze not installed: the unit is not verified");
    }
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
    }
    assert!(
        !unit.lines().any(|l| l.starts_with("User=")),
        "starts as root"
    );

    // logrotate accepts the file (dry run, a state file of our own).
    let scratch = BpfFs::new("package");
    if Path::new("/usr/sbin/logrotate").exists() {
        let state = scratch.root.join("logrotate.state");
        ok(&[
            "/usr/sbin/logrotate",
            "--debug",
            "--state",
            state.to_str().expect("utf-8"),
            "/etc/logrotate.d/portier",
        ]);
    } else {
        eprintln!("logrotate not installed: its config is not checked");
    }

    starts_like_the_unit(&unit, &scratch, &token, uid);

    // Purge: the package, its files, the user, the state, the logs.
    std::fs::remove_file(TEST_CONFIG).expect("test config");
    dpkg(&["--purge", "portier"]);
    assert!(!installed());
    for path in [
        "/usr/bin/portier",
        "/etc/portier",
        "/etc/logrotate.d/portier",
        "/var/lib/portier",
        "/var/log/portier",
        "/etc/systemd/system/portier.service",
        "/var/lib/systemd/deb-systemd-helper-enabled/portier.service.dsh-also",
        "/var/lib/systemd/deb-systemd-helper-masked/portier.service",
    ] {
        assert!(!Path::new(path).exists(), "{path} left after the purge");
    }
    assert!(!Path::new(unit_path).exists(), "{unit_path} left");
    assert!(getent("passwd", "portier").is_none(), "user left");
    assert!(getent("group", "portier").is_none(), "group left");
}

/// The installed binary with the installed layout, started the way the unit
/// starts it: as root with only the unit's bounding set, no_new_privs, a
/// NOTIFY_SOCKET. XDP (generic, the namespace's `lo`) and ACME are on so
/// every root step before the drop runs. Ready, serving, reload, admin API
/// write-back to /etc/portier, then a clean stop.
fn starts_like_the_unit(unit: &str, scratch: &BpfFs, token: &str, uid: u32) {
    let config = std::fs::read_to_string(CONFIG).expect("config");
    std::fs::write(
        TEST_CONFIG,
        format!(
            r#"{config}
[xdp]
interfaces = ["lo"]
mode = "generic"
pin_dir = "{pins}"
allow_tcp_ports = [9090]
drop_closed_ports = false
bogons = ["0.0.0.0/8"]

[acme]
# Nothing answers here: orders fail and back off, which is fine.
directory = "https://127.0.0.1:14000/dir"
"#,
            pins = scratch.dir.join("portier").display(),
        ),
    )
    .expect("test config");
    let gid = std::fs::metadata(CONFIG).expect("config").gid();
    std::os::unix::fs::chown(TEST_CONFIG, Some(0), Some(gid)).expect("chown");
    std::fs::set_permissions(TEST_CONFIG, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    ok(&["/usr/bin/portier", "check", "--config", TEST_CONFIG]);

    // systemd's notification socket, played by the test (writable by all,
    // as /run/systemd/notify is: Portier sends READY=1 as `portier`).
    let notify_path = scratch.root.join("notify");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");

    let caps = unit_bounding_set(unit);
    let bounding = format!(
        "-all,{}",
        caps.iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    eprintln!("bounding set from the unit: {bounding}");
    let ns = Netns::new(&format!("ppk{}", std::process::id() % 100_000));
    let log = scratch.root.join("portier.log");
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "setpriv",
            "--bounding-set",
            &bounding,
        ])
        .args(["--no-new-privs", "--inh-caps=-all", "--"])
        .args(["/usr/bin/portier", "--config", TEST_CONFIG])
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start portier");
    let pid = child.id();
    let stop = |child: &mut std::process::Child| {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    };
    let new_pid = std::cell::Cell::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ready = notified(&notify);
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(ready.starts_with("READY=1\n"), "{ready:?}\n{said}");
        assert!(said.contains("XDP attached to lo (generic mode)"), "{said}");
        assert!(said.contains("running as portier"), "{said}");
        // The drop happened within the unit's bounding set: the user, the
        // kept capabilities only, the bounding set cut to them
        // (CAP_SETPCAP is in the unit's set for that), no_new_privs.
        let uids = status_field(pid, "Uid:");
        assert!(
            uids.split_whitespace().all(|u| u == uid.to_string()),
            "Uid {uids}"
        );
        let kept: u64 = (1 << 10) | (1 << 12) | (1 << 39);
        let bnd = u64::from_str_radix(&status_field(pid, "CapBnd:"), 16).expect("CapBnd");
        assert_eq!(bnd, kept, "bounding set {bnd:x}\n{said}");
        assert_eq!(status_field(pid, "NoNewPrivs:"), "1");

        let curl = |args: &[&str]| {
            let mut all = vec!["curl", "-s", "-m", "5"];
            all.extend_from_slice(args);
            let out = ns.run(&all);
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let code = ["-o", "/dev/null", "-w", "%{http_code}"];
        assert_eq!(curl(&[&code[..], &["http://127.0.0.1/"]].concat()), "404");
        assert_eq!(
            curl(&[&code[..], &["-k", "https://127.0.0.1/"]].concat()),
            "404",
            "HTTPS with the placeholder certificate"
        );
        let auth = format!("Authorization: Bearer {token}");
        assert_eq!(
            curl(&[&code[..], &["-H", &auth, "http://127.0.0.1:9090/apps"]].concat()),
            "200"
        );
        // Admin API write-back into /etc/portier, as `portier`; the maps
        // updated with the kept CAP_BPF.
        assert_eq!(
            curl(
                &[
                    &code[..],
                    &[
                        "-H",
                        &auth,
                        "-X",
                        "POST",
                        "-d",
                        r#"{"cidr": "203.0.113.0/24"}"#,
                        "http://127.0.0.1:9090/xdp/blocklist",
                    ]
                ]
                .concat()
            ),
            "201"
        );
        let written = std::fs::read_to_string(TEST_CONFIG).expect("config");
        assert!(written.contains("203.0.113.0/24"), "{written}");
        assert_eq!(std::fs::metadata(TEST_CONFIG).expect("config").uid(), uid);

        // SIGHUP (ExecReload): RELOADING=1, then READY=1 again.
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(pid as i32, libc::SIGHUP) };
        let reloading = notified(&notify);
        assert!(
            reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{reloading:?}"
        );
        let ready = notified(&notify);
        assert_eq!(ready, "READY=1\nSTATUS=serving\n");

        // The access log, opened as root and given to the user (requests
        // for no app are not logged: there is no app here).
        let access = Path::new("/var/log/portier/access.log");
        assert_eq!(std::fs::metadata(access).expect("access log").uid(), uid);

        // A binary upgrade the way the unit documents it (`systemctl kill -s
        // USR2 --kill-whom=main`): the new process serves, the old one
        // names it to systemd (MAINPID), then drains and exits cleanly.
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(pid as i32, libc::SIGUSR2) };
        let main = notified(&notify);
        let new: u32 = main
            .strip_prefix("MAINPID=")
            .and_then(|r| r.split('\n').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no MAINPID in {main:?}"));
        new_pid.set(Some(new));
        assert!(main.contains("\nREADY=1\n"), "{main:?}");
        assert_ne!(new, pid);
        let uids = status_field(new, "Uid:");
        assert!(
            uids.split_whitespace().all(|u| u == uid.to_string()),
            "Uid {uids}"
        );
        let bnd = u64::from_str_radix(&status_field(new, "CapBnd:"), 16).expect("CapBnd");
        let eff = u64::from_str_radix(&status_field(new, "CapEff:"), 16).expect("CapEff");
        assert_eq!((bnd, eff), (kept, kept), "new process capabilities");
        assert_eq!(curl(&[&code[..], &["http://127.0.0.1/"]].concat()), "404");
        let deadline = Instant::now() + Duration::from_secs(15);
        let old = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            assert!(Instant::now() < deadline, "the old process did not exit");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(old.success(), "the old process exited with {old:?}");
    }));
    // The process serving now: the upgraded one (not our child), else ours.
    let status = match new_pid.get() {
        Some(new) => {
            // SAFETY: signalling the process the upgrade started.
            unsafe { libc::kill(new as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            let gone = || {
                std::fs::read_to_string(format!("/proc/{new}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true)
            };
            while !gone() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !gone() {
                // SAFETY: as above.
                unsafe { libc::kill(new as i32, libc::SIGKILL) };
            }
            let _ = stop(&mut child);
            gone().then_some(())
        }
        None => stop(&mut child).filter(|s| s.success()).map(|_| ()),
    };
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    if let Err(panic) = result {
        eprintln!("portier said:\n{said}");
        std::panic::resume_unwind(panic);
    }
    let stopping = notified(&notify);
    assert_eq!(stopping, "STOPPING=1\n", "{said}");
    assert!(status.is_some(), "clean stop\n{said}");
    assert!(said.contains("portier: stopped"), "{said}");
}
