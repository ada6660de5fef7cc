//! The comparative load harness: Portier against HAProxy and nginx (and
//! direct-to-backend) on loopback, on equal footing (one worker each, the
//! same CPUs, backend keep-alive, the same forwarding headers), plus an XDP
//! vs nftables vs bare XDP_DROP flood in network namespaces (also alone:
//! `portier-bench xdp`, [`run_xdp`]). See `bench/templates/` for the
//! configurations and `cargo xtask bench load --help`.
//!
//! With a baseline (`--baseline-portier`, built from an earlier commit by
//! `cargo xtask bench load --baseline REV`), that build runs as one more
//! contestant, `portier@REV`, wherever Portier runs (same configuration,
//! backend, CPU and rounds), and the report adds new/old ratios of every
//! figure.
//!
//! One module per concern: [`setup`] (Debian packages), [`proc`] (processes
//! started and stopped by PID, `/proc` readings), [`contestants`] (backend
//! and proxies from the templates), [`tools`] (wrk, h2load), [`scenarios`]
//! (the loads), [`xdp`] (the flood), [`bpf`] (its live-frame generator and
//! raw bpf(2)), [`connects`] (its legitimate client), [`report`] (Markdown
//! and JSON).
//!
//! Failed requests are counted for every contestant in every load: a
//! contestant with any in a load has no figure from it.

pub mod bpf;
pub mod connects;
pub mod contestants;
pub mod proc;
pub mod profile;
pub mod report;
pub mod scenarios;
pub mod setup;
pub mod tools;
pub mod xdp;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use contestants::{Contestant, Env, Kind};
use report::{Report, Section};
use scenarios::Settings;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Seconds: everyone starts and answers one request; report written.
    Smoke,
    /// Under 3 minutes.
    Quick,
    /// Under 15 minutes.
    Full,
}

pub struct Options {
    pub mode: Mode,
    pub portier: PathBuf,
    pub out_dir: PathBuf,
    /// Skip the XDP flood section.
    pub no_xdp: bool,
    /// An earlier Portier build to compare against.
    pub baseline: Option<Baseline>,
    /// Extra lines for the report's notes.
    pub notes: Vec<String>,
}

/// An earlier build of Portier, run as one more contestant.
pub struct Baseline {
    pub bin: PathBuf,
    /// Its label: the commit it was built from (short hash) or a name.
    pub rev: String,
}

impl Baseline {
    /// Column name in the HTTP tables.
    pub fn name(&self) -> String {
        format!("portier@{}", self.rev)
    }

    /// Column name in the XDP flood table.
    pub fn xdp_name(&self) -> String {
        format!("portier-xdp@{}", self.rev)
    }
}

/// `git -C <workspace> ARGS` stdout, trimmed (None when git fails).
fn git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// "bd01199 2026-11-25 One Exchange::…" of a revision, if git knows it.
fn describe_rev(rev: &str) -> Option<String> {
    git(&["log", "-1", "--format=%h %cs %s", rev, "--"])
}

/// The workspace's commit, "+ uncommitted changes" when the tree is dirty.
pub fn current_rev() -> String {
    let Some(head) = describe_rev("HEAD") else {
        return "unknown (not a git checkout)".into();
    };
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head} + uncommitted changes")
    } else {
        head
    }
}

fn settings(mode: Mode) -> Settings {
    match mode {
        Mode::Smoke => Settings {
            runs: 1,
            seconds: 1.0,
            idle_conns: 10,
        },
        Mode::Quick => Settings {
            runs: 3,
            seconds: 2.0,
            idle_conns: 2000,
        },
        Mode::Full => Settings {
            runs: 3,
            seconds: 8.0,
            idle_conns: 2000,
        },
    }
}

/// UTC date and time from the system clock (no date crate): "2026-11-25T17-40".
pub(crate) fn stamp() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil(days);
    let (hh, mm) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    (format!("{y:04}-{m:02}-{d:02}"), format!("{hh:02}-{mm:02}"))
}

/// Today's UTC date, "2026-11-25" (report names).
pub fn today() -> String {
    stamp().0
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Run the harness; the paths of the Markdown and JSON reports.
pub fn run(opts: &Options) -> anyhow::Result<(PathBuf, PathBuf)> {
    let started = Instant::now();
    setup::ensure_packages()?;
    proc::raise_nofile();
    let s = settings(opts.mode);
    let env = Env::start().context("starting the shared backend")?;
    eprintln!(
        "portier-bench: backend nginx on {} (scratch {})",
        env.backend,
        env.path().display()
    );
    let mut cs: Vec<Contestant> = Vec::new();
    let mut notes = Vec::new();
    let baseline_name = opts.baseline.as_ref().map(Baseline::name);
    for k in Kind::ALL {
        let started = Contestant::start(k, &env, &opts.portier);
        // A comparison without either build is no comparison: stop early.
        let strict = opts.mode == Mode::Smoke || (k == Kind::Portier && opts.baseline.is_some());
        match started {
            Ok(c) => {
                eprintln!(
                    "portier-bench: {} ready: {}",
                    k.id(),
                    scenarios::describe(&c)
                );
                cs.push(c);
            }
            Err(e) if strict => {
                return Err(e.context(format!("starting {}", k.id())));
            }
            Err(e) => notes.push(format!("{} did not start: {e:#}", k.id())),
        }
        if let (Kind::Portier, Some(b), Some(name)) = (k, &opts.baseline, &baseline_name) {
            let c = Contestant::start_portier(&env, &b.bin, name)
                .with_context(|| format!("starting the baseline {name} ({})", b.bin.display()))?;
            eprintln!("portier-bench: {name} ready: {}", scenarios::describe(&c));
            cs.push(c);
        }
    }
    let mut context = vec![
        (
            "mode".to_string(),
            format!("{:?}", opts.mode).to_lowercase(),
        ),
        (
            "method".to_string(),
            format!(
                "{} interleaved rounds of {} s per figure (order rotated each round); median [min–max]; \
                 ratios are medians of per-round ratios; proxy and backend pinned to CPU 0, load tool to CPU 1; \
                 one worker each",
                s.runs, s.seconds
            ),
        ),
        (
            "cpus".to_string(),
            std::thread::available_parallelism()
                .map_or(0, |n| n.get())
                .to_string(),
        ),
        (
            "kernel".to_string(),
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
        ),
    ];
    context.push(("portier build".to_string(), current_rev()));
    if let Some(b) = &opts.baseline {
        context.push((
            "baseline".to_string(),
            format!(
                "{} = {} ({}); new/old ratios of every figure below",
                b.name(),
                describe_rev(&b.rev).unwrap_or_else(|| b.rev.clone()),
                b.bin.display()
            ),
        ));
    }
    for c in &cs {
        context.push((c.id().to_string(), scenarios::describe(c)));
    }
    let columns = scenarios::columns(baseline_name.as_deref());
    let pair = baseline_name
        .as_ref()
        .map(|b| ("portier".to_string(), b.clone()));
    let mut sections = Vec::new();
    let stem;
    if opts.mode == Mode::Smoke {
        sections.push(Section {
            title: "smoke".into(),
            columns,
            figures: scenarios::smoke(&mut cs),
            baseline: pair,
        });
        stem = "smoke".to_string();
    } else {
        let figures = scenarios::run_all(&mut cs, &env, &s);
        sections.push(Section {
            title: "HTTP proxying (loopback)".into(),
            columns,
            figures,
            baseline: pair,
        });
        if opts.no_xdp {
            notes.push("XDP flood skipped (--no-xdp)".into());
        } else {
            eprintln!("portier-bench: XDP flood (portier vs nftables vs bare XDP_DROP)");
            let (mut xdp_sections, xdp_notes) = xdp_sections(env.path(), opts, &xdp_plan(&s));
            sections.append(&mut xdp_sections);
            notes.extend(xdp_notes);
        }
        let (d, t) = stamp();
        stem = if opts.mode == Mode::Quick {
            format!("{d}-quick")
        } else {
            d
        };
        let _ = t;
    }
    notes.extend(opts.notes.iter().cloned());
    notes.extend(standing_notes());
    drop(cs);
    drop(env);
    let (d, t) = stamp();
    context.insert(
        0,
        (
            "date (UTC)".to_string(),
            format!("{d} {}", t.replace('-', ":")),
        ),
    );
    context.push((
        "duration".to_string(),
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    ));
    let report = Report {
        title: format!("Portier comparative load benchmark — {d}"),
        context,
        sections,
        notes,
    };
    print!("{}", report.markdown());
    report.write(&opts.out_dir, &stem)
}

/// The XDP plan of a harness mode: the HTTP loads' rounds and seconds.
fn xdp_plan(s: &Settings) -> xdp::Plan {
    xdp::Plan {
        runs: s.runs,
        secs: s.seconds,
        idle_secs: 1.0,
    }
}

/// The two XDP sections (flood, per-frame cost) and their notes.
fn xdp_sections(dir: &Path, opts: &Options, plan: &xdp::Plan) -> (Vec<Section>, Vec<String>) {
    let mut portiers = vec![("portier-xdp".to_string(), opts.portier.clone())];
    if let Some(b) = &opts.baseline {
        portiers.push((b.xdp_name(), b.bin.clone()));
    }
    let names: Vec<String> = portiers.iter().map(|(n, _)| n.clone()).collect();
    let pair = opts
        .baseline
        .as_ref()
        .map(|b| ("portier-xdp".to_string(), b.xdp_name()));
    let figures = xdp::run(dir, &portiers, plan);
    let mut flood_columns = names.clone();
    flood_columns.extend([xdp::NFTABLES.to_string(), xdp::XDP_DROP.to_string()]);
    let mut cost_columns = names;
    cost_columns.push(xdp::XDP_DROP.to_string());
    let sections = vec![
        Section {
            title: "XDP flood (veth between network namespaces, live-frame generator)".into(),
            columns: flood_columns,
            figures: figures.flood,
            baseline: pair.clone(),
        },
        Section {
            title: format!(
                "XDP program cost per frame fixture in the kernel (BPF_PROG_TEST_RUN, repeat {}), ns per run",
                xdp::FIXTURE_REPEAT
            ),
            columns: cost_columns,
            figures: figures.costs,
            baseline: pair,
        },
    ];
    (sections, figures.notes)
}

/// `portier-bench xdp`: only the XDP sections, report `<date>-xdp`.
pub fn run_xdp(opts: &Options, plan: &xdp::Plan) -> anyhow::Result<(PathBuf, PathBuf)> {
    let started = Instant::now();
    // Other work on the machine skews every figure: say how busy it was.
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    setup::ensure(setup::XDP_PACKAGES)?;
    let tmp = proc::TempDir::new("xdp")?;
    let (sections, mut notes) = xdp_sections(tmp.path(), opts, plan);
    notes.extend(opts.notes.iter().cloned());
    let (d, t) = stamp();
    let mut context = vec![
        (
            "date (UTC)".to_string(),
            format!("{d} {}", t.replace('-', ":")),
        ),
        (
            "method".to_string(),
            format!(
                "{} rounds per side (order rotated each round), {} s of flood each; median [min–max]",
                plan.runs, plan.secs
            ),
        ),
        (
            "cpus".to_string(),
            std::thread::available_parallelism()
                .map_or(0, |n| n.get())
                .to_string(),
        ),
        (
            "kernel".to_string(),
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
        ),
        ("portier build".to_string(), current_rev()),
        (
            "portier binary".to_string(),
            opts.portier.display().to_string(),
        ),
        ("load average at start".to_string(), loadavg),
    ];
    if let Some(b) = &opts.baseline {
        context.push((
            "baseline".to_string(),
            format!(
                "{} = {} ({})",
                b.xdp_name(),
                describe_rev(&b.rev).unwrap_or_else(|| b.rev.clone()),
                b.bin.display()
            ),
        ));
    }
    context.push((
        "duration".to_string(),
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    ));
    let report = Report {
        title: format!("Portier XDP flood benchmark — {d}"),
        context,
        sections,
        notes,
    };
    print!("{}", report.markdown());
    report.write(&opts.out_dir, &format!("{d}-xdp"))
}

fn standing_notes() -> Vec<String> {
    vec![
        "direct = wrk straight to the backend nginx: wrk-bound, a lower bound of the physical limit, not the limit.".into(),
        "Latency: wrk paced by its Lua `delay()` hook (closed loop, not wrk2's open loop: tail latency under \
         coordinated omission is understated the same way for everyone); the achieved rate is its own row."
            .into(),
        "CPU per request: utime+stime of every proxy process (/proc/PID/stat) before/after the run ÷ requests \
         completed; handshake CPU includes the one request per connection."
            .into(),
        "Idle memory: on a freshly started instance, workers' VmRSS after − before opening N connections \
         (one request each, sequentially). nginx preallocates (and touches) its connection slots at start \
         (worker_connections 16384), so its figure understates its real cost."
            .into(),
        "TLS: one self-signed P-256 certificate; TLS 1.3 only, TLS_AES_128_GCM_SHA256 + X25519 forced on every \
         server; session tickets and session cache off everywhere (every new connection is a full handshake)."
            .into(),
        "Failed requests: wrk's non-2xx/3xx responses and socket errors (connect, read, write, timeout), \
         h2load's failed requests (non-2xx/3xx, errored and timed-out streams), the harness's own \
         client's errors (idle-connection test, smoke). Any failure in a load makes that contestant's \
         figures from it FAILED: no value, no ratio, no goal verdict. The XDP flood sends packets, not \
         requests: its legitimate client's failed connects are a figure of their own."
            .into(),
    ]
}

/// `target/release/portier` of this workspace (CARGO_TARGET_DIR honoured).
pub fn default_portier() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release/portier")
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil(0), (1970, 1, 1));
        assert_eq!(super::civil(20_782), (2026, 11, 25));
    }
}
