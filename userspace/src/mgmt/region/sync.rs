//! The read side of the region: connect (endpoint failover with backoff),
//! read the whole prefix, watch from the revision after it, and hand every
//! change to the node. Any break — an endpoint gone, the watch cancelled
//! because its revision was compacted, a revision that went backwards
//! because etcd was restored or wiped — ends in a fresh connection and a
//! full re-read compared with what the node has (`RegionState::diff`), so
//! nothing is missed and nothing stale stays.
//!
//! Changes are applied at most every 100 ms (a burst of a thousand writes
//! is one swap, not a thousand), and the last good state is saved to disk
//! at most once a second.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use etcd_client::{EventType, GetOptions, PutOptions, WatchOptions};

use super::state::{Change, NodeRecord, RegionState, Touched};
use super::{Region, Sink, lock, now};

const APPLY_EVERY: Duration = Duration::from_millis(100);
const SAVE_EVERY: Duration = Duration::from_secs(1);

pub async fn run(region: Region, sink: Sink) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match session(&region, &sink).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                let mut st = lock(&region.inner.status);
                if st.connected || st.last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(
                        "region: etcd: {e}; serving the last state, retrying in {backoff:?}"
                    );
                }
                st.connected = false;
                st.last_error = Some(e);
            }
        }
        *lock(&region.inner.client) = None;
        region.next_endpoint();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection: read everything, then follow the watch until it ends.
/// `Ok` when the watch asked for a re-read (compaction), `Err` on failure.
async fn session(region: &Region, sink: &Sink) -> Result<(), String> {
    let inner = &region.inner;
    let mut client = region.connect().await?;
    let root = inner.keys.root().to_string();
    let resp = client
        .get(root.clone(), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(|e| format!("reading {root}: {e}"))?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let mut fresh = RegionState::default();
    for kv in resp.kvs() {
        if let Ok(key) = kv.key_str() {
            fresh.apply(
                &inner.keys,
                Change::Put {
                    key,
                    value: kv.value(),
                    mod_revision: kv.mod_revision(),
                },
            );
        }
    }
    fresh.revision = revision;
    fresh.applied = revision;
    let (touched, went_back) = {
        let mut s = lock(&inner.state);
        let went_back = revision < s.revision;
        let touched = s.diff(&fresh);
        *s = fresh;
        (touched, went_back)
    };
    {
        let mut st = lock(&inner.status);
        if went_back {
            tracing::warn!(
                revision,
                "region: etcd's revision went backwards (restored or wiped): full resync"
            );
        }
        if st.last_sync.is_some() {
            st.resyncs += 1;
        }
        st.connected = true;
        st.last_error = None;
        st.last_sync = Some(now());
    }
    *lock(&inner.client) = Some(client.clone());
    tracing::info!(revision, "region: read the region from etcd");
    let mut installed = deliver(region, sink, touched, &BTreeMap::new(), true).await;
    region.write_cache();
    let mut registration = register(region, &mut client).await?;

    let mut stream = client
        .watch(
            root.clone(),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1)
                    .with_progress_notify(),
            ),
        )
        .await
        .map_err(|e| format!("watching {root}: {e}"))?;
    let mut pending = Touched::default();
    let mut last_apply = Instant::now();
    let mut last_save = Instant::now();
    let mut unsaved = false;
    let mut heartbeat = tokio::time::interval(Duration::from_secs(2));
    let result = loop {
        let wait = if pending.any() {
            APPLY_EVERY.saturating_sub(last_apply.elapsed())
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            msg = stream.message() => {
                let resp = match msg {
                    Ok(Some(r)) => r,
                    Ok(None) => break Err("the watch ended".to_string()),
                    Err(e) => break Err(format!("watch: {e}")),
                };
                if resp.canceled() {
                    if resp.compact_revision() > 0 {
                        tracing::warn!(compacted = resp.compact_revision(), "region: watch fell behind a compaction: full re-read");
                        break Ok(());
                    }
                    break Err(format!("watch cancelled: {}", resp.cancel_reason()));
                }
                let mut s = lock(&inner.state);
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let Ok(key) = kv.key_str() else { continue };
                    let change = match ev.event_type() {
                        EventType::Put => Change::Put { key, value: kv.value(), mod_revision: kv.mod_revision() },
                        EventType::Delete => Change::Delete { key },
                    };
                    let t = s.apply(&inner.keys, change);
                    pending.apps |= t.apps;
                    pending.certs |= t.certs;
                    pending.tokens |= t.tokens;
                    pending.acme |= t.acme;
                    pending.nodes |= t.nodes;
                }
                if let Some(h) = resp.header() {
                    s.revision = s.revision.max(h.revision());
                }
                if pending.apps || pending.certs || pending.tokens || pending.acme {
                    s.applied = s.revision;
                }
                drop(s);
                lock(&inner.status).last_sync = Some(now());
            }
            _ = tokio::time::sleep(wait), if pending.any() => {}
            _ = heartbeat.tick() => {
                registration.refresh(region).await;
            }
        }
        if pending.any() && last_apply.elapsed() >= APPLY_EVERY {
            let before = installed.clone();
            installed = deliver(region, sink, pending, &before, false).await;
            unsaved |= pending.apps;
            pending = Touched::default();
            last_apply = Instant::now();
        }
        if unsaved && last_save.elapsed() >= SAVE_EVERY {
            region.write_cache();
            unsaved = false;
            last_save = Instant::now();
        }
    };
    if unsaved {
        region.write_cache();
    }
    registration.stop().await;
    result
}

/// Hand what changed to the node: apps to the Manager (validated there;
/// refused = the previous state keeps serving), certificates to the
/// directory, tokens to the reactors. Returns the certificate records now
/// installed (to install only what changed next time).
async fn deliver(
    region: &Region,
    sink: &Sink,
    touched: Touched,
    installed: &BTreeMap<String, super::state::CertRecord>,
    first: bool,
) -> BTreeMap<String, super::state::CertRecord> {
    let inner = &region.inner;
    let started = Instant::now();
    let (apps, certs, challenges, revision) = {
        let s = lock(&inner.state);
        (
            (touched.apps || first).then(|| s.app_list()),
            s.certs.clone(),
            (touched.tokens || first).then(|| s.challenges()),
            s.revision,
        )
    };
    if let Some(apps) = apps {
        let mut m = sink.manager.lock().await;
        let result = m.region_apps(apps);
        drop(m);
        let mut st = lock(&inner.status);
        match result {
            Ok(()) => {
                tracing::info!(revision, "region: configuration applied");
                st.apply_error = None;
            }
            Err(e) => {
                tracing::error!(
                    revision,
                    "region: configuration NOT applied, the previous one keeps serving: {e:#}"
                );
                st.apply_error = Some(format!("{e:#}"));
            }
        }
        st.record_apply(started.elapsed());
    }
    if let Some(t) = challenges {
        sink.control.challenges.store(std::sync::Arc::new(t));
    }
    if !(touched.certs || first) {
        return installed.clone();
    }
    let mut changed = false;
    for (stem, record) in &certs {
        if installed.get(stem) == Some(record) {
            continue;
        }
        let on_disk = sink.cert_dir.join(format!("{stem}.pem"));
        let pem = match region.open_cert(stem, record) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(stem, "region: certificate not installed: {e}");
                continue;
            }
        };
        if std::fs::read(&on_disk).ok().as_deref() == Some(pem.as_bytes()) {
            continue;
        }
        match crate::tls::install::install(&sink.cert_dir, stem, pem.as_bytes()) {
            Ok(_) => {
                tracing::info!(stem, "region: certificate installed");
                changed = true;
            }
            Err(e) => tracing::error!(
                stem,
                "region: certificate not installed, the previous one keeps serving: {e}"
            ),
        }
    }
    // Removed from the region: removed here (only files the region put).
    for stem in installed.keys().filter(|s| !certs.contains_key(*s)) {
        let path = sink.cert_dir.join(format!("{stem}.pem"));
        if std::fs::remove_file(&path).is_ok() {
            tracing::info!(stem, "region: certificate removed");
            changed = true;
        }
    }
    if changed {
        sink.certs_changed.notify_one();
    }
    certs
}

/// This node's lease-bound registration, refreshed with the revision it
/// applied.
struct Registration {
    client: etcd_client::Client,
    lease: i64,
    keeper: etcd_client::LeaseKeeper,
    responses: etcd_client::LeaseKeepAliveStream,
    record: NodeRecord,
    last_revision: i64,
    last_ping: Instant,
}

async fn register(
    region: &Region,
    client: &mut etcd_client::Client,
) -> Result<Registration, String> {
    let inner = &region.inner;
    let ttl = inner.settings.lease_ttl_secs;
    let lease = client
        .lease_grant(ttl, None)
        .await
        .map_err(|e| format!("lease: {e}"))?
        .id();
    let (keeper, responses) = client
        .lease_keep_alive(lease)
        .await
        .map_err(|e| format!("lease keep-alive: {e}"))?;
    let revision = lock(&inner.state).revision;
    let record = NodeRecord {
        node: inner.node.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        revision,
        healthy: true,
        started: now(),
        updated: now(),
    };
    let mut r = Registration {
        client: client.clone(),
        lease,
        keeper,
        responses,
        record,
        last_revision: -1,
        last_ping: Instant::now(),
    };
    r.put(region).await?;
    Ok(r)
}

impl Registration {
    async fn put(&mut self, region: &Region) -> Result<(), String> {
        let inner = &region.inner;
        self.record.revision = lock(&inner.state).applied;
        self.record.healthy = lock(&inner.status).apply_error.is_none();
        self.record.updated = now();
        let json = serde_json::to_vec(&self.record).map_err(|e| e.to_string())?;
        self.client
            .put(
                inner.keys.node(&inner.node),
                json,
                Some(PutOptions::new().with_lease(self.lease)),
            )
            .await
            .map_err(|e| format!("registering the node: {e}"))?;
        self.last_revision = self.record.revision;
        Ok(())
    }

    /// Keep the lease alive; say which revision is applied when it moved.
    async fn refresh(&mut self, region: &Region) {
        if self.last_ping.elapsed()
            >= Duration::from_secs((region.inner.settings.lease_ttl_secs / 3).max(1) as u64)
        {
            if self.keeper.keep_alive().await.is_ok() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), self.responses.message()).await;
            }
            self.last_ping = Instant::now();
        }
        let healthy = lock(&region.inner.status).apply_error.is_none();
        if (healthy != self.record.healthy
            || lock(&region.inner.state).applied != self.last_revision)
            && let Err(e) = self.put(region).await
        {
            tracing::warn!("region: {e}");
        }
    }

    async fn stop(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.lease_revoke(self.lease))
            .await;
    }
}
