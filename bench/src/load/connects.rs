//! The legitimate client of the XDP flood: a TCP listener in the node's
//! namespace (accepts and closes; the handshake is the kernel's) and a
//! client in the flooding namespace that opens connections at a fixed rate
//! and times each `connect()`. Connects only to the address it is given,
//! inside namespaces the caller made.
//!
//! Fed by: the XDP scenario ([`super::xdp`]). Emits: [`Connects`].

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::bpf::{enter_netns, in_netns};

/// A connect that has not completed after this long has failed: one SYN
/// retransmission (Linux's first is at 1 s) fits, a second does not.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

/// A listener on `addr` in a namespace, accepting until dropped.
pub struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    pub fn start(ns: &str, addr: SocketAddr) -> anyhow::Result<Listener> {
        let path = format!("/var/run/netns/{ns}");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let bound = (|| {
                enter_netns(&path)?;
                let l = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
                l.set_nonblocking(true)?;
                Ok(l)
            })();
            let l = match bound {
                Ok(l) => {
                    let _ = tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => drop(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        rx.recv().context("listener thread ended")??;
        Ok(Listener {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the client saw.
#[derive(Debug, Default, Clone)]
pub struct Connects {
    /// Time of each completed connect, milliseconds.
    pub ms: Vec<f64>,
    /// Connects that failed (refused, or not done within [`CONNECT_TIMEOUT`]).
    pub failed: u64,
    /// From the first scheduled connect to the end of the last one.
    pub secs: f64,
}

impl Connects {
    /// Completed connects per second.
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.ms.len() as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Nearest-rank percentile (`p` in 0..=1) of the completed connects.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        percentile(&self.ms, p)
    }
}

/// Nearest-rank percentile of `v` (`p` in 0..=1).
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = (p * s.len() as f64).ceil() as usize;
    Some(s[rank.clamp(1, s.len()) - 1])
}

/// From namespace `ns`, `count` connects to `to`, one every `1/rate` s
/// (sequential: a slow one delays the next), starting after `delay`;
/// each closed as soon as it is open.
pub fn run(
    ns: &str,
    to: SocketAddr,
    rate: f64,
    count: usize,
    delay: Duration,
) -> anyhow::Result<Connects> {
    in_netns(ns, move || {
        std::thread::sleep(delay);
        let start = Instant::now();
        let mut c = Connects::default();
        for i in 0..count {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let t = Instant::now();
            match TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) {
                Ok(s) => {
                    c.ms.push(t.elapsed().as_secs_f64() * 1e3);
                    drop(s);
                }
                Err(_) => c.failed += 1,
            }
        }
        c.secs = start.elapsed().as_secs_f64();
        Ok(c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn rate_counts_completed_connects_only() {
        let c = Connects {
            ms: vec![0.1; 90],
            failed: 10,
            secs: 2.0,
        };
        assert_eq!(c.rate(), 45.0);
        assert_eq!(Connects::default().rate(), 0.0);
    }
}
