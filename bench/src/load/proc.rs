//! Process control: children started by the harness (and only those) are
//! stopped by their PIDs, even on failure; commands bounded in time;
//! `/proc` readings (RSS, CPU time, descendants); ports and scratch dirs.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A long-running child (proxy, backend): SIGTERM then SIGKILL on stop or
/// drop, its descendants (nginx workers) included, by PID only.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Start `cmd` (already holding its arguments, possibly wrapped in
    /// `taskset`), stdout and stderr to `log`. The child gets SIGKILL if the
    /// harness dies without stopping it.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        let out =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl is async-signal-safe; nothing else runs in pre_exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let shown = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .with_context(|| format!("start {name}: {shown}"))?;
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    /// Wait until the log contains `needle` (or the process exits).
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if std::fs::read_to_string(&self.log).is_ok_and(|t| t.contains(needle)) {
                return Ok(());
            }
            if !self.alive() {
                bail!(
                    "{} exited before {needle:?}: {}",
                    self.name,
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not print {needle:?}: {}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process and its descendants (nginx master + workers).
    pub fn tree(&self) -> Vec<u32> {
        match self.pid() {
            Some(pid) => {
                let mut all = vec![pid];
                all.extend(descendants(pid));
                all
            }
            None => Vec::new(),
        }
    }

    /// SIGKILL the process at once and reap it (scratch processes whose
    /// state does not matter).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM the process, wait up to 5 s, then SIGKILL it and whatever
    /// descendants it had (only PIDs collected from this process's tree).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        let kids = descendants(pid);
        signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for k in kids {
            // A descendant that outlived its parent (it is ours: we took its
            // PID from our child's tree moments ago).
            if Path::new(&format!("/proc/{k}")).exists() {
                signal(k, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a PID this harness started (or its descendant).
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// `taskset -c CPU program` (taskset execs it: same PID).
pub fn pinned(cpu: u32, program: &str) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", &cpu.to_string(), program]);
    c
}

/// Run a short command with a hard time bound; its output whatever happens.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("start {shown}"))?;
    let mut so = child.stdout.take().context("stdout")?;
    let mut se = child.stderr.take().context("stderr")?;
    let t1 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t2 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{shown} did not finish within {timeout:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: t1.join().unwrap_or_default(),
        stderr: t2.join().unwrap_or_default(),
    })
}

/// Run a command that must succeed, bounded in time; its stdout.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out = run_bounded(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Wait until something accepts TCP connections on `addr`.
pub fn wait_port(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listens on {addr} after {timeout:?}")
}

/// Every descendant PID of `pid` (from /proc/PID/task/*/children).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for k in kids
                .split_whitespace()
                .filter_map(|k| k.parse::<u32>().ok())
            {
                if !out.contains(&k) {
                    out.push(k);
                    todo.push(k);
                }
            }
        }
    }
    out
}

/// VmRSS of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Private_Dirty of a process (/proc/PID/smaps_rollup), in bytes: the
/// memory it wrote to and owns alone (heap, stacks), without the shared
/// pages of its binary and libraries that VmRSS also counts.
pub fn private_dirty_bytes(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = rollup.lines().find(|l| l.starts_with("Private_Dirty:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Each thread of a process: its name (`comm`) and utime+stime, seconds.
pub fn thread_cpu(pid: u32) -> Vec<(String, f64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, f64)> = tasks
        .flatten()
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_string();
            let (u, s) = parse_cpu(&stat)?;
            Some((name, u + s))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// utime and stime (clock ticks → seconds) of a `/proc/…/stat` line.
fn parse_cpu(stat: &str) -> Option<(f64, f64)> {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime field 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let tck = clock_ticks();
    Some((utime / tck, stime / tck))
}

/// CPU time the whole machine spent busy (every CPU: user, nice, system,
/// irq, softirq, steal; not idle or iowait), in seconds, from /proc/stat.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy(stat.lines().next()?)
}

fn parse_machine_busy(line: &str) -> Option<f64> {
    let f: Vec<f64> = line
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal …
    let busy = f.get(0..3)?.iter().sum::<f64>() + f.get(5..8)?.iter().sum::<f64>();
    Some(busy / clock_ticks())
}

/// utime and stime of a process (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu(&stat)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Sum of utime+stime over `pids`, (user, system) seconds.
pub fn cpu_of(pids: &[u32]) -> Option<(f64, f64)> {
    let mut u = 0.0;
    let mut s = 0.0;
    for &p in pids {
        let (pu, ps) = cpu_seconds(p)?;
        u += pu;
        s += ps;
    }
    Some((u, s))
}

/// Raise the open-file limit to the hard limit (idle-connection test).
pub fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A scratch directory removed on drop (unmounting nothing: callers that
/// mount inside it unmount first).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "portier-bench-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        Ok(TempDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("PORTIER_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// VmRSS and Private_Dirty of a process at one moment (0 if unreadable).
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss: u64,
    pub private_dirty: u64,
}

impl Mem {
    pub fn of(pid: u32) -> Mem {
        Mem {
            rss: rss_bytes(pid).unwrap_or(0),
            private_dirty: private_dirty_bytes(pid).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_busy_counts_all_but_idle_and_iowait() {
        let t = clock_ticks();
        let busy = parse_machine_busy("cpu  100 10 50 1000 7 1 2 3 0 0").expect("parses");
        assert!((busy - 166.0 / t).abs() < 1e-9);
        assert!(parse_machine_busy("cpu0 1 2 3").is_none());
    }
}
