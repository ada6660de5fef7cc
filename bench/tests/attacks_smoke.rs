//! A bounded run of `portier-bench attacks` in the suite: rapid reset,
//! MadeYouReset, the PING flood and slowloris (1,000 sockets) against the
//! workspace's portier (debug build), 3 s idle and 3 s attacked each, plus the
//! SYN flood through XDP when root. Asserts the property, not speed: no
//! legitimate request failed, and each attacked p99 is within
//! max(2 x idle p99, idle p99 + 15 ms) over HTTP/1.1 and HTTP/2.
//!
//! The 15 ms floor: the legitimate client shares CPU 1 with the attacker
//! and Portier shares CPU 0 with the backend on a 2-core VM that other jobs
//! use too; with 250 Hz scheduling one lost time slice costs 4 ms and a
//! debug build's idle p99 is a few ms, so 2x alone would fail on a
//! neighbour's burst rather than on Portier. A defence that does not work
//! costs far more than that (a reactor busy with an attack shows p99 in
//! the hundreds of ms, or failed requests). Speed figures belong in the
//! bench report (`cargo xtask bench attacks`), not here.

use std::path::PathBuf;
use std::process::Command;

use portier_bench::load::setup;

fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

#[test]
fn a_legitimate_client_keeps_its_latency_and_every_request_under_attack() {
    let missing: Vec<&str> = setup::PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !setup::installed(p))
        .collect();
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !missing.is_empty() && !root {
        eprintln!("SKIPPED: not root and missing {missing:?} (CI runs as root and installs them)");
        return;
    }
    let bin = ["debug", "release"]
        .iter()
        .map(|p| target().join(p).join("portier"))
        .find(|p| p.exists())
        .expect("no target/{debug,release}/portier: build the workspace first");
    let out = std::env::temp_dir().join(format!("portier-attacks-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let xdp_object = target().join("xdp");
    let mut only = vec!["rapid_reset", "made_you_reset", "ping_flood", "slowloris"];
    // The SYN flood needs root (namespaces, XDP) and a portier with the
    // XDP program embedded (`cargo xtask test` builds it first).
    if root && xdp_object.exists() {
        only.push("syn_flood");
    }
    let run = Command::new(env!("CARGO_BIN_EXE_portier-bench"))
        .args([
            "attacks",
            "--seconds",
            "3",
            "--rate",
            "100",
            "--sockets",
            "1000",
        ])
        .args(["--floor-us", "15000", "--only", &only.join(",")])
        .arg("--portier")
        .arg(&bin)
        .arg("--out-dir")
        .arg(&out)
        .args(["--stem", "smoke"])
        .output()
        .expect("run portier-bench");
    let stderr = String::from_utf8_lossy(&run.stderr);
    let md = std::fs::read_to_string(out.join("smoke.md")).unwrap_or_default();
    let json = std::fs::read_to_string(out.join("smoke.json")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        run.status.success(),
        "target missed or harness failed:\n{stderr}\n{md}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("report JSON");
    let attacks = v["attacks"].as_array().expect("attacks");
    assert_eq!(attacks.len(), only.len(), "{md}");
    for a in attacks {
        assert_eq!(a["pass"], true, "{md}");
        for side in ["idle", "attacked"] {
            for l in a[side].as_array().expect("latencies") {
                assert_eq!(l["failed"], 0, "{md}");
                assert!(l["ok"].as_u64().unwrap_or(0) > 0, "{md}");
            }
        }
    }
}
