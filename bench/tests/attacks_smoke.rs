//! A bounded run of `portier-bench attacks` in the suite: rapid reset,
//! MadeYouReset, the PING flood and slowloris (1,000 sockets) against the
//! workspace's portier (debug build), 3 s idle and 3 s attacked each, plus the
//! SYN flood through XDP when root. Asserts the property, not speed: every
//! attack ran, and no legitimate request failed, over HTTP/1.1 and HTTP/2,
//! idle or attacked. The p99 verdict (attacked within 2x idle) is a timing
//! figure: it belongs in the bench report (`cargo xtask bench attacks`),
//! where it is computed and shown, not in a pass/fail of the suite (on a
//! shared 2-core VM one lost time slice decides it).

use std::path::PathBuf;
use std::process::Command;

use portier_bench::load::setup;

fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

#[test]
fn every_legitimate_request_succeeds_under_attack() {
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
            "--rounds",
            "1",
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
    // 0: every p99 within its bound; 2: some p99 missed it (a figure for
    // the report, not a failure here); anything else: the harness failed.
    assert!(
        matches!(run.status.code(), Some(0) | Some(2)),
        "harness failed:\n{stderr}\n{md}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("report JSON");
    let attacks = v["attacks"].as_array().expect("attacks");
    assert_eq!(attacks.len(), only.len(), "{md}");
    for a in attacks {
        for side in ["idle", "attacked"] {
            for l in a[side].as_array().expect("latencies") {
                assert_eq!(l["failed"], 0, "{md}");
                assert!(l["ok"].as_u64().unwrap_or(0) > 0, "{md}");
            }
        }
    }
}
