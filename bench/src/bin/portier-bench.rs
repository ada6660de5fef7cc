//! `portier-bench load [--quick|--smoke]`: the comparative load harness
//! (run by `cargo xtask bench load`), see `portier_bench::load`;
//! `portier-bench xdp`: its XDP flood sections alone (run by `cargo xtask
//! bench xdp`), see `portier_bench::load::xdp`;
//! `portier-bench acme …`: ACME at scale against a running Pebble (run by
//! `cargo xtask bench acme`, which starts it), see `portier_bench::acme`;
//! `portier-bench region …`: a 10,000-app region in a 3-member etcd (run
//! by `cargo xtask bench region`), see `portier_bench::region`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portier_bench::load::{self, Baseline, Mode, Options};
use portier_bench::{acme, attacks, region};

#[derive(Parser)]
#[command(name = "portier-bench", about = "Portier's comparative load harness")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// System calls per request of every proxy (strace) and Portier's flame
    /// graphs under HTTP/1.1, HTTPS and HTTP/2 (perf + inferno).
    Profile {
        /// Seconds of load per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// The portier binary (default: target/release/portier).
        #[arg(long)]
        portier: Option<PathBuf>,
        /// Where the report and SVGs go (default: bench/results).
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Portier vs HAProxy vs nginx (and direct-to-backend) on loopback, plus XDP vs nftables.
    Load {
        /// Short runs (under 3 minutes).
        #[arg(long)]
        quick: bool,
        /// Seconds: every contestant starts and answers one request; a report is written.
        #[arg(long, conflicts_with = "quick")]
        smoke: bool,
        /// The portier binary (default: target/release/portier).
        #[arg(long)]
        portier: Option<PathBuf>,
        /// Where the report goes (default: bench/results).
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Skip the XDP flood.
        #[arg(long)]
        no_xdp: bool,
        /// An earlier portier build, run as one more contestant wherever
        /// portier runs; the report adds new/old ratios of every figure
        /// (`cargo xtask bench load --baseline REV` builds it).
        #[arg(long, value_name = "PATH")]
        baseline_portier: Option<PathBuf>,
        /// The baseline's label (its commit): the column is `portier@LABEL`.
        #[arg(
            long,
            value_name = "LABEL",
            requires = "baseline_portier",
            default_value = "baseline"
        )]
        baseline_rev: String,
        /// A line for the report's notes (repeatable).
        #[arg(long, value_name = "TEXT")]
        note: Vec<String>,
    },
    /// Only the XDP flood of `load`: drops/s by portier's XDP program vs an
    /// nftables rule vs a bare XDP_DROP program (live-frame generator over a
    /// veth between namespaces), a legitimate client's connects during it,
    /// and the program's in-kernel ns per frame fixture; needs root. Report
    /// in <out-dir>/<date>-xdp.md and .json.
    Xdp {
        /// Seconds of flood per side and round.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Rounds (sides interleaved, order rotated each round).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Seconds of the idle client measurement before each flood.
        #[arg(long, default_value_t = 1.0)]
        idle_seconds: f64,
        /// The portier binary (default: target/release/portier).
        #[arg(long)]
        portier: Option<PathBuf>,
        /// Where the report goes (default: bench/results).
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// An earlier portier build, measured as `portier-xdp@LABEL`.
        #[arg(long, value_name = "PATH")]
        baseline_portier: Option<PathBuf>,
        /// The baseline's label (its commit).
        #[arg(
            long,
            value_name = "LABEL",
            requires = "baseline_portier",
            default_value = "baseline"
        )]
        baseline_rev: String,
        /// A line for the report's notes (repeatable).
        #[arg(long, value_name = "TEXT")]
        note: Vec<String>,
    },
    /// N names ordered from a running Pebble: time to first and all valid,
    /// wrk latency during and after, memory and disk per certificate.
    Acme {
        /// Pebble's directory URL.
        #[arg(long)]
        directory: String,
        /// Root of Pebble's own HTTPS (`acme.ca_roots`).
        #[arg(long)]
        ca_roots: PathBuf,
        /// The port Pebble validates HTTP-01 on (portier's plain-HTTP listener).
        #[arg(long)]
        http_port: u16,
        #[arg(long, default_value_t = 1000)]
        names: usize,
        /// `acme.concurrency` of each trial.
        #[arg(long, value_delimiter = ',', default_value = "16,64")]
        concurrency: Vec<usize>,
        /// Shorter loads.
        #[arg(long)]
        quick: bool,
        /// PIDs of Pebble and challtestsrv (their CPU time is reported).
        #[arg(long)]
        ca_pid: Vec<u32>,
        /// CPUs Pebble and challtestsrv are pinned to (for the report).
        #[arg(long, default_value = "unpinned")]
        ca_cpus: String,
        /// The portier binary (default: target/release/portier).
        #[arg(long)]
        portier: Option<PathBuf>,
        /// Where the report goes (default: bench/results).
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// A line for the report's notes (repeatable).
        #[arg(long, value_name = "TEXT")]
        note: Vec<String>,
    },
    /// Attacks (slowloris, HTTP/2 floods, a SYN flood through XDP) vs a
    /// legitimate client's p50/p99: each attack's figures against an idle
    /// baseline taken just before it.
    Attacks {
        /// Seconds of each measurement (idle and under attack).
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Rounds per attack (idle then attacked each); verdict on medians.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Legitimate requests per second, per protocol.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// Only these attacks (comma-separated; default: all).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Sockets of the slowloris attacker.
        #[arg(long, default_value_t = 5000)]
        sockets: u32,
        /// SYN flood rate (frames per second).
        #[arg(long, default_value_t = 100_000)]
        syn_pps: u64,
        /// Absolute floor of the p99 bound, microseconds.
        #[arg(long, default_value_t = 2000)]
        floor_us: u64,
        /// Skip the SYN flood (it needs root and network namespaces).
        #[arg(long)]
        no_xdp: bool,
        /// The portier binary (default: target/release/portier).
        #[arg(long)]
        portier: Option<PathBuf>,
        /// Where the report goes (default: bench/results).
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Report file stem (default: <date>-attacks).
        #[arg(long)]
        stem: Option<String>,
    },
    /// A region in a 3-member etcd: cold start and memory of a node, admin
    /// write propagation to three nodes, reactor latency under a change load.
    Region {
        #[arg(long, default_value_t = 10_000)]
        apps: usize,
        /// Domains per app.
        #[arg(long, default_value_t = 10)]
        domains: usize,
        /// Admin writes of the propagation test.
        #[arg(long, default_value_t = 100)]
        writes: usize,
        /// Changes per second written to etcd during the load.
        #[arg(long, default_value_t = 1000)]
        change_rate: u32,
        /// Seconds of each load window.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// Rounds of (baseline, changes) under paced load (one closed-loop round follows).
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// The portier binary (default: target/release/portier).
        #[arg(long)]
        portier: Option<PathBuf>,
        /// Where the report goes (default: bench/results).
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// A line for the report's notes (repeatable).
        #[arg(long, value_name = "TEXT")]
        note: Vec<String>,
    },
}

fn results_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results")
}

fn finish(result: anyhow::Result<(PathBuf, PathBuf)>) -> ExitCode {
    match result {
        Ok((md, json)) => {
            eprintln!(
                "portier-bench: wrote {} and {}",
                md.display(),
                json.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portier-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Profile {
            seconds,
            portier,
            out_dir,
        } => {
            let out = out_dir.unwrap_or_else(results_dir);
            match load::profile::run(
                &portier.unwrap_or_else(load::default_portier),
                &out,
                seconds,
            ) {
                Ok(path) => {
                    println!("{}", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("portier-bench: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Load {
            quick,
            smoke,
            portier,
            out_dir,
            no_xdp,
            baseline_portier,
            baseline_rev,
            note,
        } => {
            let opts = Options {
                mode: if smoke {
                    Mode::Smoke
                } else if quick {
                    Mode::Quick
                } else {
                    Mode::Full
                },
                portier: portier.unwrap_or_else(load::default_portier),
                out_dir: out_dir.unwrap_or_else(results_dir),
                no_xdp,
                baseline: baseline_portier.map(|bin| Baseline {
                    bin,
                    rev: baseline_rev,
                }),
                notes: note,
            };
            finish(load::run(&opts))
        }
        Cmd::Xdp {
            seconds,
            runs,
            idle_seconds,
            portier,
            out_dir,
            baseline_portier,
            baseline_rev,
            note,
        } => {
            let opts = Options {
                mode: Mode::Quick,
                portier: portier.unwrap_or_else(load::default_portier),
                out_dir: out_dir.unwrap_or_else(results_dir),
                no_xdp: false,
                baseline: baseline_portier.map(|bin| Baseline {
                    bin,
                    rev: baseline_rev,
                }),
                notes: note,
            };
            let plan = load::xdp::Plan {
                runs,
                secs: seconds,
                idle_secs: idle_seconds,
            };
            finish(load::run_xdp(&opts, &plan))
        }
        Cmd::Acme {
            directory,
            ca_roots,
            http_port,
            names,
            concurrency,
            quick,
            ca_pid,
            ca_cpus,
            portier,
            out_dir,
            note,
        } => finish(acme::run(&acme::Options {
            portier: portier.unwrap_or_else(load::default_portier),
            directory,
            ca_roots,
            http_port,
            names,
            concurrency,
            quick,
            out_dir: out_dir.unwrap_or_else(results_dir),
            ca_pids: ca_pid,
            ca_cpus,
            notes: note,
        })),
        Cmd::Attacks {
            seconds,
            rounds,
            rate,
            only,
            sockets,
            syn_pps,
            floor_us,
            no_xdp,
            portier,
            out_dir,
            stem,
        } => {
            let portier = portier.unwrap_or_else(load::default_portier);
            let attacks = if only.is_empty() {
                attacks::ATTACKS.iter().map(|a| a.to_string()).collect()
            } else {
                only
            }
            .into_iter()
            .filter(|a| !(no_xdp && a == "syn_flood"))
            .collect();
            let opts = attacks::Options {
                demo_backend: portier.with_file_name("portier-demo-backend"),
                portier,
                out_dir: out_dir.unwrap_or_else(results_dir),
                stem: stem.unwrap_or_else(|| format!("{}-attacks", load::today())),
                seconds,
                rounds: rounds.max(1),
                rate,
                attacks,
                slowloris_sockets: sockets,
                syn_pps,
                floor_us,
            };
            match attacks::run(&opts) {
                Ok((outcomes, md, json)) => {
                    let failed: Vec<&str> = outcomes
                        .iter()
                        .filter(|o| !o.pass)
                        .map(|o| o.attack.as_str())
                        .collect();
                    eprintln!(
                        "portier-bench: wrote {} and {}",
                        md.display(),
                        json.display()
                    );
                    if failed.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        eprintln!("portier-bench: target missed under {}", failed.join(", "));
                        ExitCode::from(2)
                    }
                }
                Err(e) => finish(Err(e)),
            }
        }
        Cmd::Region {
            apps,
            domains,
            writes,
            change_rate,
            secs,
            rounds,
            portier,
            out_dir,
            note,
        } => finish(region::run(&region::Options {
            portier: portier.unwrap_or_else(load::default_portier),
            out_dir: out_dir.unwrap_or_else(results_dir),
            apps,
            domains_per_app: domains,
            writes,
            change_rate,
            change_secs: secs,
            rounds,
            notes: note,
        })),
    }
}
