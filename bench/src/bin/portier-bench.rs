//! `portier-bench load [--quick|--smoke]`: the comparative load harness
//! (run by `cargo xtask bench load`). See `portier_bench::load`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portier_bench::load::{self, Baseline, Mode, Options};

#[derive(Parser)]
#[command(name = "portier-bench", about = "Portier's comparative load harness")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
}

fn main() -> ExitCode {
    let Cmd::Load {
        quick,
        smoke,
        portier,
        out_dir,
        no_xdp,
        baseline_portier,
        baseline_rev,
        note,
    } = Cli::parse().command;
    let opts = Options {
        mode: if smoke {
            Mode::Smoke
        } else if quick {
            Mode::Quick
        } else {
            Mode::Full
        },
        portier: portier.unwrap_or_else(load::default_portier),
        out_dir: out_dir
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results")),
        no_xdp,
        baseline: baseline_portier.map(|bin| Baseline {
            bin,
            rev: baseline_rev,
        }),
        notes: note,
    };
    match load::run(&opts) {
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
