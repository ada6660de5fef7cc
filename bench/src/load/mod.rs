//! The comparative load harness: Portier against HAProxy and nginx (and
//! direct-to-backend) on loopback, on equal footing (one worker each, the
//! same CPUs, backend keep-alive, the same forwarding headers), plus an XDP
//! vs nftables flood in network namespaces. See `bench/templates/` for the
//! configurations and `cargo xtask bench load --help`.
//!
//! One module per concern: [`setup`] (Debian packages), [`proc`] (processes
//! started and stopped by PID, `/proc` readings), [`contestants`] (backend
//! and proxies from the templates), [`tools`] (wrk, h2load), [`scenarios`]
//! (the loads), [`xdp`] (the flood), [`report`] (Markdown and JSON).
//!
//! Failed requests are counted for every contestant in every load: a
//! contestant with any in a load has no figure from it.

pub mod contestants;
pub mod proc;
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
fn stamp() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil(days);
    let (hh, mm) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    (format!("{y:04}-{m:02}-{d:02}"), format!("{hh:02}-{mm:02}"))
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
    for k in Kind::ALL {
        match Contestant::start(k, &env, &opts.portier) {
            Ok(c) => {
                eprintln!(
                    "portier-bench: {} ready: {}",
                    k.id(),
                    scenarios::describe(&c)
                );
                cs.push(c);
            }
            Err(e) if opts.mode == Mode::Smoke => {
                return Err(e.context(format!("starting {}", k.id())));
            }
            Err(e) => notes.push(format!("{} did not start: {e:#}", k.id())),
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
    for c in &cs {
        context.push((c.id().to_string(), scenarios::describe(c)));
    }
    let columns = scenarios::columns();
    let mut sections = Vec::new();
    let stem;
    if opts.mode == Mode::Smoke {
        sections.push(Section {
            title: "smoke".into(),
            columns,
            figures: scenarios::smoke(&mut cs),
        });
        stem = "smoke".to_string();
    } else {
        let figures = scenarios::run_all(&mut cs, &env, &opts.portier, &s);
        sections.push(Section {
            title: "HTTP proxying (loopback)".into(),
            columns,
            figures,
        });
        if opts.no_xdp {
            notes.push("XDP flood skipped (--no-xdp)".into());
        } else {
            eprintln!("portier-bench: XDP vs nftables flood");
            sections.push(Section {
                title: "XDP flood (veth between network namespaces)".into(),
                columns: vec!["portier-xdp", "nftables"],
                figures: xdp::run(env.path(), &opts.portier, s.runs, s.seconds),
            });
        }
        let (d, t) = stamp();
        stem = if opts.mode == Mode::Quick {
            format!("{d}-quick")
        } else {
            d
        };
        let _ = t;
    }
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
        "Legit TCP throughput during the XDP flood: not measured.".into(),
        "Failed requests: wrk's non-2xx/3xx responses and socket errors (connect, read, write, timeout), \
         h2load's failed requests (non-2xx/3xx, errored and timed-out streams), the harness's own \
         client's errors (idle-connection test, smoke). Any failure in a load makes that contestant's \
         figures from it FAILED: no value, no ratio, no goal verdict. The XDP flood sends packets, not \
         requests: nothing to count there."
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
