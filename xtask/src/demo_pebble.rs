//! The demo's own CA: Debian's Pebble (an RFC 8555 test CA) and
//! pebble-challtestsrv as its DNS (every name → 127.0.0.1), on loopback,
//! so `cargo xtask run` shows certificates coming by themselves. Pebble's
//! HTTPS certificate is made here with the openssl CLI; the CA's issuing
//! root is fetched from its management port for the printed curl line.
//! If anything fails the demo goes on without ACME (said on stderr).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::KillOnDrop;

pub const DIRECTORY: &str = "https://127.0.0.1:14000/dir";
const MANAGEMENT: &str = "https://127.0.0.1:15000";
const DNS: &str = "127.0.0.1:8053";

pub struct DemoPebble {
    _pebble: KillOnDrop,
    _dns: KillOnDrop,
    /// Trust root of Pebble's own HTTPS (Portier's `acme.ca_roots`).
    pub tls_root: PathBuf,
    /// Root of the certificates Pebble issues (for `curl --cacert`).
    pub issuer_root: PathBuf,
}

/// Start Pebble validating HTTP-01 on `http_port` (Portier's listener).
pub fn start(dir: &Path, http_port: u16) -> anyhow::Result<DemoPebble> {
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
            r#"{{"pebble": {{"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
 "certificate": "{}", "privateKey": "{}", "httpPort": {http_port}, "tlsPort": 5001,
 "ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
            cert.display(),
            key.display()
        ),
    )?;
    let log =
        |name: &str| -> anyhow::Result<Stdio> { Ok(std::fs::File::create(dir.join(name))?.into()) };
    let dns = KillOnDrop(
        Command::new("pebble-challtestsrv")
            .args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                DNS,
            ])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", "127.0.0.1:8055"])
            .stdout(log("challtestsrv.log")?)
            .stderr(log("challtestsrv.err")?)
            .spawn()
            .context("starting pebble-challtestsrv (apt-get install pebble)")?,
    );
    let pebble = KillOnDrop(
        Command::new("pebble")
            .arg("-config")
            .arg(&config)
            .args(["-dnsserver", DNS])
            // Validate at once instead of Pebble's random 0-15 s sleep.
            .env("PEBBLE_VA_NOSLEEP", "1")
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
            .arg(format!("{MANAGEMENT}/roots/0"))
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
        _pebble: pebble,
        _dns: dns,
        tls_root,
        issuer_root,
    })
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
