//! `cargo xtask bench acme [--names N] [--quick] [--concurrency 16,64]`: how
//! fast a node gets N certificates from a local CA, what the reactors'
//! latency does meanwhile, and what each installed certificate costs in
//! memory and on disk. Builds the release portier (always), starts a local
//! Pebble + challtestsrv on free loopback ports (the demo's starter,
//! [`crate::demo_pebble::start_with`], pinned to the load CPU, nonce
//! rejection and authorization reuse off so every order is validated and
//! runs repeat), then runs the harness (`portier-bench acme`, code in
//! `bench/src/acme/`), which starts the backend, portier and wrk, writes
//! `bench/results/<date>-acme[-quick].md` and `.json`, and prints the
//! summary. Pebble, challtestsrv and the scratch directory go away when
//! the command ends, also on error.

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;

use anyhow::Context;

use crate::demo_pebble::{self, PebbleSpec};

/// CPU shared by the load tool and the CA (portier and the backend get
/// CPU 0; see the harness).
const CA_CPU: &str = "1";

pub struct AcmeBench {
    pub names: Option<usize>,
    pub quick: bool,
    pub concurrency: Vec<usize>,
}

pub fn run(cmd: &AcmeBench) -> anyhow::Result<()> {
    crate::setup::all()?;
    crate::build(true)?;
    let names = cmd.names.unwrap_or(if cmd.quick { 200 } else { 1000 });
    let scratch = Scratch::new()?;
    let http_port = free_port()?;
    let spec = PebbleSpec {
        listen: free_port()?,
        management: free_port()?,
        dns: free_port()?,
        dns_management: free_port()?,
        http_port,
        tls_port: free_port()?,
        cpus: Some(CA_CPU.into()),
        env: vec![
            ("PEBBLE_WFE_NONCEREJECT", "0".into()),
            ("PEBBLE_AUTHZREUSE", "0".into()),
        ],
    };
    eprintln!(
        "xtask: Pebble {} (HTTP-01 on 127.0.0.1:{http_port}), files in {}",
        spec.directory(),
        scratch.0.display()
    );
    let pebble = demo_pebble::start_with(&scratch.0, &spec).context("starting Pebble")?;
    let mut c = crate::cargo();
    c.args([
        "run",
        "-q",
        "-p",
        "portier-bench",
        "--bin",
        "portier-bench",
        "--",
        "acme",
        "--directory",
        &pebble.directory,
        "--http-port",
        &http_port.to_string(),
        "--names",
        &names.to_string(),
        "--concurrency",
    ])
    .arg(
        cmd.concurrency
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(","),
    )
    .arg("--ca-roots")
    .arg(&pebble.tls_root)
    .args(["--ca-cpus", CA_CPU]);
    for pid in pebble.pids() {
        c.args(["--ca-pid", &pid.to_string()]);
    }
    if cmd.quick {
        c.arg("--quick");
    }
    let result = crate::run_cmd(&mut c);
    drop(pebble);
    drop(scratch);
    result
}

/// A loopback port free for both TCP and UDP right now (challtestsrv's DNS
/// listens on both).
fn free_port() -> anyhow::Result<u16> {
    for _ in 0..20 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no loopback port free for both TCP and UDP")
}

/// The run's scratch directory (Pebble's files), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let dir =
            std::env::temp_dir().join(format!("portier-bench-acme-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("PORTIER_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable_twice() {
        // Another process may take the port between the check and the
        // bind: one clean success in a few tries is what free_port promises.
        let ok = (0..5).any(|_| {
            let p = free_port().expect("port");
            let tcp = TcpListener::bind(("127.0.0.1", p));
            let udp = UdpSocket::bind(("127.0.0.1", p));
            tcp.is_ok() && udp.is_ok()
        });
        assert!(
            ok,
            "no port from free_port was bindable for both TCP and UDP"
        );
    }
}
