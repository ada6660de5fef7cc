//! Certificate hot swap: watch the certificate directory and swap a new
//! store into the SNI resolver when a file appears, changes or goes away.
//! A directory that no longer loads is logged and the old store keeps
//! serving. Existing TLS sessions keep the certificate they started with.
//! Only changed files are parsed again ([`CertStore::refresh`]); whoever
//! installs a certificate (ACME) can `kick` the watcher instead of waiting
//! for the next tick.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::tls::{PemFile, Tls, pem_files, provider};

pub async fn watch(tls: Arc<Tls>, dir: PathBuf, interval: Duration, kick: Arc<Notify>) {
    let provider = provider();
    let mut last_failed: Option<Vec<PemFile>> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = kick.notified() => {
                // A burst of installs (ACME, a region sync) is one scan,
                // not one per certificate.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        let now = pem_files(&dir).unwrap_or_default();
        let current = tls.resolver.store.load_full();
        if now == current.fingerprint || last_failed.as_ref() == Some(&now) {
            continue;
        }
        match current.refresh(&dir, &provider) {
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
