//! A real BIND 9 (`named -g`) for the DNS-01 tests: authoritative only, on
//! loopback and a free port, serving the zones the test describes, each
//! updatable with a generated TSIG key (hmac-sha256). The real `nsupdate`
//! and `dig` talk to it, so a test can write and read records the way an
//! operator would. Killed, and its directory removed, on drop (also when
//! the test panics).
//!
//! Two servers of one zone on the same port: one on 127.0.0.1, one on
//! ::1 (`named` only listens on addresses configured on an interface, and
//! `lo` has exactly those two), both loaded from the same `ZoneSpec` with
//! `nameserver("ns1", 127.0.0.1)` and `nameserver("ns2", ::1)`.
//!
//! Needs `named`, `nsupdate` and `dig` (Debian: bind9, bind9-dnsutils).

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;

/// One zone to serve.
#[derive(Clone, Debug)]
pub struct ZoneSpec {
    /// `acme.test` (no trailing dot).
    pub apex: String,
    /// `(name, type, data)`, written as zone-file lines under `$ORIGIN
    /// <apex>.`: names relative (`www`, `@`) or absolute (`x.other.`).
    pub records: Vec<(String, String, String)>,
    /// The zone's NS set, `(host label under the apex, address)`; empty =
    /// `ns1.<apex>` at the address the server listens on.
    pub nameservers: Vec<(String, IpAddr)>,
}

impl ZoneSpec {
    pub fn new(apex: &str) -> ZoneSpec {
        ZoneSpec {
            apex: apex.trim_end_matches('.').to_string(),
            records: Vec::new(),
            nameservers: Vec::new(),
        }
    }

    pub fn record(mut self, name: &str, rtype: &str, data: &str) -> ZoneSpec {
        self.records
            .push((name.to_string(), rtype.to_string(), data.to_string()));
        self
    }

    pub fn nameserver(mut self, label: &str, ip: IpAddr) -> ZoneSpec {
        self.nameservers.push((label.to_string(), ip));
        self
    }

    fn zone_file(&self, listen: IpAddr) -> String {
        let mut out = format!(
            "$ORIGIN {}.\n$TTL 60\n@ IN SOA ns1 hostmaster 1 60 60 600 60\n",
            self.apex
        );
        let default_ns = [("ns1".to_string(), listen)];
        let nameservers = if self.nameservers.is_empty() {
            &default_ns[..]
        } else {
            &self.nameservers[..]
        };
        for (label, ip) in nameservers {
            let rtype = if ip.is_ipv4() { "A" } else { "AAAA" };
            out.push_str(&format!("@ IN NS {label}\n{label} IN {rtype} {ip}\n"));
        }
        for (name, rtype, data) in &self.records {
            out.push_str(&format!("{name} IN {rtype} {data}\n"));
        }
        out
    }
}

/// Where and with which key a server runs.
#[derive(Clone, Debug)]
pub struct BindOptions {
    pub ip: IpAddr,
    /// None = a free one.
    pub port: Option<u16>,
    /// `(name, base64 secret)`; None = generated.
    pub tsig: Option<(String, String)>,
}

impl Default for BindOptions {
    fn default() -> Self {
        BindOptions {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: None,
            tsig: None,
        }
    }
}

pub struct Bind {
    dir: PathBuf,
    child: Option<Child>,
    addr: SocketAddr,
    key_name: String,
    secret: String,
}

impl Bind {
    /// 127.0.0.1, a free port, a new key.
    pub fn start(zones: &[ZoneSpec]) -> Bind {
        Bind::start_with(BindOptions::default(), zones)
    }

    pub fn start_with(options: BindOptions, zones: &[ZoneSpec]) -> Bind {
        let port = options.port.unwrap_or_else(|| free_dns_port(&[options.ip]));
        let addr = SocketAddr::new(options.ip, port);
        let (key_name, secret) = options
            .tsig
            .unwrap_or_else(|| ("portier-test-key".to_string(), random_secret()));
        let dir = temp_dir();
        // Built before the child exists: a panic below still removes it.
        let mut bind = Bind {
            dir,
            child: None,
            addr,
            key_name,
            secret,
        };
        bind.write_config(zones);
        let log = fs::File::create(bind.dir.join("named.log")).expect("named.log");
        let child = Command::new("named")
            .args(["-g", "-n", "1", "-c"])
            .arg(bind.dir.join("named.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn named (apt-get install bind9)");
        bind.child = Some(child);
        bind.wait_ready(zones);
        bind
    }

    fn write_config(&self, zones: &[ZoneSpec]) {
        let d = self.dir.display();
        let (port, ip) = (self.addr.port(), self.addr.ip());
        let listen = if ip.is_ipv4() {
            format!("listen-on port {port} {{ {ip}; }};\n    listen-on-v6 {{ none; }};")
        } else {
            format!("listen-on {{ none; }};\n    listen-on-v6 port {port} {{ {ip}; }};")
        };
        let mut conf = format!(
            r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    {listen}
    recursion no;
    allow-query {{ any; }};
    dnssec-validation no;
    notify no;
}};
controls {{ }};
key "{key}" {{
    algorithm hmac-sha256;
    secret "{secret}";
}};
"#,
            key = self.key_name,
            secret = self.secret,
        );
        for zone in zones {
            let file = self.dir.join(format!("{}.zone", zone.apex));
            fs::write(&file, zone.zone_file(ip)).expect("zone file");
            conf.push_str(&format!(
                "zone \"{apex}\" {{\n    type primary;\n    file \"{file}\";\n    allow-update {{ key \"{key}\"; }};\n}};\n",
                apex = zone.apex,
                file = file.display(),
                key = self.key_name,
            ));
        }
        fs::write(self.dir.join("named.conf"), conf).expect("named.conf");
    }

    fn wait_ready(&mut self, zones: &[ZoneSpec]) {
        let deadline = Instant::now() + Duration::from_secs(15);
        for zone in zones {
            loop {
                if !self.dig(&zone.apex, "SOA").is_empty() {
                    break;
                }
                if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                    panic!("named exited ({status}):\n{}", self.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "named did not serve {} within 15 s:\n{}",
                    zone.apex,
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn tsig_key_name(&self) -> &str {
        &self.key_name
    }

    /// The base64 secret.
    pub fn tsig_secret(&self) -> &str {
        &self.secret
    }

    /// `(name, secret)`, to start another server with the same key.
    pub fn tsig(&self) -> (String, String) {
        (self.key_name.clone(), self.secret.clone())
    }

    /// The secret alone in `path`, mode 0600.
    pub fn write_key_file(&self, path: &Path) {
        fs::write(path, format!("{}\n", self.secret)).expect("key file");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    }

    /// The server's own directory (removed on drop): for key files, hooks.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// named's output so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("named.log")).unwrap_or_default()
    }

    /// Run `nsupdate -y` with `commands` (after `server`), as a test
    /// client would; panics with its stderr when it fails.
    pub fn nsupdate(&self, commands: &str) {
        let out = self.nsupdate_output(commands);
        assert!(
            out.status.success(),
            "nsupdate failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }

    pub fn nsupdate_output(&self, commands: &str) -> Output {
        let script = format!(
            "server {} {}\n{commands}\nsend\n",
            self.addr.ip(),
            self.addr.port()
        );
        let mut child = Command::new("nsupdate")
            .args(["-t", "5", "-y"])
            .arg(format!("hmac-sha256:{}:{}", self.key_name, self.secret))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nsupdate (apt-get install bind9-dnsutils)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write nsupdate script");
        child.wait_with_output().expect("nsupdate")
    }

    pub fn nsupdate_add(&self, fqdn: &str, txt: &str) {
        self.nsupdate(&format!("update add {fqdn}. 60 TXT \"{txt}\""));
    }

    pub fn nsupdate_delete(&self, fqdn: &str, txt: &str) {
        self.nsupdate(&format!("update delete {fqdn}. TXT \"{txt}\""));
    }

    /// `dig +short` of `name type` at this server, one line per record.
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = Command::new("dig")
            .arg(format!("@{}", self.addr.ip()))
            .args(["-p", &self.addr.port().to_string()])
            .args([name, rtype, "+short", "+norecurse", "+time=1", "+tries=1"])
            .output()
            .expect("run dig (apt-get install bind9-dnsutils)");
        if !out.status.success() {
            return Vec::new();
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with(";;"))
            .map(str::to_string)
            .collect()
    }

    /// The TXT values at `fqdn`, quotes removed (strings of one record
    /// joined).
    pub fn dig_txt(&self, fqdn: &str) -> Vec<String> {
        self.dig(fqdn, "TXT")
            .iter()
            .map(|l| l.split('"').skip(1).step_by(2).collect::<String>())
            .collect()
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A port free for UDP and TCP on every one of `ips` right now.
pub fn free_dns_port(ips: &[IpAddr]) -> u16 {
    for _ in 0..50 {
        let Some(first) = ips.first() else {
            panic!("no address");
        };
        let port = TcpListener::bind((*first, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let free = ips.iter().all(|ip| {
            TcpListener::bind((*ip, port)).is_ok() && UdpSocket::bind((*ip, port)).is_ok()
        });
        if free {
            return port;
        }
    }
    panic!("no port free on {ips:?}");
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn temp_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "portier-bind-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}
