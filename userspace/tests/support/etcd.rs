//! A real etcd cluster per test (Debian's etcd-server 3.4.23), every member
//! on free loopback ports, poked at with Debian's `etcdctl` (API v3). Every
//! member is killed and the files removed on drop (also when the test
//! panics).
//!
//! Owns: a temp dir (`m<i>/` data dir and `m<i>.log` per member), the
//! `etcd` processes and, next to each running member, a watchdog `sh` that
//! SIGKILLs it and removes the temp dir once its stdin (a pipe held by this
//! process) closes: a test process killed with SIGKILL leaves no etcd
//! behind, within a second or so.
//! Must not: touch fixed ports or Debian's /var/lib/etcd; obey ETCD_* or
//! ETCDCTL_* variables of the environment (they are removed for children).
//! Fed by: the test. Emits: endpoints, the leader, revisions, keys, logs.
//!
//! Established against etcd 3.4.23 (heartbeat 50 ms, election 500 ms, on
//! two shared cores):
//! * A fresh 3-member cluster serves 0.3-2.5 s after spawn, one member
//!   ~0.1-0.4 s. A client port is bound before the member serves: etcdctl
//!   connecting that early backs off 1-2 s, so the harness waits for the
//!   log line "serving client traffic" before asking. A running member
//!   takes ~123 MB of disk: its 64 MB WAL segment plus the next one
//!   preallocated (`0.tmp`); no flag changes that.
//! * SIGKILL of the leader: a quorum names a new leader after 0.6-1.3 s
//!   (the election timeout is randomized in [500, 1000) ms; split votes
//!   happen), writes work ~20 ms later. A put already in flight when the
//!   leader dies is not retried by etcd: it hangs until the client's own
//!   timeout.
//! * SIGTERM: a follower exits in ~10 ms, a leader in ~65 ms (it hands
//!   leadership over; the next write succeeds ~20 ms later). SIGTERM to all
//!   members at once takes 6 s: the leader waits 5 s + 2 x election
//!   timeout for a transferee that is going away; so does a leader whose
//!   followers just left. Left alone, it steps down after an election
//!   timeout (CheckQuorum) and then stops at once: `stop_all` stops the
//!   followers, waits for that, then stops the last one.
//! * No member running: etcdctl fails with "context deadline exceeded"
//!   after its command timeout (3 s here).
//! * `compaction R` at or below an earlier compaction fails with "required
//!   revision has been compacted", above the current revision with
//!   "required revision is a future revision"; compacting at the current
//!   revision is fine. Afterwards `get --rev r` with r < R fails with
//!   "required revision has been compacted"; `watch --rev r` prints "watch
//!   was canceled (etcdserver: mvcc: required revision has been
//!   compacted)" and exits 5; `watch --rev R` still works.
//! * A wiped cluster starts again at revision 1 with a new cluster id. A
//!   client watcher that saw revision N before the wipe reconnects and
//!   resumes at N + 1 **without an error**: the new cluster's events with
//!   revisions <= N are silently never delivered.

#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;

/// Debian's binaries, not whatever is first on PATH.
const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";

/// Raft timings for tests (etcd's defaults are 100 / 1000 ms).
const HEARTBEAT_MS: &str = "50";
const ELECTION_MS: &str = "500";

/// From spawn to healthy, generous for two shared cores.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);
/// One etcdctl call; its own dial/command timeouts are shorter.
const CTL_TIMEOUT: Duration = Duration::from_secs(10);
/// SIGTERM to exit; then SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const LEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Run by `sh -c` next to each member: `$1` etcd's pid, `$2` the temp dir.
/// `read` returns non-zero at EOF, i.e. once every write end of the pipe
/// is closed: the test process exited or was killed. The harness SIGKILLs
/// the watchdog before it reaps etcd, so `$1` is never a reused pid.
const WATCHDOG: &str =
    r#"while read -r _; do :; done; kill -9 "$1" 2>/dev/null; sleep 1; rm -rf "$2""#;

static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// What one etcdctl run printed.
#[derive(Debug)]
pub struct CtlOutput {
    /// Exited 0 before the time limit.
    pub ok: bool,
    /// Killed at the time limit.
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// A running etcd cluster; stopped and removed on drop.
pub struct EtcdCluster {
    dir: PathBuf,
    /// `--initial-cluster-token`; changes with every fresh start.
    token: String,
    generation: usize,
    members: Vec<Member>,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    running: Option<Running>,
    /// Length of the log when this member was last spawned.
    log_from: u64,
}

struct Running {
    etcd: Child,
    /// Its stdin pipe stays open as long as this `Child` is held.
    watchdog: Child,
}

impl Running {
    /// Signals etcd (unless it already exited) and reaps it; SIGKILL after
    /// `grace`.
    fn end(mut self, signal: i32, grace: Duration) -> Option<ExitStatus> {
        self.end_watchdog();
        if let Ok(None) = self.etcd.try_wait() {
            // SAFETY: signalling our own child, not reaped yet (try_wait
            // just said so), so the pid is still ours.
            unsafe { libc::kill(self.etcd.id() as i32, signal) };
        }
        self.reap(grace)
    }

    fn end_watchdog(&mut self) {
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }

    fn reap(&mut self, grace: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + grace;
        loop {
            match self.etcd.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => {
                    eprintln!("etcd pid {} ignored its signal; SIGKILL", self.etcd.id());
                    let _ = self.etcd.kill();
                    return self.etcd.wait().ok();
                }
            }
        }
    }
}

impl EtcdCluster {
    /// `members` etcd processes forming one new cluster; returns once it is
    /// healthy (a quorum read through every member works).
    pub fn start(members: usize) -> EtcdCluster {
        assert!(members >= 1, "an etcd cluster needs a member");
        let dir = std::env::temp_dir().join(format!(
            "portier-etcd-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("etcd temp dir");
        let mut cluster = EtcdCluster {
            dir,
            token: String::new(),
            generation: 0,
            members: Vec::new(),
        };
        // A port can be taken between our probe and etcd's bind (etcd's own
        // peer connections use ephemeral ports too): start over on new ports.
        for attempt in 1..=3 {
            let ports = free_ports(2 * members);
            cluster.members = (0..members)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client_port: ports[2 * i],
                    peer_port: ports[2 * i + 1],
                    running: None,
                    log_from: 0,
                })
                .collect();
            match cluster.boot_new() {
                Ok(()) => return cluster,
                Err(e) if attempt < 3 && e.contains("address already in use") => {
                    eprintln!("etcd: port taken, new ports (attempt {attempt})");
                    cluster.kill_all();
                    cluster.remove_data();
                }
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Every member's client URL, `http://127.0.0.1:P`, running or not.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.endpoint(i)).collect()
    }

    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].running.is_some()
    }

    /// The temp dir holding data dirs and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.log", self.members[i].name))
    }

    /// Member `i`'s whole log (every start of it, each after a marker line).
    pub fn log(&self, i: usize) -> String {
        read_lossy(&self.log_path(i), 0)
    }

    /// Index of the member a quorum follows and that says it leads; waits
    /// through an election (panics after 10 s).
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        loop {
            if let Some(i) = self.try_leader() {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "no etcd leader within {LEADER_TIMEOUT:?}\n{}",
                self.log_tails()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The leader by `etcdctl endpoint status -w json` over the running
    /// members: member_id == leader, and a quorum names it.
    pub fn try_leader(&self) -> Option<usize> {
        let out = self.ctl(&["endpoint", "status", "-w", "json"]);
        // Partial output is fine: a member that does not answer is skipped.
        let all: serde_json::Value = serde_json::from_str(out.stdout.trim()).ok()?;
        let mut seen = Vec::new();
        for e in all.as_array()? {
            let status = &e["Status"];
            let (Some(me), Some(leader)) = (
                status["header"]["member_id"].as_u64(),
                status["leader"].as_u64(),
            ) else {
                continue;
            };
            let index = self.endpoints().iter().position(|p| e["Endpoint"] == *p);
            seen.push((index, me, leader));
        }
        let quorum = self.len() / 2 + 1;
        let named_by_quorum = |leader: u64| seen.iter().filter(|s| s.2 == leader).count() >= quorum;
        seen.iter()
            .filter(|&&(_, me, leader)| leader != 0 && me == leader && named_by_quorum(leader))
            .find_map(|&(index, _, _)| index)
    }

    /// SIGKILL member `i` (nothing if it is not running).
    pub fn kill(&mut self, i: usize) {
        if let Some(r) = self.members[i].running.take() {
            r.end(libc::SIGKILL, STOP_TIMEOUT);
        }
    }

    /// SIGTERM member `i` and wait for it to exit (SIGKILL after 10 s).
    pub fn stop(&mut self, i: usize) {
        if let Some(r) = self.members[i].running.take() {
            r.end(libc::SIGTERM, STOP_TIMEOUT);
        }
    }

    /// SIGTERM every running member: the followers at once, then the
    /// leader once it has stepped down (~0.5-1 s in all). SIGTERM to all at
    /// once takes 6 s: a leader first hands leadership over, and waits
    /// 5 s + 2 x election timeout for a transferee that is going away.
    pub fn stop_all(&mut self) {
        let leader = self.try_leader();
        self.stop_at_once(|i| Some(i) != leader);
        if let Some(i) = leader.filter(|_| self.len() > 1) {
            // Alone, it steps down after an election timeout (CheckQuorum);
            // then it stops without trying a transfer.
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.leads(i) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.stop_at_once(|_| true);
    }

    /// Member `i` says it is the leader.
    fn leads(&self, i: usize) -> bool {
        let Ok(out) = self.etcdctl_on(i, &["endpoint", "status", "-w", "json"]) else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
        let status = &v[0]["Status"];
        status["leader"].as_u64().is_some_and(|l| l != 0)
            && status["leader"] == status["header"]["member_id"]
    }

    fn stop_at_once(&mut self, pick: impl Fn(usize) -> bool) {
        let mut stopping: Vec<Running> = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            if !pick(i) {
                continue;
            }
            if let Some(mut r) = m.running.take() {
                r.end_watchdog();
                if let Ok(None) = r.etcd.try_wait() {
                    // SAFETY: our own child, not reaped yet.
                    unsafe { libc::kill(r.etcd.id() as i32, libc::SIGTERM) };
                }
                stopping.push(r);
            }
        }
        for mut r in stopping {
            r.reap(STOP_TIMEOUT);
        }
    }

    /// Start stopped member `i` again on its data dir
    /// (`--initial-cluster-state existing`). Waits until the cluster is
    /// healthy when a quorum is running, else until its client port
    /// accepts connections.
    pub fn restart(&mut self, i: usize) {
        assert!(!self.is_running(i), "etcd member {i} is running");
        self.spawn(i, "existing").unwrap_or_else(|e| panic!("{e}"));
        let running = self.members.iter().filter(|m| m.running.is_some()).count();
        let ready = if running > self.len() / 2 {
            self.wait_healthy()
        } else {
            self.wait_listening(i)
        };
        ready.unwrap_or_else(|e| panic!("{e}"));
    }

    /// Restart every stopped member; waits until the cluster is healthy.
    pub fn start_all(&mut self) {
        for i in 0..self.len() {
            if !self.is_running(i) {
                self.spawn(i, "existing").unwrap_or_else(|e| panic!("{e}"));
            }
        }
        self.wait_healthy().unwrap_or_else(|e| panic!("{e}"));
    }

    /// etcd lost everything: every member killed, data dirs removed, a new
    /// cluster (new token, new cluster id, revision 1) on the same ports.
    pub fn wipe_and_restart(&mut self) {
        self.kill_all();
        self.remove_data();
        self.boot_new().unwrap_or_else(|e| panic!("{e}"));
    }

    /// The cluster's current revision (a quorum read).
    pub fn revision(&self) -> i64 {
        let out = self.ctl_ok(&["get", "-w", "json", "--", "portier-harness-probe"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("etcdctl get json");
        v["header"]["revision"]
            .as_i64()
            .unwrap_or_else(|| panic!("no revision in {out}"))
    }

    /// `etcdctl compaction [--physical] revision`.
    pub fn compact(&self, revision: i64, physical: bool) {
        let rev = revision.to_string();
        let mut args = vec!["compaction"];
        if physical {
            args.push("--physical");
        }
        args.push(&rev);
        self.ctl_ok(&args);
    }

    /// Compacts at the current revision; returns it.
    pub fn compact_now(&self, physical: bool) -> i64 {
        let rev = self.revision();
        self.compact(rev, physical);
        rev
    }

    pub fn put(&self, key: &str, value: &str) {
        self.try_put(key, value).unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn try_put(&self, key: &str, value: &str) -> Result<(), String> {
        self.etcdctl(&["put", "--", key, value]).map(drop)
    }

    /// Keys under `prefix` (all keys for ""), in key order.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.try_get_prefix(prefix)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_get_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, String> {
        let out = self.etcdctl(&["get", "--prefix", "-w", "json", "--", prefix])?;
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).map_err(|e| format!("etcdctl get: {e}: {out}"))?;
        let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
        Ok(kvs
            .iter()
            .map(|kv| (unbase64(&kv["key"]), unbase64(&kv["value"])))
            .collect())
    }

    /// The value of one key.
    pub fn get(&self, key: &str) -> Option<String> {
        self.get_prefix(key)
            .into_iter()
            .find_map(|(k, v)| (k == key).then_some(v))
    }

    /// Deletes the keys under `prefix`; returns how many there were.
    pub fn del_prefix(&self, prefix: &str) -> u64 {
        let out = self.ctl_ok(&["del", "--prefix", "--", prefix]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("etcdctl del printed {out:?}"))
    }

    /// etcdctl against the running members (all members when none runs):
    /// stdout, or stderr when it fails.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String, String> {
        let out = self.ctl(args);
        if out.ok {
            Ok(out.stdout)
        } else {
            Err(format!("etcdctl {args:?} failed: {}", out.stderr.trim()))
        }
    }

    /// etcdctl against member `i` only (add `--consistency=s` to a `get`
    /// to read its local copy without asking the leader).
    pub fn etcdctl_on(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let out = run(command_for(&[self.endpoint(i)]).args(args), CTL_TIMEOUT);
        if out.ok {
            Ok(out.stdout)
        } else {
            Err(format!(
                "etcdctl on m{i} {args:?} failed: {}",
                out.stderr.trim()
            ))
        }
    }

    /// etcdctl killed after `max` (e.g. a `watch`): what it printed so far.
    pub fn etcdctl_for(&self, args: &[&str], max: Duration) -> CtlOutput {
        run(self.etcdctl_command().args(args), max)
    }

    /// An etcdctl command with API v3, the running members' endpoints (all
    /// when none runs) and short timeouts (dial 1 s, command 3 s); add the
    /// arguments.
    pub fn etcdctl_command(&self) -> Command {
        let running: Vec<String> = (0..self.len())
            .filter(|&i| self.is_running(i))
            .map(|i| self.endpoint(i))
            .collect();
        if running.is_empty() {
            command_for(&self.endpoints())
        } else {
            command_for(&running)
        }
    }

    fn ctl(&self, args: &[&str]) -> CtlOutput {
        self.etcdctl_for(args, CTL_TIMEOUT)
    }

    fn ctl_ok(&self, args: &[&str]) -> String {
        self.etcdctl(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Spawns every member with `--initial-cluster-state new` and a new
    /// token; waits until healthy.
    fn boot_new(&mut self) -> Result<(), String> {
        self.generation += 1;
        let base = self.dir.file_name().unwrap_or_default().to_string_lossy();
        self.token = format!("{base}-{}", self.generation);
        for i in 0..self.len() {
            self.spawn(i, "new")?;
        }
        self.wait_healthy()
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<(), String> {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let data_dir = self.data_dir(i);
        let log_path = self.log_path(i);
        let client = self.endpoint(i);
        let m = &self.members[i];
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("etcd log {}: {e}", log_path.display()))?;
        let log_from = log.seek(SeekFrom::End(0)).unwrap_or(0);
        let _ = writeln!(
            log,
            "=== portier harness: start {} ({state}, token {}) ===",
            m.name, self.token
        );
        let mut cmd = Command::new(ETCD);
        clean_env(&mut cmd);
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", HEARTBEAT_MS])
            .args(["--election-timeout", ELECTION_MS])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| format!("etcd log: {e}"))?)
            .stderr(log);
        let mut etcd = cmd
            .spawn()
            .map_err(|e| format!("spawn {ETCD} (apt-get install etcd-server): {e}"))?;
        let watchdog = Command::new("/bin/sh")
            .args(["-c", WATCHDOG, "etcd-watchdog"])
            .arg(etcd.id().to_string())
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let watchdog = match watchdog {
            Ok(w) => w,
            Err(e) => {
                let _ = etcd.kill();
                let _ = etcd.wait();
                return Err(format!("spawn /bin/sh (etcd watchdog): {e}"));
            }
        };
        let m = &mut self.members[i];
        m.running = Some(Running { etcd, watchdog });
        m.log_from = log_from;
        Ok(())
    }

    /// Until `etcdctl endpoint health` passes on every running member (a
    /// quorum read through each, so a leader and a quorum exist).
    fn wait_healthy(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let deadline = started + HEALTHY_TIMEOUT;
        loop {
            self.check_running()?;
            // etcdctl's gRPC client backs off for 1-2 s when it connects
            // before the member serves (its port is bound earlier), so wait
            // for the log line first (any etcdctl after 3 s, should the
            // line ever change).
            let mut why = String::from("not serving client traffic yet");
            if self.all_serving() || Instant::now() > started + Duration::from_secs(3) {
                let out = self.ctl(&["endpoint", "health"]);
                if out.ok {
                    return Ok(());
                }
                why = out.stderr;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "etcd cluster not healthy within {HEALTHY_TIMEOUT:?}: {}\n{}",
                    why.trim(),
                    self.log_tails()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every running member logged, since its spawn, that it serves
    /// clients (etcd 3.4 does so once it has joined through raft).
    fn all_serving(&self) -> bool {
        self.members.iter().enumerate().all(|(i, m)| {
            m.running.is_none()
                || read_lossy(&self.log_path(i), m.log_from).contains("serving client traffic")
        })
    }

    fn wait_listening(&mut self, i: usize) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.members[i].client_port));
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            self.check_running()?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("etcd member {i} not listening on {addr}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A member that exited on its own is an error, with its log.
    fn check_running(&mut self) -> Result<(), String> {
        for m in &mut self.members {
            let Some(r) = m.running.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = r.etcd.try_wait() {
                r.end_watchdog();
                m.running = None;
                let log = read_lossy(&self.dir.join(format!("{}.log", m.name)), m.log_from);
                return Err(format!("etcd {} exited ({status}):\n{log}", m.name));
            }
        }
        Ok(())
    }

    fn kill_all(&mut self) {
        for i in 0..self.len() {
            self.kill(i);
        }
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(&self.members[i].name)
    }

    fn remove_data(&self) {
        for i in 0..self.len() {
            let _ = std::fs::remove_dir_all(self.data_dir(i));
        }
    }

    /// The last lines each member logged since its last start.
    fn log_tails(&self) -> String {
        let mut all = String::new();
        for (i, m) in self.members.iter().enumerate() {
            let log = read_lossy(&self.log_path(i), m.log_from);
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            all.push_str(&format!("--- {} log (tail) ---\n{tail}\n", m.name));
        }
        all
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.kill_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `n` distinct loopback ports nobody listens on right now (held together
/// while probing, so no two are equal; see `proc::free_port`).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// etcdctl, API v3, against `endpoints`, with short timeouts.
fn command_for(endpoints: &[String]) -> Command {
    let mut cmd = Command::new(ETCDCTL);
    clean_env(&mut cmd);
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(["--dial-timeout=1s", "--command-timeout=3s"]);
    cmd
}

/// Children see neither ETCD_* / ETCDCTL_* settings nor proxies.
fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("ETCD") || k.to_ascii_lowercase().ends_with("_proxy") {
            cmd.env_remove(k.as_ref());
        }
    }
}

/// Runs `cmd` with piped output; killed after `max`.
fn run(cmd: &mut Command, max: Duration) -> CtlOutput {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn /usr/bin/etcdctl (apt-get install etcd-client)");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + max;
    let (status, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (Some(status), false),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                break (child.wait().ok(), true);
            }
        }
    };
    CtlOutput {
        ok: !timed_out && status.is_some_and(|s| s.success()),
        timed_out,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn unbase64(v: &serde_json::Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("etcdctl json: {v} is not base64: {e}"));
    String::from_utf8_lossy(&bytes).into_owned()
}

fn read_lossy(path: &Path, from: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.seek(SeekFrom::Start(from));
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}
