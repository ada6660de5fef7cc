//! `cargo xtask setup`: make this machine able to build and test Portier.
//! Every step checks first and does nothing when already satisfied, so a
//! second run takes seconds and changes nothing.

use std::process::Command;

use anyhow::{Context, bail};

use crate::{is_root, root, run_cmd};

/// Debian packages the build, the tests and the demo need.
pub const APT_PACKAGES: &[&str] = &[
    // bpf-linker links against LLVM 22, the LLVM of the pinned nightly.
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "build-essential",
    // XDP tests: network namespaces and veth pairs.
    "iproute2",
    // Demo and integration tests: clients (curl, nghttp, h2load, openssl
    // s_client) and frame-level HTTP/2 attacks (Debian's python3 + hpack).
    "curl",
    "nghttp2-client",
    "openssl",
    "python3-h2",
    // The admin API test parses /metrics with the reference Prometheus parser.
    "python3-prometheus-client",
    // The status page is tested in a real browser (headless).
    "chromium",
    // ACME tests: a real test CA (pebble, with pebble-challtestsrv as the
    // resolver of its validation authority).
    "pebble",
    // ACME tests: mini_acme.py (the ARI/profiles/429 stand-in) signs and
    // verifies with Debian's python3 + cryptography.
    "python3-cryptography",
    // ACME DNS-01 tests: an authoritative server (named) taking RFC 2136 updates.
    "bind9",
    // ACME tests: dig queries challtestsrv and named.
    "bind9-dnsutils",
    // Region tests: a real etcd cluster per test (tests/support/etcd.rs).
    "etcd-server",
    // Region tests: the harness drives etcd with etcdctl (API v3).
    "etcd-client",
    // The etcd-client crate (region mode) generates its gRPC code with protoc.
    "protobuf-compiler",
    // The package test: `systemd-analyze verify` on the unit (the tools,
    // not systemd as PID 1), `logrotate --debug` on the rotation config,
    // adduser/deluser in the maintainer scripts, setpriv to start the
    // installed binary with the unit's capability bounding set.
    "systemd",
    "logrotate",
    "adduser",
    "util-linux",
];

pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// `cargo xtask package` builds the .deb with this cargo-deb.
pub const CARGO_DEB_VERSION: &str = "3.8.0";

pub fn all() -> anyhow::Result<()> {
    apt()?;
    nightly()?;
    bpf_linker()?;
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn apt() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {} (run as root, or apt-get install them)",
            missing.join(" ")
        );
    }
    run_cmd(Command::new("apt-get").args(["update", "-q"]))?;
    run_cmd(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )
}

/// The nightly channel pinned in xdp-ebpf/rust-toolchain.toml.
pub fn pinned_nightly() -> anyhow::Result<String> {
    pinned_nightly_of(&root())
}

/// The nightly channel pinned in `<tree>/xdp-ebpf/rust-toolchain.toml` (a
/// checkout of another revision: `bench load --baseline`).
pub fn pinned_nightly_of(tree: &std::path::Path) -> anyhow::Result<String> {
    let path = tree.join("xdp-ebpf/rust-toolchain.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.split('"').nth(1))
        .next()
        .map(str::to_string)
        .with_context(|| format!("no channel in {}", path.display()))
}

fn nightly() -> anyhow::Result<()> {
    nightly_toolchain(&pinned_nightly()?)
}

/// Install `toolchain` (a nightly, with rust-src) unless it is there.
pub fn nightly_toolchain(toolchain: &str) -> anyhow::Result<()> {
    let sysroot = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output();
    if let Ok(out) = sysroot {
        let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success()
            && std::path::Path::new(&sysroot)
                .join("lib/rustlib/src/rust/library/core")
                .is_dir()
        {
            return Ok(());
        }
    }
    run_cmd(Command::new("rustup").args([
        "toolchain",
        "install",
        toolchain,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
}

fn bpf_linker() -> anyhow::Result<()> {
    let version = Command::new("bpf-linker").arg("--version").output();
    if let Ok(out) = version
        && String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION)
    {
        return Ok(());
    }
    let path = format!(
        "/usr/lib/llvm-22/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    run_cmd(
        Command::new("cargo")
            .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22")
            .env("PATH", path)
            .env_remove("RUSTUP_TOOLCHAIN")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--no-default-features",
                "--features",
                "llvm-22",
            ]),
    )
}

/// cargo-fuzz, only for `xtask fuzz` and the fuzz smoke run in `xtask test`.
pub fn cargo_fuzz() -> anyhow::Result<()> {
    let ok = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Ok(());
    }
    run_cmd(Command::new("cargo").env_remove("RUSTUP_TOOLCHAIN").args([
        "install",
        "cargo-fuzz",
        "--locked",
    ]))
}

/// cargo-deb at [`CARGO_DEB_VERSION`], only for `xtask package` (and the
/// package test in `xtask test`): installed when missing or another version.
/// inferno (flame graphs for `cargo xtask bench profile`), pinned.
const INFERNO_VERSION: &str = "0.12.8";

pub fn inferno() -> anyhow::Result<()> {
    let version = Command::new("inferno-flamegraph").arg("--version").output();
    if let Ok(out) = version
        && out.status.success()
        && String::from_utf8_lossy(&out.stdout).contains(INFERNO_VERSION)
    {
        return Ok(());
    }
    run_cmd(
        Command::new("cargo")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO_TARGET_DIR")
            .args([
                "install",
                "inferno",
                "--version",
                INFERNO_VERSION,
                "--locked",
            ]),
    )
}

pub fn cargo_deb() -> anyhow::Result<()> {
    let version = Command::new("cargo").args(["deb", "--version"]).output();
    if let Ok(out) = version
        && out.status.success()
        && String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|w| w == CARGO_DEB_VERSION)
    {
        return Ok(());
    }
    run_cmd(
        Command::new("cargo")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO_TARGET_DIR")
            .args([
                "install",
                "cargo-deb",
                "--version",
                CARGO_DEB_VERSION,
                "--locked",
            ]),
    )
}
