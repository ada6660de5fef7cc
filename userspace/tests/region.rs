//! A region of front nodes with real parts: Debian's etcd as a 3-member
//! cluster on loopback (`support/etcd.rs`) and 3 real `portier` nodes.
//! An app or domain written through one node's admin API serves on the
//! others; two conflicting writes on two nodes at once: exactly one wins;
//! the etcd leader killed mid-run loses no acknowledged change; with every
//! etcd member down every node keeps serving, one restarted meanwhile
//! serves its last state from disk, and all converge when etcd is back; a
//! node cut off while the prefix is compacted resyncs with no stale app;
//! and with ACME, one order for the region, tokens answered by a node that
//! does not hold the lock, the certificate served by all three.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::etcd::EtcdCluster;
use support::netns::Portier;
use support::pebble::{Pebble, PebbleOpts};
use support::proc::{Backend, bin, free_port};

const TOKEN: &str = "region-test-token-0123456789";
const PREFIX: &str = "/portier-test";

/// Files shared by the nodes of one test: the region key, the seed.
struct Region {
    dir: PathBuf,
}

impl Region {
    fn new(tag: &str) -> Region {
        let dir = std::env::temp_dir().join(format!(
            "portier-region-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let out = Command::new(bin())
            .args(["region", "keygen", "--out"])
            .arg(dir.join("region.key"))
            .output()
            .expect("keygen");
        assert!(out.status.success(), "{out:?}");
        Region { dir }
    }

    fn key(&self) -> PathBuf {
        self.dir.join("region.key")
    }

    fn section(&self, endpoints: &[String], node: &str, cache: &Path) -> String {
        let list: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
        format!(
            "[region]\nendpoints = [{}]\nprefix = \"{PREFIX}\"\nnode = \"{node}\"\nkey_file = \"{}\"\ncache_dir = \"{}\"\nlease_ttl_secs = 3\n",
            list.join(", "),
            self.key().display(),
            cache.display()
        )
    }

    /// `portier region import` of `apps` (TOML `[[apps]]`).
    fn import(&self, endpoints: &[String], apps: &str) {
        let seed = self.dir.join("seed.toml");
        std::fs::write(
            &seed,
            format!(
                "{}\n{apps}",
                self.section(endpoints, "seed", &self.dir.join("seed-cache"))
            ),
        )
        .expect("seed");
        let out = Command::new(bin())
            .args(["region", "import", "--config"])
            .arg(&seed)
            .output()
            .expect("import");
        assert!(
            out.status.success(),
            "import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One portier node of the region.
struct Node {
    name: String,
    dir: PathBuf,
    http: u16,
    https: u16,
    admin: u16,
    portier: Option<Portier>,
}

impl Node {
    fn new(region: &Region, name: &str, endpoints: &[String], extra: &str) -> Node {
        Node::with_http(region, name, endpoints, extra, free_port())
    }

    fn with_http(
        region: &Region,
        name: &str,
        endpoints: &[String],
        extra: &str,
        http: u16,
    ) -> Node {
        let dir = region.dir.join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let token = dir.join("admin.token");
        std::fs::write(&token, TOKEN).expect("token");
        set_mode(&token, 0o600);
        let node = Node {
            name: name.to_string(),
            http,
            https: free_port(),
            admin: free_port(),
            portier: None,
            dir,
        };
        let text = format!(
            "[server]\nhttp = [\"127.0.0.1:{}\"]\nhttps = [\"127.0.0.1:{}\"]\nthreads = 1\n\
             [tls]\ncert_dir = \"{}\"\nreload_interval_ms = 200\n\
             [admin]\nlisten = \"127.0.0.1:{}\"\ntoken_file = \"{}\"\n{}\n{extra}\n",
            node.http,
            node.https,
            node.dir.join("certs").display(),
            node.admin,
            token.display(),
            region.section(endpoints, name, &node.dir.join("cache")),
        );
        std::fs::create_dir_all(node.dir.join("certs")).expect("certs");
        // Something to serve on HTTPS before any certificate arrives.
        let out = Command::new(bin())
            .args(["self-signed", "--names", "default.test", "--out"])
            .arg(node.dir.join("certs/default.pem"))
            .output()
            .expect("self-signed");
        assert!(out.status.success());
        std::fs::write(node.dir.join("portier.toml"), text).expect("config");
        node
    }

    fn start(&mut self) {
        self.portier = Some(Portier::start(None, &self.dir.join("portier.toml")));
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.portier.take() {
            p.stop();
        }
    }

    fn admin(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        admin_call(self.admin, method, path, body)
    }

    /// The status code of `GET http://<host>/` through this node.
    fn status_for(&self, host: &str) -> u16 {
        let out = Command::new("curl")
            .args([
                "-s",
                "-m",
                "3",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
            ])
            .arg(format!("Host: {host}"))
            .arg(format!("http://127.0.0.1:{}/", self.http))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
    }

    /// Wait until this node answers `want` for `host`; how long it took.
    fn wait_status(&self, host: &str, want: u16, within: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            let got = self.status_for(host);
            if got == want {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < within,
                "{}: {host} answered {got}, not {want}, within {within:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

fn admin_call(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    support::proc::admin_call(port, TOKEN, method, path, body)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn app(name: &str, owner: &str, domains: &[&str], backend: &Backend) -> String {
    let list: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[[apps]]\nname = \"{name}\"\nowner = \"{owner}\"\ndomains = [{}]\nbackends = [\"{}\"]\n",
        list.join(", "),
        backend.addr
    )
}

fn three_nodes(region: &Region, endpoints: &[String], extra: [&str; 3]) -> Vec<Node> {
    let mut nodes: Vec<Node> = ["node-a", "node-b", "node-c"]
        .iter()
        .zip(extra)
        .map(|(n, x)| Node::new(region, n, endpoints, x))
        .collect();
    for n in &mut nodes {
        n.start();
    }
    nodes
}

#[test]
fn writes_on_one_node_serve_on_all_and_conflicting_writes_have_one_winner() {
    let etcd = EtcdCluster::start(3);
    let endpoints = etcd.endpoints();
    let region = Region::new("writes");
    let backend = Backend::start("region-app");
    region.import(
        &endpoints,
        &format!(
            "{}{}",
            app("shop", "alice", &["shop.region.test"], &backend),
            app("blog", "bob", &["blog.region.test"], &backend)
        ),
    );
    let nodes = three_nodes(&region, &endpoints, ["", "", ""]);
    for n in &nodes {
        n.wait_status("shop.region.test", 200, Duration::from_secs(10));
    }
    // A domain added through A serves on B and C; measure the delay.
    let mut delays = Vec::new();
    for i in 0..20 {
        let host = format!("w{i}.shop.region.test");
        let t0 = Instant::now();
        let (code, v) = nodes[0].admin(
            "POST",
            "/apps/shop/domains",
            Some(&format!("{{\"domain\": \"{host}\"}}")),
        );
        assert_eq!(code, 201, "{v}");
        for n in &nodes[1..] {
            n.wait_status(&host, 200, Duration::from_secs(5));
        }
        delays.push(t0.elapsed());
    }
    delays.sort();
    eprintln!(
        "admin write on A → served by B and C: p50 {:?}, max {:?} (20 writes)",
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    // Two owners claim the same wildcard on two nodes at once: one wins.
    let (a, b) = (nodes[0].admin, nodes[1].admin);
    let t1 = std::thread::spawn(move || {
        admin_call(
            a,
            "POST",
            "/apps/shop/domains",
            Some(r#"{"domain": "*.contested.test"}"#),
        )
    });
    let t2 = std::thread::spawn(move || {
        admin_call(
            b,
            "POST",
            "/apps/blog/domains",
            Some(r#"{"domain": "*.contested.test"}"#),
        )
    });
    let (r1, r2) = (t1.join().expect("t1"), t2.join().expect("t2"));
    let codes = [r1.0, r2.0];
    assert!(
        codes.contains(&201) && codes.contains(&409),
        "exactly one wins: {r1:?} {r2:?}"
    );
    let loser = if r1.0 == 409 { &r1.1 } else { &r2.1 };
    assert_eq!(loser["error"], "invalid_config", "{loser}");
    let apps = etcd.get_prefix(&format!("{PREFIX}/v1/apps/"));
    let holders = apps
        .iter()
        .filter(|(_, v)| v.contains("*.contested.test"))
        .count();
    assert_eq!(holders, 1, "{apps:?}");
    // Nodes register on leases: all three listed, on their revision.
    let (code, v) = nodes[2].admin("GET", "/region", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"]["connected"], true, "{v}");
    let listed: Vec<&str> = v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert_eq!(listed, ["node-a", "node-b", "node-c"], "{v}");
    // Export gives back what is in the region.
    let export = Command::new(bin())
        .args(["region", "export", "--config"])
        .arg(nodes[0].dir.join("portier.toml"))
        .output()
        .expect("export");
    let text = String::from_utf8_lossy(&export.stdout);
    assert!(
        text.contains("w19.shop.region.test") && text.contains("*.contested.test"),
        "{text}"
    );
}

#[test]
fn leader_loss_and_a_full_outage_lose_nothing_and_nodes_converge() {
    let mut etcd = EtcdCluster::start(3);
    let endpoints = etcd.endpoints();
    let region = Region::new("outage");
    let backend = Backend::start("region-app");
    region.import(
        &endpoints,
        &app("shop", "alice", &["shop.region.test"], &backend),
    );
    let mut nodes = three_nodes(&region, &endpoints, ["", "", ""]);
    for n in &nodes {
        n.wait_status("shop.region.test", 200, Duration::from_secs(10));
    }
    // Writes while the leader is killed: every acknowledged one survives.
    let mut acknowledged = Vec::new();
    let leader = etcd.leader();
    for i in 0..12 {
        if i == 4 {
            etcd.kill(leader);
        }
        let host = format!("k{i}.shop.region.test");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (code, v) = nodes[i % 3].admin(
                "POST",
                "/apps/shop/domains",
                Some(&format!("{{\"domain\": \"{host}\"}}")),
            );
            if code == 201 {
                acknowledged.push(host);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "writes did not resume after the leader died: {code} {v}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    for host in &acknowledged {
        for n in &nodes {
            n.wait_status(host, 200, Duration::from_secs(10));
        }
    }
    etcd.restart(leader);
    // Every member down: every node keeps serving.
    etcd.stop_all();
    for n in &nodes {
        assert_eq!(n.status_for("k11.shop.region.test"), 200, "{}", n.name);
    }
    let (code, v) = nodes[0].admin(
        "POST",
        "/apps/shop/domains",
        Some(r#"{"domain": "down.shop.region.test"}"#),
    );
    assert_eq!(code, 503, "a write without etcd is refused clearly: {v}");
    // C restarted during the outage serves its last state from disk.
    nodes[2].stop();
    nodes[2].start();
    assert_eq!(nodes[2].status_for("k11.shop.region.test"), 200);
    let (_, v) = nodes[2].admin("GET", "/region", None);
    assert_eq!(v["status"]["connected"], false, "{v}");
    // etcd back: all converge, and a new write reaches every node.
    etcd.start_all();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, _) = nodes[2].admin(
            "POST",
            "/apps/shop/domains",
            Some(r#"{"domain": "back.shop.region.test"}"#),
        );
        if code == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "node C never got etcd back");
        std::thread::sleep(Duration::from_millis(250));
    }
    for n in &nodes {
        n.wait_status("back.shop.region.test", 200, Duration::from_secs(15));
    }
    let metrics = Command::new("curl")
        .args(["-s", "-H"])
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .arg(format!("http://127.0.0.1:{}/metrics", nodes[0].admin))
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(metrics.contains("portier_region_connected 1"), "{metrics}");
}

#[test]
fn a_node_cut_off_during_compaction_resyncs_without_stale_apps() {
    let mut etcd = EtcdCluster::start(3);
    let endpoints = etcd.endpoints();
    let region = Region::new("compaction");
    let backend = Backend::start("region-app");
    region.import(
        &endpoints,
        &format!(
            "{}{}",
            app("shop", "alice", &["shop.region.test"], &backend),
            app("gone", "bob", &["gone.region.test"], &backend)
        ),
    );
    // Node C talks only to member 2; A and B to the others.
    let mut nodes = vec![
        Node::new(&region, "node-a", &endpoints[..2], ""),
        Node::new(&region, "node-c", &endpoints[2..], ""),
    ];
    for n in &mut nodes {
        n.start();
    }
    for n in &nodes {
        n.wait_status("gone.region.test", 200, Duration::from_secs(10));
    }
    // Cut C off: its only member stops. Meanwhile the app is deleted,
    // many writes happen, and the history is compacted.
    etcd.stop(2);
    let del = etcd.etcdctl(&["del", &format!("{PREFIX}/v1/apps/gone")]);
    assert!(del.is_ok(), "{del:?}");
    for i in 0..30 {
        let (code, v) = nodes[0].admin(
            "POST",
            "/apps/shop/domains",
            Some(&format!("{{\"domain\": \"c{i}.shop.region.test\"}}")),
        );
        assert_eq!(code, 201, "{v}");
    }
    nodes[0].wait_status("gone.region.test", 404, Duration::from_secs(5));
    assert_eq!(nodes[1].status_for("gone.region.test"), 200, "C is cut off");
    etcd.compact_now(true);
    etcd.restart(2);
    // C comes back: a full re-read, the deleted app gone, the new names there.
    nodes[1].wait_status("gone.region.test", 404, Duration::from_secs(20));
    nodes[1].wait_status("c29.shop.region.test", 200, Duration::from_secs(5));
    let (_, v) = nodes[1].admin("GET", "/region", None);
    assert!(v["status"]["resyncs"].as_u64().unwrap_or(0) >= 1, "{v}");
    // etcd wiped and re-seeded: the revision goes backwards, nodes follow.
    etcd.wipe_and_restart();
    region.import(
        &etcd.endpoints(),
        &app("fresh", "carol", &["fresh.region.test"], &backend),
    );
    for n in &nodes {
        n.wait_status("fresh.region.test", 200, Duration::from_secs(20));
        n.wait_status("shop.region.test", 404, Duration::from_secs(5));
    }
}

#[test]
fn acme_in_a_region_one_order_tokens_on_any_node_certificate_everywhere() {
    let etcd = EtcdCluster::start(3);
    let endpoints = etcd.endpoints();
    let region = Region::new("acme");
    let backend = Backend::start("region-app");
    region.import(
        &endpoints,
        &app("shop", "alice", &["shop.region.test"], &backend),
    );
    // Pebble validates HTTP-01 against node B, which runs no ACME at all:
    // A and C race for the lock, B answers from the region's tokens.
    let b_http = free_port();
    let pebble = Pebble::start(PebbleOpts {
        http_port: b_http,
        ..Default::default()
    });
    let acme = |n: &str| {
        format!(
            "[acme]\ndirectory = \"{}\"\nca_roots = \"{}\"\nstate_dir = \"{}\"\n",
            pebble.directory_url(),
            pebble.tls_root_pem_path().display(),
            region.dir.join(n).join("acme").display()
        )
    };
    let mut a = Node::new(&region, "node-a", &endpoints, &acme("node-a"));
    let mut b = Node::with_http(&region, "node-b", &endpoints, "", b_http);
    let mut c = Node::new(&region, "node-c", &endpoints, &acme("node-c"));
    for n in [&mut a, &mut b, &mut c] {
        n.start();
    }
    let root = region.dir.join("pebble-root.pem");
    std::fs::write(&root, pebble.issuing_roots_pem()).expect("root");
    let verified = |n: &Node| {
        Command::new("curl")
            .args(["-s", "-m", "3", "-o", "/dev/null", "--cacert"])
            .arg(&root)
            .arg("--resolve")
            .arg(format!("shop.region.test:{}:127.0.0.1", n.https))
            .arg(format!("https://shop.region.test:{}/", n.https))
            .status()
            .is_ok_and(|s| s.success())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in [&a, &b, &c] {
        while !verified(n) {
            assert!(
                Instant::now() < deadline,
                "{} never served a certificate verified by Pebble's root",
                n.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Exactly one order and one account for the whole region.
    std::thread::sleep(Duration::from_secs(1));
    let log = pebble.log();
    assert_eq!(log.matches("POST /order-plz").count(), 1, "{log}");
    assert_eq!(log.matches("POST /sign-me-up").count(), 1, "{log}");
    // The private key in etcd is sealed, the chain is not.
    let certs = etcd.get_prefix(&format!("{PREFIX}/v1/certs/"));
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert!(!certs[0].1.contains("PRIVATE KEY"), "{}", certs[0].1);
    assert!(certs[0].1.contains("BEGIN CERTIFICATE"));
}
