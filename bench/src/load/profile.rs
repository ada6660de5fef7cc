//! Where the time goes: system calls per proxied request, side by side for
//! every proxy (strace's `-c` summary over a bounded wrk run), and flame
//! graphs of Portier under HTTP/1.1, HTTPS and HTTP/2 (`perf record -g`
//! over a bounded load, folded and drawn by inferno). Written next to the
//! other results (`<date>-syscalls.md`, `<date>-flame-{h1,https,h2}.svg`).
//!
//! strace slows a proxy down a lot, so the syscall run gives counts, never
//! rates: calls divided by the requests wrk completed while strace watched.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use super::contestants::{Contestant, Env, HOST, Kind};
use super::tools::{Wrk, h2load, wrk};

/// One proxy's system calls over a run: per syscall name, calls.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Calls {
    pub requests: u64,
    pub by_name: BTreeMap<String, u64>,
}

impl Calls {
    pub fn total(&self) -> u64 {
        self.by_name.values().sum()
    }

    pub fn per_request(&self, name: &str) -> f64 {
        let n = self.by_name.get(name).copied().unwrap_or(0);
        n as f64 / self.requests.max(1) as f64
    }
}

/// strace `-c` summary: rows `% time  seconds  usecs/call  calls  [errors]
/// syscall`, a dashed rule, a `total` row. Only the rows are read.
pub fn parse_strace_summary(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 || fields[0].parse::<f64>().is_err() {
            continue;
        }
        let name = fields[fields.len() - 1];
        if name == "total" {
            continue;
        }
        if let Ok(calls) = fields[3].parse::<u64>() {
            *out.entry(name.to_string()).or_default() += calls;
        }
    }
    out
}

/// The load a syscall count runs.
#[derive(Clone, Copy, PartialEq)]
enum Load {
    /// wrk, HTTP/1.1 keep-alive, 50 connections.
    H1,
    /// h2load over TLS, 10 connections of 100 streams.
    H2,
}

/// Count the system calls of `c`'s workers while the load runs `seconds`
/// on `url`.
fn count_calls(
    c: &Contestant,
    dir: &Path,
    url: &str,
    seconds: f64,
    load: Load,
) -> anyhow::Result<Calls> {
    let host = format!("Host: {HOST}");
    let pids = c.worker_pids();
    if pids.is_empty() {
        bail!("no proxy process");
    }
    let out = dir.join(format!("strace-{}.txt", c.id()));
    let mut cmd = Command::new("strace");
    cmd.args(["-c", "-f", "-q", "-o"]).arg(&out);
    for p in &pids {
        cmd.args(["-p", &p.to_string()]);
    }
    let mut strace = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting strace")?;
    // strace attaches within a moment; the load starts after.
    std::thread::sleep(Duration::from_millis(500));
    let requests = match load {
        Load::H1 => wrk(
            dir,
            &Wrk {
                url,
                connections: 50,
                seconds,
                headers: &[&host],
                delay_ms: 0,
            },
        )
        .and_then(|run| {
            if run.failed.total() > 0 {
                bail!(
                    "{} requests failed: {}",
                    run.failed.total(),
                    run.failed.describe()
                );
            }
            Ok(run.requests)
        }),
        Load::H2 => h2load(url, 10, 100, seconds, None).and_then(|run| {
            if run.failed > 0 || run.errored > 0 {
                bail!("{} requests failed, {} errored", run.failed, run.errored);
            }
            Ok(run.succeeded)
        }),
    };
    // SIGINT: strace detaches and writes its summary.
    // SAFETY: signalling the strace this function started.
    unsafe { libc::kill(strace.id() as i32, libc::SIGINT) };
    let _ = strace.wait();
    let requests = requests?;
    let text = std::fs::read_to_string(&out).context("reading strace's summary")?;
    Ok(Calls {
        requests,
        by_name: parse_strace_summary(&text),
    })
}

/// The syscall table, as markdown: the calls that matter per request for
/// every proxy, then the total.
pub fn syscall_table(cols: &[(String, Calls)]) -> String {
    let mut names: BTreeMap<String, u64> = BTreeMap::new();
    for (_, c) in cols {
        for (n, v) in &c.by_name {
            *names.entry(n.clone()).or_default() += v;
        }
    }
    // The busiest calls first; the rest summed in the total.
    let mut order: Vec<(String, u64)> = names.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut t = String::new();
    let _ = write!(t, "| syscall per request |");
    for (id, _) in cols {
        let _ = write!(t, " {id} |");
    }
    let _ = write!(t, "\n|---|");
    for _ in cols {
        let _ = write!(t, "---|");
    }
    t.push('\n');
    for (name, _) in order.iter().take(14) {
        let _ = write!(t, "| `{name}` |");
        for (_, c) in cols {
            let _ = write!(t, " {:.2} |", c.per_request(name));
        }
        t.push('\n');
    }
    let _ = write!(t, "| **all** |");
    for (_, c) in cols {
        let _ = write!(
            t,
            " **{:.2}** |",
            c.total() as f64 / c.requests.max(1) as f64
        );
    }
    t.push('\n');
    let _ = write!(t, "| requests while counted |");
    for (_, c) in cols {
        let _ = write!(t, " {} |", c.requests);
    }
    t.push('\n');
    t
}

/// Syscalls per request of every proxy, 64 B: HTTP/1.1 keep-alive
/// (`Load::H1`) or HTTP/2 over TLS (`Load::H2`).
fn syscalls(cs: &mut [Contestant], env: &Env, seconds: f64, load: Load) -> anyhow::Result<String> {
    let mut cols = Vec::new();
    for c in cs.iter_mut().filter(|c| c.kind != Kind::Direct) {
        let fresh = c.restart(env)?;
        let url = match (load, fresh.https) {
            (Load::H1, _) => format!("http://{}/64", fresh.http),
            (Load::H2, Some(https)) => format!("https://{https}/64"),
            (Load::H2, None) => continue,
        };
        let calls = count_calls(&fresh, env.path(), &url, seconds, load)
            .with_context(|| format!("counting {}'s system calls", fresh.id()))?;
        eprintln!(
            "  syscalls {}: {} calls / {} requests",
            fresh.id(),
            calls.total(),
            calls.requests
        );
        cols.push((fresh.id().to_string(), calls));
    }
    Ok(syscall_table(&cols))
}

/// `perf record -g` on `pid` for `seconds` while `load` runs, then folded
/// and drawn into `svg`.
fn flame(
    pid: u32,
    seconds: f64,
    svg: &Path,
    dir: &Path,
    load: impl FnOnce(),
) -> anyhow::Result<()> {
    let data = dir.join("perf.data");
    let mut perf = Command::new("perf")
        .args(["record", "-F", "999", "-g", "-q", "-o"])
        .arg(&data)
        .args(["-p", &pid.to_string(), "--", "sleep"])
        .arg(format!("{}", seconds.ceil() as u64 + 1))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf record")?;
    std::thread::sleep(Duration::from_millis(300));
    load();
    let status = perf.wait()?;
    if !status.success() {
        bail!("perf record: {status}");
    }
    let script = Command::new("perf")
        .args(["script", "-i"])
        .arg(&data)
        .stderr(Stdio::null())
        .output()
        .context("perf script")?;
    let folded = pipe("inferno-collapse-perf", &[], &script.stdout)?;
    let title = format!(
        "--title={}",
        svg.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("portier")
    );
    let drawn = pipe("inferno-flamegraph", &[&title], &folded)?;
    std::fs::write(svg, drawn).with_context(|| format!("writing {}", svg.display()))?;
    Ok(())
}

fn pipe(tool: &str, args: &[&str], input: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {tool} (cargo install inferno)"))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    if !out.status.success() {
        bail!("{tool}: {}", out.status);
    }
    Ok(out.stdout)
}

/// Flame graphs of Portier under HTTP/1.1, HTTPS and HTTP/2 (64 B).
pub fn flame_graphs(
    portier: &mut Contestant,
    env: &Env,
    out_dir: &Path,
    stem: &str,
    seconds: f64,
) -> anyhow::Result<Vec<PathBuf>> {
    let fresh = portier.restart(env)?;
    let pid = *fresh.worker_pids().first().context("no portier process")?;
    let dir = env.path();
    let host = format!("Host: {HOST}");
    let mut written = Vec::new();
    let h1 = out_dir.join(format!("{stem}-flame-h1.svg"));
    let url = format!("http://{}/64", fresh.http);
    flame(pid, seconds, &h1, dir, || {
        let _ = wrk(
            dir,
            &Wrk {
                url: &url,
                connections: 50,
                seconds,
                headers: &[&host],
                delay_ms: 0,
            },
        );
    })?;
    written.push(h1);
    if let Some(https) = fresh.https {
        let tls = out_dir.join(format!("{stem}-flame-https.svg"));
        let url = format!("https://{https}/64");
        flame(pid, seconds, &tls, dir, || {
            let _ = wrk(
                dir,
                &Wrk {
                    url: &url,
                    connections: 50,
                    seconds,
                    headers: &[&host],
                    delay_ms: 0,
                },
            );
        })?;
        written.push(tls);
        let h2 = out_dir.join(format!("{stem}-flame-h2.svg"));
        let url = format!("https://{https}/64");
        flame(pid, seconds, &h2, dir, || {
            let _ = h2load(&url, 10, 100, seconds, None);
        })?;
        written.push(h2);
    }
    Ok(written)
}

/// `portier-bench profile`: the syscall table of every proxy and Portier's
/// flame graphs; writes `<date>-syscalls.md` (linking the SVGs) to
/// `out_dir` and returns its path.
pub fn run(portier: &Path, out_dir: &Path, seconds: f64) -> anyhow::Result<PathBuf> {
    super::setup::ensure_packages()?;
    super::proc::raise_nofile();
    let env = Env::start().context("starting the shared backend")?;
    let mut cs = Vec::new();
    for k in [Kind::Portier, Kind::Haproxy, Kind::Nginx] {
        cs.push(
            Contestant::start(k, &env, portier).with_context(|| format!("starting {}", k.id()))?,
        );
    }
    let stem = super::today();
    eprintln!("portier-bench: system calls per request ({seconds} s of wrk under strace each)");
    let table = syscalls(&mut cs, &env, seconds, Load::H1)?;
    eprintln!("portier-bench: the same under HTTP/2 over TLS (h2load -c 10 -m 100)");
    let table_h2 = syscalls(&mut cs, &env, seconds, Load::H2)?;
    eprintln!("portier-bench: flame graphs of portier ({seconds} s each)");
    let svgs = flame_graphs(&mut cs[0], &env, out_dir, &stem, seconds)?;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Where the time goes
"
    );
    let _ = writeln!(
        md,
        "`cargo xtask bench profile` (`portier-bench profile --seconds {seconds}`), build {}. \
         Proxy and nginx backend on CPU 0, wrk on CPU 1, one worker each, loopback.\n",
        super::current_rev()
    );
    let _ = writeln!(
        md,
        "## System calls per proxied request\n\nHTTP/1.1 keep-alive, 64 B body, wrk -c 50 for {seconds} s \
         with `strace -c -f` attached to the proxy's workers (strace slows them: counts, not rates). \
         Each proxy freshly started.\n"
    );
    md.push_str(&table);
    let _ = writeln!(
        md,
        "\nHTTP/2 over TLS, 64 B body, h2load -c 10 -m 100 for {seconds} s, the same way \
         (client side: one TLS record per batch of frames; backend side: HTTP/1.1).\n"
    );
    md.push_str(&table_h2);
    let _ = writeln!(md, "\n## Flame graphs of portier\n");
    for svg in &svgs {
        let name = svg.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let _ = writeln!(md, "- [`{name}`]({name})");
    }
    let _ = writeln!(
        md,
        "\n`perf record -F 999 -g` on the portier process for {seconds} s of load (wrk -c 50 for \
         HTTP/1.1 and HTTPS, h2load -c 10 -m 100 for HTTP/2), folded and drawn by inferno."
    );
    let path = out_dir.join(format!("{stem}-syscalls.md"));
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 48.12    0.481234          11     41000           writev
 30.00    0.300000           7     40000      1000 read
 20.00    0.200000          10     20000           epoll_wait
  1.88    0.018800          18      1000           accept4
------ ----------- ----------- --------- --------- ----------------
100.00    1.000034          10    102000      1000 total
";

    #[test]
    fn reads_the_strace_summary_rows_not_the_total() {
        let calls = parse_strace_summary(SUMMARY);
        assert_eq!(calls.get("writev"), Some(&41000));
        assert_eq!(calls.get("read"), Some(&40000));
        assert_eq!(calls.get("accept4"), Some(&1000));
        assert!(!calls.contains_key("total"));
        let c = Calls {
            requests: 20000,
            by_name: calls,
        };
        assert_eq!(c.total(), 102000);
        assert!((c.per_request("read") - 2.0).abs() < 1e-9);
    }

    #[test]
    fn the_table_has_a_row_per_busy_call_and_the_total() {
        let a = Calls {
            requests: 10,
            by_name: [("read".to_string(), 20), ("writev".to_string(), 10)].into(),
        };
        let b = Calls {
            requests: 10,
            by_name: [("read".to_string(), 40)].into(),
        };
        let t = syscall_table(&[("portier".into(), a), ("nginx".into(), b)]);
        assert!(t.contains("| `read` | 2.00 | 4.00 |"), "{t}");
        assert!(t.contains("| `writev` | 1.00 | 0.00 |"), "{t}");
        assert!(t.contains("| **all** | **3.00** | **4.00** |"), "{t}");
    }
}
