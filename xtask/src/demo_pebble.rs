//! A local Pebble (Debian's RFC 8555 test CA) and pebble-challtestsrv as its
//! DNS (every name → 127.0.0.1), on loopback. `cargo xtask run` starts one
//! on the demo's fixed ports ([`start`]) so certificates come by
//! themselves; `cargo xtask bench acme` starts one on free ports, pinned to
//! a CPU, with nonce rejection and authorization reuse off ([`start_with`]).
//! Pebble's HTTPS certificate is made here with the openssl CLI; the CA's
//! issuing root is fetched from its management port. Both processes are
//! killed by PID when the returned value goes away (and by the kernel if
//! xtask dies first). If anything fails the demo goes on without ACME (said
//! on stderr).

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::KillOnDrop;

/// The demo's directory URL (its fixed ports, [`PebbleSpec::demo`]).
pub const DIRECTORY: &str = "https://127.0.0.1:14000/dir";

/// Where and how a Pebble runs.
#[derive(Debug, Clone)]
pub struct PebbleSpec {
    /// Pebble's ACME (directory) port.
    pub listen: u16,
    /// Pebble's management port (roots, intermediates).
    pub management: u16,
    /// challtestsrv's DNS port (Pebble's `-dnsserver`).
    pub dns: u16,
    /// challtestsrv's management port.
    pub dns_management: u16,
    /// Port Pebble's VA dials for HTTP-01 (Portier's plain-HTTP listener).
    pub http_port: u16,
    /// Port Pebble's VA dials for TLS-ALPN-01.
    pub tls_port: u16,
    /// `taskset -c CPUS` for both processes.
    pub cpus: Option<String>,
    /// Environment for Pebble beyond PEBBLE_VA_NOSLEEP=1 (always set:
    /// validate at once instead of Pebble's random 0-15 s sleep).
    pub env: Vec<(&'static str, String)>,
}

impl PebbleSpec {
    /// The demo's fixed ports: ACME 14000, management 15000, DNS 8053
    /// (challtestsrv management 8055), HTTP-01 on `http_port`, TLS-ALPN-01 on 5001.
    pub fn demo(http_port: u16) -> PebbleSpec {
        PebbleSpec {
            listen: 14000,
            management: 15000,
            dns: 8053,
            dns_management: 8055,
            http_port,
            tls_port: 5001,
            cpus: None,
            env: Vec::new(),
        }
    }

    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.listen)
    }
}

pub struct DemoPebble {
    pebble: KillOnDrop,
    dns: KillOnDrop,
    /// The directory URL (Portier's `acme.directory`).
    pub directory: String,
    /// Trust root of Pebble's own HTTPS (Portier's `acme.ca_roots`).
    pub tls_root: PathBuf,
    /// Root of the certificates Pebble issues (for `curl --cacert`).
    pub issuer_root: PathBuf,
}

impl DemoPebble {
    /// PIDs of Pebble and challtestsrv (CPU accounting).
    pub fn pids(&self) -> [u32; 2] {
        [self.pebble.0.id(), self.dns.0.id()]
    }
}

/// Start Pebble on the demo's fixed ports, validating HTTP-01 on
/// `http_port` (Portier's listener).
pub fn start(dir: &Path, http_port: u16) -> anyhow::Result<DemoPebble> {
    start_with(dir, &PebbleSpec::demo(http_port))
}

/// Start Pebble and its challtestsrv as `spec` says; files (config, TLS
/// material, logs) in `dir`.
pub fn start_with(dir: &Path, spec: &PebbleSpec) -> anyhow::Result<DemoPebble> {
    std::fs::create_dir_all(dir)?;
    let tls_root = dir.join("tls-ca.pem");
    let (cert, key) = (dir.join("tls-cert.pem"), dir.join("tls-key.pem"));
    if !cert.exists() {
        make_tls_cert(dir, &tls_root, &cert, &key)?;
    }
    let config = dir.join("pebble.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"pebble": {{"listenAddress": "127.0.0.1:{listen}", "managementListenAddress": "127.0.0.1:{management}",
 "certificate": "{cert}", "privateKey": "{key}", "httpPort": {http}, "tlsPort": {tls},
 "ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
            listen = spec.listen,
            management = spec.management,
            cert = cert.display(),
            key = key.display(),
            http = spec.http_port,
            tls = spec.tls_port,
        ),
    )?;
    let log =
        |name: &str| -> anyhow::Result<Stdio> { Ok(std::fs::File::create(dir.join(name))?.into()) };
    let dns_addr = format!("127.0.0.1:{}", spec.dns);
    let dns = KillOnDrop(
        command("pebble-challtestsrv", spec.cpus.as_deref())
            .args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &dns_addr,
            ])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", spec.dns_management)])
            .stdout(log("challtestsrv.log")?)
            .stderr(log("challtestsrv.err")?)
            .spawn()
            .context("starting pebble-challtestsrv (apt-get install pebble)")?,
    );
    let pebble = KillOnDrop(
        command("pebble", spec.cpus.as_deref())
            .arg("-config")
            .arg(&config)
            .args(["-dnsserver", &dns_addr])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdout(log("pebble.log")?)
            .stderr(log("pebble.err")?)
            .spawn()
            .context("starting pebble (apt-get install pebble)")?,
    );
    let issuer_root = dir.join("issuer-root.pem");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "2", "--cacert"])
            .arg(&tls_root)
            .arg(format!("https://127.0.0.1:{}/roots/0", spec.management))
            .output()?;
        if out.status.success() && out.stdout.starts_with(b"-----BEGIN CERTIFICATE-----") {
            std::fs::write(&issuer_root, &out.stdout)?;
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "Pebble did not come up within 10 s (see {})",
                dir.join("pebble.err").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(DemoPebble {
        pebble,
        dns,
        directory: spec.directory(),
        tls_root,
        issuer_root,
    })
}

/// `program`, under `taskset -c cpus` if given (taskset execs it: the PID
/// is the program's), killed by the kernel if xtask dies first (also used
/// by the region demo).
pub fn command(program: impl AsRef<OsStr>, cpus: Option<&str>) -> Command {
    let mut c = match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(program);
            c
        }
        None => Command::new(program),
    };
    // SAFETY: prctl(2) is async-signal-safe; nothing else runs in pre_exec.
    unsafe {
        c.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            Ok(())
        });
    }
    c
}

const PR_SET_PDEATHSIG: i32 = 1;
const SIGKILL: u64 = 9;

unsafe extern "C" {
    fn prctl(option: i32, ...) -> i32;
}

/// A throwaway CA and a 127.0.0.1/localhost certificate for Pebble's HTTPS.
fn make_tls_cert(dir: &Path, ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<()> {
    let ca_key = dir.join("tls-ca.key");
    let csr = dir.join("tls.csr");
    let ext = dir.join("tls.ext");
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n")?;
    let openssl = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("openssl").args(args).output()?;
        if !out.status.success() {
            bail!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    let p = |p: &Path| p.to_string_lossy().into_owned();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &p(&ca_key),
        "-out",
        &p(ca),
        "-days",
        "3650",
        "-subj",
        "/CN=Portier demo Pebble TLS CA",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &p(key),
        "-out",
        &p(&csr),
        "-subj",
        "/CN=localhost",
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(ca),
        "-CAkey",
        &p(&ca_key),
        "-CAcreateserial",
        "-out",
        &p(cert),
        "-days",
        "3650",
        "-extfile",
        &p(&ext),
    ])
}
