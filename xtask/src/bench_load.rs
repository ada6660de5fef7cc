//! `cargo xtask bench load [--quick] [--baseline REV]`: the comparative load
//! harness (`portier-bench load`, code in `bench/src/load/`). Builds the
//! release portier first (always: a stale binary would measure the past);
//! the harness installs its own Debian packages (haproxy, nginx, wrk,
//! nghttp2-client, nftables) when missing.
//!
//! `--baseline REV` also builds REV's portier and runs it as one more
//! contestant, `portier@<short hash>`: REV is checked out (detached) in a git
//! worktree at `<target>/bench-baseline/<short hash>` (kept, and reused by
//! the next run when still at REV and unmodified), its XDP object is built
//! with its own pinned nightly into that worktree's `target/xdp`, and its
//! portier with `--release` into `<target>/bench-baseline/target` (so the
//! current build is never touched), by the same cargo and rustc as the
//! current one. `<target>` is `CARGO_TARGET_DIR`, else `target/`. Only the
//! proxy comes from REV: the backend, the load tools and the harness are the
//! current ones.
//!
//! `cargo xtask bench xdp [--seconds N] [--runs N]`: the XDP flood
//! sections alone (`portier-bench xdp`, code in `bench/src/load/xdp.rs`),
//! on a fresh release build; needs root.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::{root, run_cmd, setup};

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Portier vs HAProxy vs nginx on loopback, and XDP vs nftables; report in bench/results/.
    Load {
        /// Short runs (under 3 minutes); the full run takes under 15.
        #[arg(long)]
        quick: bool,
        /// Skip the XDP flood (it needs root and network namespaces).
        #[arg(long)]
        no_xdp: bool,
        /// Also build this git revision's portier (HEAD~1, a tag, a commit
        /// hash…) in a worktree under <target>/bench-baseline/ and run it as
        /// one more contestant, portier@<short hash>, everywhere portier
        /// runs; the report adds new/old ratios of every figure, flagged
        /// below 0.97×.
        #[arg(long, value_name = "GIT_REV")]
        baseline: Option<String>,
    },
    /// XDP flood alone: drops/s by portier's XDP program vs an nftables rule
    /// vs a bare XDP_DROP program (live-frame generator over a veth between
    /// namespaces), a legitimate client's connects during it, the program's
    /// ns per frame fixture; report in bench/results/<date>-xdp.md. Needs root.
    Xdp {
        /// Seconds of flood per side and round.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Rounds (sides interleaved).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Attacks vs a legitimate client: slowloris (5,000 sockets), HTTP/2 rapid
    /// reset, MadeYouReset, CONTINUATION flood, HPACK bomb, SETTINGS and PING
    /// floods, a SYN flood through XDP in network namespaces; the client's
    /// p50/p99 idle and under each attack; report in bench/results/<date>-attacks.md.
    Attacks {
        /// Seconds of each measurement (idle, then under attack).
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Only these attacks (comma-separated).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Rounds per attack (idle then attacked); the verdict is on medians.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Skip the SYN flood (needs root and network namespaces).
        #[arg(long)]
        no_xdp: bool,
    },
    /// System calls per request of Portier, HAProxy and nginx (strace over a
    /// bounded wrk run) and Portier's flame graphs (HTTP/1.1, HTTPS, HTTP/2);
    /// report and SVGs in bench/results/.
    Profile {
        /// Seconds of load per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// ACME at scale: N names ordered from a local Pebble (time to first and
    /// to all valid), reactor latency under wrk during the installs and
    /// after, memory and disk per certificate; report in bench/results/.
    Acme {
        /// Names to order (n0001.bench.test…); default 1000, 200 with --quick.
        #[arg(long)]
        names: Option<usize>,
        /// 200 names and shorter loads (about a minute per trial).
        #[arg(long)]
        quick: bool,
        /// `acme.concurrency` of each trial (one fresh node per value).
        #[arg(long, value_delimiter = ',', default_value = "16,64")]
        concurrency: Vec<usize>,
    },
    /// A region at scale in a 3-member etcd (10,000 apps, 100,000 domains):
    /// cold start time and memory of a node (also from its cache with etcd
    /// down), admin write propagation to three nodes (p50/p99/max), reactor
    /// latency under 1,000 changes/s; report in bench/results/.
    Region {
        /// Apps in the region (10 domains each).
        #[arg(long, default_value_t = 10_000)]
        apps: usize,
        /// Admin writes of the propagation test.
        #[arg(long, default_value_t = 100)]
        writes: usize,
        /// Changes per second written to etcd during the load.
        #[arg(long, default_value_t = 1000)]
        change_rate: u32,
    },
}

pub fn run(cmd: &BenchCmd) -> anyhow::Result<()> {
    let (quick, no_xdp, baseline) = match cmd {
        BenchCmd::Load {
            quick,
            no_xdp,
            baseline,
        } => (quick, no_xdp, baseline),
        BenchCmd::Attacks {
            seconds,
            only,
            rounds,
            no_xdp,
        } => return attacks(*seconds, only, *rounds, *no_xdp),
        BenchCmd::Profile { seconds } => return profile(*seconds),
        BenchCmd::Region {
            apps,
            writes,
            change_rate,
        } => {
            return crate::bench_region::run(*apps, *writes, *change_rate);
        }
        BenchCmd::Xdp { seconds, runs } => return xdp(*seconds, *runs),
        BenchCmd::Acme {
            names,
            quick,
            concurrency,
        } => {
            return crate::bench_acme::run(&crate::bench_acme::AcmeBench {
                names: *names,
                quick: *quick,
                concurrency: concurrency.clone(),
            });
        }
    };
    crate::setup::all()?;
    crate::build(true)?;
    let baseline = baseline.as_deref().map(build_baseline).transpose()?;
    let mut c = portier_bench("load");
    if *quick {
        c.arg("--quick");
    }
    if *no_xdp {
        c.arg("--no-xdp");
    }
    if let Some(b) = &baseline {
        c.arg("--baseline-portier")
            .arg(&b.bin)
            .args(["--baseline-rev", &b.short]);
        for n in &b.notes {
            c.args(["--note", n]);
        }
    }
    crate::run_cmd(&mut c)
}

/// `cargo run -p portier-bench -- <sub>`: the harness, with the
/// subcommand's arguments still to add.
fn portier_bench(sub: &str) -> std::process::Command {
    let mut c = crate::cargo();
    c.args([
        "run",
        "-q",
        "-p",
        "portier-bench",
        "--bin",
        "portier-bench",
        "--",
        sub,
    ]);
    c
}

/// `portier-bench profile` on a fresh release build, with inferno installed.
fn profile(seconds: f64) -> anyhow::Result<()> {
    crate::setup::all()?;
    setup::inferno()?;
    crate::build(true)?;
    let mut c = portier_bench("profile");
    c.args(["--seconds", &seconds.to_string()]);
    crate::run_cmd(&mut c)
}

/// `portier-bench xdp` on a fresh release build (report in bench/results/).
fn xdp(seconds: f64, runs: usize) -> anyhow::Result<()> {
    crate::setup::all()?;
    crate::build(true)?;
    let mut c = portier_bench("xdp");
    c.args([
        "--seconds",
        &seconds.to_string(),
        "--runs",
        &runs.to_string(),
    ]);
    run_cmd(&mut c)
}

/// `portier-bench attacks` on a fresh release build (report in bench/results/).
fn attacks(seconds: f64, only: &[String], rounds: usize, no_xdp: bool) -> anyhow::Result<()> {
    crate::setup::all()?;
    crate::build(true)?;
    let mut c = portier_bench("attacks");
    c.args(["--seconds", &seconds.to_string()]);
    c.args(["--rounds", &rounds.to_string()]);
    if !only.is_empty() {
        c.args(["--only", &only.join(",")]);
    }
    if no_xdp {
        c.arg("--no-xdp");
    }
    run_cmd(&mut c)
}

/// A built baseline: its binary, its short hash, lines for the report.
struct BaselineBuild {
    bin: PathBuf,
    short: String,
    notes: Vec<String>,
}

/// The cargo target directory of the current build.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(d) if d.is_absolute() => d,
        Some(d) => root().join(d),
        None => root().join("target"),
    }
}

/// `git -C dir ARGS`: its stdout, trimmed; fails with its stderr.
fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git -C {} {} failed: {}",
            dir.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn build_baseline(rev: &str) -> anyhow::Result<BaselineBuild> {
    let repo = root();
    let full = git(
        &repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .with_context(|| format!("--baseline {rev}: not a commit of this repository"))?;
    let short = git(&repo, &["rev-parse", "--short", &full])?;
    let base = target_dir().join("bench-baseline");
    let tree = base.join(&short);
    eprintln!(
        "xtask: baseline {rev} = {full}, worktree {}",
        tree.display()
    );
    worktree(&repo, &tree, &full)?;

    // Its XDP object, with its own pinned nightly, where its build.rs looks
    // by default (and named explicitly below).
    let toolchain = setup::pinned_nightly_of(&tree)?;
    setup::nightly_toolchain(&toolchain)?;
    let xdp_target = tree.join("target/xdp");
    run_cmd(
        crate::nightly_cargo_with(&tree.join("xdp-ebpf"), &toolchain)
            .args(["build", "--release", "--target-dir"])
            .arg(&xdp_target),
    )?;
    let object = xdp_target.join("bpfel-unknown-none/release/portier-xdp");

    // Its portier: release, the same cargo as the current build, its own
    // target directory.
    let target = base.join("target");
    let mut c = crate::cargo();
    c.current_dir(&tree)
        .env("CARGO_TARGET_DIR", &target)
        .env("PORTIER_XDP_OBJECT", &object)
        .args(["build", "-p", "portier", "--release"]);
    run_cmd(&mut c)?;
    let bin = target.join("release/portier");
    if !bin.is_file() {
        bail!("the baseline build left no {}", bin.display());
    }
    // The harness runs `portier --config FILE` (and `--version`, `xdp stats`).
    let help = Command::new(&bin)
        .arg("--help")
        .output()
        .with_context(|| format!("running {} --help", bin.display()))?;
    if !String::from_utf8_lossy(&help.stdout).contains("--config") {
        bail!(
            "{} --help shows no --config option: the harness cannot start this revision",
            bin.display()
        );
    }

    let mut notes = vec![format!(
        "Baseline portier@{short}: commit {full} checked out in {}, built `cargo build -p portier \
         --release` by the same cargo/rustc as the current build into {} (XDP object with its own \
         pinned {toolchain}); same configuration, backend, CPU pinning and rounds as portier.",
        tree.display(),
        target.display()
    )];
    let now = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap_or_default();
    let then = std::fs::read_to_string(tree.join("Cargo.toml")).unwrap_or_default();
    if release_profile(&now) != release_profile(&then) {
        let msg = format!(
            "The baseline's [profile.release] differs from the current one (each build used its \
             own): now {:?}, baseline {:?}.",
            release_profile(&now),
            release_profile(&then)
        );
        eprintln!("xtask: WARNING: {msg}");
        notes.push(msg);
    }
    eprintln!(
        "xtask: baseline portier@{short} built: {} (worktree kept for the next run; \
         `git worktree remove --force {}` removes it)",
        bin.display(),
        tree.display()
    );
    Ok(BaselineBuild { bin, short, notes })
}

/// The `[profile.release]` table of a Cargo.toml, lines trimmed.
fn release_profile(cargo_toml: &str) -> Vec<String> {
    cargo_toml
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "[profile.release]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// A detached worktree of `repo` at `commit` in `dir`: reused when `dir` is
/// already such a worktree at that commit with no change to its files;
/// otherwise removed (with whatever it held) and made anew.
fn worktree(repo: &Path, dir: &Path, commit: &str) -> anyhow::Result<()> {
    if dir.exists() {
        // `dir` may sit inside `repo`'s own tree (target/ is): only a
        // worktree whose top level is `dir` itself counts.
        let top = git(dir, &["rev-parse", "--show-toplevel"])
            .ok()
            .and_then(|t| Path::new(&t).canonicalize().ok());
        let at = git(dir, &["rev-parse", "HEAD"]).ok();
        let clean = git(dir, &["status", "--porcelain"]).is_ok_and(|s| s.is_empty());
        if top.is_some() && top == dir.canonicalize().ok() && at.as_deref() == Some(commit) && clean
        {
            eprintln!("xtask: reusing the worktree {}", dir.display());
            return Ok(());
        }
        eprintln!(
            "xtask: {} is not an unmodified worktree at {commit}: making it anew",
            dir.display()
        );
        let shown = dir.display().to_string();
        let _ = git(repo, &["worktree", "remove", "--force", &shown]);
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {shown}"))?;
        }
    }
    git(repo, &["worktree", "prune"])?;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let shown = dir.display().to_string();
    git(repo, &["worktree", "add", "--detach", &shown, commit])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_with_two_commits(dir: &Path) -> (String, String) {
        let g = |args: &[&str]| {
            git(
                dir,
                &[&["-c", "user.name=t", "-c", "user.email=t@t"], args].concat(),
            )
            .expect("git")
        };
        std::fs::create_dir_all(dir).expect("mkdir");
        g(&["init", "-q"]);
        std::fs::write(dir.join(".gitignore"), "/target\n").expect("write");
        std::fs::write(dir.join("f"), "one\n").expect("write");
        g(&["add", "."]);
        g(&["commit", "-q", "-m", "one"]);
        let one = g(&["rev-parse", "HEAD"]);
        std::fs::write(dir.join("f"), "two\n").expect("write");
        g(&["commit", "-q", "-am", "two"]);
        let two = g(&["rev-parse", "HEAD"]);
        (one, two)
    }

    #[test]
    fn worktree_is_made_reused_and_replaced() {
        let tmp = std::env::temp_dir().join(format!("xtask-worktree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let repo = tmp.join("repo");
        let (one, two) = repo_with_two_commits(&repo);
        // Inside the repository's ignored target/, like the real one.
        let tree = repo.join("target/bench-baseline/x");
        // A plain directory there (not a worktree) is replaced.
        std::fs::create_dir_all(&tree).expect("mkdir");
        worktree(&repo, &tree, &one).expect("worktree");
        assert_eq!(std::fs::read_to_string(tree.join("f")).expect("f"), "one\n");
        assert_eq!(git(&tree, &["rev-parse", "HEAD"]).expect("head"), one);
        // Reused: build output (ignored) survives.
        std::fs::create_dir_all(tree.join("target")).expect("mkdir");
        std::fs::write(tree.join("target/built"), "").expect("write");
        worktree(&repo, &tree, &one).expect("reuse");
        assert!(tree.join("target/built").exists());
        // A changed file: made anew.
        std::fs::write(tree.join("f"), "edited\n").expect("write");
        worktree(&repo, &tree, &one).expect("anew");
        assert_eq!(std::fs::read_to_string(tree.join("f")).expect("f"), "one\n");
        assert!(!tree.join("target/built").exists());
        // Another commit: made anew at it.
        worktree(&repo, &tree, &two).expect("other commit");
        assert_eq!(std::fs::read_to_string(tree.join("f")).expect("f"), "two\n");
        let list = git(&repo, &["worktree", "list", "--porcelain"]).expect("list");
        assert_eq!(list.matches("worktree ").count(), 2, "{list}");
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn release_profile_table() {
        let t = "[workspace]\nmembers = []\n\n[profile.release]\ndebug = 1\n# c\nlto = \"thin\"\n\n[profile.dev]\nopt-level = 1\n";
        assert_eq!(release_profile(t), ["debug = 1", "lto = \"thin\""]);
        assert!(release_profile("[package]\n").is_empty());
    }
}
