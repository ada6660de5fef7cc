//! The shared backend and the contestants, started from the templates in
//! `bench/templates/` (placeholders `{{NAME}}` filled at run time), each on
//! its own loopback ports, pinned to the proxy CPU.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::proc::{Proc, TempDir, free_port, pinned, run_ok, wait_port};

/// CPU of the proxies and the backend.
pub const PROXY_CPU: u32 = 0;

const T_BACKEND: &str = include_str!("../../templates/nginx-backend.conf");
const T_NGINX: &str = include_str!("../../templates/nginx-proxy.conf");
const T_HAPROXY: &str = include_str!("../../templates/haproxy.cfg");
const T_PORTIER: &str = include_str!("../../templates/portier.toml");

/// Host header every request carries (Portier routes by it).
pub const HOST: &str = "bench.localhost";

/// Fill `{{KEY}}` placeholders; fails if one is left.
pub fn fill(template: &str, vars: &[(&str, String)]) -> anyhow::Result<String> {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{{{k}}}}}"), v);
    }
    if let Some(i) = s.find("{{") {
        let end = s[i..].find("}}").map_or(s.len(), |e| i + e + 2);
        bail!("template placeholder {} not filled", &s[i..end]);
    }
    Ok(s)
}

/// The scratch directory, TLS material and shared backend of one run.
pub struct Env {
    pub dir: TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// cert + key in one file (HAProxy's `crt`).
    pub pem: PathBuf,
    pub backend: SocketAddr,
    backend_proc: Proc,
}

impl Env {
    pub fn start() -> anyhow::Result<Env> {
        let dir = TempDir::new("load")?;
        let d = dir.path().to_path_buf();
        let (cert, key, pem) = self_signed_cert(&d)?;
        let port = free_port()?;
        let prefix = d.join("backend");
        nginx_dirs(&prefix)?;
        std::fs::create_dir_all(prefix.join("www"))?;
        std::fs::write(prefix.join("www/64"), vec![b'a'; 64])?;
        std::fs::write(prefix.join("www/16k"), vec![b'b'; 16 * 1024])?;
        let conf = fill(
            T_BACKEND,
            &[
                ("PREFIX", prefix.display().to_string()),
                ("PORT", port.to_string()),
                ("PID", prefix.join("nginx.pid").display().to_string()),
            ],
        )?;
        let backend_proc = start_nginx("backend", &prefix, &conf)?;
        let backend: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        wait_port(backend, Duration::from_secs(10))
            .with_context(|| format!("backend nginx: {}", backend_proc.log_tail()))?;
        Ok(Env {
            dir,
            cert,
            key,
            pem,
            backend,
            backend_proc,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Backend PIDs (for the record: never counted as proxy CPU).
    pub fn backend_pids(&self) -> Vec<u32> {
        self.backend_proc.tree()
    }
}

fn nginx_dirs(prefix: &Path) -> anyhow::Result<()> {
    for sub in [
        "logs",
        "tmp/body",
        "tmp/proxy",
        "tmp/fastcgi",
        "tmp/uwsgi",
        "tmp/scgi",
    ] {
        std::fs::create_dir_all(prefix.join(sub))?;
    }
    Ok(())
}

fn start_nginx(name: &str, prefix: &Path, conf: &str) -> anyhow::Result<Proc> {
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let mut cmd = pinned(PROXY_CPU, "nginx");
    cmd.arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(&path)
        .args(["-e", "stderr"]);
    Proc::spawn(name, cmd, &prefix.join("out.log"))
}

/// One self-signed P-256 certificate for every TLS contestant.
fn self_signed_cert(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=bench.localhost",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        Duration::from_secs(30),
    )?;
    let pem = dir.join("bundle.pem");
    let mut both = std::fs::read(&cert)?;
    both.extend(std::fs::read(&key)?);
    std::fs::write(&pem, both)?;
    Ok((cert, key, pem))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Direct,
    Portier,
    Haproxy,
    Nginx,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Direct, Kind::Portier, Kind::Haproxy, Kind::Nginx];

    pub fn id(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Portier => "portier",
            Kind::Haproxy => "haproxy",
            Kind::Nginx => "nginx",
        }
    }
}

/// A running contestant: where it listens and the processes that are the
/// proxy (empty for direct-to-backend).
pub struct Contestant {
    pub kind: Kind,
    /// Column name: the kind's id, or `portier@REV` for a baseline build.
    pub name: String,
    /// The portier binary (Portier kinds).
    pub bin: Option<PathBuf>,
    pub http: SocketAddr,
    /// TLS listener (HTTP/1.1 and HTTP/2 by ALPN), if the contestant has one.
    pub https: Option<SocketAddr>,
    /// Why there is no TLS listener.
    pub no_tls: Option<String>,
    pub version: String,
    proc_: Option<Proc>,
}

impl Contestant {
    pub fn id(&self) -> &str {
        &self.name
    }

    /// Every process of the proxy (nginx: master and workers).
    pub fn pids(&self) -> Vec<u32> {
        self.proc_.as_ref().map(Proc::tree).unwrap_or_default()
    }

    /// The processes that serve connections (nginx: the workers only).
    pub fn worker_pids(&self) -> Vec<u32> {
        let Some(p) = self.proc_.as_ref() else {
            return Vec::new();
        };
        match self.kind {
            Kind::Nginx => {
                let tree = p.tree();
                tree.into_iter().skip(1).collect()
            }
            _ => p.pid().into_iter().collect(),
        }
    }

    /// Still running (direct: always)?
    pub fn alive(&mut self) -> bool {
        self.proc_.as_mut().is_none_or(Proc::alive)
    }

    pub fn log_tail(&self) -> String {
        self.proc_.as_ref().map(Proc::log_tail).unwrap_or_default()
    }

    pub fn start(kind: Kind, env: &Env, portier_bin: &Path) -> anyhow::Result<Contestant> {
        match kind {
            Kind::Direct => Ok(Contestant {
                kind,
                name: kind.id().to_string(),
                bin: None,
                http: env.backend,
                https: None,
                no_tls: Some("backend is plain HTTP".into()),
                version: tool_version("nginx", &["-v"]),
                proc_: None,
            }),
            Kind::Portier => start_portier(env, portier_bin, kind.id()),
            Kind::Haproxy => start_haproxy(env),
            Kind::Nginx => start_nginx_proxy(env),
        }
    }

    /// Another Portier build (a baseline) under its own column name, with
    /// the same configuration, backend and CPU as the current one.
    pub fn start_portier(env: &Env, bin: &Path, name: &str) -> anyhow::Result<Contestant> {
        start_portier(env, bin, name)
    }

    /// A fresh instance of the same contestant (same build, new ports).
    pub fn restart(&self, env: &Env) -> anyhow::Result<Contestant> {
        match (self.kind, &self.bin) {
            (Kind::Portier, Some(bin)) => start_portier(env, bin, &self.name),
            (kind, _) => Contestant::start(kind, env, Path::new("")),
        }
    }
}

/// A name fit for a file name ("portier@1a2b3c4" → "portier_1a2b3c4").
pub fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn addr(port: u16) -> anyhow::Result<SocketAddr> {
    Ok(format!("127.0.0.1:{port}").parse()?)
}

fn tool_version(bin: &str, args: &[&str]) -> String {
    Command::new(bin)
        .args(args)
        .output()
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn start_haproxy(env: &Env) -> anyhow::Result<Contestant> {
    let (http, https) = (addr(free_port()?)?, addr(free_port()?)?);
    let dir = env.path().join("haproxy");
    std::fs::create_dir_all(&dir)?;
    let conf = fill(
        T_HAPROXY,
        &[
            ("PORT", http.port().to_string()),
            ("TLS_PORT", https.port().to_string()),
            ("BACKEND", env.backend.to_string()),
            ("PEM", env.pem.display().to_string()),
        ],
    )?;
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf)?;
    let mut cmd = pinned(PROXY_CPU, "haproxy");
    cmd.arg("-db").arg("-f").arg(&path);
    let p = Proc::spawn("haproxy", cmd, &dir.join("out.log"))?;
    wait_port(http, Duration::from_secs(10))
        .with_context(|| format!("haproxy: {}", p.log_tail()))?;
    wait_port(https, Duration::from_secs(10))?;
    Ok(Contestant {
        kind: Kind::Haproxy,
        name: Kind::Haproxy.id().to_string(),
        bin: None,
        http,
        https: Some(https),
        no_tls: None,
        version: tool_version("haproxy", &["-v"]),
        proc_: Some(p),
    })
}

fn start_nginx_proxy(env: &Env) -> anyhow::Result<Contestant> {
    let (http, https) = (addr(free_port()?)?, addr(free_port()?)?);
    let prefix = env.path().join("nginx");
    nginx_dirs(&prefix)?;
    let conf = fill(
        T_NGINX,
        &[
            ("PREFIX", prefix.display().to_string()),
            ("PORT", http.port().to_string()),
            ("TLS_PORT", https.port().to_string()),
            ("BACKEND", env.backend.to_string()),
            ("CERT", env.cert.display().to_string()),
            ("KEY", env.key.display().to_string()),
            ("PID", prefix.join("nginx.pid").display().to_string()),
        ],
    )?;
    let p = start_nginx("nginx", &prefix, &conf)?;
    wait_port(http, Duration::from_secs(10)).with_context(|| format!("nginx: {}", p.log_tail()))?;
    wait_port(https, Duration::from_secs(10))?;
    Ok(Contestant {
        kind: Kind::Nginx,
        name: Kind::Nginx.id().to_string(),
        bin: None,
        http,
        https: Some(https),
        no_tls: None,
        version: tool_version("nginx", &["-v"]),
        proc_: Some(p),
    })
}

// ---------------------------------------------------------------------------
// PORTIER TLS SWITCH — Portier's TLS scenarios (HTTPS keep-alive, full
// handshakes, HTTP/2) measured like HAProxy and nginx.
// ---------------------------------------------------------------------------
/// Extra `[server]` lines + `[tls]` section for Portier's TLS listener on
/// `https` (certificates in `cert_dir`), or why Portier is not measured
/// over TLS.
fn portier_tls_config(https: SocketAddr, cert_dir: &Path) -> Result<String, String> {
    const PORTIER_HAS_TLS: bool = true;
    if !PORTIER_HAS_TLS {
        return Err("Portier TLS/HTTP/2 not switched on yet".into());
    }
    // Same footing as HAProxy and nginx: TLS 1.3 only, AES-128-GCM, X25519,
    // no resumption.
    Ok(format!(
        "https = [\"{https}\"]\n\n[tls]\ncert_dir = \"{}\"\nhttp2 = true\n\
         cipher_suites = [\"TLS13_AES_128_GCM_SHA256\"]\ngroups = [\"X25519\"]\n\
         versions = [\"1.3\"]\nresumption = false\n",
        cert_dir.display()
    ))
}

fn start_portier(env: &Env, bin: &Path, name: &str) -> anyhow::Result<Contestant> {
    if !bin.exists() {
        bail!("{} not found (cargo xtask build)", bin.display());
    }
    let http = addr(free_port()?)?;
    let https = addr(free_port()?)?;
    // Each build its own directory and certificate directory (copied once:
    // a fresh instance of the memory test must not make a running one
    // reload its certificates).
    let dir = env.path().join(file_name(name));
    let certs = dir.join("certs");
    let (tls_section, https, no_tls) = match portier_tls_config(https, &certs) {
        Ok(section) => {
            std::fs::create_dir_all(&certs)?;
            for file in ["bench.localhost.pem", "default.pem"] {
                if !certs.join(file).exists() {
                    std::fs::copy(&env.pem, certs.join(file))?;
                }
            }
            (section, Some(https), None)
        }
        Err(why) => (String::new(), None, Some(why)),
    };
    std::fs::create_dir_all(&dir)?;
    let conf = fill(
        T_PORTIER,
        &[
            ("HTTP_LISTEN", http.to_string()),
            ("BACKEND", env.backend.to_string()),
            ("TLS_SECTION", tls_section),
        ],
    )?;
    let path = dir.join("portier.toml");
    std::fs::write(&path, conf)?;
    let mut cmd = pinned(PROXY_CPU, &bin.display().to_string());
    cmd.arg("--config").arg(&path);
    let mut p = Proc::spawn(name, cmd, &dir.join("out.log"))?;
    p.wait_for_log("portier: ready", Duration::from_secs(20))?;
    wait_port(http, Duration::from_secs(10))?;
    Ok(Contestant {
        kind: Kind::Portier,
        name: name.to_string(),
        bin: Some(bin.to_path_buf()),
        http,
        https,
        no_tls,
        version: tool_version(&bin.display().to_string(), &["--version"]),
        proc_: Some(p),
    })
}
