//! Certificate hot swap: watch the certificate directory and swap a new
//! store into the SNI resolver when a file appears, changes or goes away.
//! A directory that no longer loads is logged and the old store keeps
//! serving. Existing TLS sessions keep the certificate they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::tls::{CertStore, Tls, provider};

type Fingerprint = Vec<(PathBuf, SystemTime, u64)>;

/// `*.pem` files of `dir` with modification time and size, sorted.
fn scan(dir: &Path) -> Fingerprint {
    let mut out: Fingerprint = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "pem"))
                .map(|p| {
                    let meta = std::fs::metadata(&p).ok();
                    let modified = meta
                        .as_ref()
                        .and_then(|m| m.modified().ok())
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    (p, modified, meta.map_or(0, |m| m.len()))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

pub async fn watch(tls: Arc<Tls>, dir: PathBuf, interval: Duration) {
    let provider = provider();
    let mut last_failed: Option<Fingerprint> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = scan(&dir);
        if now == tls.resolver.store.load().fingerprint || last_failed.as_ref() == Some(&now) {
            continue;
        }
        match CertStore::load(&dir, &provider) {
            Ok(store) => {
                tracing::info!(dir = %dir.display(), certificates = store.len(), "certificates reloaded");
                tls.swap_store(store);
                last_failed = None;
            }
            Err(e) => {
                tracing::error!("certificates not reloaded, previous ones keep serving: {e}");
                last_failed = Some(now);
            }
        }
    }
}
