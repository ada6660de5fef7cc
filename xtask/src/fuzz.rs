//! `cargo xtask fuzz`: libFuzzer (cargo-fuzz, the pinned nightly) on one
//! target, or a campaign over every target (`--all --minutes N`: each
//! target N minutes in turn, then a table of executions, exec/s, coverage
//! and crashes, also written to `bench/results/<date>-fuzz.md`).
//!
//! Every run starts from two corpus directories: `fuzz/corpus/<target>`
//! (the working corpus, gitignored; new inputs land there) and
//! `fuzz/seeds/<target>` (the committed seeds, read only).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::{nightly_cargo, root, run_cmd, setup};

/// Every fuzz target (fuzz/fuzz_targets/*.rs); the suite runs each briefly.
pub const FUZZ_TARGETS: &[&str] = &["classify", "h1", "h2", "hpack", "config", "proxy"];

/// What one libFuzzer run amounted to (its final stats and last status line).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FuzzStats {
    pub target: String,
    pub seconds: u64,
    pub executions: u64,
    pub exec_per_sec: u64,
    /// Edges covered (`cov:`) and features (`ft:`) at the end.
    pub cov: u64,
    pub ft: u64,
    /// Inputs in the corpus at the end (`corp:`).
    pub corpus: u64,
    /// Crash (or leak, timeout, OOM) reproducers written.
    pub crashes: Vec<String>,
}

/// Run one target for `seconds`; fails on a crash (the suite's short run).
pub fn fuzz(target: &str, seconds: u64) -> anyhow::Result<()> {
    let stats = run(target, seconds)?;
    if !stats.crashes.is_empty() {
        bail!("fuzz target {target} crashed: {}", stats.crashes.join(", "));
    }
    Ok(())
}

/// Every target `minutes` each, in turn; prints and writes the table.
pub fn campaign(minutes: u64) -> anyhow::Result<()> {
    setup::cargo_fuzz()?;
    // Build every target first so the minutes are all fuzzing.
    run_cmd(nightly_cargo(&root().join("fuzz"))?.args(["fuzz", "build"]))?;
    let started = std::time::Instant::now();
    let mut all = Vec::new();
    for target in FUZZ_TARGETS {
        let stats = run(target, minutes * 60)?;
        eprintln!("xtask: {}", row(&stats));
        all.push(stats);
    }
    let report = report(&all, minutes, started.elapsed().as_secs());
    println!("{report}");
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .context("date")?;
    let date = String::from_utf8_lossy(&date.stdout).trim().to_string();
    let path = root().join(format!("bench/results/{date}-fuzz.md"));
    std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    let crashed: Vec<&str> = all
        .iter()
        .filter(|s| !s.crashes.is_empty())
        .map(|s| s.target.as_str())
        .collect();
    if !crashed.is_empty() {
        bail!("crashes in {}", crashed.join(", "));
    }
    Ok(())
}

fn run(target: &str, seconds: u64) -> anyhow::Result<FuzzStats> {
    setup::cargo_fuzz()?;
    let dir = root().join("fuzz");
    let corpus = dir.join("corpus").join(target);
    let seeds = dir.join("seeds").join(target);
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&seeds)?;
    let mut c = nightly_cargo(&dir)?;
    c.args(["fuzz", "run", target])
        .arg(&corpus)
        .arg(&seeds)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-print_final_stats=1",
        ])
        .stderr(Stdio::piped());
    eprintln!("xtask: $ {c:?}");
    let mut child = c.spawn().context("starting cargo fuzz")?;
    let mut lines = Vec::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines() {
            let line = line.unwrap_or_default();
            eprintln!("{line}");
            lines.push(line);
        }
    }
    let status = child.wait()?;
    let mut stats = parse(target, seconds, &lines);
    if !status.success() && stats.crashes.is_empty() {
        // Not a finding libFuzzer wrote down: a build or setup failure.
        bail!("cargo fuzz run {target} failed ({status})");
    }
    stats.seconds = seconds;
    Ok(stats)
}

/// Read libFuzzer's output: `stat::` lines, the last `cov:`/`ft:`/`corp:`
/// status line, and `Test unit written to <path>` for each finding.
pub fn parse(target: &str, seconds: u64, lines: &[String]) -> FuzzStats {
    let mut s = FuzzStats {
        target: target.to_string(),
        seconds,
        ..FuzzStats::default()
    };
    let after = |line: &str, key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    for line in lines {
        if let Some(v) = after(line, "stat::number_of_executed_units:") {
            s.executions = v;
        } else if let Some(v) = after(line, "stat::average_exec_per_sec:") {
            s.exec_per_sec = v;
        } else if line.starts_with('#') && line.contains(" cov: ") {
            s.cov = after(line, " cov:").unwrap_or(s.cov);
            s.ft = after(line, " ft:").unwrap_or(s.ft);
            s.corpus = after(line, " corp:").unwrap_or(s.corpus);
        } else if let Some(i) = line.find("Test unit written to ") {
            s.crashes
                .push(line[i + "Test unit written to ".len()..].trim().to_string());
        }
    }
    s
}

fn row(s: &FuzzStats) -> String {
    format!(
        "| {} | {} s | {} | {} | {} | {} | {} | {} |",
        s.target,
        s.seconds,
        s.executions,
        s.exec_per_sec,
        s.cov,
        s.ft,
        s.corpus,
        if s.crashes.is_empty() {
            "0".to_string()
        } else {
            format!("{} ({})", s.crashes.len(), s.crashes.join(", "))
        }
    )
}

fn report(all: &[FuzzStats], minutes: u64, elapsed: u64) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "# Fuzzing campaign: `cargo xtask fuzz --all --minutes {minutes}`\n\n\
         Each target {minutes} min in turn ({elapsed} s in all), libFuzzer via cargo-fuzz \
         (ASan, release + debug assertions), starting from `fuzz/corpus/<target>` (working \
         corpus) and `fuzz/seeds/<target>` (committed seeds). cov = edges covered, ft = \
         features, corpus = inputs kept, from libFuzzer's last status line; executions and \
         exec/s from `-print_final_stats=1`.\n"
    );
    let _ = writeln!(
        r,
        "| target | time | executions | exec/s | cov | ft | corpus | crashes |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for s in all {
        let _ = writeln!(r, "{}", row(s));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_final_stats_and_findings() {
        let out = [
            "#2\tINITED cov: 120 ft: 130 corp: 7/1024b exec/s: 0 rss: 40Mb",
            "#4096\tpulse  cov: 300 ft: 700 corp: 40/4Kb lim: 43 exec/s: 2048 rss: 50Mb",
            "#90000\tDONE   cov: 345 ft: 812 corp: 55/6Kb lim: 100 exec/s: 1500 rss: 60Mb",
            "Done 90000 runs in 61 second(s)",
            "stat::number_of_executed_units: 90000",
            "stat::average_exec_per_sec:     1475",
            "stat::new_units_added:          48",
            "artifact_prefix='/f/artifacts/h2/'; Test unit written to /f/artifacts/h2/crash-abc",
        ]
        .map(String::from);
        let s = parse("h2", 60, &out);
        assert_eq!(
            (s.executions, s.exec_per_sec, s.cov, s.ft, s.corpus),
            (90000, 1475, 345, 812, 55)
        );
        assert_eq!(s.crashes, vec!["/f/artifacts/h2/crash-abc".to_string()]);
    }
}
