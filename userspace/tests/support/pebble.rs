//! A real Pebble (Debian's `pebble` 2.4, RFC 8555 test CA) per test, on
//! free loopback ports, killed and its files removed on drop (also when the
//! test panics).
//!
//! Owns: a temp dir with a throwaway CA and a leaf for 127.0.0.1/localhost
//! (Pebble's own HTTPS listener; Debian ships no test certificates), the
//! JSON config, the `pebble` process and, unless the test names its own
//! resolver, a `pebble-challtestsrv` that answers every A query with
//! 127.0.0.1 and AAAA with nothing (Pebble's VA would dial [::1] first)
//! (its DNS only; its challenge servers are disabled).
//! Must not: touch fixed ports or Debian's files.
//!
//! What Pebble 2.4 honours, established against /usr/bin/pebble:
//! * config (`{"pebble": {...}}`): listenAddress, managementListenAddress,
//!   httpPort, tlsPort, certificate, privateKey, ocspResponderURL,
//!   externalAccountBindingRequired, externalAccountMACKeys (kid -> base64url
//!   HMAC key), domainBlocklist, certificateValidityPeriod (seconds).
//! * env: PEBBLE_VA_NOSLEEP=1, PEBBLE_VA_SLEEPTIME (max seconds),
//!   PEBBLE_VA_ALWAYS_VALID=1, PEBBLE_WFE_NONCEREJECT (percent, default 5),
//!   PEBBLE_AUTHZREUSE (percent, default 50), PEBBLE_CHAIN_LENGTH,
//!   PEBBLE_ALTERNATE_ROOTS, PEBBLE_WFE_ORDERS_PER_PAGE.
//! * flags: -config, -dnsserver, -strict.
//! * management (HTTPS, same certificate): /roots/N, /intermediates/N,
//!   /root-keys/N, /intermediate-keys/N, /cert-status-by-serial/S.
//!
//! Not in Pebble 2.4: ARI (no `renewalInfo` in the directory, no
//! `replaces`), profiles (no `meta.profiles`), rate limits (it never answers
//! 429 and never sends Retry-After). `mini_acme.py` stands in for those.

#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::proc::free_port;

/// How to start Pebble. `PebbleOpts { http_port, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct PebbleOpts {
    /// Port Pebble's VA connects to for http-01 (Portier's plain-HTTP port).
    pub http_port: u16,
    /// Port Pebble's VA connects to for tls-alpn-01 (Portier's HTTPS port).
    pub tls_port: u16,
    /// `-dnsserver`; `None` starts a pebble-challtestsrv answering every A
    /// query with 127.0.0.1 and AAAA queries with no address.
    pub dns_server: Option<SocketAddr>,
    /// PEBBLE_VA_NOSLEEP=1: no random 0..15 s sleep before validating.
    /// Default true.
    pub no_sleep: bool,
    /// PEBBLE_VA_ALWAYS_VALID=1: every challenge is valid without a fetch.
    pub always_valid: bool,
    /// PEBBLE_WFE_NONCEREJECT: percent of good nonces rejected with
    /// badNonce. Default 0 (Pebble's own default is 5) so runs repeat.
    pub nonce_reject_percent: u8,
    /// PEBBLE_AUTHZREUSE: percent chance a valid authorization is reused.
    /// Default 0 (Pebble's own default is 50): every order is validated.
    pub authz_reuse_percent: u8,
    /// config `certificateValidityPeriod` (seconds); Pebble's default is
    /// 157766400 s (5 years; measured).
    pub cert_validity_secs: Option<u64>,
    /// External account binding: `externalAccountBindingRequired` plus
    /// `externalAccountMACKeys` (key id, base64url HMAC-SHA256 key).
    pub eab: Option<Vec<(String, String)>>,
    /// config `domainBlocklist`: orders for these names are refused.
    pub domain_blocklist: Vec<String>,
}

impl Default for PebbleOpts {
    fn default() -> Self {
        PebbleOpts {
            http_port: 5002,
            tls_port: 5001,
            dns_server: None,
            no_sleep: true,
            always_valid: false,
            nonce_reject_percent: 0,
            authz_reuse_percent: 0,
            cert_validity_secs: None,
            eab: None,
            domain_blocklist: Vec::new(),
        }
    }
}

/// A running Pebble (and maybe its challtestsrv); stopped on drop.
pub struct Pebble {
    dir: PathBuf,
    pebble: Option<Child>,
    challtestsrv: Option<Child>,
    listen: SocketAddr,
    management: SocketAddr,
    dns: SocketAddr,
    challtestsrv_management: Option<SocketAddr>,
}

const START_TIMEOUT: Duration = Duration::from_secs(20);

impl Pebble {
    pub fn start(opts: PebbleOpts) -> Pebble {
        let dir = std::env::temp_dir().join(format!(
            "portier-pebble-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("pebble temp dir");
        write_tls_files(&dir);
        let mut pebble = Pebble {
            dir,
            pebble: None,
            challtestsrv: None,
            listen: loopback(0),
            management: loopback(0),
            dns: loopback(0),
            challtestsrv_management: None,
        };
        // A port from free_port can be taken before the server binds it:
        // on "address already in use", try again with fresh ports.
        for attempt in 1..=3 {
            let dns = match opts.dns_server {
                Some(addr) => Ok(addr),
                None => pebble.start_challtestsrv(),
            };
            let started = dns.and_then(|dns| {
                pebble.dns = dns;
                pebble.start_pebble(&opts)
            });
            match started {
                Ok(()) => return pebble,
                Err(e) if attempt < 3 && e.contains("address already in use") => {
                    pebble.stop();
                }
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the last attempt panics or returns")
    }

    fn start_challtestsrv(&mut self) -> Result<SocketAddr, String> {
        let dns = loopback(free_port());
        let mgmt = loopback(free_port());
        let log = self.dir.join("challtestsrv.log");
        let child = Command::new("pebble-challtestsrv")
            .args(["-dns01", &dns.to_string()])
            .args(["-management", &mgmt.to_string()])
            // No AAAA answers: Pebble's VA dials [::1] first when there is one,
            // and test listeners (Portier's too) bind 127.0.0.1 only.
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdin(Stdio::null())
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .spawn()
            .map_err(|e| format!("spawn pebble-challtestsrv (apt-get install pebble): {e}"))?;
        self.challtestsrv = Some(child);
        self.challtestsrv_management = Some(mgmt);
        let deadline = Instant::now() + START_TIMEOUT;
        // It binds DNS (TCP and UDP) before the management server.
        while TcpStream::connect_timeout(&mgmt, Duration::from_millis(200)).is_err() {
            let exited = self
                .challtestsrv
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                return Err(format!(
                    "pebble-challtestsrv did not start ({exited:?}):\n{}",
                    read(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(dns)
    }

    fn start_pebble(&mut self, opts: &PebbleOpts) -> Result<(), String> {
        self.listen = loopback(free_port());
        self.management = loopback(free_port());
        let mut cfg = serde_json::json!({
            "listenAddress": self.listen.to_string(),
            "managementListenAddress": self.management.to_string(),
            "certificate": self.dir.join("pebble.pem"),
            "privateKey": self.dir.join("pebble.key"),
            "httpPort": opts.http_port,
            "tlsPort": opts.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": opts.eab.is_some(),
            "domainBlocklist": opts.domain_blocklist,
        });
        if let Some(secs) = opts.cert_validity_secs {
            cfg["certificateValidityPeriod"] = secs.into();
        }
        if let Some(keys) = &opts.eab {
            let map: serde_json::Map<String, serde_json::Value> = keys
                .iter()
                .map(|(kid, key)| (kid.clone(), key.clone().into()))
                .collect();
            cfg["externalAccountMACKeys"] = map.into();
        }
        let cfg_path = self.dir.join("pebble-config.json");
        std::fs::write(&cfg_path, serde_json::json!({ "pebble": cfg }).to_string())
            .expect("write pebble config");

        let log = self.dir.join("pebble.log");
        let mut cmd = Command::new("pebble");
        cmd.arg("-config")
            .arg(&cfg_path)
            .args(["-dnsserver", &self.dns.to_string()])
            .env(
                "PEBBLE_WFE_NONCEREJECT",
                opts.nonce_reject_percent.to_string(),
            )
            .env("PEBBLE_AUTHZREUSE", opts.authz_reuse_percent.to_string())
            .env_remove("PEBBLE_VA_SLEEPTIME")
            .env_remove("PEBBLE_CHAIN_LENGTH")
            .env_remove("PEBBLE_ALTERNATE_ROOTS")
            .stdin(Stdio::null())
            .stdout(log_file(&log))
            .stderr(log_file(&log));
        flag_env(&mut cmd, "PEBBLE_VA_NOSLEEP", opts.no_sleep);
        flag_env(&mut cmd, "PEBBLE_VA_ALWAYS_VALID", opts.always_valid);
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn pebble (apt-get install pebble): {e}"))?;
        self.pebble = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&self.listen, Duration::from_millis(200)).is_ok()
                && self.https_get("/dir", self.listen).is_ok()
            {
                return Ok(());
            }
            let exited = self
                .pebble
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                return Err(format!(
                    "pebble did not start ({exited:?}):\n{}",
                    read(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `https://127.0.0.1:PORT/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://{}/dir", self.listen)
    }

    /// `https://127.0.0.1:PORT` of the management interface (same TLS root).
    pub fn management_url(&self) -> String {
        format!("https://{}", self.management)
    }

    /// The CA of Pebble's own HTTPS listeners (ACME and management): what
    /// Portier gets as `[acme] ca_roots`. Not the CA that signs issued
    /// certificates (see `issuing_roots_pem`).
    pub fn tls_root_pem_path(&self) -> PathBuf {
        self.dir.join("tls-root.pem")
    }

    /// The root that signs issued certificates (management `/roots/0`),
    /// generated afresh by each Pebble. Issued chains are leaf +
    /// intermediate, so this root alone verifies them
    /// (`curl --cacert`, `openssl verify -CAfile`).
    pub fn issuing_roots_pem(&self) -> String {
        self.management_get("/roots/0")
    }

    /// The intermediate (management `/intermediates/0`).
    pub fn intermediates_pem(&self) -> String {
        self.management_get("/intermediates/0")
    }

    /// The resolver Pebble's VA uses (`-dnsserver`).
    pub fn dns_server(&self) -> SocketAddr {
        self.dns
    }

    /// Management API of our challtestsrv (`/set-default-ipv4`, `/add-a`,
    /// `/set-txt`, ...), when we started one.
    pub fn challtestsrv_url(&self) -> Option<String> {
        self.challtestsrv_management.map(|a| format!("http://{a}"))
    }

    /// Pebble's log so far (for failure messages).
    pub fn log(&self) -> String {
        read(&self.dir.join("pebble.log"))
    }

    /// GET on the management interface; panics unless 2xx.
    pub fn management_get(&self, path: &str) -> String {
        self.https_get(path, self.management)
            .unwrap_or_else(|e| panic!("pebble management {path}: {e}\n{}", self.log()))
    }

    fn https_get(&self, path: &str, addr: SocketAddr) -> Result<String, String> {
        let out = Command::new("curl")
            .args(["-sSf", "--max-time", "5", "--cacert"])
            .arg(self.tls_root_pem_path())
            .arg(format!("https://{addr}{path}"))
            .output()
            .map_err(|e| format!("curl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn stop(&mut self) {
        for child in [self.pebble.take(), self.challtestsrv.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        self.challtestsrv_management = None;
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn flag_env(cmd: &mut Command, name: &str, on: bool) {
    if on {
        cmd.env(name, "1");
    } else {
        cmd.env_remove(name);
    }
}

fn log_file(path: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Stdio::from)
        .expect("pebble log file")
}

fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// A CA (written as tls-root.pem) and a leaf for localhost + 127.0.0.1
/// signed by it (pebble.pem / pebble.key) for Pebble's HTTPS listeners.
fn write_tls_files(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name
        .push(DnType::CommonName, "portier test: Pebble HTTPS CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("leaf cert");

    std::fs::write(dir.join("tls-root.pem"), ca_cert.pem()).expect("write tls-root.pem");
    std::fs::write(dir.join("pebble.pem"), leaf_cert.pem()).expect("write pebble.pem");
    std::fs::write(dir.join("pebble.key"), leaf_key.serialize_pem()).expect("write pebble.key");
}
