//! The region benchmark's etcd: three Debian etcd 3.4 members on free
//! loopback ports, data in the run's scratch directory, pinned to the load
//! CPU (in real life etcd is elsewhere); and the two ways the harness
//! writes to it with the etcd-client crate: seeding the region in batched
//! transactions, and a paced stream of single puts (the change load).
//!
//! Owns: the member processes (SIGKILL by PID on [`Etcd::kill_all`] or
//! drop: their data is scratch), a current-thread tokio runtime for the
//! client. Must not: touch Debian's /var/lib/etcd or fixed ports.
//!
//! Seeding: `portier region import` writes every app in one transaction,
//! and etcd refuses a request over 1.5 MiB (`--max-request-bytes`) or a
//! transaction of more than 128 operations (`--max-txn-ops`): 10,000 apps
//! of 10 domains (~4 MB of JSON) go in transactions of [`SEED_BATCH`]
//! puts (~40 KB each), then one put of the apps guard key, which is what
//! `import` and the admin API also bump on every apps write.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use etcd_client::{Client, Txn, TxnOp};

use crate::load::proc::{Proc, free_port, pinned};

/// Apps per seeding transaction (etcd's default limit is 128 operations).
pub const SEED_BATCH: usize = 100;

pub const ETCD: &str = "/usr/bin/etcd";

pub struct Etcd {
    members: Vec<Proc>,
    pub endpoints: Vec<String>,
    pub rt: tokio::runtime::Runtime,
    pub client: Client,
}

impl Etcd {
    /// A new 3-member cluster in `dir`; returns once a client got an
    /// answer from it.
    pub fn start(dir: &Path, cpu: u32) -> anyhow::Result<Etcd> {
        let ports: Vec<(u16, u16)> = (0..3)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<anyhow::Result<_>>()?;
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let token = format!("portier-bench-{}", std::process::id());
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let c = format!("http://127.0.0.1:{client}");
            let p = format!("http://127.0.0.1:{peer}");
            let mut cmd = pinned(cpu, ETCD);
            cmd.args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.join(format!("m{i}")))
                .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
                .args([
                    "--listen-peer-urls",
                    &p,
                    "--initial-advertise-peer-urls",
                    &p,
                ])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                .args(["--logger", "zap", "--log-outputs", "stderr"]);
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("ETCD") {
                    cmd.env_remove(k);
                }
            }
            members.push(Proc::spawn(
                &format!("etcd m{i}"),
                cmd,
                &dir.join(format!("m{i}.log")),
            )?);
        }
        for m in &mut members {
            m.wait_for_log("serving client traffic", Duration::from_secs(30))?;
        }
        let endpoints: Vec<String> = ports
            .iter()
            .map(|(c, _)| format!("http://127.0.0.1:{c}"))
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let attempt = async {
                    let mut c = Client::connect(endpoints.clone(), None).await?;
                    c.put("portier-bench-probe", "1", None).await?;
                    Ok::<Client, etcd_client::Error>(c)
                };
                match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                    Ok(Ok(c)) => return Ok(c),
                    Ok(Err(e)) if Instant::now() > deadline => bail!("etcd: {e}"),
                    Err(_) if Instant::now() > deadline => bail!("etcd: no answer"),
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        })?;
        Ok(Etcd {
            members,
            endpoints,
            rt,
            client,
        })
    }

    /// Every member's PID (CPU accounting).
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(Proc::pid).collect()
    }

    /// `(key, value)` puts in transactions of [`SEED_BATCH`].
    pub fn seed(&self, puts: &[(String, Vec<u8>)]) -> anyhow::Result<i64> {
        let mut client = self.client.clone();
        self.rt.block_on(async {
            let mut revision = 0;
            for batch in puts.chunks(SEED_BATCH) {
                let ops: Vec<TxnOp> = batch
                    .iter()
                    .map(|(k, v)| TxnOp::put(k.as_str(), v.clone(), None))
                    .collect();
                let resp = client
                    .txn(Txn::new().and_then(ops))
                    .await
                    .context("seeding etcd")?;
                revision = resp.header().map_or(revision, |h| h.revision());
            }
            Ok(revision)
        })
    }

    /// The cluster's current revision.
    pub fn revision(&self) -> anyhow::Result<i64> {
        let mut client = self.client.clone();
        self.rt.block_on(async {
            let r = client.get("portier-bench-probe", None).await?;
            Ok(r.header().map_or(0, |h| h.revision()))
        })
    }

    /// Stop every member at once (SIGKILL: the data is scratch, and a
    /// SIGTERM'd leader waits seconds for a transferee).
    pub fn kill_all(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// What the change load did.
#[derive(Debug, Clone, Default)]
pub struct ChangeRun {
    pub target_per_sec: u32,
    /// Changes the window was to write (rate × seconds).
    pub planned: u64,
    pub secs: f64,
    pub done: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Revision of the last put acknowledged.
    pub last_revision: i64,
    /// Put latency, ms.
    pub put_p50_ms: f64,
    pub put_p99_ms: f64,
}

/// Put `changes(i)` for i = 0, 1, … at `per_sec` for `secs` seconds (one
/// put started every 1/per_sec, up to 512 in flight: a slow etcd shows up
/// as fewer done, not as a slower pace).
pub fn change_load(
    etcd: &Etcd,
    per_sec: u32,
    secs: f64,
    change: impl Fn(u64) -> (String, Vec<u8>),
) -> ChangeRun {
    let client = etcd.client.clone();
    etcd.rt.block_on(async move {
        let started = Instant::now();
        let period = Duration::from_secs_f64(1.0 / f64::from(per_sec.max(1)));
        let total = (secs * f64::from(per_sec)) as u64;
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(512));
        let mut tasks = tokio::task::JoinSet::new();
        let mut skipped = 0u64;
        for i in 0..total {
            let due = started + period.mul_f64(i as f64);
            tokio::time::sleep_until(due.into()).await;
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                skipped += 1;
                continue;
            };
            let (key, value) = change(i);
            let mut c = client.clone();
            tasks.spawn(async move {
                let t0 = Instant::now();
                let r = c.put(key, value, None).await;
                drop(permit);
                (
                    t0.elapsed(),
                    r.map(|r| r.header().map_or(0, |h| h.revision())),
                )
            });
        }
        let mut run = ChangeRun {
            target_per_sec: per_sec,
            planned: total,
            errors: skipped,
            ..ChangeRun::default()
        };
        if skipped > 0 {
            run.first_error = Some(format!("{skipped} puts skipped: 512 in flight"));
        }
        let mut lat = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok((took, Ok(rev))) => {
                    run.done += 1;
                    run.last_revision = run.last_revision.max(rev);
                    lat.push(took.as_secs_f64() * 1e3);
                }
                Ok((_, Err(e))) => {
                    run.errors += 1;
                    run.first_error.get_or_insert(e.to_string());
                }
                Err(e) => {
                    run.errors += 1;
                    run.first_error.get_or_insert(e.to_string());
                }
            }
        }
        run.secs = started.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        run.put_p50_ms = percentile(&lat, 50.0);
        run.put_p99_ms = percentile(&lat, 99.0);
        run
    })
}

/// The `p`th percentile of sorted values (nearest rank; 0 when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `etcd --version`'s first line (for the report).
pub fn version() -> String {
    Command::new(ETCD)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
