//! Structured access log: one JSON line per request, written by a thread of
//! its own so the reactors never block on a disk. Reactors hand over a
//! finished line through a bounded channel (`try_send`: when the writer
//! falls behind, lines are dropped and counted, never waited for). SIGUSR1
//! reopens the file (log rotation).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// Lines waiting for the writer before new ones are dropped.
const QUEUE: usize = 64 * 1024;

enum Msg {
    Line(String),
    Reopen,
}

/// Where the log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

pub struct AccessLog {
    tx: SyncSender<Msg>,
    pub dropped: AtomicU64,
}

impl AccessLog {
    /// Open the target and start the writer thread.
    pub fn start(target: Target) -> io::Result<AccessLog> {
        let out = open(&target)?;
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("portier-accesslog".into())
            .spawn(move || writer(target, out, rx))?;
        Ok(AccessLog {
            tx,
            dropped: AtomicU64::new(0),
        })
    }

    /// Hand a line over; never blocks.
    pub fn log(&self, line: String) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Reopen the file (after rotation).
    pub fn reopen(&self) {
        let _ = self.tx.try_send(Msg::Reopen);
    }
}

fn open(target: &Target) -> io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        Target::Stdout => Box::new(io::stdout()),
        Target::File(p) => {
            let f: File = OpenOptions::new().create(true).append(true).open(p)?;
            Box::new(f)
        }
    })
}

fn writer(target: Target, out: Box<dyn Write + Send>, rx: Receiver<Msg>) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    while let Ok(msg) = rx.recv() {
        let mut next = Some(msg);
        // Write everything queued, then flush once.
        while let Some(m) = next.take() {
            match m {
                Msg::Line(l) => {
                    let _ = out.write_all(l.as_bytes());
                    let _ = out.write_all(b"\n");
                }
                Msg::Reopen => {
                    let _ = out.flush();
                    match open(&target) {
                        Ok(w) => out = BufWriter::with_capacity(64 * 1024, w),
                        Err(e) => tracing::error!("access log not reopened: {e}"),
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
}

/// One request, as logged.
#[derive(serde::Serialize)]
pub struct Record<'a> {
    pub time: String,
    pub app: &'a str,
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// Response body bytes sent to the client (after compression).
    pub bytes: u64,
    /// Waiting for a backend (queue), ms.
    pub queue_ms: f64,
    /// Backend chosen → connection ready (0 for a pooled connection), ms.
    pub connect_ms: f64,
    /// Connection ready → response head, ms.
    pub backend_ms: f64,
    pub total_ms: f64,
    pub backend: Option<String>,
    pub request_id: &'a str,
    pub protocol: &'static str,
    pub tls: Option<&'static str>,
    pub client: String,
}

/// RFC 3339 UTC time with milliseconds (the `time` field); the formatting
/// lives in [`crate::time_fmt`].
pub use crate::time_fmt::rfc3339_millis as rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_file_and_reopen_follows_rotation() {
        let dir = std::env::temp_dir().join(format!("portier-al-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let log = AccessLog::start(Target::File(path.clone())).unwrap();
        log.log("{\"a\":1}".into());
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::fs::rename(&path, dir.join("access.log.1")).unwrap();
        log.reopen();
        log.log("{\"a\":2}".into());
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(
            std::fs::read_to_string(dir.join("access.log.1")).unwrap(),
            "{\"a\":1}\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":2}\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
