//! `cargo xtask`: the operator's and developer's commands.
//!
//! `setup` installs what the build and tests need (idempotent, seconds when
//! nothing is missing); `build`, `package` (the .deb), `run` (`--region`: 3
//! etcd members and 3 nodes), `test`, `fuzz`, `bench` build on it;
//! `xdp …` drives a running portier through its pinned maps; `apps`,
//! `domains`, `backends`, `certs`, `reload`, `stats` drive its admin API.

mod admin;
mod bench_acme;
mod bench_load;
mod bench_region;
mod demo_pebble;
mod demo_region;
mod fuzz;
mod setup;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Portier's build, test and operator commands"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: apt packages, the pinned nightly with rust-src, bpf-linker.
    Setup,
    /// Build the XDP program, then portier (release) with the program embedded.
    Build,
    /// Build the Debian package (cargo-deb) into target/debian/: the release portier with
    /// XDP embedded, a hardened systemd unit, a default config, logrotate.
    Package,
    /// Set up, build, and run portier on its built-in demo.
    Run {
        /// A region instead: 3 etcd members and 3 nodes on loopback (HTTP on
        /// :8081-:8083, admin API on :9091-:9093, files in target/demo/region).
        #[arg(long)]
        region: bool,
    },
    /// Set up, build, and run the whole test suite (needs root for the XDP tests).
    Test {
        /// Skip the tests that need root (XDP in network namespaces).
        #[arg(long)]
        unprivileged: bool,
        /// Seconds of fuzzing per target in the suite (0 = skip).
        #[arg(long, default_value_t = 20)]
        fuzz_seconds: u64,
    },
    /// Fuzz a target (cargo-fuzz, pinned nightly): classify (XDP classifier), h1 (HTTP/1.1 codec),
    /// h2 (HTTP/2 connection), hpack (HPACK decoder), config (config parser), proxy (PROXY
    /// protocol header); `--all --minutes N`: every target N minutes in turn, with a report.
    Fuzz {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value = "classify")]
        target: String,
        /// Every target in turn (a campaign); writes bench/results/<date>-fuzz.md.
        #[arg(long)]
        all: bool,
        /// Minutes per target (overrides --seconds).
        #[arg(long)]
        minutes: Option<u64>,
    },
    /// Criterion micro-benchmarks; `bench load [--quick]`: the comparative load harness;
    /// `bench acme [--quick]`: ACME issuance at scale; `bench region`: a 10,000-app region in etcd.
    Bench {
        #[command(subcommand)]
        what: Option<bench_load::BenchCmd>,
    },
    /// Apps of the running portier: domains, backends and their state, settings (admin API).
    Apps {
        #[command(flatten)]
        conn: admin::Conn,
    },
    /// Attach or detach a domain: domains add|rm APP DOMAIN (admin API).
    Domains {
        #[command(flatten)]
        conn: admin::Conn,
        #[command(subcommand)]
        cmd: admin::DomainCmd,
    },
    /// Add, remove, drain or undrain a backend: backends add|rm|drain|undrain APP ADDR (admin API).
    Backends {
        #[command(flatten)]
        conn: admin::Conn,
        #[command(subcommand)]
        cmd: admin::BackendCmd,
    },
    /// Certificates in the certificate directory, with expiry, and each name's ACME
    /// state; `certs renew NAME` orders one now (admin API).
    Certs {
        #[command(flatten)]
        conn: admin::Conn,
        /// `renew NAME`
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Region mode: the nodes registered in etcd, and this node's link to it (admin API).
    Nodes {
        #[command(flatten)]
        conn: admin::Conn,
    },
    /// Reload the configuration file (admin API).
    Reload {
        #[command(flatten)]
        conn: admin::Conn,
    },
    /// Queue depth, in-flight requests, backend states, reload counts (admin API).
    Stats {
        #[command(flatten)]
        conn: admin::Conn,
    },
    /// Operate the XDP program of a running portier.
    Xdp {
        /// stats [--json] | block CIDR | unblock CIDR | blocklist [--json]
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup => setup::all(),
        Cmd::Build => setup::all().and_then(|()| build(true)),
        Cmd::Package => setup::all().and_then(|()| package().map(|_| ())),
        Cmd::Run { region: false } => run(),
        Cmd::Run { region: true } => setup::all()
            .and_then(|()| build(true))
            .and_then(|()| demo_region::run()),
        Cmd::Test {
            unprivileged,
            fuzz_seconds,
        } => test(unprivileged, fuzz_seconds),
        Cmd::Fuzz {
            seconds,
            target,
            all,
            minutes,
        } => setup::all().and_then(|()| match (all, minutes) {
            (true, m) => fuzz::campaign(m.unwrap_or(seconds.div_ceil(60))),
            (false, m) => fuzz::fuzz(&target, m.map_or(seconds, |m| m * 60)),
        }),
        Cmd::Bench { what: None } => bench(),
        Cmd::Bench { what: Some(cmd) } => bench_load::run(&cmd),
        Cmd::Xdp { args } => xdp(&args),
        Cmd::Apps { conn } => admin::apps(&conn),
        Cmd::Domains { conn, cmd } => admin::domains(&conn, &cmd),
        Cmd::Backends { conn, cmd } => admin::backends(&conn, &cmd),
        Cmd::Certs { conn, args } => match args.as_slice() {
            [] => admin::certs(&conn),
            [verb, name] if verb == "renew" => admin::renew(&conn, name),
            _ => Err(anyhow::anyhow!("usage: cargo xtask certs [renew NAME]")),
        },
        Cmd::Reload { conn } => admin::reload(&conn),
        Cmd::Nodes { conn } => admin::nodes(&conn),
        Cmd::Stats { conn } => admin::stats(&conn),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Run a command, failing with its command line when it fails.
pub fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: $ {shown}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// `cargo` for the workspace (stable).
fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// `cargo` on the pinned nightly, with the environment `cargo xtask` itself
/// ran in (RUSTUP_TOOLCHAIN, RUSTC, ...) removed so rust-toolchain.toml rules.
fn nightly_cargo(dir: &Path) -> anyhow::Result<Command> {
    Ok(nightly_cargo_with(dir, &setup::pinned_nightly()?))
}

/// [`nightly_cargo`] with a given toolchain (another revision's pin).
fn nightly_cargo_with(dir: &Path, toolchain: &str) -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", toolchain, "cargo"]).current_dir(dir);
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "CARGO",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
    ] {
        c.env_remove(var);
    }
    c
}

/// Build the XDP object into target/xdp (where userspace/build.rs finds it).
fn build_xdp() -> anyhow::Result<()> {
    let dir = root().join("xdp-ebpf");
    let target = root().join("target/xdp");
    run_cmd(
        nightly_cargo(&dir)?
            .args(["build", "--release", "--target-dir"])
            .arg(&target),
    )
}

fn build(release: bool) -> anyhow::Result<()> {
    build_xdp()?;
    let mut c = cargo();
    c.args(["build", "-p", "portier"]);
    if release {
        c.arg("--release");
    }
    run_cmd(&mut c)
}

/// `cargo xtask build`, then cargo-deb on what it built (`--no-build`: the
/// binary with the XDP object embedded, which a plain `cargo build` would
/// not guarantee). Returns the .deb's path (cargo-deb prints it last).
fn package() -> anyhow::Result<PathBuf> {
    setup::cargo_deb()?;
    build(true)?;
    let out_dir = root().join("target/debian");
    let mut c = cargo();
    // --strip: the release profile keeps line tables (debug = 1) for
    // backtraces in development; the package ships without them (75 MB -> 12 MB).
    c.args(["deb", "-p", "portier", "--no-build", "--strip", "--output"])
        .arg(&out_dir);
    eprintln!("xtask: $ {c:?}");
    let out = c
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting cargo deb")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("cargo deb failed ({}): {stdout}", out.status);
    }
    let deb = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .with_context(|| format!("cargo deb did not name the package it wrote: {stdout}"))?;
    eprintln!("xtask: package {}", deb.display());
    Ok(deb)
}

/// The certificate in `pem` expires within `secs` (or cannot be read):
/// `openssl x509 -checkend` (openssl is one of the packages `setup` installs).
fn expires_within(pem: &Path, secs: u64) -> bool {
    !Command::new("openssl")
        .args(["x509", "-noout", "-checkend", &secs.to_string(), "-in"])
        .arg(pem)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn portier_release() -> PathBuf {
    root().join("target/release/portier")
}

/// The demo/test backend, a second binary of the `portier` package: built
/// by `build` (`cargo build -p portier` builds every binary of the package)
/// and found next to `portier`.
fn demo_backend_release() -> PathBuf {
    portier_release().with_file_name("portier-demo-backend")
}

/// Ports of the demo: the proxy and its two demo backends.
const DEMO_HTTP: &str = "127.0.0.1:8080";
const DEMO_HTTPS: &str = "127.0.0.1:8443";
const DEMO_CERT_NAMES: &str =
    "localhost,demo.localhost,shop.localhost,www.shop.localhost,*.shop.localhost";
const DEMO_BACKENDS: [&str; 2] = ["127.0.0.1:9001", "127.0.0.1:9002"];

fn run() -> anyhow::Result<()> {
    setup::all()?;
    build(true)?;
    let dir = root().join("target/demo");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("portier.toml");
    let privileged = is_root();
    // A self-signed certificate for the demo's HTTPS listener, kept across
    // runs until it expires within a week (it lasts 90 days at most).
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    let pem = certs.join("default.pem");
    if !pem.exists() || expires_within(&pem, 7 * 86_400) {
        run_cmd(
            Command::new(portier_release())
                .args(["self-signed", "--names"])
                .arg(DEMO_CERT_NAMES)
                .arg("--out")
                .arg(&pem),
        )?;
    }
    // The admin API's token (what `cargo xtask certs --token-file` reads).
    let token = dir.join("admin.token");
    demo_token(&token)?;
    // A local CA for ACME; the demo goes on without it if it cannot start.
    let pebble = match demo_pebble::start(&dir.join("pebble"), 8080) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!(
                "xtask: WARNING: Pebble (the demo's ACME CA) did not start, ACME is off: {e:#}"
            );
            None
        }
    };
    let acme = pebble.as_ref().map(|p| Acme {
        tls_root: p.tls_root.clone(),
        state_dir: dir.join("acme"),
    });
    std::fs::write(
        &config,
        demo_config(privileged, &certs, &token, acme.as_ref()),
    )?;
    if !privileged {
        eprintln!(
            "xtask: WARNING: not running as root: portier will start without XDP \
             (loading it needs CAP_BPF and CAP_NET_ADMIN)"
        );
    }
    // The two demo backends live as long as this command.
    let mut backends = Vec::new();
    for (i, addr) in DEMO_BACKENDS.iter().enumerate() {
        let child = Command::new(demo_backend_release())
            .args(["--listen", addr, "--name", &format!("backend-{}", i + 1)])
            .spawn()
            .context("starting a demo backend")?;
        backends.push(KillOnDrop(child));
    }
    eprintln!(
        "\nPortier demo — config: {cfg}\n\
         App `demo.localhost` on http://{http} → two demo backends ({b1}, {b2}) that echo\n\
         the request they received as JSON. In another terminal, try:\n\
         \x20 curl -s -H 'Host: demo.localhost' http://{http}/hello | python3 -m json.tool   # injected X-Forwarded-*, X-Request-ID, X-Request-Start\n\
         \x20 for i in 1 2 3 4; do curl -s -H 'Host: demo.localhost' http://{http}/ | grep -o '\"backend\":\"[^\"]*\"'; done   # round-robin\n\
         \x20 curl -si -H 'Host: nope.localhost' http://{http}/                 # 404 with X-Portier-Error: unknown_host\n\
         \x20 curl -si -H 'Host: demo.localhost' -H \"X-Big: $(head -c 9000 /dev/zero | tr '\\0' a)\" http://{http}/ | head -4   # 431\n\
         HTTPS (self-signed) and HTTP/2 on {https}; a second app `shop` with a wildcard domain,\n\
         a canonical domain and force-HTTPS:\n\
         \x20 curl -sk --http2 -o /dev/null -w '%{{http_version}}\\n' --resolve demo.localhost:8443:127.0.0.1 https://demo.localhost:8443/   # 2\n\
         \x20 curl -si -H 'Host: shop.localhost' http://{http}/cart?id=7 | grep -i location      # 301 → https://www.shop.localhost/cart?id=7\n\
         \x20 curl -si -H 'Host: eu.shop.localhost' http://{http}/ | grep -i location           # wildcard *.shop.localhost, same redirect\n\
         \x20 curl -sik --resolve www.shop.localhost:8443:127.0.0.1 https://www.shop.localhost:8443/ | grep -i strict-transport   # HSTS\n\
         \x20 curl -s -H 'Accept-Encoding: gzip' -H 'Host: demo.localhost' http://{http}/bytes/100000 | gunzip | wc -c   # gzip on the fly\n\
         {acme_lines}         Operate it (admin API on 127.0.0.1:9090, token {token}, found by xtask by itself):\n\
         \x20 cargo xtask apps                       # apps, backends and their state\n\
         \x20 cargo xtask stats                      # queue depth, in flight, requests and responses\n\
         \x20 cargo xtask certs                      # certificates and their ACME state\n\
         \x20 curl -s -H \"Authorization: Bearer $(cat {token})\" http://127.0.0.1:9090/metrics | grep ^portier_requests\n\
         \x20 status page: http://127.0.0.1:9090/ui/#token=$(cat {token})\n\
         \x20 scripts/demo-traffic 30               # 30 s of mixed traffic to watch it move; access log: {access_log}\n\
         XDP runs on `lo` in generic mode:\n\
         \x20 cargo xtask xdp stats                   # packets and bytes per verdict reason\n\
         \x20 cargo xtask xdp block 127.0.0.9/32      # drop that source live: curl -m1 http://127.0.0.9:8080/ now times out\n\
         \x20 cargo xtask xdp unblock 127.0.0.9/32\n\
         Stop with Ctrl-C (the program is detached on exit).\n",
        cfg = config.display(),
        http = DEMO_HTTP,
        https = DEMO_HTTPS,
        b1 = DEMO_BACKENDS[0],
        b2 = DEMO_BACKENDS[1],
        acme_lines = match &pebble {
            Some(p) => format!(
                "ACME: a local Pebble CA issues real certificates for demo.localhost, shop.localhost,\n\
                 www.shop.localhost within seconds (HTTP-01 answered by Portier on :8080):\n\
                 \x20 cargo xtask certs --token-file {token}     # state per name: valid, renew at ...\n\
                 \x20 curl --cacert {root} --resolve demo.localhost:8443:127.0.0.1 https://demo.localhost:8443/hello   # chain verified against Pebble's root\n",
                token = token.display(),
                root = p.issuer_root.display(),
            ),
            None =>
                "ACME is off (Pebble did not start): HTTPS serves the self-signed default.\n".into(),
        },
        token = token.display(),
        access_log = token.with_file_name("access.log").display(),
    );
    let status = Command::new(portier_release())
        .arg("--config")
        .arg(&config)
        .status()
        .context("starting portier")?;
    drop(backends);
    drop(pebble);
    if !status.success() {
        bail!("portier exited with {status}");
    }
    Ok(())
}

/// A demo's admin token at `path`: made once (24 random bytes, hex), kept
/// across runs, mode 0600.
fn demo_token(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        let mut bytes = [0u8; 24];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .context("reading /dev/urandom")?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(path, hex)?;
    }
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}

/// A child process killed when this value goes away (demo backends).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The demo's `[acme]` section, when its Pebble runs.
struct Acme {
    tls_root: PathBuf,
    state_dir: PathBuf,
}

fn demo_config(privileged: bool, certs: &Path, token: &Path, acme: Option<&Acme>) -> String {
    let acme = match acme {
        Some(a) => format!(
            r#"
# Certificates from the demo's Pebble (an RFC 8555 test CA on loopback).
# The wildcard would need DNS-01 (manual by default): left on the default.
[acme]
directory = "{dir}"
ca_roots = "{roots}"
state_dir = "{state}"
contact = ["mailto:ops@demo.localhost"]
exclude = ["*.shop.localhost"]
backoff_secs = [5, 30, 300]
"#,
            dir = demo_pebble::DIRECTORY,
            roots = a.tls_root.display(),
            state = a.state_dir.display(),
        ),
        None => String::new(),
    };
    format!(
        r#"# Portier demo, written by `cargo xtask run`.
[server]
http = ["{http}"]
https = ["{https}"]

[tls]
cert_dir = "{certs}"

[[apps]]
name = "demo"
domains = ["demo.localhost", "localhost"]
backends = ["{b1}", "{b2}"]

# Every name of the shop redirects to https://www.shop.localhost (one hop).
[[apps]]
name = "shop"
domains = ["www.shop.localhost", "shop.localhost", "*.shop.localhost"]
canonical_domain = "www.shop.localhost"
force_https = true
sticky_sessions = true
backends = ["{b1}", "{b2}"]

[xdp]
interfaces = ["lo"]
mode = "{mode}"
pin_dir = "/sys/fs/bpf/portier"
service_ports = [8080, 8443]
allow_tcp_ports = [22, 9090]
# lo carries every local service (resolvers, databases...): count traffic to
# other ports instead of dropping it.
drop_closed_ports = false
# 127.0.0.0/8 is a bogon on a public interface, but it is all lo carries.
bogons = ["0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4"]
syn_rate = 1000
syn_burst = 2000

[admin]
listen = "127.0.0.1:9090"
token_file = "{token}"

[log]
access = "{access_log}"
{acme}"#,
        http = DEMO_HTTP,
        https = DEMO_HTTPS,
        certs = certs.display(),
        b1 = DEMO_BACKENDS[0],
        b2 = DEMO_BACKENDS[1],
        mode = if privileged { "generic" } else { "auto" },
        token = token.display(),
        access_log = token.with_file_name("access.log").display(),
    )
}

fn test(unprivileged: bool, fuzz_seconds: u64) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    if !unprivileged && !is_root() {
        bail!(
            "the XDP tests attach programs and create network namespaces: run as root, \
             or pass --unprivileged to skip them"
        );
    }
    setup::all()?;
    run_cmd(cargo().args(["fmt", "--all", "--", "--check"]))?;
    build_xdp()?;
    run_cmd(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let mut t = cargo();
    t.args(["test", "--workspace", "--no-fail-fast"]);
    if !unprivileged {
        // The package test (root: dpkg -i, then purge) installs this .deb;
        // built once here (a release build) rather than by the test.
        let deb = package()?;
        t.env("PORTIER_DEB", deb);
        t.args(["--", "--include-ignored"]);
    }
    run_cmd(&mut t)?;
    if fuzz_seconds > 0 {
        for target in fuzz::FUZZ_TARGETS {
            fuzz::fuzz(target, fuzz_seconds)?;
        }
    }
    eprintln!("xtask: all tests passed in {:.0?}", started.elapsed());
    Ok(())
}

/// Criterion micro-benchmarks, then a quick side-by-side load run (Portier,
/// HAProxy, nginx and direct-to-backend) with the ratios.
fn bench() -> anyhow::Result<()> {
    run_cmd(cargo().args(["bench", "-p", "portier-bench", "--benches"]))?;
    bench_load::run(&bench_load::BenchCmd::Load {
        quick: true,
        no_xdp: true,
        baseline: None,
    })
}

fn xdp(args: &[String]) -> anyhow::Result<()> {
    let bin = portier_release();
    if !bin.exists() {
        build(true)?;
    }
    let mut c = Command::new(bin);
    c.arg("xdp").args(args);
    let status = c.status().context("starting portier")?;
    if !status.success() {
        bail!("portier xdp {} failed", args.join(" "));
    }
    Ok(())
}
