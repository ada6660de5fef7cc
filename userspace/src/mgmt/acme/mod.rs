//! Automatic certificates (SPEC §5, `[acme]`): the ACME service on the
//! management runtime.
//!
//! Owns: which names need a certificate (every app domain, minus
//! exclusions), when each is ordered or renewed ([`plan`]: backoff,
//! Retry-After, ARI windows, the hourly cap), running orders ([`order`])
//! a few at a time, and what operators see (admin API, metrics, log).
//! Must not: block the runtime or reach a reactor other than through
//! `Control::challenges` (HTTP-01 tokens) and the certificate directory
//! (installed files, picked up by the watcher it kicks).
//!
//! ```text
//!  snapshot (apps' domains) ─► sync ─► Book (state.json) ─► due? ─► order task ─► tls::install ─► cert_dir ─► watcher kick
//!                                          ▲                         │ HTTP-01 token ─► Control::challenges ─► reactors
//!                 admin: renew ────────────┘◄──── result ────────────┘ DNS-01 ─► dns (rfc2136 | exec | manual)
//! ```

pub mod account;
pub mod client;
pub mod dns;
pub mod order;
pub mod plan;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instant_acme::Account;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use crate::config::AcmeSettings;
use crate::control::Control;
use crate::mgmt::region::{LockGuard, Region};
use client::RefusalLog;
use dns::{Dns, TxtRecord};
use order::{OrderEnv, OrderFailure, OrderJob, facts, file_stem};
use plan::{Book, CertFacts, NameRecord, Phase};

/// What the admin API and metrics read, and the door to ask for a renewal.
#[derive(Clone)]
pub struct Acme {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<String>,
}

struct Shared {
    state_file: PathBuf,
    book: Mutex<Book>,
    running: Mutex<BTreeSet<String>>,
    /// A binary upgrade is under way (or done): no new order, and the
    /// state file is the new process's to write.
    held: AtomicBool,
    issued: AtomicU64,
    failed: AtomicU64,
}

/// Everything known of the names, copied out (admin API, metrics).
pub struct Status {
    pub book: Book,
    pub running: BTreeSet<String>,
    pub orders_issued: u64,
    pub orders_failed: u64,
}

impl Acme {
    /// Check the settings that need files (DNS keys, CA roots), load the
    /// state, and start the service on the current tokio runtime.
    pub fn start(
        settings: AcmeSettings,
        control: Arc<Control>,
        cert_dir: PathBuf,
        certs_changed: Arc<Notify>,
        region: Option<Region>,
    ) -> anyhow::Result<Acme> {
        crate::fsutil::private_dir(&settings.state_dir)
            .map_err(|e| anyhow::anyhow!("acme.state_dir {}: {e}", settings.state_dir.display()))?;
        let dns = Arc::new(Dns::new(&settings.dns).map_err(|e| anyhow::anyhow!("acme.dns: {e}"))?);
        if let Some(p) = &settings.ca_roots {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("acme.ca_roots {}: {e}", p.display()))?;
        }
        let book = load_book(&settings.state_dir);
        let shared = Arc::new(Shared {
            state_file: settings.state_dir.join(STATE_FILE),
            book: Mutex::new(book),
            running: Mutex::new(BTreeSet::new()),
            held: AtomicBool::new(false),
            issued: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let service = Service {
            settings: Arc::new(settings),
            control,
            cert_dir,
            certs_changed,
            dns,
            shared: shared.clone(),
            refusals: RefusalLog::default(),
            account: None,
            profile: None,
            ari: None,
            seen_snapshot: None,
            ari_inflight: 0,
            region,
        };
        tokio::spawn(service.run(rx));
        Ok(Acme {
            shared,
            commands: tx,
        })
    }

    pub fn status(&self) -> Status {
        Status {
            book: lock(&self.shared.book).clone(),
            running: lock(&self.shared.running).clone(),
            orders_issued: self.shared.issued.load(Ordering::Relaxed),
            orders_failed: self.shared.failed.load(Ordering::Relaxed),
        }
    }

    /// Save the state now (on the way out: results are otherwise saved
    /// within a second of arriving).
    pub fn save(&self) {
        self.shared.save();
    }

    /// Stop (or resume) ordering and saving: a binary upgrade hands the
    /// names to the new process.
    pub fn hold(&self, held: bool) {
        self.shared.held.store(held, Ordering::Release);
    }

    /// Order `name` now (a forced renewal). False if no app serves it.
    pub fn renew(&self, name: &str) -> bool {
        let known = lock(&self.shared.book).names.contains_key(name);
        if known {
            let _ = self.commands.send(name.to_string());
        }
        known
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A uniform number in [0, 1) (where in an ARI window to renew).
fn unit() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

const STATE_FILE: &str = "state.json";

/// The persisted book; a file that does not parse is set aside (named in
/// the log) rather than stopping the node from serving.
fn load_book(dir: &Path) -> Book {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(book) => book,
            Err(e) => {
                let aside = dir.join(format!("{STATE_FILE}.unreadable-{}", now()));
                let _ = std::fs::rename(&path, &aside);
                tracing::error!(file = %path.display(), moved_to = %aside.display(), "ACME state unreadable, starting afresh: {e}");
                Book::default()
            }
        },
        Err(_) => Book::default(),
    }
}

/// What an order task hands back.
enum Done {
    Order {
        name: String,
        result: Result<CertFacts, OrderFailure>,
    },
    Ari {
        name: String,
        result: Result<((i64, i64), i64), String>,
    },
}

struct Service {
    settings: Arc<AcmeSettings>,
    control: Arc<Control>,
    cert_dir: PathBuf,
    certs_changed: Arc<Notify>,
    dns: Arc<Dns>,
    shared: Arc<Shared>,
    refusals: RefusalLog,
    account: Option<Arc<Account>>,
    /// The configured profile, when the directory lists it.
    profile: Option<String>,
    /// Whether the CA offers renewal information (known once asked).
    ari: Option<bool>,
    /// The snapshot names were last synced from (held, so a new one can
    /// never be mistaken for it).
    seen_snapshot: Option<Arc<crate::snapshot::Snapshot>>,
    /// ARI checks running (they share `running` with orders: one task per
    /// name at a time).
    ari_inflight: usize,
    /// Region mode: one node orders each name (an etcd lock), tokens,
    /// certificates, the account and per-name state are shared.
    region: Option<Region>,
}

/// How long a node waits before looking again when another node holds a
/// name's ordering lock (by then the certificate usually arrived).
const LOCK_WAIT: i64 = 5;

const ARI_CHECKS_AT_ONCE: usize = 8;

impl Service {
    async fn run(mut self, mut renewals: mpsc::UnboundedReceiver<String>) {
        let mut tasks: JoinSet<Done> = JoinSet::new();
        // Results are saved at most once a second (a thousand orders must
        // not mean a thousand fsyncs); what `launch` changed is saved at
        // once, before the tasks it spawned can run (this runtime has one
        // thread: they start only when this loop yields, in `select!`).
        // Region mode: nothing is decided before the region was read (its
        // account, certificates and locks are the truth).
        if let Some(region) = &self.region {
            while region.status().last_sync.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let mut results_unsaved = false;
        let mut saved = std::time::Instant::now();
        loop {
            let held = self.shared.held.load(Ordering::Acquire);
            let mut dirty = self.sync_names();
            if !held {
                dirty |= self.launch(&mut tasks).await;
            }
            if !held && (dirty || (results_unsaved && saved.elapsed() >= Duration::from_secs(1))) {
                self.persist();
                results_unsaved = false;
                saved = std::time::Instant::now();
            }
            let wake = self.next_wake(results_unsaved);
            tokio::select! {
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(done) = done {
                        self.finish(done);
                    }
                    while let Some(done) = tasks.try_join_next() {
                        if let Ok(done) = done {
                            self.finish(done);
                        }
                    }
                    results_unsaved = true;
                }
                Some(name) = renewals.recv() => {
                    if let Some(r) = lock(&self.shared.book).names.get_mut(&name) {
                        tracing::info!(name, "ACME: renewal requested");
                        r.next_attempt = now();
                    }
                }
                _ = tokio::time::sleep(wake) => {}
            }
        }
    }

    /// Follow the apps' domains: new names get a record (a valid file on
    /// disk is adopted, else ordered at once), removed names are forgotten
    /// (so re-adding one retries at once).
    fn sync_names(&mut self) -> bool {
        let snapshot = self.control.snapshot.load_full();
        if self
            .seen_snapshot
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &snapshot))
        {
            return false;
        }
        // The first sync (a start) compares every kept record with the
        // directory; later ones only look at names they have not seen.
        let first = self.seen_snapshot.is_none();
        self.seen_snapshot = Some(snapshot.clone());
        let wanted: BTreeSet<String> = snapshot
            .domains()
            .filter(|n| n.trim_start_matches("*.").contains('.'))
            .filter(|n| crate::tls::install::valid_name(&file_stem(n)))
            .filter(|n| !self.settings.excluded(n))
            .collect();
        let t = now();
        let mut book = lock(&self.shared.book);
        let before = book.names.len();
        book.names.retain(|name, _| {
            let keep = wanted.contains(name);
            if !keep {
                tracing::info!(name, "ACME: name no longer served, forgotten");
            }
            keep
        });
        let mut changed = before != book.names.len();
        for name in &wanted {
            if !first && book.names.contains_key(name) {
                continue;
            }
            let on_disk = std::fs::read(self.cert_dir.join(format!("{}.pem", file_stem(name))))
                .ok()
                .and_then(|pem| facts(&pem, false))
                .filter(|f| f.not_after > t);
            match book.names.get_mut(name) {
                Some(r) => {
                    // Kept from the last run: follow what the directory holds.
                    match on_disk {
                        Some(f) if r.cert.as_ref().map(|c| c.not_after) != Some(f.not_after) => {
                            let managed = r.cert.as_ref().is_some_and(|c| c.managed);
                            r.adopt(CertFacts { managed, ..f }, unit());
                            changed = true;
                        }
                        None if r.cert.is_some() => {
                            *r = NameRecord::new(t);
                            changed = true;
                        }
                        _ => {}
                    }
                }
                None => {
                    let record = match on_disk {
                        Some(f) => NameRecord::serving(f, unit()),
                        None => {
                            tracing::info!(name, "ACME: new name, ordering a certificate");
                            NameRecord::new(t)
                        }
                    };
                    book.names.insert(name.clone(), record);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Start the orders (and ARI checks) that are due, within the
    /// concurrency and the hourly cap.
    async fn launch(&mut self, tasks: &mut JoinSet<Done>) -> bool {
        let t = now();
        let due: Vec<String> = {
            let book = lock(&self.shared.book);
            if book.paused_until.is_some_and(|p| p > t) {
                return false;
            }
            let running = lock(&self.shared.running);
            let mut due: Vec<(&String, &NameRecord)> = book
                .names
                .iter()
                .filter(|(n, r)| r.next_attempt <= t && !running.contains(*n))
                .collect();
            due.sort_by_key(|(_, r)| r.next_attempt);
            due.into_iter().map(|(n, _)| n.clone()).collect()
        };
        let ari_due: Vec<(String, String)> = if self.ari == Some(false) {
            Vec::new()
        } else {
            let book = lock(&self.shared.book);
            let running = lock(&self.shared.running);
            book.names
                .iter()
                .filter(|(n, r)| {
                    !running.contains(*n)
                        && r.phase == Phase::Valid
                        && r.ari_next_check.is_none_or(|c| c <= t)
                })
                .filter_map(|(n, r)| {
                    let c = r.cert.as_ref().filter(|c| c.managed)?;
                    Some((n.clone(), c.cert_id.clone()?))
                })
                .take(ARI_CHECKS_AT_ONCE)
                .collect()
        };
        if due.is_empty() && ari_due.is_empty() {
            return false;
        }
        let account = match self.account().await {
            Ok(a) => a,
            Err(e) => {
                // Every due name shows why, and backs off.
                let retry_after = self.refusals.take().and_then(|r| r.retry_after);
                let mut book = lock(&self.shared.book);
                for name in &due {
                    if let Some(r) = book.names.get_mut(name) {
                        r.fail(t, e.clone(), &self.settings.backoff_secs, retry_after);
                    }
                }
                self.shared
                    .failed
                    .fetch_add(due.len() as u64, Ordering::Relaxed);
                tracing::error!("ACME: no account, {} order(s) postponed: {e}", due.len());
                return true;
            }
        };
        let mut changed = false;
        for (name, cert_id) in ari_due {
            if self.ari_inflight >= ARI_CHECKS_AT_ONCE {
                break;
            }
            self.ari_inflight += 1;
            lock(&self.shared.running).insert(name.clone());
            let account = account.clone();
            let interval = self.settings.ari_interval_secs as i64;
            tasks.spawn(async move {
                let result = renewal_window(&account, &cert_id, interval).await;
                Done::Ari { name, result }
            });
        }
        for name in due {
            let orders = lock(&self.shared.running).len() - self.ari_inflight;
            if orders >= self.settings.concurrency {
                break;
            }
            let mut guard = None;
            if let Some(region) = self.region.clone() {
                if self.settled_by_region(&region, &name, t) {
                    changed = true;
                    continue;
                }
                let wait = match region.try_lock(&name).await {
                    Ok(Some(g)) => {
                        guard = Some(g);
                        None
                    }
                    Ok(None) => Some((LOCK_WAIT, None)),
                    Err(e) => Some((LOCK_WAIT, Some(e.to_string()))),
                };
                if let Some((delay, error)) = wait {
                    if let Some(r) = lock(&self.shared.book).names.get_mut(&name) {
                        r.next_attempt = t + delay;
                        if error.is_some() {
                            r.last_error = error;
                        }
                    }
                    changed = true;
                    continue;
                }
            }
            let next = {
                let mut book = lock(&self.shared.book);
                if let Err(free_at) = book.cap.take(t, self.settings.max_orders_per_hour) {
                    tracing::warn!(
                        "ACME: {} new orders in the last hour (acme.max_orders_per_hour), next one at {free_at}",
                        self.settings.max_orders_per_hour
                    );
                    for r in book.names.values_mut().filter(|r| r.next_attempt <= t) {
                        r.next_attempt = free_at;
                    }
                    changed = true;
                    None
                } else if let Some(r) = book.names.get_mut(&name) {
                    r.next_attempt = r.pessimistic_next(t, &self.settings.backoff_secs);
                    if r.phase != Phase::Valid {
                        r.phase = Phase::Pending;
                    }
                    let replaces = r
                        .cert
                        .as_ref()
                        .filter(|c| c.managed && self.ari == Some(true))
                        .and_then(|c| c.cert_id.clone());
                    Some(OrderJob {
                        name: name.clone(),
                        replaces,
                        profile: self.profile.clone(),
                    })
                } else {
                    // Forgotten meanwhile (its domain was detached).
                    continue;
                }
            };
            let Some(job) = next else {
                // The hourly cap is reached.
                if let Some(g) = guard {
                    g.release().await;
                }
                break;
            };
            changed = true;
            lock(&self.shared.running).insert(name.clone());
            // Saved by the caller before this task can start (see `run`
            // and `pessimistic_next`).
            let ctx = TaskCtx {
                dns: self.dns.clone(),
                control: self.control.clone(),
                cert_dir: self.cert_dir.clone(),
                settings: self.settings.clone(),
                shared: self.shared.clone(),
            };
            tasks.spawn(order_task(
                job,
                account.clone(),
                ctx,
                self.region.clone().zip(guard),
            ));
        }
        changed
    }

    /// Region mode, before ordering `name`: another node already got a
    /// newer certificate (adopt it), or the region's record of the name
    /// says to wait (another node's failure backoff: wait as long).
    fn settled_by_region(&self, region: &Region, name: &str, t: i64) -> bool {
        let arrived = region
            .cert_chain(&file_stem(name))
            .and_then(|chain| facts(chain.as_bytes(), true))
            .filter(|f| f.not_after > t);
        let remote: Option<NameRecord> = region
            .acme_name(name)
            .and_then(|json| serde_json::from_str(&json).ok());
        let mut book = lock(&self.shared.book);
        let Some(r) = book.names.get_mut(name) else {
            return true;
        };
        if let Some(f) = arrived
            && r.cert.as_ref().is_none_or(|c| c.not_after < f.not_after)
        {
            tracing::info!(
                name,
                "ACME: certificate ordered by another node of the region, adopted"
            );
            r.adopt(f, unit());
            return true;
        }
        if let Some(remote) = remote.filter(|x| x.failures > 0 && x.next_attempt > t) {
            r.failures = remote.failures;
            r.last_error = remote.last_error;
            r.next_attempt = remote.next_attempt;
            if r.phase != Phase::Valid {
                r.phase = remote.phase;
            }
            return true;
        }
        false
    }

    /// The account, created or restored on first need.
    async fn account(&mut self) -> Result<Arc<Account>, String> {
        if let Some(a) = &self.account {
            return Ok(a.clone());
        }
        let account = Arc::new(match &self.region {
            Some(region) => account::regional(&self.settings, &self.refusals, region).await?,
            None => account::load_or_create(&self.settings, &self.refusals).await?,
        });
        if let Some(p) = &self.settings.profile {
            if account.profiles().any(|m| m.name == p) {
                self.profile = Some(p.clone());
            } else {
                tracing::warn!(
                    profile = p,
                    "ACME: the directory does not list this profile; ordering without one"
                );
            }
        }
        self.account = Some(account.clone());
        Ok(account)
    }

    fn finish(&mut self, done: Done) {
        let t = now();
        match done {
            Done::Ari { name, result } => {
                lock(&self.shared.running).remove(&name);
                self.ari_inflight -= 1;
                let mut book = lock(&self.shared.book);
                let Some(r) = book.names.get_mut(&name) else {
                    return;
                };
                match result {
                    Ok((window, check_again)) => {
                        self.ari = Some(true);
                        r.suggest(window, check_again, unit());
                        tracing::info!(
                            name,
                            start = window.0,
                            end = window.1,
                            renew_at = r.next_attempt,
                            "ACME: renewal window from the CA"
                        );
                    }
                    Err(e) if e == UNSUPPORTED => {
                        self.ari = Some(false);
                        r.ari_next_check = Some(i64::MAX);
                    }
                    Err(e) => {
                        tracing::warn!(name, "ACME: renewal information not fetched: {e}");
                        r.ari_next_check = Some(t + self.settings.ari_interval_secs as i64);
                    }
                }
            }
            Done::Order { name, result } => {
                lock(&self.shared.running).remove(&name);
                let mut book = lock(&self.shared.book);
                match result {
                    Ok(cert) => {
                        self.shared.issued.fetch_add(1, Ordering::Relaxed);
                        self.certs_changed.notify_one();
                        if let Some(r) = book.names.get_mut(&name) {
                            r.adopt(cert, unit());
                            self.share_record(&name, r);
                            tracing::info!(
                                name,
                                renew_at = r.next_attempt,
                                "ACME: certificate issued"
                            );
                        }
                    }
                    Err(f) => {
                        self.shared.failed.fetch_add(1, Ordering::Relaxed);
                        let refusal = self.refusals.take();
                        if let Some(rf) = refusal.filter(|rf| rf.status == 503) {
                            book.paused_until = rf.retry_after;
                        }
                        let Some(r) = book.names.get_mut(&name) else {
                            return;
                        };
                        r.fail(
                            t,
                            f.message.clone(),
                            &self.settings.backoff_secs,
                            refusal.and_then(|rf| rf.retry_after),
                        );
                        tracing::error!(
                            name,
                            failures = r.failures,
                            next_attempt = r.next_attempt,
                            "ACME: order failed: {}",
                            f.message
                        );
                        self.share_record(&name, r);
                        if r.failures >= self.settings.notify_after_failures {
                            notify(
                                &self.settings,
                                "failed",
                                &name,
                                &[
                                    ("PORTIER_ACME_ERROR", f.message.clone()),
                                    ("PORTIER_ACME_FAILURES", r.failures.to_string()),
                                    ("PORTIER_ACME_NEXT_ATTEMPT", r.next_attempt.to_string()),
                                ],
                            );
                        }
                    }
                }
            }
        }
    }

    /// Region mode: this node's view of a name after an order, for the
    /// others (their backoff follows it).
    fn share_record(&self, name: &str, record: &NameRecord) {
        let (Some(region), Ok(json)) = (self.region.clone(), serde_json::to_vec(record)) else {
            return;
        };
        let name = name.to_string();
        tokio::spawn(async move {
            if let Err(e) = region.put_acme_name(&name, json).await {
                tracing::warn!(name, "ACME: state not shared with the region: {e}");
            }
        });
    }

    /// How long to sleep: until the next name that can start (not while
    /// every order slot is taken, not before a CA-wide pause ends), at most
    /// a second (the snapshot is compared each turn; unsaved results wait
    /// for that turn too).
    fn next_wake(&self, results_unsaved: bool) -> Duration {
        let t = now();
        let book = lock(&self.shared.book);
        let running = lock(&self.shared.running);
        let slots_full = running.len() - self.ari_inflight >= self.settings.concurrency;
        let next = if slots_full {
            t + 1
        } else {
            book.names
                .iter()
                .filter(|(n, _)| !running.contains(*n))
                .map(|(_, r)| r.next_attempt)
                .min()
                .unwrap_or(i64::MAX)
        };
        let next = match book.paused_until {
            Some(p) if p > t => next.max(p),
            _ => next,
        };
        let wait = Duration::from_secs((next - t).clamp(0, 1) as u64);
        if results_unsaved {
            wait.max(Duration::from_millis(100))
        } else {
            wait
        }
    }

    fn persist(&self) {
        self.shared.save();
    }
}

impl Shared {
    /// Write the book to `state.json` (atomic, 0600).
    fn save(&self) {
        if self.held.load(Ordering::Acquire) {
            return; // handed over: the new process owns the file
        }
        let text = match serde_json::to_vec(&*lock(&self.book)) {
            Ok(t) => t,
            Err(e) => return tracing::error!("ACME state not saved: {e}"),
        };
        if let Err(e) = crate::fsutil::write_private(&self.state_file, &text) {
            tracing::error!(file = %self.state_file.display(), "ACME state not saved: {e}");
        }
    }
}

const UNSUPPORTED: &str = "unsupported";

/// The CA's suggested window for a certificate and when to ask again
/// (its Retry-After, kept between a minute and a day; else `interval`).
async fn renewal_window(
    account: &Account,
    cert_id: &str,
    interval: i64,
) -> Result<((i64, i64), i64), String> {
    let (aki, serial) = cert_id.split_once('.').ok_or("bad CertID")?;
    let id = instant_acme::CertificateIdentifier {
        authority_key_identifier: aki.into(),
        serial: serial.into(),
    };
    match account.renewal_info(&id).await {
        Ok((info, retry)) => {
            let w = info.suggested_window;
            let again = match retry.as_secs() as i64 {
                0 => interval,
                s => s.clamp(60, 86_400),
            };
            Ok((
                (w.start.unix_timestamp(), w.end.unix_timestamp()),
                now() + again,
            ))
        }
        Err(instant_acme::Error::Unsupported(_)) => Err(UNSUPPORTED.into()),
        Err(e) => Err(e.to_string()),
    }
}

/// What an order task shares with the service.
struct TaskCtx {
    dns: Arc<Dns>,
    control: Arc<Control>,
    cert_dir: PathBuf,
    settings: Arc<AcmeSettings>,
    shared: Arc<Shared>,
}

async fn order_task(
    job: OrderJob,
    account: Arc<Account>,
    ctx: TaskCtx,
    regional: Option<(Region, LockGuard)>,
) -> Done {
    let TaskCtx {
        dns,
        control,
        cert_dir,
        settings,
        shared,
    } = ctx;
    let name = job.name.clone();
    let on_action_required = |rec: &TxtRecord| {
        if let Some(r) = lock(&shared.book).names.get_mut(&rec.identifier) {
            r.phase = Phase::ActionRequired {
                record: rec.fqdn.clone(),
                value: rec.value.clone(),
            };
        }
        tracing::warn!(
            name = rec.identifier,
            record = rec.fqdn,
            value = rec.value,
            "ACME: action required: create this TXT record; Portier finishes by itself once every authoritative server serves it"
        );
        notify(
            &settings,
            "action_required",
            &rec.identifier,
            &[
                ("PORTIER_ACME_RECORD", rec.fqdn.clone()),
                ("PORTIER_ACME_VALUE", rec.value.clone()),
            ],
        );
    };
    let env = OrderEnv {
        account: &account,
        dns: &dns,
        control: &control,
        cert_dir: &cert_dir,
        timeout: Duration::from_secs(settings.order_timeout_secs),
        on_action_required: &on_action_required,
        region: regional.as_ref().map(|(r, _)| r),
    };
    let mut result = order::issue(&env, &job).await;
    if let Err(f) = &result
        && f.already_replaced
        && job.replaces.is_some()
    {
        tracing::warn!(
            name,
            "ACME: the CA says the certificate was already replaced; ordering again without `replaces`"
        );
        let job = OrderJob {
            replaces: None,
            ..job
        };
        result = order::issue(&env, &job).await;
    }
    if let (Ok(cert), Some((region, _))) = (&result, &regional) {
        // Every node installs it from the region; the lock is released
        // only after, so no other node orders it again meanwhile.
        let stem = file_stem(&name);
        match std::fs::read(cert_dir.join(format!("{stem}.pem"))) {
            Ok(pem) => {
                if let Err(e) = region.put_cert(&stem, &pem, cert.not_after).await {
                    tracing::error!(name, "ACME: certificate not shared with the region: {e}");
                }
            }
            Err(e) => tracing::error!(name, "ACME: installed certificate unreadable: {e}"),
        }
    }
    if let Some((_, guard)) = regional {
        guard.release().await;
    }
    if let Err(f) = &result
        && let Some(r) = lock(&shared.book).names.get_mut(&name)
        && matches!(r.phase, Phase::ActionRequired { .. })
    {
        // The record stays shown until the next attempt changes it.
        r.last_error = Some(f.message.clone());
    }
    Done::Order { name, result }
}

/// Run `notify_command` in the background (it must not hold anything up).
fn notify(settings: &AcmeSettings, event: &str, name: &str, extra: &[(&str, String)]) {
    let Some(command) = settings.notify_command.clone() else {
        return;
    };
    let mut env: Vec<(String, String)> = vec![
        ("PORTIER_ACME_EVENT".into(), event.to_string()),
        ("PORTIER_ACME_NAME".into(), name.to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let args = [event.to_string(), name.to_string()];
    tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        if let Err(e) = dns::run_hook(&command, &args, &env, Duration::from_secs(30)).await {
            tracing::warn!(command = %command.display(), "ACME: notify_command failed: {e}");
        }
    });
}
