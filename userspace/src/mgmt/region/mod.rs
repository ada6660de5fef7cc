//! Region mode (SPEC §6, `[region]`): this node's apps, domains and
//! certificates come from etcd, shared with the other front nodes; a
//! single node without `[region]` never gets here.
//!
//! Owns: the connection to etcd (endpoint failover with backoff), the
//! initial read of the prefix and one watch from that revision, applied
//! to the node like a reload ([`Sink`]); compaction, a revision that went
//! backwards (etcd restored or wiped) and reconnects answered with a full
//! re-read and a diff; the last good state on local disk so a node
//! restarted during an etcd outage still serves; the node's lease-bound
//! registration; and the writes: apps in one transaction conditioned on
//! the revision they were validated against, certificates with their key
//! sealed, ACME's shared state (account, per-name state, HTTP-01 tokens,
//! the ordering lock).
//! Must not: reach a reactor (changes go through the Manager, the
//! certificate directory and `Control::challenges`), or drop the last good
//! state because etcd is unreachable or says something that does not
//! validate.
//!
//! ```text
//!  etcd ─► initial read (rev R) ─► RegionState ─► Sink: Manager::region_apps (swap like a reload),
//!     └─► watch from R+1 ─────────►     │              cert_dir (install / remove), challenges
//!                                       └─► cache_dir/state.json (last good state)
//!  admin write ─► validate against the whole region ─► txn [meta/apps mod_revision == seen] ─► etcd
//! ```

pub mod keys;
pub mod seal;
pub mod state;
mod sync;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use crate::config::{AppSettings, RegionSettings};
use keys::Keys;
use seal::RegionKey;
use state::{CertRecord, RegionState, TokenRecord};

/// Where region changes land on this node.
pub struct Sink {
    pub manager: Arc<tokio::sync::Mutex<crate::mgmt::manager::Manager>>,
    pub control: Arc<crate::control::Control>,
    pub cert_dir: PathBuf,
    pub certs_changed: Arc<tokio::sync::Notify>,
}

/// What operators see (admin API, metrics).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub node: String,
    pub connected: bool,
    /// The etcd revision of the last change this node applied (node
    /// registrations aside).
    pub revision: i64,
    /// Unix seconds of the last full read or applied watch event.
    pub last_sync: Option<i64>,
    pub last_error: Option<String>,
    pub resyncs: u64,
    /// The etcd member this node talks to.
    pub endpoint: Option<String>,
    /// Why the region's latest apps were not applied (the previous ones
    /// serve): the node reports itself unhealthy meanwhile.
    pub apply_error: Option<String>,
    /// Apps applied to the node (initial read and watch batches that
    /// touched apps): how many, their total and the last one's duration
    /// (copy of the state, validation, snapshot rebuild and swap).
    pub applies: u64,
    pub apply_seconds_sum: f64,
    pub last_apply_seconds: f64,
}

impl Status {
    /// One apply of the region's apps took `took`.
    fn record_apply(&mut self, took: Duration) {
        self.applies += 1;
        self.apply_seconds_sum += took.as_secs_f64();
        self.last_apply_seconds = took.as_secs_f64();
    }
}

/// The last good state on local disk.
#[derive(Serialize, Deserialize)]
struct Cache {
    revision: i64,
    apps: Vec<AppSettings>,
}

/// A handle on the region (cheap to clone).
#[derive(Clone)]
pub struct Region {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RegionSettings,
    keys: Keys,
    key: RegionKey,
    node: String,
    client: Mutex<Option<Client>>,
    /// Index (mod the list) of the etcd member to talk to.
    endpoint: std::sync::atomic::AtomicUsize,
    state: Mutex<RegionState>,
    status: Mutex<Status>,
    /// The sync task (`start`), until `stop`.
    sync: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the region changed since it was read (another write won): try again")]
    Conflict,
    #[error("etcd is not reachable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Refused(String),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Region {
    /// Read the region key and the last good state; nothing touches the
    /// network yet (`start` does).
    pub fn open(settings: &RegionSettings) -> anyhow::Result<Region> {
        let key = RegionKey::load(&settings.key_file).map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::fsutil::private_dir(&settings.cache_dir).map_err(|e| {
            anyhow::anyhow!("region.cache_dir {}: {e}", settings.cache_dir.display())
        })?;
        let node = settings.node_name();
        let region = Region {
            inner: Arc::new(Inner {
                keys: Keys::new(&settings.prefix),
                settings: settings.clone(),
                key,
                client: Mutex::new(None),
                endpoint: std::sync::atomic::AtomicUsize::new(0),
                state: Mutex::new(RegionState::default()),
                status: Mutex::new(Status {
                    node: node.clone(),
                    ..Status::default()
                }),
                sync: Mutex::new(None),
                node,
            }),
        };
        if let Some(cache) = region.read_cache() {
            let mut s = lock(&region.inner.state);
            s.revision = cache.revision;
            s.apps = cache
                .apps
                .into_iter()
                .map(|a| (a.name.clone(), a))
                .collect();
        }
        Ok(region)
    }

    /// A handle for one-shot commands (import, export): no region key, no
    /// cache (apps are not secret; nothing is sealed or opened).
    fn open_for_cli(settings: &RegionSettings) -> Region {
        let key = RegionKey::from_bytes(&[0u8; 32]).expect("32 bytes");
        Region {
            inner: Arc::new(Inner {
                keys: Keys::new(&settings.prefix),
                settings: settings.clone(),
                key,
                client: Mutex::new(None),
                endpoint: std::sync::atomic::AtomicUsize::new(0),
                state: Mutex::new(RegionState::default()),
                status: Mutex::new(Status::default()),
                sync: Mutex::new(None),
                node: settings.node_name(),
            }),
        }
    }

    /// The apps of the last good state (before etcd answers).
    pub fn apps(&self) -> Vec<AppSettings> {
        lock(&self.inner.state).app_list()
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    pub fn status(&self) -> Status {
        let mut s = lock(&self.inner.status).clone();
        s.revision = lock(&self.inner.state).applied;
        s
    }

    /// Registered nodes, by name.
    pub fn nodes(&self) -> Vec<state::NodeRecord> {
        lock(&self.inner.state).nodes.values().cloned().collect()
    }

    /// Values in etcd this node refused, by key.
    pub fn refused(&self) -> Vec<(String, String)> {
        lock(&self.inner.state)
            .refused
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Connect, read, watch, register: runs until the process ends.
    pub fn start(&self, sink: Sink) {
        let task = tokio::spawn(sync::run(self.clone(), sink));
        *lock(&self.inner.sync) = Some(task);
    }

    /// Stop reading, watching and registering (a binary upgrade handed the
    /// node to the new process, which registers it under its own lease).
    pub fn stop(&self) {
        if let Some(task) = lock(&self.inner.sync).take() {
            task.abort();
        }
    }

    fn cache_file(&self) -> PathBuf {
        self.inner.settings.cache_dir.join("state.json")
    }

    fn read_cache(&self) -> Option<Cache> {
        let bytes = std::fs::read(self.cache_file()).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(file = %self.cache_file().display(), "region: last good state unreadable: {e}");
                None
            }
        }
    }

    fn write_cache(&self) {
        let cache = {
            let s = lock(&self.inner.state);
            Cache {
                revision: s.revision,
                apps: s.app_list(),
            }
        };
        let result = serde_json::to_vec(&cache)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                crate::fsutil::write_private(&self.cache_file(), &b).map_err(|e| e.to_string())
            });
        if let Err(e) = result {
            tracing::error!("region: last good state not saved: {e}");
        }
    }

    async fn connect(&self) -> Result<Client, String> {
        let s = &self.inner.settings;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(3))
            .with_keep_alive_while_idle(true);
        if let (Some(user), Some(file)) = (&s.user, &s.password_file) {
            let password = crate::fsutil::read_secret(file, "region.password_file")?;
            options = options.with_user(user.clone(), password);
        }
        if s.ca_file.is_some() || s.cert_file.is_some() {
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &s.ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| format!("region.ca_file {}: {e}", ca.display()))?;
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(pem));
            }
            if let (Some(cert), Some(key)) = (&s.cert_file, &s.cert_key_file) {
                let c = std::fs::read(cert).map_err(|e| format!("region.cert_file: {e}"))?;
                let k = std::fs::read(key).map_err(|e| format!("region.cert_key_file: {e}"))?;
                tls = tls.identity(etcd_client::Identity::from_pem(c, k));
            }
            options = options.with_tls(tls);
        }
        // One member at a time, rotating on failure: a client balanced
        // over every endpoint keeps sending a share of its requests (and
        // its watch) to a member that is gone.
        let options = options.with_require_leader(true);
        let n = s.endpoints.len();
        let mut errors = Vec::new();
        for _ in 0..n {
            let i = self
                .inner
                .endpoint
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                % n;
            let endpoint = &s.endpoints[i];
            let attempt = async {
                let mut client = Client::connect([endpoint.as_str()], Some(options.clone()))
                    .await
                    .map_err(|e| e.to_string())?;
                client.status().await.map_err(|e| e.to_string())?;
                Ok::<Client, String>(client)
            };
            match tokio::time::timeout(Duration::from_secs(3), attempt).await {
                Ok(Ok(client)) => {
                    // Stay on this member until it fails.
                    self.inner
                        .endpoint
                        .store(i, std::sync::atomic::Ordering::Relaxed);
                    lock(&self.inner.status).endpoint = Some(endpoint.clone());
                    return Ok(client);
                }
                Ok(Err(e)) => errors.push(format!("{endpoint}: {e}")),
                Err(_) => errors.push(format!("{endpoint}: no answer within 3 s")),
            }
        }
        Err(errors.join("; "))
    }

    /// The session on the current member failed: the next connect starts
    /// with the next member.
    fn next_endpoint(&self) {
        self.inner
            .endpoint
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn client(&self) -> Result<Client, WriteError> {
        lock(&self.inner.client).clone().ok_or_else(|| {
            WriteError::Unavailable(
                lock(&self.inner.status)
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "not connected".into()),
            )
        })
    }

    /// The apps guard revision the current apps were read at.
    pub fn apps_seen(&self) -> (i64, Vec<AppSettings>) {
        let s = lock(&self.inner.state);
        (s.apps_guard, s.app_list())
    }

    /// Replace the region's apps with `next` (validated by the caller
    /// against `seen`'s state), if nobody wrote apps since `seen_guard`.
    pub async fn commit_apps(
        &self,
        seen_guard: i64,
        before: &[AppSettings],
        next: &[AppSettings],
    ) -> Result<i64, WriteError> {
        let keys = &self.inner.keys;
        let mut ops = Vec::new();
        // By name (unique in a validated set): linear, not a scan of
        // `before` for each app of `next`.
        let was: std::collections::HashMap<&str, &AppSettings> =
            before.iter().map(|a| (a.name.as_str(), a)).collect();
        let kept: std::collections::HashSet<&str> = next.iter().map(|a| a.name.as_str()).collect();
        for app in next {
            if was.get(app.name.as_str()) == Some(&app) {
                continue;
            }
            let json = serde_json::to_vec(app).map_err(|e| WriteError::Refused(e.to_string()))?;
            ops.push(TxnOp::put(keys.app(&app.name), json, None));
        }
        for old in before {
            if !kept.contains(old.name.as_str()) {
                ops.push(TxnOp::delete(keys.app(&old.name), None));
            }
        }
        if ops.is_empty() {
            return Ok(lock(&self.inner.state).revision);
        }
        let txn = apps_txn(keys, seen_guard, ops, &self.inner.node);
        let mut client = self.client()?;
        let resp = client
            .txn(txn)
            .await
            .map_err(|e| WriteError::Unavailable(e.to_string()))?;
        if !resp.succeeded() {
            return Err(WriteError::Conflict);
        }
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    /// Put a certificate (chain + key PEM) for every node: the key sealed.
    pub async fn put_cert(&self, stem: &str, pem: &[u8], not_after: i64) -> Result<(), WriteError> {
        let record = self.seal_cert(stem, pem, not_after)?;
        let json = serde_json::to_vec(&record).map_err(|e| WriteError::Refused(e.to_string()))?;
        let mut client = self.client()?;
        client
            .put(self.inner.keys.cert(stem), json, None)
            .await
            .map_err(|e| WriteError::Unavailable(e.to_string()))?;
        Ok(())
    }

    fn seal_cert(&self, stem: &str, pem: &[u8], not_after: i64) -> Result<CertRecord, WriteError> {
        let text =
            std::str::from_utf8(pem).map_err(|_| WriteError::Refused("PEM is not UTF-8".into()))?;
        let (chain, key) = split_pem(text);
        if key.is_empty() {
            return Err(WriteError::Refused("no private key in the PEM".into()));
        }
        let sealed_key = self
            .inner
            .key
            .seal(&self.inner.keys.cert(stem), key.as_bytes())
            .map_err(WriteError::Refused)?;
        Ok(CertRecord {
            chain,
            sealed_key,
            not_after,
        })
    }

    /// A certificate record back into one PEM (chain + key).
    fn open_cert(&self, stem: &str, record: &CertRecord) -> Result<String, String> {
        let key = self
            .inner
            .key
            .open(&self.inner.keys.cert(stem), &record.sealed_key)?;
        let key = String::from_utf8(key).map_err(|_| "sealed key is not UTF-8".to_string())?;
        Ok(format!("{}\n{}", record.chain.trim_end(), key))
    }

    /// Publish an HTTP-01 token for every node, bound to a lease so it
    /// disappears if this node dies.
    pub async fn put_token(&self, token: &str, record: &TokenRecord) -> Result<(), WriteError> {
        let mut client = self.client()?;
        let lease = client
            .lease_grant(600, None)
            .await
            .map_err(|e| WriteError::Unavailable(e.to_string()))?
            .id();
        let json = serde_json::to_vec(record).map_err(|e| WriteError::Refused(e.to_string()))?;
        client
            .put(
                self.inner.keys.acme_token(token),
                json,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map_err(|e| WriteError::Unavailable(e.to_string()))?;
        Ok(())
    }

    pub async fn delete_token(&self, token: &str) {
        if let Ok(mut c) = self.client() {
            let _ = c.delete(self.inner.keys.acme_token(token), None).await;
        }
    }

    /// Take the lock that says this node orders `name`, on a lease kept
    /// alive while the guard lives; `None` if another node holds it.
    pub async fn try_lock(&self, name: &str) -> Result<Option<LockGuard>, WriteError> {
        let mut client = self.client()?;
        let ttl = self.inner.settings.lease_ttl_secs;
        let lease = client
            .lease_grant(ttl, None)
            .await
            .map_err(|e| WriteError::Unavailable(e.to_string()))?
            .id();
        let key = self.inner.keys.lock(name);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                self.inner.node.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let resp = client
            .txn(txn)
            .await
            .map_err(|e| WriteError::Unavailable(e.to_string()))?;
        if !resp.succeeded() {
            let _ = client.lease_revoke(lease).await;
            return Ok(None);
        }
        let (mut keeper, mut responses) = client
            .lease_keep_alive(lease)
            .await
            .map_err(|e| WriteError::Unavailable(e.to_string()))?;
        let period = Duration::from_secs((ttl / 3).max(1) as u64);
        let keepalive = tokio::spawn(async move {
            loop {
                if keeper.keep_alive().await.is_err() {
                    break;
                }
                if !matches!(responses.message().await, Ok(Some(_))) {
                    break;
                }
                tokio::time::sleep(period).await;
            }
        });
        Ok(Some(LockGuard {
            client,
            lease,
            keepalive,
        }))
    }

    /// The sealed ACME account of a directory (`tag`), opened.
    pub fn acme_account(&self, tag: &str) -> Option<Result<Vec<u8>, String>> {
        let sealed = lock(&self.inner.state).acme_accounts.get(tag).cloned()?;
        Some(
            self.inner
                .key
                .open(&self.inner.keys.acme_account(tag), &sealed),
        )
    }

    /// Store the ACME account for every node, unless one is already there
    /// (then that one wins: every node uses the same account).
    pub async fn put_acme_account(
        &self,
        tag: &str,
        credentials: &[u8],
    ) -> Result<bool, WriteError> {
        let key = self.inner.keys.acme_account(tag);
        let sealed = self
            .inner
            .key
            .seal(&key, credentials)
            .map_err(WriteError::Refused)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, sealed, None)]);
        let mut client = self.client()?;
        let resp = client
            .txn(txn)
            .await
            .map_err(|e| WriteError::Unavailable(e.to_string()))?;
        Ok(resp.succeeded())
    }

    /// The chain (no key) of the region's certificate for a file stem.
    pub fn cert_chain(&self, stem: &str) -> Option<String> {
        lock(&self.inner.state)
            .certs
            .get(stem)
            .map(|c| c.chain.clone())
    }

    /// Another node's view of a name (JSON of its ACME record), if any.
    pub fn acme_name(&self, name: &str) -> Option<String> {
        lock(&self.inner.state).acme_names.get(name).cloned()
    }

    pub async fn put_acme_name(&self, name: &str, json: Vec<u8>) -> Result<(), WriteError> {
        let mut client = self.client()?;
        client
            .put(self.inner.keys.acme_name(name), json, None)
            .await
            .map_err(|e| WriteError::Unavailable(e.to_string()))?;
        Ok(())
    }
}

/// One apps write: `ops`, and the guard touched, only if nobody wrote
/// apps since the guard's revision `seen` (0: never written).
fn apps_txn(keys: &Keys, seen: i64, mut ops: Vec<TxnOp>, by: &str) -> Txn {
    ops.push(TxnOp::put(
        keys.apps_guard(),
        format!("{by} {}", now()),
        None,
    ));
    Txn::new()
        .when([Compare::mod_revision(
            keys.apps_guard(),
            CompareOp::Equal,
            seen,
        )])
        .and_then(ops)
}

/// `portier region import`: make the region's apps exactly `apps`
/// (validated by the caller), in one transaction. Returns the revision.
pub async fn import(settings: &RegionSettings, apps: &[AppSettings]) -> anyhow::Result<i64> {
    let region = Region::open_for_cli(settings);
    let mut client = region.connect().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let keys = &region.inner.keys;
    let resp = client
        .get(
            keys.apps(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await?;
    let guard = client.get(keys.apps_guard(), None).await?;
    let guard_rev = guard.kvs().first().map_or(0, |kv| kv.mod_revision());
    let mut ops = Vec::new();
    for kv in resp.kvs() {
        let key = kv.key_str()?.to_string();
        if !apps.iter().any(|a| keys.app(&a.name) == key) {
            ops.push(TxnOp::delete(key, None));
        }
    }
    for app in apps {
        ops.push(TxnOp::put(
            keys.app(&app.name),
            serde_json::to_vec(app)?,
            None,
        ));
    }
    let txn = apps_txn(keys, guard_rev, ops, "import");
    let resp = client.txn(txn).await?;
    if !resp.succeeded() {
        anyhow::bail!("the region's apps changed during the import; run it again");
    }
    Ok(resp.header().map_or(0, |h| h.revision()))
}

/// `portier region export`: the region's apps as read now.
pub async fn export(settings: &RegionSettings) -> anyhow::Result<Vec<AppSettings>> {
    let region = Region::open_for_cli(settings);
    let mut client = region.connect().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let resp = client
        .get(
            region.inner.keys.apps(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await?;
    let mut apps = Vec::new();
    for kv in resp.kvs() {
        let app: AppSettings = serde_json::from_slice(kv.value())
            .map_err(|e| anyhow::anyhow!("{}: {e}", kv.key_str().unwrap_or("?")))?;
        apps.push(app);
    }
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(apps)
}

/// Held while this node orders a name; dropping it ends the keep-alive
/// and `release` revokes the lease (the lock key goes with it).
pub struct LockGuard {
    client: Client,
    lease: i64,
    keepalive: tokio::task::JoinHandle<()>,
}

impl LockGuard {
    pub async fn release(mut self) {
        self.keepalive.abort();
        let _ = self.client.lease_revoke(self.lease).await;
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// A PEM split into the certificates and the private key block.
fn split_pem(text: &str) -> (String, String) {
    let mut chain = String::new();
    let mut key = String::new();
    let mut in_key = false;
    for line in text.lines() {
        if line.starts_with("-----BEGIN") && line.contains("PRIVATE KEY") {
            in_key = true;
        }
        let out = if in_key { &mut key } else { &mut chain };
        out.push_str(line);
        out.push('\n');
        if line.starts_with("-----END") && line.contains("PRIVATE KEY") {
            in_key = false;
        }
    }
    (chain, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_are_counted_and_timed() {
        let mut s = Status::default();
        s.record_apply(Duration::from_millis(250));
        s.record_apply(Duration::from_millis(50));
        assert_eq!(s.applies, 2);
        assert!((s.apply_seconds_sum - 0.3).abs() < 1e-9);
        assert!((s.last_apply_seconds - 0.05).abs() < 1e-9);
    }

    #[test]
    fn pems_split_into_chain_and_key() {
        let pem = crate::tls::self_signed_pem(&["a.test".into()]).expect("pem");
        let (chain, key) = split_pem(&pem);
        assert!(chain.contains("BEGIN CERTIFICATE") && !chain.contains("PRIVATE"));
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----") && !key.contains("CERTIFICATE"));
        assert_eq!(format!("{chain}{key}"), pem);
    }
}
