//! The Debian packages the harness needs, installed only when missing
//! (`dpkg-query` check, then `apt-get update` + `apt-get install`). Package
//! scripts are kept from starting the system services (a temporary
//! `policy-rc.d`, only if none exists): the harness runs its own instances.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::bail;

use super::proc::{is_root, run_bounded, run_ok};

/// Debian package → the program the harness runs from it.
pub const PACKAGES: &[(&str, &str)] = &[
    ("haproxy", "haproxy"),
    ("nginx", "nginx"),
    ("wrk", "wrk"),
    ("nghttp2-client", "h2load"),
    ("nftables", "nft"),
    ("openssl", "openssl"),
    ("util-linux", "taskset"),
    ("iproute2", "ip"),
    // `portier-bench profile`: syscall counts and flame graphs.
    ("strace", "strace"),
    ("linux-perf", "perf"),
];

pub fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// What the XDP flood alone (`portier-bench xdp`) runs.
pub const XDP_PACKAGES: &[(&str, &str)] = &[("nftables", "nft"), ("iproute2", "ip")];

/// Install what is missing of [`PACKAGES`].
pub fn ensure_packages() -> anyhow::Result<()> {
    ensure(PACKAGES)
}

/// Install what is missing of `packages`. Without root, fails naming them.
pub fn ensure(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}: run as root (the harness installs them) or `apt-get install {}`",
            missing.join(" "),
            missing.join(" ")
        );
    }
    eprintln!("portier-bench: installing {}", missing.join(" "));
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let ours = !policy.exists()
        && std::fs::write(
            policy,
            "#!/bin/sh\n# portier-bench: no service starts during install\nexit 101\n",
        )
        .is_ok();
    if ours {
        let _ = Command::new("chmod").args(["755"]).arg(policy).status();
    }
    let result = (|| {
        let lock = ["-o", "DPkg::Lock::Timeout=300"];
        run_ok(
            Command::new("apt-get").args(lock).args(["update", "-q"]),
            Duration::from_secs(600),
        )?;
        let out = run_bounded(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(lock)
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing),
            Duration::from_secs(900),
        )?;
        if !out.status.success() {
            bail!(
                "apt-get install {} failed: {}",
                missing.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    })();
    if ours {
        let _ = std::fs::remove_file(policy);
    }
    result
}
