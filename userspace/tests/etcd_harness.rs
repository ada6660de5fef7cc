//! The etcd test harness itself, before Portier uses it: real Debian etcd
//! 3.4 clusters from `tests/support/etcd.rs`, driven with etcdctl — health,
//! replication to every member, a killed leader replaced and writes
//! resuming, the whole cluster stopped and started on its data, compaction
//! as an old-revision reader and watcher see it, a wiped cluster starting
//! over (and what a watcher that lived through the wipe misses), and a
//! single-member cluster.
//!
//! Timings are printed (`--nocapture`). The tests take turns: one cluster
//! at a time on the shared cores keeps election timings honest.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use support::etcd::EtcdCluster;

/// Per test. A start takes ~0.3 s, an election < 2 s.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `body` on its own thread, one test at a time; fails the test when
/// it takes longer than `TEST_TIMEOUT` (a stuck body's cluster then dies
/// with the test process, by its watchdogs).
fn bounded(body: impl FnOnce() + Send + 'static) {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    match finished.recv_timeout(TEST_TIMEOUT) {
        Ok(()) => {
            let _ = worker.join();
        }
        Err(RecvTimeoutError::Timeout) => panic!("test took longer than {TEST_TIMEOUT:?}"),
        Err(RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// Retries `f` every 20 ms until it gives `Some`; panics after `max`.
fn eventually<T>(what: &str, max: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + max;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {max:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Member `i`'s own copy of `key` (serializable read: no leader involved).
fn local_value(etcd: &EtcdCluster, i: usize, key: &str) -> Option<String> {
    let out = etcd
        .etcdctl_on(i, &["get", "--consistency=s", "--print-value-only", key])
        .ok()?;
    out.strip_suffix('\n').map(str::to_string)
}

fn cluster_id(etcd: &EtcdCluster) -> u64 {
    let out = etcd
        .etcdctl(&["endpoint", "status", "-w", "json"])
        .expect("endpoint status");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("status json");
    v[0]["Status"]["header"]["cluster_id"]
        .as_u64()
        .expect("cluster_id")
}

/// `etcdctl watch --prefix`, its output lines on a channel; killed on drop.
struct Watcher {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Watcher {
    fn start(etcd: &EtcdCluster, prefix: &str) -> Watcher {
        let mut child = etcd
            .etcdctl_command()
            .args(["watch", "--prefix", prefix])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcdctl watch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watcher {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads until a line equal to `line` arrives; panics after `max`.
    fn wait_for(&mut self, line: &str, max: Duration) {
        let deadline = Instant::now() + max;
        while !self.seen.iter().any(|l| l == line) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("watcher did not print {line:?}; printed {:?}", self.seen),
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn three_members_replicate_every_write() {
    bounded(|| {
        let t = Instant::now();
        let etcd = EtcdCluster::start(3);
        eprintln!("3 members healthy after {:?}", t.elapsed());
        let endpoints = etcd.endpoints();
        assert_eq!(endpoints.len(), 3);
        assert!(endpoints.iter().all(|e| e.starts_with("http://127.0.0.1:")));
        assert!(endpoints[0] != endpoints[1] && endpoints[1] != endpoints[2]);
        assert!(etcd.leader() < 3);

        etcd.put("/portier/apps/shop", r#"{"backends":["127.0.0.1:9000"]}"#);
        etcd.put("/portier/domains/shop.localhost", "shop");
        etcd.put("/other", "x");
        // Values are bytes as given: a leading dash, a newline, spaces.
        etcd.put("/portier/certs/odd", "-----BEGIN X-----\nline 2 ");
        assert_eq!(
            etcd.get_prefix("/portier/"),
            vec![
                (
                    "/portier/apps/shop".into(),
                    r#"{"backends":["127.0.0.1:9000"]}"#.into()
                ),
                (
                    "/portier/certs/odd".into(),
                    "-----BEGIN X-----\nline 2 ".into()
                ),
                ("/portier/domains/shop.localhost".into(), "shop".into()),
            ]
        );
        assert_eq!(etcd.get("/other").as_deref(), Some("x"));
        assert_eq!(etcd.get("/missing"), None);

        for i in 0..3 {
            eventually("every member's own copy", Duration::from_secs(5), || {
                (local_value(&etcd, i, "/portier/domains/shop.localhost")? == "shop").then_some(())
            });
        }

        let rev = etcd.revision();
        assert_eq!(etcd.del_prefix("/portier/"), 3);
        assert!(etcd.get_prefix("/portier/").is_empty());
        assert_eq!(etcd.revision(), rev + 1, "one delete, one revision");
    });
}

#[test]
fn killed_leader_is_replaced_and_writes_resume() {
    bounded(|| {
        let mut etcd = EtcdCluster::start(3);
        etcd.put("/before", "1");
        let old = etcd.leader();

        let t = Instant::now();
        etcd.kill(old);
        let new = etcd.leader();
        let elected = t.elapsed();
        let mut failed = 0;
        eventually(
            "a write after the election",
            Duration::from_secs(10),
            || {
                let r = etcd.try_put("/after", "2");
                failed += usize::from(r.is_err());
                r.ok()
            },
        );
        let write_back = t.elapsed();
        eprintln!(
            "leader m{old} SIGKILLed: m{new} leads (a quorum says so) after {elected:?}, \
             first write after {write_back:?} ({failed} failed attempts)"
        );
        assert_ne!(new, old);
        assert!(elected < Duration::from_secs(2), "{elected:?}");
        assert!(write_back < Duration::from_secs(3), "{write_back:?}");
        assert_eq!(etcd.get("/before").as_deref(), Some("1"));

        let t = Instant::now();
        etcd.restart(old);
        eprintln!("m{old} restarted and healthy after {:?}", t.elapsed());
        eventually(
            "the restarted member catches up",
            Duration::from_secs(5),
            || (local_value(&etcd, old, "/after")? == "2").then_some(()),
        );
        assert!(etcd.log(old).contains("portier harness: start m"));
    });
}

#[test]
fn stopped_cluster_fails_then_starts_again_on_its_data() {
    bounded(|| {
        let mut etcd = EtcdCluster::start(3);
        etcd.put("/keep/a", "1");
        etcd.put("/keep/b", "2");

        // A graceful stop of the leader hands leadership over first.
        let leader = etcd.leader();
        let t = Instant::now();
        etcd.stop(leader);
        let stopped = t.elapsed();
        etcd.put("/keep/c", "3");
        eprintln!(
            "leader m{leader} SIGTERMed: exited after {stopped:?}, next write done after {:?}",
            t.elapsed()
        );
        etcd.restart(leader);
        let rev = etcd.revision();

        let t = Instant::now();
        etcd.stop_all();
        eprintln!("stop_all took {:?}", t.elapsed());
        let t = Instant::now();
        let err = etcd.try_put("/x", "y").expect_err("a write with etcd down");
        eprintln!(
            "etcdctl with every member down failed after {:?}: {err}",
            t.elapsed()
        );
        assert!(err.contains("context deadline exceeded"), "{err}");
        assert!(etcd.try_get_prefix("/keep/").is_err());

        let t = Instant::now();
        etcd.start_all();
        eprintln!("start_all healthy after {:?}", t.elapsed());
        assert_eq!(
            etcd.get_prefix("/keep/"),
            vec![
                ("/keep/a".into(), "1".into()),
                ("/keep/b".into(), "2".into()),
                ("/keep/c".into(), "3".into()),
            ]
        );
        assert_eq!(etcd.revision(), rev, "nothing lost, nothing new");
    });
}

#[test]
fn compaction_is_reported_to_readers_and_watchers_of_old_revisions() {
    bounded(|| {
        let etcd = EtcdCluster::start(3);
        etcd.put("/c/k", "v1");
        let first = etcd.revision().to_string();
        etcd.put("/c/k", "v2");
        etcd.put("/c/k", "v3");
        let compacted = etcd.compact_now(false);
        eprintln!("compacted at revision {compacted}");

        let err = etcd
            .etcdctl(&["get", "--rev", &first, "/c/k"])
            .expect_err("a read below the compaction");
        assert!(
            err.contains("required revision has been compacted"),
            "{err}"
        );

        let old = etcd.etcdctl_for(
            &["watch", "--prefix", "--rev", &first, "/c/"],
            Duration::from_secs(5),
        );
        assert!(!old.timed_out && !old.ok, "{old:?}");
        let said = format!("{}{}", old.stdout, old.stderr);
        assert!(
            said.contains(
                "watch was canceled (etcdserver: mvcc: required revision has been compacted)"
            ),
            "{said}"
        );

        // From the compaction revision itself: still served.
        let at = etcd.etcdctl_for(
            &["watch", "--prefix", "--rev", &compacted.to_string(), "/c/"],
            Duration::from_millis(1500),
        );
        assert!(at.timed_out, "{at:?}");
        assert_eq!(at.stdout, "PUT\n/c/k\nv3\n");

        let again = etcd
            .etcdctl(&["compaction", &compacted.to_string()])
            .expect_err("a second compaction at the same revision");
        assert!(
            again.contains("required revision has been compacted"),
            "{again}"
        );
        let future = etcd
            .etcdctl(&["compaction", &(compacted + 10).to_string()])
            .expect_err("a compaction in the future");
        assert!(
            future.contains("required revision is a future revision"),
            "{future}"
        );

        etcd.put("/c/k", "v4");
        let physical = etcd.compact_now(true);
        assert_eq!(physical, compacted + 1);
        assert_eq!(etcd.get("/c/k").as_deref(), Some("v4"));
    });
}

#[test]
fn wiped_cluster_starts_over_and_a_live_watcher_misses_its_first_revisions() {
    bounded(|| {
        let mut etcd = EtcdCluster::start(3);
        let id = cluster_id(&etcd);
        let mut watcher = Watcher::start(&etcd, "/w/");
        for i in 0..5 {
            etcd.put(&format!("/w/old{i}"), "x");
        }
        watcher.wait_for("/w/old4", Duration::from_secs(5));
        let before = etcd.revision();
        assert_eq!(before, 6);

        let t = Instant::now();
        etcd.wipe_and_restart();
        eprintln!("wiped and healthy again after {:?}", t.elapsed());
        assert_eq!(etcd.revision(), 1);
        assert!(etcd.get_prefix("").is_empty());
        assert_ne!(cluster_id(&etcd), id);

        // new{i} gets revision i + 2; the watcher resumes after `before`.
        let n = before as usize + 1;
        for i in 0..n {
            etcd.put(&format!("/w/new{i}"), "y");
        }
        let t = Instant::now();
        watcher.wait_for(&format!("/w/new{}", n - 1), Duration::from_secs(30));
        eprintln!(
            "the old watcher got the wiped cluster's events {:?} after the last put",
            t.elapsed()
        );
        let got: Vec<String> = watcher
            .seen
            .iter()
            .filter(|l| l.starts_with("/w/new"))
            .cloned()
            .collect();
        eprintln!("old watcher saw {got:?}");
        // new{before - 1} has revision before + 1.
        let want: Vec<String> = (before as usize - 1..n)
            .map(|i| format!("/w/new{i}"))
            .collect();
        assert_eq!(
            got, want,
            "revisions up to the old one are silently skipped"
        );
    });
}

#[test]
fn single_member_cluster_works() {
    bounded(|| {
        let t = Instant::now();
        let mut etcd = EtcdCluster::start(1);
        eprintln!("1 member healthy after {:?}", t.elapsed());
        assert_eq!(etcd.endpoints().len(), 1);
        assert_eq!(etcd.leader(), 0);
        etcd.put("/one", "1");
        assert_eq!(etcd.get("/one").as_deref(), Some("1"));

        etcd.stop(0);
        assert!(!etcd.is_running(0));
        assert!(etcd.try_put("/two", "2").is_err());
        etcd.restart(0);
        assert_eq!(etcd.get("/one").as_deref(), Some("1"));

        etcd.kill(0);
        etcd.start_all();
        etcd.put("/two", "2");
        let rev = etcd.compact_now(true);
        assert_eq!(rev, etcd.revision());

        etcd.wipe_and_restart();
        assert_eq!(etcd.revision(), 1);
        assert!(etcd.get_prefix("").is_empty());
        assert_eq!(etcd.leader(), 0);
    });
}

#[test]
fn drop_removes_members_and_files() {
    bounded(|| {
        let etcd = EtcdCluster::start(1);
        let dir = etcd.dir().to_path_buf();
        let endpoint = etcd.endpoint(0);
        assert!(dir.join("m0").is_dir());
        drop(etcd);
        assert!(!dir.exists());
        let port: u16 = endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    });
}
