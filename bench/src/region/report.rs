//! The region benchmark's report: `bench/results/<date>-region.md` and
//! `.json`, from one [`Run`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::etcd::{SEED_BATCH, percentile};
use super::{ColdStart, Mem, Options, Run, Window};

pub struct Report {
    stem: String,
    date: String,
    took: Duration,
    apps: usize,
    domains: usize,
    writes_asked: usize,
    change_rate: u32,
    change_secs: f64,
    etcd: String,
    run: Run,
    notes: Vec<String>,
}

/// Propagation figures over the writes every node served.
struct Spread {
    served: usize,
    p50: f64,
    p99: f64,
    max: f64,
    admin_p50: f64,
    admin_p99: f64,
    /// Median per node (A, B, C).
    per_node_p50: Vec<f64>,
}

fn spread(run: &Run) -> Spread {
    let mut all: Vec<f64> = run.writes.iter().filter_map(|w| w.all_ms()).collect();
    all.sort_by(f64::total_cmp);
    let mut admin: Vec<f64> = run.writes.iter().map(|w| w.admin_ms).collect();
    admin.sort_by(f64::total_cmp);
    let per_node_p50 = (0..3)
        .map(|i| {
            let mut v: Vec<f64> = run
                .writes
                .iter()
                .filter_map(|w| w.nodes_ms.get(i).copied().flatten())
                .collect();
            v.sort_by(f64::total_cmp);
            percentile(&v, 50.0)
        })
        .collect();
    Spread {
        served: all.len(),
        p50: percentile(&all, 50.0),
        p99: percentile(&all, 99.0),
        max: all.last().copied().unwrap_or(0.0),
        admin_p50: percentile(&admin, 50.0),
        admin_p99: percentile(&admin, 99.0),
        per_node_p50,
    }
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1e3)
    } else {
        format!("{v:.0} ms")
    }
}

fn us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1e3)
    } else {
        format!("{v:.0} µs")
    }
}

fn opt_secs(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |s| format!("{s:.2} s"))
}

impl Report {
    pub fn new(opts: &Options, run: Run, took: Duration) -> Report {
        let date = today();
        let mut notes = standing_notes();
        notes.extend(opts.notes.iter().cloned());
        Report {
            stem: format!("{date}-region"),
            date,
            took,
            apps: opts.apps,
            domains: opts.apps * opts.domains_per_app,
            writes_asked: opts.writes,
            change_rate: opts.change_rate,
            change_secs: opts.change_secs,
            etcd: super::etcd::version(),
            run,
            notes,
        }
    }

    pub fn markdown(&self) -> String {
        let r = &self.run;
        let mut o = String::new();
        o += &format!(
            "# Region benchmark, {}\n\n{} apps, {} domains ({} wildcards) + 1 load app in a 3-member etcd \
             ({}); {} s in all. Nodes: release portier, 2 reactor threads, on CPU 0 with the two \
             demo backends; etcd, wrk, the change writer and the harness on CPU 1 (2-core VM shared \
             with other engineers).\n\n",
            self.date,
            self.apps,
            self.domains,
            self.apps.div_ceil(super::WILDCARD_EVERY),
            self.etcd,
            self.took.as_secs()
        );
        o += &format!(
            "Seeded in {:.1} s ({:.1} MB of keys and JSON, transactions of {SEED_BATCH} puts), revision {}.\n\n",
            r.seed_secs,
            r.seed_bytes as f64 / 1e6,
            r.seeded_revision
        );
        o += "## Cold start\n\n| start | port answering | serving the last app (200) | first apply (node's own timing) | VmRSS | Private_Dirty |\n|---|---|---|---|---|---|\n";
        let row = |name: &str, c: &ColdStart| {
            format!(
                "| {name} | {:.2} s | **{:.2} s** | {} | {} | {} |\n",
                c.listening_secs,
                c.serving_secs,
                opt_secs(c.first_apply_secs),
                mb(c.mem.rss),
                mb(c.mem.private_dirty)
            )
        };
        o += &row("from etcd (empty cache_dir)", &r.cold);
        match &r.from_cache {
            Some(c) => o += &row("etcd down, from cache_dir", c),
            None => o += "| etcd down, from cache_dir | failed | | | | |\n",
        }
        o += &format!(
            "| a node of an empty region (for comparison) | | | | {} | {} |\n\n",
            mb(r.empty.rss),
            mb(r.empty.private_dirty)
        );
        let per = |a: u64, b: u64| (a as f64 - b as f64) / self.domains as f64;
        o += &format!(
            "Memory of the region on a node: {} VmRSS, {} Private_Dirty over an empty region, i.e. \
             {:.0} B / {:.0} B per domain ({:.1} KB / {:.1} KB per app). After the change load: VmRSS {}, Private_Dirty {}.\n\n",
            mb(r.cold.mem.rss.saturating_sub(r.empty.rss)),
            mb(r.cold
                .mem
                .private_dirty
                .saturating_sub(r.empty.private_dirty)),
            per(r.cold.mem.rss, r.empty.rss),
            per(r.cold.mem.private_dirty, r.empty.private_dirty),
            per(r.cold.mem.rss, r.empty.rss) * self.domains as f64 / self.apps as f64 / 1e3,
            per(r.cold.mem.private_dirty, r.empty.private_dirty) * self.domains as f64
                / self.apps as f64
                / 1e3,
            mb(r.mem_after_changes.rss),
            mb(r.mem_after_changes.private_dirty)
        );
        let s = spread(r);
        o += &format!(
            "## Write propagation\n\n{} admin writes (`POST /apps/{{app}}/domains` on node A, one new \
             domain each, one after the other); {} served by all three nodes. Time from the write's \
             start until A, B and C all answered 200 for the new host (each polled every 2 ms):\n\n\
             | p50 | p99 | max | admin API answer p50 / p99 | per node p50 (A / B / C) |\n|---|---|---|---|---|\n\
             | **{}** | **{}** | **{}** | {} / {} | {} / {} / {} |\n\n",
            r.writes.len(),
            s.served,
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            ms(s.admin_p50),
            ms(s.admin_p99),
            ms(s.per_node_p50.first().copied().unwrap_or(0.0)),
            ms(s.per_node_p50.get(1).copied().unwrap_or(0.0)),
            ms(s.per_node_p50.get(2).copied().unwrap_or(0.0)),
        );
        o += &format!(
            "## {} changes per second\n\nwrk on node A's plain-HTTP listener for the load app \
             (`{}`, 64 B responses, never changed), {:.0} s per window: without changes (baseline) and \
             while the writer puts {} changed apps per second straight to etcd (an app moved to the \
             other backend, a different app each time). Paced: 20 connections, 2 ms pause before each \
             request; closed loop: 50 connections, no pause.\n\n\
             | window | req/s | p50 | p99 | max | changes done (rate) | applies (mean / max sampled) | mgmt CPU | reactors CPU | lag at writer end | caught up after |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
            self.change_rate,
            super::LOAD_HOST,
            self.change_secs,
            self.change_rate
        );
        for w in &r.windows {
            o += &window_row(w);
        }
        o += "\n";
        if !r.problems.is_empty() {
            o += "## Problems\n\n";
            for p in &r.problems {
                o += &format!("- {p}\n");
            }
            o += "\n";
        }
        o += "## Notes\n\n";
        for n in &self.notes {
            o += &format!("- {n}\n");
        }
        o
    }

    pub fn json(&self) -> Value {
        let r = &self.run;
        let mem = |m: &Mem| json!({ "rss": m.rss, "private_dirty": m.private_dirty });
        let cold = |c: &ColdStart| {
            json!({
                "listening_secs": c.listening_secs,
                "serving_secs": c.serving_secs,
                "first_apply_secs": c.first_apply_secs,
                "memory": mem(&c.mem),
            })
        };
        let s = spread(r);
        json!({
            "date": self.date,
            "seconds": self.took.as_secs_f64(),
            "apps": self.apps,
            "domains": self.domains,
            "etcd": self.etcd,
            "seed": { "secs": r.seed_secs, "bytes": r.seed_bytes, "revision": r.seeded_revision, "batch": SEED_BATCH },
            "cold_start": cold(&r.cold),
            "from_cache": r.from_cache.as_ref().map(cold),
            "empty_region_memory": mem(&r.empty),
            "memory_after_changes": mem(&r.mem_after_changes),
            "propagation": {
                "writes": self.writes_asked,
                "served_by_all": s.served,
                "p50_ms": s.p50, "p99_ms": s.p99, "max_ms": s.max,
                "admin_p50_ms": s.admin_p50, "admin_p99_ms": s.admin_p99,
                "per_node_p50_ms": s.per_node_p50,
                "each": r.writes.iter().map(|w| json!({
                    "host": w.host, "status": w.status, "admin_ms": w.admin_ms, "nodes_ms": w.nodes_ms,
                })).collect::<Vec<_>>(),
            },
            "change_rate": self.change_rate,
            "windows": r.windows.iter().map(|w| json!({
                "label": w.label,
                "paced": w.paced,
                "wrk": {
                    "requests": w.wrk.requests, "seconds": w.wrk.seconds, "rps": w.wrk.rps(),
                    "p50_us": w.wrk.p50_us, "p99_us": w.wrk.p99_us, "p999_us": w.wrk.p999_us,
                    "max_us": w.wrk.max_us, "failed": w.wrk.failed.total(),
                },
                "changes": w.changes.as_ref().map(|c| json!({
                    "target_per_sec": c.target_per_sec, "secs": c.secs, "done": c.done,
                    "errors": c.errors, "first_error": c.first_error,
                    "last_revision": c.last_revision,
                    "put_p50_ms": c.put_p50_ms, "put_p99_ms": c.put_p99_ms,
                })),
                "applies": w.applies,
                "apply_secs_sum": w.apply_secs_sum,
                "apply_last_max_secs": w.apply_last_max,
                "mgmt_cpu_secs": w.mgmt_cpu,
                "reactors_cpu_secs": w.reactors_cpu,
                "lag_at_end_revisions": w.lag_at_end,
                "catch_up_secs": w.catch_up_secs,
            })).collect::<Vec<_>>(),
            "problems": r.problems,
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

fn window_row(w: &Window) -> String {
    let failed = w.wrk.failed.total();
    let rps = if failed > 0 {
        format!("FAILED {failed}")
    } else {
        format!("{:.0}", w.wrk.rps())
    };
    let changes = w.changes.as_ref().map_or("—".into(), |c| {
        format!(
            "{} ({:.0}/s{})",
            c.done,
            c.done as f64 / c.secs.max(1e-9),
            if c.errors > 0 {
                format!(", {} errors", c.errors)
            } else {
                String::new()
            }
        )
    });
    let applies = if w.applies == 0 {
        "0".into()
    } else {
        format!(
            "{} ({} / {})",
            w.applies,
            ms(w.apply_secs_sum / w.applies as f64 * 1e3),
            ms(w.apply_last_max * 1e3)
        )
    };
    format!(
        "| {} | {rps} | {} | {} | {} | {changes} | {applies} | {:.2} s | {:.2} s | {} | {} |\n",
        w.label,
        us(w.wrk.p50_us),
        us(w.wrk.p99_us),
        w.wrk.max_us.map_or("n/a".into(), us),
        w.mgmt_cpu,
        w.reactors_cpu,
        w.lag_at_end
            .map_or("—".into(), |l| format!("{l} revisions")),
        if w.changes.is_some() {
            opt_secs(w.catch_up_secs)
        } else {
            "—".into()
        },
    )
}

/// UTC date, `YYYY-MM-DD` (`date -u`; the harness runs on Debian).
fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "undated".into())
}

fn standing_notes() -> Vec<String> {
    vec![
        "Seeding: `portier region import` writes all apps in one transaction, which etcd refuses at \
         this size (max request 1.5 MiB, max 128 operations per transaction): the harness writes the \
         apps with the etcd-client crate in transactions of 100 puts, then bumps the apps guard key \
         (`<prefix>/v1/meta/apps`) as every apps write does."
            .into(),
        "Cold start: from process spawn (the node is pinned, its config written beforehand) to the \
         first 200 for the last app's domain, polled every 5 ms with a new connection; a region \
         apply is one snapshot swap, so the last app serving means every app does. The node's own \
         timing of its first apply is `apply_seconds_sum` of GET /region (copy of the state, \
         validation, snapshot rebuild, swap). Memory is read 2 s after serving."
            .into(),
        "Write propagation: one write at a time; each node polled every 2 ms with `GET /bytes/1` on a \
         new connection, so each figure is late by up to ~2 ms plus a connect. Node A applies its own \
         write before the admin API answers; B and C apply it from their watch, batched at most every \
         100 ms."
            .into(),
        "Change load: single puts paced at the target rate from one tokio task (up to 512 in flight) \
         on CPU 1, shared with etcd and wrk. \"Applies\" are the node's applies of the region's apps \
         in the window (from GET /region: `applies`, `apply_seconds_sum`; max of \
         `last_apply_seconds` sampled every 200 ms). \"Lag at writer end\": the writer's last \
         acknowledged revision minus the node's applied revision right after the writer finished; \
         \"caught up after\": until the node's applied revision reached it (GET /region polled every \
         20 ms). The node reports a revision applied when the watch event is received; the swap \
         follows within 100 ms plus the apply."
            .into(),
        "CPU columns: utime+stime of portier's main thread (the management runtime: etcd watch, \
         applies, admin API) and of its reactor threads over the window, from /proc."
            .into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(ms(12.4), "12 ms");
        assert_eq!(ms(1530.0), "1.53 s");
        assert_eq!(us(740.0), "740 µs");
        assert_eq!(us(4427.0), "4.43 ms");
        assert_eq!(mb(12_300_000), "12.3 MB");
        assert_eq!(opt_secs(None), "n/a");
    }
}
