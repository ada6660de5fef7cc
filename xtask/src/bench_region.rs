//! `cargo xtask bench region [--apps N] [--writes N] [--change-rate N]`:
//! the figures of a region at scale (10,000 apps, 100,000 domains in a
//! 3-member etcd): cold start time and memory of a node, also from its
//! cache with etcd down; admin write propagation to three nodes; reactor
//! latency while 1,000 changes per second land in etcd. Builds the release
//! portier (always; `cargo xtask setup` installs etcd-server), then runs
//! the harness (`portier-bench region`, code in `bench/src/region/`, built
//! with `--release` so the change writer keeps its pace; it installs wrk
//! when missing), which starts etcd, the backends and the nodes, stops them
//! by PID (also on error), removes its scratch directory, writes
//! `bench/results/<date>-region.md` and `.json` and prints the summary.
//! About 5 minutes on 2 cores.

pub fn run(apps: usize, writes: usize, change_rate: u32) -> anyhow::Result<()> {
    crate::setup::all()?;
    crate::build(true)?;
    let mut c = crate::cargo();
    c.args([
        "run",
        "-q",
        "--release",
        "-p",
        "portier-bench",
        "--bin",
        "portier-bench",
        "--",
        "region",
        "--apps",
        &apps.to_string(),
        "--writes",
        &writes.to_string(),
        "--change-rate",
        &change_rate.to_string(),
    ]);
    crate::run_cmd(&mut c)
}
