//! The ACME benchmark's report: context, one table per question (issuance,
//! reactor latency during and after, memory and disk per certificate, the
//! admin API's cost), notes; Markdown (printed and written) and JSON, in
//! `bench/results/<date>-acme[-quick].{md,json}`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Control, LoadFigures, LoadShape, Mem, Options, Trial, pinning, portier_version};

pub struct Report {
    pub title: String,
    pub stem: String,
    pub context: Vec<(String, String)>,
    pub names: usize,
    pub shape: LoadShape,
    pub control: Control,
    pub trials: Vec<Trial>,
    pub notes: Vec<String>,
}

const MIB: f64 = 1024.0 * 1024.0;

fn secs(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |s| format!("{s:.2} s"))
}

fn us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

fn rate(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / MIB)
}

/// Signed growth per certificate, in bytes ("n/a" without certificates).
fn per_cert(before: u64, after: u64, n: usize) -> String {
    if n == 0 {
        return "n/a".into();
    }
    format!("{:.0} B", (after as f64 - before as f64) / n as f64)
}

/// CPU seconds and their share of the window: "3.10 s (62%)".
fn cpu(v: f64, window: f64) -> String {
    if window <= 0.0 {
        return format!("{v:.2} s");
    }
    format!("{v:.2} s ({:.0}%)", 100.0 * v / window)
}

impl Report {
    pub fn new(
        opts: &Options,
        shape: &LoadShape,
        control: Control,
        trials: Vec<Trial>,
        took: Duration,
    ) -> Report {
        let (d, t) = crate::load::stamp();
        let mut command = format!("cargo xtask bench acme --names {}", opts.names);
        let _ = write!(
            command,
            " --concurrency {}",
            opts.concurrency
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        if opts.quick {
            command.push_str(" --quick");
        }
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let context = vec![
            ("date (UTC)".into(), format!("{d} {}", t.replace('-', ":"))),
            ("command".into(), format!("`{command}`")),
            ("portier build".into(), crate::load::current_rev()),
            ("portier".into(), portier_version(&opts.portier)),
            (
                "CA".into(),
                format!(
                    "Debian's Pebble at {} with PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0, \
                     PEBBLE_AUTHZREUSE=0 (every order validated by a real HTTP-01 fetch from \
                     portier's plain-HTTP listener; challtestsrv resolves every name to 127.0.0.1)",
                    opts.directory
                ),
            ),
            (
                "cpus".into(),
                // Online CPUs (this process is pinned to one).
                // SAFETY: sysconf has no preconditions.
                unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.to_string(),
            ),
            (
                "kernel".into(),
                std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            ),
            ("load average at the end".into(), loadavg.trim().to_string()),
            ("pinning".into(), pinning(opts)),
            (
                "load".into(),
                format!(
                    "wrk -t1 -c{} keep-alive, `Host: load.bench.test`, GET /bytes/64 (demo backend) on the \
                     plain-HTTP listener, closed loop (as fast as answers come); \"during\" = from portier's \
                     ready to the poll that saw all N valid (wrk stopped by SIGINT, it then reports as usual), \
                     \"after\" = the same load once everything is valid and quiet, as long as the issuance \
                     window ({}–{} s)",
                    shape.connections, shape.after_min_secs, shape.after_max_secs
                ),
            ),
            ("duration".into(), format!("{:.0} s", took.as_secs_f64())),
        ];
        let mut notes = opts.notes.clone();
        notes.extend(standing_notes());
        for t in &trials {
            for p in &t.problems {
                notes.push(format!("concurrency {}: {p}", t.concurrency));
            }
        }
        Report {
            title: format!("Portier ACME at scale — {d}"),
            stem: if opts.quick {
                format!("{d}-acme-quick")
            } else {
                format!("{d}-acme")
            },
            context,
            names: opts.names,
            shape: *shape,
            control,
            trials,
            notes,
        }
    }

    fn head(&self, first: &str) -> (String, String) {
        let mut head = format!("| {first} |");
        let mut rule = String::from("|---|");
        for t in &self.trials {
            let _ = write!(head, " concurrency {} |", t.concurrency);
            rule.push_str("---|");
        }
        (head, rule)
    }

    fn row(&self, s: &mut String, title: &str, f: impl Fn(&Trial) -> String) {
        let mut row = format!("| {title} |");
        for t in &self.trials {
            let _ = write!(row, " {} |", f(t));
        }
        let _ = writeln!(s, "{row}");
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let n = self.names;
        let _ = writeln!(s, "# {}\n", self.title);
        for (k, v) in &self.context {
            let _ = writeln!(s, "- {k}: {v}");
        }

        let _ = writeln!(
            s,
            "\n## Issuance: {n} names, one fresh node per `acme.concurrency`\n"
        );
        let (head, rule) = self.head("figure");
        let _ = writeln!(s, "{head}\n{rule}");
        self.row(&mut s, "first certificate valid (from ready)", |t| {
            secs(t.first_valid_secs)
        });
        self.row(&mut s, &format!("all {n} valid (from ready)"), |t| {
            secs(t.all_valid_secs)
        });
        self.row(&mut s, "certificates per second (N ÷ time to all)", |t| {
            t.all_valid_secs
                .map_or("n/a".into(), |a| format!("{:.1}", n as f64 / a))
        });
        self.row(&mut s, "names valid at the end", |t| {
            format!("{} of {}", t.last.valid, t.last.names)
        });
        self.row(
            &mut s,
            "orders issued / failed (`acme.orders`; /metrics failed)",
            |t| {
                format!(
                    "{} / {} ({})",
                    t.last.orders_issued,
                    t.last.orders_failed,
                    t.metrics_failed.map_or("n/a".into(), |f| f.to_string())
                )
            },
        );
        self.row(&mut s, "errors seen (`last_error`)", |t| {
            if t.last.errors.is_empty() {
                "none".into()
            } else {
                t.last.errors.join("; ").replace('|', "/")
            }
        });

        let _ = writeln!(
            s,
            "\n## Reactor latency under load (wrk -t1 -c{}, keep-alive)\n",
            self.shape.connections
        );
        let mut cols: Vec<(String, Option<&LoadFigures>)> =
            vec![("no [acme] (control)".into(), self.control.load.as_ref())];
        for t in &self.trials {
            cols.push((
                format!("c={} during issuance", t.concurrency),
                t.during.as_ref(),
            ));
            cols.push((
                format!("c={} after (all valid)", t.concurrency),
                t.after.as_ref(),
            ));
        }
        let mut head = String::from("| figure |");
        let mut rule = String::from("|---|");
        for (c, _) in &cols {
            let _ = write!(head, " {c} |");
            rule.push_str("---|");
        }
        let _ = writeln!(s, "{head}\n{rule}");
        let lrow = |s: &mut String, title: &str, f: &dyn Fn(&LoadFigures) -> String| {
            let mut row = format!("| {title} |");
            for (_, l) in &cols {
                let _ = write!(row, " {} |", l.map_or("n/a".into(), f));
            }
            let _ = writeln!(s, "{row}");
        };
        lrow(&mut s, "window", &|l| format!("{:.1} s", l.wrk.seconds));
        lrow(&mut s, "requests/s", &|l| rate(l.wrk.rps()));
        lrow(&mut s, "p50", &|l| us(l.wrk.p50_us));
        lrow(&mut s, "p99", &|l| us(l.wrk.p99_us));
        lrow(&mut s, "p99.9", &|l| us(l.wrk.p999_us));
        lrow(&mut s, "max", &|l| l.wrk.max_us.map_or("n/a".into(), us));
        lrow(&mut s, "failed requests", &|l| {
            if l.wrk.failed.total() == 0 {
                "0".into()
            } else {
                format!("**{}** ({})", l.wrk.failed.total(), l.wrk.failed.describe())
            }
        });
        lrow(&mut s, "CPU: portier (all threads)", &|l| {
            cpu(l.cpu.portier, l.cpu.window_secs)
        });
        lrow(&mut s, "CPU: portier management thread", &|l| {
            cpu(l.cpu.portier_mgmt, l.cpu.window_secs)
        });
        lrow(&mut s, "CPU: portier reactors", &|l| {
            cpu(l.cpu.portier_reactors, l.cpu.window_secs)
        });
        lrow(&mut s, "CPU: backend (CPU 0)", &|l| {
            cpu(l.cpu.backend, l.cpu.window_secs)
        });
        lrow(&mut s, "CPU: Pebble + challtestsrv (CPU 1)", &|l| {
            cpu(l.cpu.ca, l.cpu.window_secs)
        });
        lrow(&mut s, "CPU: wrk (CPU 1)", &|l| {
            cpu(l.cpu.wrk, l.cpu.window_secs)
        });
        lrow(&mut s, "CPU: this harness, polling (CPU 1)", &|l| {
            cpu(l.cpu.harness, l.cpu.window_secs)
        });
        lrow(
            &mut s,
            "CPU: other processes on the machine (either CPU)",
            &|l| cpu(l.cpu.others, l.cpu.window_secs),
        );

        let _ = writeln!(s, "\n## Memory and disk per certificate\n");
        let (head, rule) = self.head("figure");
        let _ = writeln!(s, "{head}\n{rule}");
        self.row(&mut s, "VmRSS at ready (no certificate yet)", |t| {
            mib(t.mem_ready.rss)
        });
        self.row(&mut s, "VmRSS, all valid, 2 s quiet", |t| {
            mib(t.mem_quiet.rss)
        });
        self.row(&mut s, "VmRSS, after the second load", |t| {
            mib(t.mem_after_load.rss)
        });
        let conn = self.conn_growth();
        self.row(
            &mut s,
            "**VmRSS per certificate** ((quiet − ready − load's own growth) ÷ N)",
            |t| {
                per_cert(
                    t.mem_ready.rss,
                    t.mem_quiet.rss.saturating_sub(conn.rss),
                    t.last.valid,
                )
            },
        );
        self.row(&mut s, "Private_Dirty at ready → quiet", |t| {
            format!(
                "{} → {}",
                mib(t.mem_ready.private_dirty),
                mib(t.mem_quiet.private_dirty)
            )
        });
        self.row(
            &mut s,
            "**Private_Dirty per certificate** (same correction)",
            |t| {
                per_cert(
                    t.mem_ready.private_dirty,
                    t.mem_quiet.private_dirty.saturating_sub(conn.private_dirty),
                    t.last.valid,
                )
            },
        );
        self.row(&mut s, "certificate files in cert_dir", |t| {
            t.disk.files.to_string()
        });
        self.row(
            &mut s,
            "**disk per certificate** (file bytes; allocated)",
            |t| {
                if t.disk.files == 0 {
                    "n/a".into()
                } else {
                    format!(
                        "{:.0} B; {:.0} B",
                        t.disk.bytes as f64 / t.disk.files as f64,
                        t.disk.allocated as f64 / t.disk.files as f64
                    )
                }
            },
        );
        self.row(&mut s, "ACME state.json", |t| {
            format!(
                "{} B ({:.0} B per name)",
                t.disk.state_json,
                t.disk.state_json as f64 / t.names.max(1) as f64
            )
        });
        let _ = writeln!(
            s,
            "\nThe load's own growth (control node, no `[acme]`, same {} connections): VmRSS {} → {} \
             (+{:.0} KiB), Private_Dirty {} → {} (+{:.0} KiB); subtracted above.",
            self.shape.connections,
            mib(self.control.mem_ready.rss),
            mib(self.control.mem_after_load.rss),
            conn.rss as f64 / 1024.0,
            mib(self.control.mem_ready.private_dirty),
            mib(self.control.mem_after_load.private_dirty),
            conn.private_dirty as f64 / 1024.0,
        );

        let _ = writeln!(
            s,
            "\n## GET /certificates (polled every 50 ms until the first valid, then 250 ms)\n"
        );
        let (head, rule) = self.head("figure");
        let _ = writeln!(s, "{head}\n{rule}");
        self.row(&mut s, "polls during issuance: median / max", |t| {
            format!(
                "{:.1} / {:.1} ms ({} polls)",
                t.polls_issuing.median_ms, t.polls_issuing.max_ms, t.polls_issuing.count
            )
        });
        self.row(
            &mut s,
            "polls with all valid (quiet + after load): median / max",
            |t| {
                format!(
                    "{:.1} / {:.1} ms ({} polls)",
                    t.polls_quiet.median_ms, t.polls_quiet.max_ms, t.polls_quiet.count
                )
            },
        );
        self.row(&mut s, "answer size with all valid", |t| {
            format!("{:.0} KiB", t.polls_quiet.last_bytes as f64 / 1024.0)
        });

        if !self.notes.is_empty() {
            let _ = writeln!(s, "\nNotes:\n");
            for note in &self.notes {
                let _ = writeln!(s, "- {note}");
            }
        }
        s
    }

    /// What the load alone added to the control node's memory.
    fn conn_growth(&self) -> Mem {
        Mem {
            rss: self
                .control
                .mem_after_load
                .rss
                .saturating_sub(self.control.mem_ready.rss),
            private_dirty: self
                .control
                .mem_after_load
                .private_dirty
                .saturating_sub(self.control.mem_ready.private_dirty),
        }
    }

    pub fn json(&self) -> Value {
        let load = |l: Option<&LoadFigures>| -> Value {
            match l {
                None => Value::Null,
                Some(l) => json!({
                    "seconds": l.wrk.seconds,
                    "requests": l.wrk.requests,
                    "rps": l.wrk.rps(),
                    "p50_us": l.wrk.p50_us,
                    "p99_us": l.wrk.p99_us,
                    "p999_us": l.wrk.p999_us,
                    "max_us": l.wrk.max_us,
                    "failed": l.wrk.failed.total(),
                    "failed_causes": l.wrk.failed.describe(),
                    "cpu_seconds": {
                        "window": l.cpu.window_secs,
                        "portier": l.cpu.portier,
                        "portier_mgmt": l.cpu.portier_mgmt,
                        "portier_reactors": l.cpu.portier_reactors,
                        "backend": l.cpu.backend,
                        "ca": l.cpu.ca,
                        "wrk": l.cpu.wrk,
                        "harness": l.cpu.harness,
                        "others": l.cpu.others,
                    },
                }),
            }
        };
        let mem = |m: &Mem| json!({ "rss": m.rss, "private_dirty": m.private_dirty });
        let trials: Vec<Value> = self
            .trials
            .iter()
            .map(|t| {
                json!({
                    "concurrency": t.concurrency,
                    "names": t.names,
                    "first_valid_seconds": t.first_valid_secs,
                    "all_valid_seconds": t.all_valid_secs,
                    "valid_at_end": t.last.valid,
                    "orders_issued": t.last.orders_issued,
                    "orders_failed": t.last.orders_failed,
                    "metrics_orders_failed": t.metrics_failed,
                    "errors": t.last.errors,
                    "during": load(t.during.as_ref()),
                    "after": load(t.after.as_ref()),
                    "memory": {
                        "ready": mem(&t.mem_ready),
                        "all_valid": mem(&t.mem_all_valid),
                        "quiet": mem(&t.mem_quiet),
                        "after_load": mem(&t.mem_after_load),
                    },
                    "disk": {
                        "files": t.disk.files,
                        "bytes": t.disk.bytes,
                        "allocated": t.disk.allocated,
                        "state_json": t.disk.state_json,
                    },
                    "get_certificates_ms": {
                        "issuing_median": t.polls_issuing.median_ms,
                        "issuing_max": t.polls_issuing.max_ms,
                        "quiet_median": t.polls_quiet.median_ms,
                        "quiet_max": t.polls_quiet.max_ms,
                        "bytes_all_valid": t.polls_quiet.last_bytes,
                    },
                    "valid_timeline": t.timeline.iter().map(|(a, v)| json!([a, v])).collect::<Vec<_>>(),
                    "problems": t.problems,
                })
            })
            .collect();
        json!({
            "title": self.title,
            "context": self.context.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "control": {
                "memory": { "ready": mem(&self.control.mem_ready), "after_load": mem(&self.control.mem_after_load) },
                "load": load(self.control.load.as_ref()),
            },
            "trials": trials,
            "notes": self.notes,
        })
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let md = dir.join(format!("{}.md", self.stem));
        let js = dir.join(format!("{}.json", self.stem));
        std::fs::write(&md, self.markdown())?;
        std::fs::write(&js, serde_json::to_string_pretty(&self.json())? + "\n")?;
        Ok((md, js))
    }
}

fn standing_notes() -> Vec<String> {
    vec![
        "Times are read by polling GET /certificates (50 ms until the first valid name, then 250 ms): \
         each is late by up to one interval plus the poll's own duration."
            .into(),
        "The latency figures are wrk's (closed loop, 50 connections): with the proxy's CPU saturated \
         they are mostly queueing; compare during vs after vs control, not with the paced figures of \
         `bench load`. wrk shares CPU 1 with Pebble and challtestsrv: during issuance wrk gets less of \
         it (see the CPU rows), so part of a lower rate there is the client's, not portier's."
            .into(),
        "CPU rows: utime+stime from /proc over the window; the management thread is portier's main \
         thread (the tokio runtime running ACME, the certificate watcher and the admin API, including \
         answering this harness's polls in every window); reactors are the portier-reactor-* threads. \
         \"Other processes\" is the machine's busy time (/proc/stat, both CPUs, 200% = both full) minus \
         every process above: on a shared machine, another tenant's work lands there and the figures of \
         that window are disturbed by it."
            .into(),
        "Memory per certificate: VmRSS (and Private_Dirty from /proc/PID/smaps_rollup) of portier at \
         ready, before any certificate, and 2 s after the last became valid, minus what the same load \
         alone added to a node without [acme]; divided by the names valid. It covers the parsed \
         certificate and key in the SNI store, the ACME book entry, and allocator growth from the \
         installs (glibc keeps freed memory)."
            .into(),
        "Disk per certificate: the n*.bench.test.pem files (chain + private key) in cert_dir; \
         allocated = st_blocks × 512."
            .into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(us(74.0), "74 µs");
        assert_eq!(us(4427.0), "4.43 ms");
        assert_eq!(rate(41_100.0), "41.1k");
        assert_eq!(per_cert(1000, 3000, 4), "500 B");
        assert_eq!(per_cert(3000, 1000, 4), "-500 B");
        assert_eq!(per_cert(1, 2, 0), "n/a");
        assert_eq!(cpu(1.0, 4.0), "1.00 s (25%)");
        assert_eq!(secs(None), "n/a");
    }
}
