//! The load generators (wrk, h2load), pinned to the load CPU, bounded in
//! time, and their text output parsed. Nothing here panics on odd output:
//! a figure that cannot be read is an error with the tool's text.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use super::proc::{pinned, run_bounded};

/// CPU the load generators run on (proxies and the backend use CPU 0).
pub const LOAD_CPU: u32 = 1;

/// wrk's Lua hooks: an optional fixed pause before each request (paced
/// load for the latency test) and one machine-readable summary line.
const WRK_LUA: &str = r#"-- portier-bench: paced requests and a parseable summary
local d = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0
if d > 0 then
  function delay() return d end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d errors=%d status_errors=%d p50_us=%d p99_us=%d p999_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;

/// What one wrk run measured.
#[derive(Debug, Clone)]
pub struct WrkRun {
    pub requests: u64,
    pub seconds: f64,
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

impl WrkRun {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// Options of one wrk run.
pub struct Wrk<'a> {
    pub url: &'a str,
    pub connections: u32,
    pub seconds: f64,
    /// Extra headers (e.g. `Connection: close` for the handshake test).
    pub headers: &'a [&'a str],
    /// Pause before each request on a connection (paced load), ms.
    pub delay_ms: u32,
}

pub fn wrk(dir: &Path, w: &Wrk<'_>) -> anyhow::Result<WrkRun> {
    let script = dir.join("bench.lua");
    if !script.exists() {
        std::fs::write(&script, WRK_LUA)?;
    }
    let secs = w.seconds.ceil().max(1.0) as u64;
    let mut cmd = pinned(LOAD_CPU, "wrk");
    cmd.args(["-t1", "-c", &w.connections.to_string()])
        .args(["-d", &format!("{secs}s"), "--timeout", "5s", "-s"])
        .arg(&script)
        .env("BENCH_DELAY_MS", w.delay_ms.to_string());
    for h in w.headers {
        cmd.args(["-H", h]);
    }
    cmd.arg(w.url);
    let out = run_bounded(&mut cmd, Duration::from_secs(secs + 20))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    parse_wrk(&text).with_context(|| {
        format!(
            "wrk {}: {} {}",
            w.url,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

fn kv(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

pub fn parse_wrk(text: &str) -> anyhow::Result<WrkRun> {
    let line = text
        .lines()
        .find(|l| l.starts_with("BENCH "))
        .context("no summary line in wrk output")?;
    let get = |k: &str| kv(line, k).with_context(|| format!("no {k} in {line:?}"));
    let run = WrkRun {
        requests: get("requests")? as u64,
        seconds: get("duration_us")? / 1e6,
        errors: (get("errors")? + get("status_errors")?) as u64,
        p50_us: get("p50_us")?,
        p99_us: get("p99_us")?,
        p999_us: get("p999_us")?,
    };
    if run.requests == 0 || run.seconds <= 0.0 {
        bail!("wrk completed no request");
    }
    Ok(run)
}

/// What one h2load run measured.
#[derive(Debug, Clone)]
pub struct H2Run {
    pub succeeded: u64,
    pub failed: u64,
    pub rps: f64,
}

/// `h2load -c C -m M -D secs URL` (HTTP/2 over TLS via ALPN), or `-n N`
/// requests when `requests` is given (smoke).
pub fn h2load(
    url: &str,
    clients: u32,
    streams: u32,
    seconds: f64,
    requests: Option<u32>,
) -> anyhow::Result<H2Run> {
    let secs = seconds.ceil().max(1.0) as u64;
    let mut cmd = pinned(LOAD_CPU, "h2load");
    cmd.args([
        "-t1",
        "-c",
        &clients.to_string(),
        "-m",
        &streams.to_string(),
    ]);
    match requests {
        Some(n) => cmd.args(["-n", &n.to_string()]),
        None => cmd.args(["-D", &secs.to_string()]),
    };
    // Every contestant is asked for the same virtual host (Portier routes
    // by it; HAProxy and nginx ignore it).
    cmd.args([
        "-T",
        "5",
        "-H",
        &format!(":authority: {}", super::contestants::HOST),
    ])
    .arg(url);
    let out = run_bounded(&mut cmd, Duration::from_secs(secs + 20))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    parse_h2load(&text).with_context(|| format!("h2load {url}: {}", text.trim()))
}

pub fn parse_h2load(text: &str) -> anyhow::Result<H2Run> {
    // "finished in 2.00s, 23912.50 req/s, 3.45MB/s"
    let fin = text
        .lines()
        .find(|l| l.starts_with("finished in"))
        .context("no `finished in` line")?;
    let rps: f64 = fin
        .split(',')
        .find(|p| p.contains("req/s"))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no req/s")?;
    // "requests: 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout"
    let req = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .context("no `requests:` line")?;
    let count = |what: &str| -> Option<u64> {
        req.split(',')
            .find(|p| p.trim_end().ends_with(what))
            .and_then(|p| p.split_whitespace().rev().nth(1))
            .and_then(|v| v.parse().ok())
    };
    let succeeded = count("succeeded").context("no succeeded count")?;
    let failed = count("failed").unwrap_or(0) + count("errored").unwrap_or(0);
    if succeeded == 0 {
        bail!("no request succeeded");
    }
    Ok(H2Run {
        succeeded,
        failed,
        rps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_summary() {
        let t = "Running 2s test @ http://x\n  1 threads and 50 connections\nBENCH requests=57000 duration_us=2000100 errors=0 status_errors=2 p50_us=1650 p99_us=2900 p999_us=4100\n";
        let r = parse_wrk(t).expect("parses");
        assert_eq!(r.requests, 57000);
        assert_eq!(r.errors, 2);
        assert!((r.rps() - 28498.5).abs() < 1.0);
        assert!(parse_wrk("garbage").is_err());
    }

    #[test]
    fn parses_h2load_summary() {
        let t = "finished in 2.00s, 23912.50 req/s, 3.45MB/s\nrequests: 47825 total, 47925 started, 47825 done, 47820 succeeded, 5 failed, 0 errored, 0 timeout\n";
        let r = parse_h2load(t).expect("parses");
        assert_eq!(r.succeeded, 47820);
        assert_eq!(r.failed, 5);
        assert!((r.rps - 23912.5).abs() < 0.01);
        assert!(parse_h2load("finished in").is_err());
    }
}
