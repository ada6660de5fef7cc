//! `cargo xtask bench load [--quick]`: the comparative load harness
//! (`portier-bench load`, code in `bench/src/load/`). Builds the release
//! portier first when it is missing; the harness installs its own Debian
//! packages (haproxy, nginx, wrk, nghttp2-client, nftables) when missing.

use clap::Subcommand;

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
    },
}

pub fn run(cmd: &BenchCmd) -> anyhow::Result<()> {
    let BenchCmd::Load { quick, no_xdp } = cmd;
    // Always the current code: a stale binary would measure the past.
    crate::setup::all()?;
    crate::build(true)?;
    let mut c = crate::cargo();
    c.args([
        "run",
        "-q",
        "-p",
        "portier-bench",
        "--bin",
        "portier-bench",
        "--",
        "load",
    ]);
    if *quick {
        c.arg("--quick");
    }
    if *no_xdp {
        c.arg("--no-xdp");
    }
    crate::run_cmd(&mut c)
}
