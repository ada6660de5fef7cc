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
pub const WRK_LUA: &str = r#"-- portier-bench: paced requests and a parseable summary
local d = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0
if d > 0 then
  function delay() return d end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d errors=%d status_errors=%d p50_us=%d p99_us=%d p999_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
"#;

/// Requests of one load that did not succeed, by cause (only nonzero
/// causes are kept). A load with any is not a result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failed {
    pub causes: Vec<(&'static str, u64)>,
}

impl Failed {
    pub fn none() -> Failed {
        Failed::default()
    }

    /// One cause (`n` = 0 adds nothing).
    pub fn of(cause: &'static str, n: u64) -> Failed {
        let mut f = Failed::default();
        f.add(cause, n);
        f
    }

    pub fn add(&mut self, cause: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        match self.causes.iter_mut().find(|(c, _)| *c == cause) {
            Some((_, m)) => *m += n,
            None => self.causes.push((cause, n)),
        }
    }

    pub fn total(&self) -> u64 {
        self.causes.iter().map(|(_, n)| n).sum()
    }

    /// "non-2xx/3xx 12, socket read 3" (empty when none).
    pub fn describe(&self) -> String {
        self.causes
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What one wrk run measured.
#[derive(Debug, Clone)]
pub struct WrkRun {
    /// Responses received (wrk counts non-2xx/3xx responses here too).
    pub requests: u64,
    pub seconds: f64,
    /// Non-2xx/3xx responses and socket errors (connect, read, write, timeout).
    pub failed: Failed,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// The slowest response (absent from outputs of older harness scripts).
    pub max_us: Option<f64>,
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

/// The number after `prefix` on the first line that starts with it
/// (leading spaces ignored): wrk's "  Non-2xx or 3xx responses: 12".
fn count_after(text: &str, prefix: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.trim_end_matches(',').parse().ok())
}

/// wrk's "  Socket errors: connect 0, read 9243, write 0, timeout 0".
fn wrk_socket_errors(text: &str) -> Vec<(&'static str, u64)> {
    let Some(rest) = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Socket errors:"))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for part in rest.split(',') {
        let mut it = part.split_whitespace();
        let (Some(kind), Some(n)) = (it.next(), it.next().and_then(|n| n.parse::<u64>().ok()))
        else {
            continue;
        };
        let cause = match kind {
            "connect" => "socket connect",
            "read" => "socket read",
            "write" => "socket write",
            "timeout" => "socket timeout",
            _ => "socket other",
        };
        out.push((cause, n));
    }
    out
}

/// wrk's output: the harness's `BENCH` summary line (from the Lua `done`
/// hook) for counts and percentiles, and wrk's own "Non-2xx or 3xx
/// responses" and "Socket errors" lines for the failures (the larger of
/// the two readings of each counter is kept). A run that completed no
/// request still parses (its failures say why); no summary line is an
/// error.
pub fn parse_wrk(text: &str) -> anyhow::Result<WrkRun> {
    let line = text
        .lines()
        .find(|l| l.starts_with("BENCH "))
        .context("no summary line in wrk output")?;
    let get = |k: &str| kv(line, k).with_context(|| format!("no {k} in {line:?}"));
    let mut failed = Failed::none();
    let status = (get("status_errors")? as u64)
        .max(count_after(text, "Non-2xx or 3xx responses:").unwrap_or(0));
    failed.add("non-2xx/3xx", status);
    let socket = wrk_socket_errors(text);
    let listed: u64 = socket.iter().map(|(_, n)| n).sum();
    for (cause, n) in socket {
        failed.add(cause, n);
    }
    // The Lua summary's sum of the socket errors, if wrk's own line was
    // missing or lower.
    failed.add(
        "socket other",
        (get("errors")? as u64).saturating_sub(listed),
    );
    let run = WrkRun {
        requests: get("requests")? as u64,
        seconds: get("duration_us")? / 1e6,
        failed,
        p50_us: get("p50_us")?,
        p99_us: get("p99_us")?,
        p999_us: get("p999_us")?,
        max_us: kv(line, "max_us"),
    };
    if run.seconds <= 0.0 {
        bail!("wrk ran for no time: {line:?}");
    }
    Ok(run)
}

/// What one h2load run measured.
#[derive(Debug, Clone)]
pub struct H2Run {
    /// Requests h2load counted (`-n` mode: asked for; `-D` mode: done).
    pub total: u64,
    pub succeeded: u64,
    /// h2load's `failed`: `errored` plus non-2xx/3xx responses.
    pub failed: u64,
    /// Network-level failures (resets, RST_STREAM, GOAWAY), `timeout` included.
    pub errored: u64,
    pub timeout: u64,
    /// Responses by class: 2xx, 3xx, 4xx, 5xx.
    pub status: [u64; 4],
    pub rps: f64,
}

impl H2Run {
    /// Every request that did not succeed: h2load's `failed` (non-2xx/3xx
    /// responses and errored streams, timeouts included), plus requests of
    /// a fixed-count run that never completed.
    pub fn failures(&self) -> Failed {
        let mut f = Failed::none();
        f.add("non-2xx/3xx", self.failed.saturating_sub(self.errored));
        f.add("errored", self.errored.saturating_sub(self.timeout));
        f.add("timeout", self.timeout);
        f.add(
            "not completed",
            self.total
                .saturating_sub(self.succeeded)
                .saturating_sub(self.failed),
        );
        f
    }
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

/// h2load's summary: "finished in 1.00s, 32700.00 req/s, 5.86MB/s",
/// "requests: 4025 total, 4036 started, 4025 done, 4000 succeeded, 25
/// failed, 25 errored, 0 timeout", "status codes: 4000 2xx, 0 3xx, 0 4xx,
/// 0 5xx". A run where nothing succeeded still parses (its failures say
/// why); missing lines are an error.
pub fn parse_h2load(text: &str) -> anyhow::Result<H2Run> {
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
    let counts = |prefix: &str| -> anyhow::Result<Vec<(String, u64)>> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .with_context(|| format!("no `{prefix}` line"))?;
        Ok(line
            .split(',')
            .filter_map(|p| {
                let mut it = p.split_whitespace();
                let n = it.next()?.parse().ok()?;
                Some((it.next()?.to_string(), n))
            })
            .collect())
    };
    let req = counts("requests:")?;
    let get = |what: &str| -> anyhow::Result<u64> {
        req.iter()
            .find(|(k, _)| k == what)
            .map(|(_, n)| *n)
            .with_context(|| format!("no `{what}` count in the requests line"))
    };
    let status = counts("status codes:").unwrap_or_default();
    let class = |c: &str| status.iter().find(|(k, _)| k == c).map_or(0, |(_, n)| *n);
    Ok(H2Run {
        total: get("total")?,
        succeeded: get("succeeded")?,
        failed: get("failed")?,
        errored: get("errored")?,
        timeout: get("timeout")?,
        status: [class("2xx"), class("3xx"), class("4xx"), class("5xx")],
        rps,
    })
}

#[cfg(test)]
mod tests {
    //! Real outputs in `testdata/`: wrk 4.1.0 (Debian 12) with the
    //! harness's Lua script and h2load 1.52.0 against nginx 1.22 on
    //! loopback: `/64` (200), `/nope` (404), a location answering `return
    //! 444` (connection closed without a response), a closed port, and
    //! an HTTP/2 server closing each connection after 1000 requests
    //! (nginx's default `keepalive_requests`) with streams in flight.
    use super::*;

    const WRK_OK: &str = include_str!("testdata/wrk_ok.txt");
    const WRK_NON2XX: &str = include_str!("testdata/wrk_non2xx.txt");
    const WRK_SOCKET: &str = include_str!("testdata/wrk_socket_errors.txt");
    const WRK_CLOSE: &str = include_str!("testdata/wrk_https_close.txt");
    const WRK_REFUSED: &str = include_str!("testdata/wrk_refused.txt");
    const H2_OK: &str = include_str!("testdata/h2load_ok.txt");
    const H2_DURATION: &str = include_str!("testdata/h2load_duration_ok.txt");
    const H2_404: &str = include_str!("testdata/h2load_404.txt");
    const H2_GOAWAY: &str = include_str!("testdata/h2load_goaway_errored.txt");
    const H2_REFUSED: &str = include_str!("testdata/h2load_refused.txt");

    #[test]
    fn wrk_clean_run_has_no_failures() {
        let r = parse_wrk(WRK_OK).expect("parses");
        assert_eq!(r.requests, 46302);
        assert_eq!(r.failed, Failed::none());
        assert_eq!(r.failed.total(), 0);
        assert!((r.rps() - 42104.4).abs() < 1.0, "{}", r.rps());
        assert_eq!((r.p50_us, r.p99_us, r.p999_us), (74.0, 4427.0, 12241.0));
        assert_eq!(r.max_us, None);
        let t = "BENCH requests=10 duration_us=1000000 errors=0 status_errors=0 p50_us=1 p99_us=2 p999_us=3 max_us=40\n";
        assert_eq!(parse_wrk(t).expect("parses").max_us, Some(40.0));
        // Connection: close over TLS (the handshake load): wrk reconnects
        // after each response, no error.
        let r = parse_wrk(WRK_CLOSE).expect("parses");
        assert_eq!(r.requests, 1984);
        assert_eq!(r.failed.total(), 0);
    }

    #[test]
    fn wrk_non_2xx_responses_are_failures() {
        let r = parse_wrk(WRK_NON2XX).expect("parses");
        assert_eq!(r.requests, 37352);
        assert_eq!(r.failed.causes, vec![("non-2xx/3xx", 37352)]);
        assert_eq!(r.failed.describe(), "non-2xx/3xx 37352");
    }

    #[test]
    fn wrk_socket_errors_are_failures() {
        let r = parse_wrk(WRK_SOCKET).expect("parses");
        assert_eq!(r.requests, 0);
        assert_eq!(r.failed.causes, vec![("socket read", 13560)]);
        // wrk's own line alone (no BENCH counts beyond it) and every kind.
        let t = "  Socket errors: connect 1, read 2, write 3, timeout 4\n\
                 BENCH requests=10 duration_us=1000000 errors=10 status_errors=0 p50_us=1 p99_us=2 p999_us=3\n";
        let r = parse_wrk(t).expect("parses");
        assert_eq!(
            r.failed.causes,
            vec![
                ("socket connect", 1),
                ("socket read", 2),
                ("socket write", 3),
                ("socket timeout", 4)
            ]
        );
        // The Lua summary counts more than wrk's line shows: the rest is kept.
        let t = "BENCH requests=10 duration_us=1000000 errors=5 status_errors=2 p50_us=1 p99_us=2 p999_us=3\n";
        let r = parse_wrk(t).expect("parses");
        assert_eq!(r.failed.total(), 7);
    }

    #[test]
    fn wrk_that_could_not_connect_is_an_error() {
        // wrk exits 1 with only this line (stderr) when no connection opens.
        assert!(WRK_REFUSED.contains("unable to connect"));
        assert!(parse_wrk(WRK_REFUSED).is_err());
        assert!(parse_wrk("garbage").is_err());
    }

    #[test]
    fn h2load_clean_runs_have_no_failures() {
        let r = parse_h2load(H2_OK).expect("parses");
        assert_eq!((r.total, r.succeeded, r.failed), (4000, 4000, 0));
        assert_eq!(r.status, [4000, 0, 0, 0]);
        assert!((r.rps - 53755.49).abs() < 0.01, "{}", r.rps);
        assert_eq!(r.failures(), Failed::none());
        // Timing-based (-D): streams still in flight when the time is up are
        // neither done nor failed (started > done), so not failures.
        let r = parse_h2load(H2_DURATION).expect("parses");
        assert_eq!((r.total, r.succeeded, r.failed), (32700, 32700, 0));
        assert_eq!(r.failures().total(), 0);
    }

    #[test]
    fn h2load_http_failures_and_errored_streams_count() {
        let r = parse_h2load(H2_404).expect("parses");
        assert_eq!((r.succeeded, r.failed, r.errored), (0, 400, 0));
        assert_eq!(r.status, [0, 0, 400, 0]);
        assert_eq!(r.failures().causes, vec![("non-2xx/3xx", 400)]);
        // Streams in flight when the server closed the connection.
        let r = parse_h2load(H2_GOAWAY).expect("parses");
        assert_eq!(
            (r.total, r.succeeded, r.failed, r.errored),
            (4025, 4000, 25, 25)
        );
        assert_eq!(r.failures().causes, vec![("errored", 25)]);
        assert_eq!(r.failures().total(), 25);
        // Nothing listening: the one request asked for failed (errored).
        let r = parse_h2load(H2_REFUSED).expect("parses");
        assert_eq!((r.total, r.succeeded, r.failed, r.errored), (1, 0, 1, 1));
        assert_eq!(r.failures().total(), 1);
        // A fixed-count run whose requests neither succeeded nor failed.
        let t = "finished in 1.00s, 0.00 req/s, 0B/s\nrequests: 5 total, 5 started, 2 done, 2 succeeded, 0 failed, 0 errored, 0 timeout\n";
        assert_eq!(
            parse_h2load(t).expect("parses").failures().causes,
            vec![("not completed", 3)]
        );
        assert!(parse_h2load("finished in").is_err());
    }
}
