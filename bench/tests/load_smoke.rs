//! The load harness in seconds: the shared backend and every contestant
//! (direct, Portier, a baseline Portier build, HAProxy, nginx) start on free
//! loopback ports and answer one request each with no failed request, and a
//! report with the failed-requests table and the new-vs-baseline ratios is
//! written to a temp dir (the baseline is the same binary here: building an
//! earlier commit is `cargo xtask bench load --baseline REV`'s job). The harness
//! installs haproxy/nginx/wrk/h2load/nftables itself when they are missing
//! (root: CI); without root and without them, the test says so and passes.

use std::path::PathBuf;
use std::process::Command;

use portier_bench::load::setup;

/// The portier binary `cargo test --workspace` built (debug), else release.
fn portier() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    ["debug", "release"]
        .iter()
        .map(|p| target.join(p).join("portier"))
        .find(|p| p.exists())
}

#[test]
fn every_contestant_answers_and_a_report_is_written() {
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
    let Some(bin) = portier() else {
        panic!("no target/{{debug,release}}/portier: build the workspace first");
    };
    let out = std::env::temp_dir().join(format!("portier-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(env!("CARGO_BIN_EXE_portier-bench"))
        .args(["load", "--smoke", "--portier"])
        .arg(&bin)
        .arg("--baseline-portier")
        .arg(&bin)
        .args(["--baseline-rev", "smoke"])
        .arg("--out-dir")
        .arg(&out)
        .output()
        .expect("run portier-bench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "portier-bench failed:\n{stdout}\n{stderr}"
    );
    let md = std::fs::read_to_string(out.join("smoke.md")).expect("smoke.md written");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("smoke.json")).expect("smoke.json written"),
    )
    .expect("valid JSON");
    let _ = std::fs::remove_dir_all(&out);
    // Every contestant answered the HTTP/1.1 request with the 64-byte body.
    let h1 = json["figures"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["id"] == "smoke_h1"))
        .expect("smoke_h1 figure");
    for who in ["direct", "portier", "portier@smoke", "haproxy", "nginx"] {
        assert_eq!(
            h1["contestants"][who]["median"].as_f64(),
            Some(64.0),
            "{who} did not answer:\n{md}"
        );
        assert_eq!(
            h1["contestants"][who]["failed_total"].as_u64(),
            Some(0),
            "{who}: failed requests counted:\n{md}"
        );
    }
    // HAProxy and nginx answered over TLS with HTTP/2.
    let h2 = json["figures"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["id"] == "smoke_h2"))
        .expect("smoke_h2 figure");
    for who in ["haproxy", "nginx"] {
        assert_eq!(
            h2["contestants"][who]["median"].as_f64(),
            Some(1.0),
            "{who} over TLS:\n{md}"
        );
    }
    // Both Portier builds over TLS, HTTP/2, and h2load counted no failure.
    for who in ["portier", "portier@smoke"] {
        assert_eq!(
            h2["contestants"][who]["median"].as_f64(),
            Some(1.0),
            "{who} over TLS:\n{md}"
        );
        assert_eq!(h2["contestants"][who]["failed_total"].as_u64(), Some(0));
    }
    // The same binary twice: every new/old ratio is 1 and nothing is flagged.
    assert_eq!(json["baseline"]["all_ok"], true, "{md}");
    assert_eq!(h1["baseline"]["ratio"].as_f64(), Some(1.0), "{md}");
    assert!(
        md.contains("## New vs baseline (portier vs portier@smoke)"),
        "{md}"
    );
    assert!(md.contains("## Failed requests"), "{md}");
}
