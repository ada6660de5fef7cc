//! ACME end to end, with real parts: the real `portier` binary ordering
//! from Debian's Pebble (HTTP-01 answered by Portier's own plain-HTTP
//! listener, the served chain verified by curl against Pebble's root),
//! account and backoff kept across restarts, backoff spacing with a
//! scaled-down schedule, re-adding a domain retries at once, a CA that is
//! down or answers garbage never disturbs the certificate serving; and,
//! against the in-repo stand-in for what Pebble 2.4 lacks (mini_acme.py):
//! ARI renewal with `replaces`, the `alreadyReplaced` retry, profiles sent
//! only when listed, 429 + Retry-After honoured.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::mini_acme::MiniAcme;
use support::netns::Portier;
use support::pebble::{Pebble, PebbleOpts};
use support::proc::{Backend, free_port};

const TOKEN: &str = "acme-test-token-0123456789";

/// One portier node with `[acme]`: its own temp dir (config, cert_dir,
/// state_dir, admin token), restartable with the same files.
struct Node {
    dir: PathBuf,
    http: u16,
    https: u16,
    admin: u16,
    portier: Option<Portier>,
}

impl Node {
    fn new(tag: &str) -> Node {
        let dir = std::env::temp_dir().join(format!(
            "portier-acme-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let token = dir.join("admin.token");
        std::fs::write(&token, TOKEN).expect("token");
        set_mode(&token, 0o600);
        Node {
            dir,
            http: free_port(),
            https: free_port(),
            admin: free_port(),
            portier: None,
        }
    }

    fn cert_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.join("acme")
    }

    /// Write the config: `apps` as TOML, `acme` the lines of `[acme]`
    /// after directory/state_dir.
    fn configure(&self, apps: &str, directory: &str, acme: &str) {
        let text = format!(
            "[server]\nhttp = [\"127.0.0.1:{http}\"]\nhttps = [\"127.0.0.1:{https}\"]\nthreads = 1\n\
             [tls]\ncert_dir = \"{certs}\"\nreload_interval_ms = 200\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken_file = \"{dir}/admin.token\"\n\
             {apps}\n\
             [acme]\ndirectory = \"{directory}\"\nstate_dir = \"{state}\"\n{acme}\n",
            http = self.http,
            https = self.https,
            admin = self.admin,
            certs = self.cert_dir().display(),
            dir = self.dir.display(),
            state = self.state_dir().display(),
        );
        std::fs::write(self.dir.join("portier.toml"), text).expect("config");
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
        support::proc::admin_call(self.admin, TOKEN, method, path, body)
    }

    /// The ACME record of `name` (GET /certificates).
    fn acme_name(&self, name: &str) -> Value {
        let (code, v) = self.admin("GET", "/certificates", None);
        assert_eq!(code, 200, "{v}");
        v["acme"]["names"]
            .as_array()
            .and_then(|names| names.iter().find(|n| n["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    /// Wait until `name`'s ACME record satisfies `ok`; panics with the
    /// last record seen.
    fn wait_name(&self, name: &str, within: Duration, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.acme_name(name);
            if ok(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: condition not met within {within:?}; last: {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args(["-s", "-m", "5", "-H"])
            .arg(format!("Authorization: Bearer {TOKEN}"))
            .arg(format!("http://127.0.0.1:{}/metrics", self.admin))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `curl https://NAME:PORT/` verified against `ca_file` through SNI.
    fn verified_https(&self, name: &str, ca_file: &Path) -> Result<String, String> {
        let out = Command::new("curl")
            .args([
                "-s",
                "-S",
                "-m",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg("--cacert")
            .arg(ca_file)
            .arg("--resolve")
            .arg(format!("{name}:{}:127.0.0.1", self.https))
            .arg(format!("https://{name}:{}/", self.https))
            .output()
            .expect("curl");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The SHA-256 fingerprint of the certificate served for `name`.
    fn served_fingerprint(&self, name: &str) -> String {
        let script = format!(
            "openssl s_client -connect 127.0.0.1:{} -servername {name} </dev/null 2>/dev/null \
             | openssl x509 -noout -fingerprint -sha256",
            self.https
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("openssl");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn app(name: &str, domains: &[&str], backend: &Backend) -> String {
    let list: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[[apps]]\nname = \"{name}\"\ndomains = [{}]\nbackends = [\"{}\"]\n",
        list.join(", "),
        backend.addr
    )
}

/// Pebble's chain root, written where curl can read it.
fn pebble_root(pebble: &Pebble, node: &Node) -> PathBuf {
    let path = node.dir.join("pebble-root.pem");
    std::fs::write(&path, pebble.issuing_roots_pem()).expect("root");
    path
}

#[test]
fn http01_certificates_are_issued_served_verified_and_kept_across_restarts() {
    let backend = Backend::start("acme-app");
    let mut node = Node::new("http01");
    let pebble = Pebble::start(PebbleOpts {
        http_port: node.http,
        ..Default::default()
    });
    node.configure(
        &app("shop", &["shop.acme.test", "www.shop.acme.test"], &backend),
        &pebble.directory_url(),
        &format!(
            "ca_roots = \"{}\"\ncontact = [\"mailto:ops@acme.test\"]\n",
            pebble.tls_root_pem_path().display()
        ),
    );
    let started = Instant::now();
    node.start();
    for name in ["shop.acme.test", "www.shop.acme.test"] {
        node.wait_name(name, Duration::from_secs(60), |v| v["state"] == "valid");
    }
    eprintln!(
        "time to the first two certificates against Pebble: {:?}",
        started.elapsed()
    );
    let root = pebble_root(&pebble, &node);
    // The chain Portier serves verifies against Pebble's root (SNI picks it).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match node.verified_https("www.shop.acme.test", &root) {
            Ok(code) => {
                assert_eq!(code, "200");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet verified: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("the served certificate does not verify: {e}"),
        }
    }
    assert!(node.verified_https("shop.acme.test", &root).is_ok());
    // Files: account and state private, certificates installed 0600.
    let state = node.state_dir();
    assert_eq!(mode(&state), 0o700);
    let accounts: Vec<PathBuf> = std::fs::read_dir(&state)
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("account-"))
        })
        .collect();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(mode(&accounts[0]), 0o600);
    assert_eq!(mode(&state.join("state.json")), 0o600);
    assert_eq!(mode(&node.cert_dir().join("shop.acme.test.pem")), 0o600);
    let account_before = std::fs::read(&accounts[0]).expect("account");
    let metrics = node.metrics();
    assert!(
        metrics.contains("portier_acme_orders_total{result=\"issued\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("portier_acme_certificate_state{name=\"shop.acme.test\",state=\"valid\"} 1")
    );
    // The log never shows the account key.
    let served = node.served_fingerprint("shop.acme.test");
    assert!(served.contains("Fingerprint"), "{served}");

    // Restart: same account, the certificates adopted, nothing ordered again.
    node.stop();
    node.start();
    let v = node.wait_name("shop.acme.test", Duration::from_secs(10), |v| {
        v["state"] == "valid"
    });
    assert_eq!(v["managed"], true, "{v}");
    std::thread::sleep(Duration::from_secs(2));
    let (_, all) = node.admin("GET", "/certificates", None);
    assert_eq!(
        all["acme"]["orders"]["issued"], 0,
        "nothing re-ordered: {all}"
    );
    assert_eq!(node.served_fingerprint("shop.acme.test"), served);
    assert_eq!(
        std::fs::read(&accounts[0]).expect("account"),
        account_before,
        "the account is reused"
    );

    // A forced renewal orders again and swaps the new certificate in.
    let (code, v) = node.admin("POST", "/certificates/shop.acme.test/renew", None);
    assert_eq!(code, 202, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.served_fingerprint("shop.acme.test") == served {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate never served"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(node.verified_https("shop.acme.test", &root).is_ok());
    let (code, v) = node.admin("POST", "/certificates/nope.acme.test/renew", None);
    assert_eq!(code, 404, "{v}");
}

#[test]
fn failures_back_off_persist_across_restarts_and_readding_retries_at_once() {
    let backend = Backend::start("acme-app");
    let mut node = Node::new("backoff");
    // Nothing listens there: every attempt fails at once.
    let dead = format!("http://127.0.0.1:{}/directory", free_port());
    node.configure(
        &app("site", &["site.acme.test"], &backend),
        &dead,
        "backoff_secs = [2, 4, 600]\n",
    );
    node.start();
    let first = node.wait_name("site.acme.test", Duration::from_secs(5), |v| {
        v["failures"] == 1
    });
    assert_eq!(first["state"], "failed", "{first}");
    let error = first["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("account"), "a clear error: {error}");
    // 2 s, then 4 s: three failures after about 6 s, then a 600 s wait.
    // (Times are whole Unix seconds: a 2 s delay is at least 1 s.)
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        node.acme_name("site.acme.test")["failures"],
        1,
        "not at once"
    );
    let third = node.wait_name("site.acme.test", Duration::from_secs(10), |v| {
        v["failures"] == 3
    });
    let next = third["next_attempt"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!next.is_empty(), "{third}");
    let metrics = node.metrics();
    assert!(
        metrics
            .contains("portier_acme_certificate_state{name=\"site.acme.test\",state=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("portier_acme_orders_total{result=\"failed\"} 3"));

    // A restart keeps the backoff: no attempt before the 600 s are up.
    node.stop();
    node.start();
    std::thread::sleep(Duration::from_secs(2));
    let after = node.acme_name("site.acme.test");
    assert_eq!(after["failures"], 3, "{after}");
    assert_eq!(after["next_attempt"], next.as_str());

    // Detach and re-attach the domain: tried again at once.
    let (code, v) = node.admin("DELETE", "/apps/site/domains/site.acme.test", None);
    assert_eq!(code, 200, "{v}");
    node.wait_name("site.acme.test", Duration::from_secs(5), Value::is_null);
    let (code, v) = node.admin(
        "POST",
        "/apps/site/domains",
        Some(r#"{"domain": "site.acme.test"}"#),
    );
    assert_eq!(code, 201, "{v}");
    let fresh = node.wait_name("site.acme.test", Duration::from_secs(5), |v| {
        v["failures"] == 1
    });
    assert_eq!(fresh["state"], "failed", "{fresh}");
}

#[test]
fn a_ca_answering_garbage_leaves_the_old_certificate_serving() {
    let backend = Backend::start("acme-app");
    let mut node = Node::new("garbage");
    std::fs::create_dir_all(node.cert_dir()).expect("mkdir");
    let old = node.cert_dir().join("old.acme.test.pem");
    let out = Command::new(support::proc::bin())
        .args(["self-signed", "--names", "old.acme.test", "--out"])
        .arg(&old)
        .output()
        .expect("self-signed");
    assert!(out.status.success());
    // The "directory" is the demo backend: JSON, but not an ACME directory.
    node.configure(
        &app("old", &["old.acme.test"], &backend),
        &format!("http://{}/directory", backend.addr),
        "backoff_secs = [600]\n",
    );
    node.start();
    let served = node.served_fingerprint("old.acme.test");
    assert!(served.contains("Fingerprint"), "{served}");
    let v = node.wait_name("old.acme.test", Duration::from_secs(5), |v| {
        v["state"] == "valid"
    });
    assert_eq!(v["managed"], false, "found on disk: {v}");
    let (code, _) = node.admin("POST", "/certificates/old.acme.test/renew", None);
    assert_eq!(code, 202);
    let v = node.wait_name("old.acme.test", Duration::from_secs(10), |v| {
        v["failures"] == 1
    });
    assert_eq!(v["state"], "valid", "still served: {v}");
    let error = v["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("JSON") || error.contains("json"), "{error}");
    assert_eq!(node.served_fingerprint("old.acme.test"), served);
}

#[test]
fn ari_renewal_replaces_and_retries_without_when_already_replaced() {
    let backend = Backend::start("acme-app");
    let mut node = Node::new("ari");
    let mini = MiniAcme::start(node.http);
    // The CA's window for any certificate: already open.
    mini.control(serde_json::json!({
        "window": {"start_offset_secs": -60, "end_offset_secs": -30},
        "force_already_replaced": true,
    }));
    node.configure(
        &app("ari", &["ari.acme.test"], &backend),
        &mini.directory_url(),
        "profile = \"shortlived\"\n",
    );
    node.start();
    // First order, then the ARI check says "renew now": a second order
    // with `replaces`, refused (alreadyReplaced), then one without.
    let deadline = Instant::now() + Duration::from_secs(30);
    let orders = loop {
        let orders = mini.events("newOrder");
        if orders.len() >= 3 {
            break orders;
        }
        assert!(Instant::now() < deadline, "orders seen: {orders:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Stop renewing now that the behaviour was seen.
    mini.control(serde_json::json!({"window": null}));
    let finalized = mini.events("finalize");
    let first_id = finalized[0]["certid"].as_str().expect("certid").to_string();
    assert!(orders[0]["replaces"].is_null(), "{:?}", orders[0]);
    assert_eq!(orders[0]["profile"], "shortlived", "listed, so sent");
    assert_eq!(orders[1]["replaces"], first_id.as_str(), "{:?}", orders[1]);
    assert_eq!(orders[1]["answered_status"], 409);
    assert!(
        orders[2]["replaces"].is_null(),
        "retried without: {:?}",
        orders[2]
    );
    assert_eq!(orders[2]["answered_status"], 201);
    let renewal_infos = mini.events("renewalInfo");
    assert!(
        renewal_infos
            .iter()
            .any(|e| e["certid"] == first_id.as_str()),
        "{renewal_infos:?}"
    );
    node.wait_name("ari.acme.test", Duration::from_secs(20), |v| {
        v["state"] == "valid" && v["renewal_window"].is_object()
    });
}

#[test]
fn profiles_only_when_listed_and_rate_limits_honour_retry_after() {
    let backend = Backend::start("acme-app");
    let mut node = Node::new("ratelimit");
    let mini = MiniAcme::start(node.http);
    mini.control(serde_json::json!({
        "rate_limit": {"count": 1, "retry_after": 4},
    }));
    node.configure(
        &app("rl", &["rl.acme.test"], &backend),
        &mini.directory_url(),
        // A profile this CA does not list: never sent. Backoff shorter than
        // the CA's Retry-After: the CA wins.
        "profile = \"tlsserver-2031\"\nbackoff_secs = [1]\n",
    );
    let t0 = Instant::now();
    node.start();
    let failed = node.wait_name("rl.acme.test", Duration::from_secs(10), |v| {
        v["failures"] == 1
    });
    assert!(
        failed["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("rateLimited")),
        "{failed}"
    );
    node.wait_name("rl.acme.test", Duration::from_secs(20), |v| {
        v["state"] == "valid"
    });
    let orders = mini.events("newOrder");
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert_eq!(orders[0]["answered_status"], 429);
    let gap = orders[1]["at"].as_f64().unwrap_or(0.0) - orders[0]["at"].as_f64().unwrap_or(0.0);
    assert!(
        gap >= 3.0,
        "retried after {gap} s, before the CA's Retry-After of 4 s"
    );
    assert!(orders.iter().all(|o| o["profile"].is_null()), "{orders:?}");
    eprintln!("429 then valid in {:?}", t0.elapsed());
}

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write script");
    set_mode(path, 0o755);
}

/// Wildcards by DNS-01 with Pebble validating against a real BIND: the
/// rfc2136 provider (TSIG), the exec hook shipped in scripts/ (nsupdate),
/// the manual mode finished by the test creating the record with
/// `nsupdate` (after `notify_command` told it the value), and a wrong TSIG
/// key giving a clear failure. Every certificate is then served by SNI and
/// verified against Pebble's root; the records written are removed.
#[test]
fn dns01_wildcards_through_rfc2136_exec_and_manual_with_real_bind() {
    use support::bind::{Bind, ZoneSpec};
    let backend = Backend::start("acme-app");
    let mut node = Node::new("dns01");
    let bind = Bind::start(&[ZoneSpec::new("acme.test")]);
    let pebble = Pebble::start(PebbleOpts {
        http_port: node.http,
        dns_server: Some(bind.addr()),
        ..Default::default()
    });
    let key = node.dir.join("tsig.key");
    bind.write_key_file(&key);
    let bad_key = node.dir.join("bad-tsig.key");
    std::fs::write(
        &bad_key,
        "c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1zZXJ2ZXJzLWtleQ==\n",
    )
    .expect("key");
    set_mode(&bad_key, 0o600);
    let hook = node.dir.join("hook");
    executable(
        &hook,
        &format!(
            "#!/bin/sh\nDNS_RFC2136_NAMESERVER={ip} DNS_RFC2136_PORT={port} \
             DNS_RFC2136_TSIG_KEY={name} DNS_RFC2136_TSIG_SECRET={secret} exec {shipped} \"$@\"\n",
            ip = bind.addr().ip(),
            port = bind.port(),
            name = bind.tsig_key_name(),
            secret = bind.tsig_secret(),
            shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../scripts/acme-dns/nsupdate")
                .display(),
        ),
    );
    let notified = node.dir.join("notified");
    let notify = node.dir.join("notify");
    executable(
        &notify,
        &format!(
            "#!/bin/sh\necho \"$PORTIER_ACME_EVENT $PORTIER_ACME_NAME $PORTIER_ACME_RECORD $PORTIER_ACME_VALUE\" >> {}\n",
            notified.display()
        ),
    );
    let names = [
        "*.auto.acme.test",
        "*.hook.acme.test",
        "*.man.acme.test",
        "*.bad.acme.test",
    ];
    node.configure(
        &app("wild", &names, &backend),
        &pebble.directory_url(),
        &format!(
            "ca_roots = \"{roots}\"\nnotify_command = \"{notify}\"\n\
             [acme.dns]\nprovider = \"rfc2136\"\nserver = \"{server}\"\n\
             tsig_key_name = \"{key_name}\"\ntsig_key_file = \"{key}\"\n\
             resolvers = [\"{server}\"]\nauthoritative_port = {port}\ncheck_interval_secs = 1\n\
             [[acme.dns.zones]]\nsuffix = \"hook.acme.test\"\nprovider = \"exec\"\ncommand = \"{hook}\"\n\
             [[acme.dns.zones]]\nsuffix = \"man.acme.test\"\nprovider = \"manual\"\n\
             [[acme.dns.zones]]\nsuffix = \"bad.acme.test\"\nprovider = \"rfc2136\"\nserver = \"{server}\"\n\
             tsig_key_name = \"{key_name}\"\ntsig_key_file = \"{bad_key}\"\n",
            roots = pebble.tls_root_pem_path().display(),
            notify = notify.display(),
            server = bind.addr(),
            port = bind.port(),
            key_name = bind.tsig_key_name(),
            key = key.display(),
            hook = hook.display(),
            bad_key = bad_key.display(),
        ),
    );
    node.start();
    // Manual: shown as action required with the exact record; notified.
    let waiting = node.wait_name("*.man.acme.test", Duration::from_secs(30), |v| {
        v["state"] == "action_required"
    });
    let record = waiting["action"]["name"]
        .as_str()
        .expect("record")
        .to_string();
    let value = waiting["action"]["value"]
        .as_str()
        .expect("value")
        .to_string();
    assert_eq!(record, "_acme-challenge.man.acme.test");
    assert_eq!(waiting["action"]["type"], "TXT");
    let deadline = Instant::now() + Duration::from_secs(10);
    let told = loop {
        let told = std::fs::read_to_string(&notified).unwrap_or_default();
        if told.contains("action_required") || Instant::now() > deadline {
            break told;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        told.contains(&format!("action_required *.man.acme.test {record} {value}")),
        "{told}"
    );
    // The operator creates the record: Portier sees it and finishes.
    bind.nsupdate_add(&record, &value);
    for name in ["*.auto.acme.test", "*.hook.acme.test", "*.man.acme.test"] {
        node.wait_name(name, Duration::from_secs(60), |v| v["state"] == "valid");
    }
    // A wrong TSIG key: a clear failure, nothing served under that name.
    let bad = node.wait_name("*.bad.acme.test", Duration::from_secs(30), |v| {
        v["failures"] == 1
    });
    assert_eq!(bad["state"], "failed", "{bad}");
    let error = bad["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("BADSIG") || error.contains("BADKEY"),
        "{error}"
    );
    let root = pebble_root(&pebble, &node);
    for host in ["x.auto.acme.test", "y.hook.acme.test", "z.man.acme.test"] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = node.verified_https(host, &root) {
            assert!(Instant::now() < deadline, "{host}: {e}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert!(node.verified_https("w.bad.acme.test", &root).is_err());
    // What Portier wrote is removed after validation.
    assert!(bind.dig_txt("_acme-challenge.auto.acme.test").is_empty());
    assert!(bind.dig_txt("_acme-challenge.hook.acme.test").is_empty());
}
