//! The certificate store: PEM files in one directory, indexed by name, and
//! the SNI resolver that picks from it (exact name, else a wildcard covering
//! one label, else the default).
//!
//! File names say which names a certificate serves, so lookup is a hash
//! probe however many certificates there are:
//! `<name>.pem` (e.g. `www.example.com.pem`), `_wildcard.<suffix>.pem` for
//! `*.<suffix>`, and `default.pem` for clients without SNI or with an unknown
//! name. Each file holds the certificate chain and its private key.
//! The management thread rebuilds the store when the directory changes and
//! swaps it in; handshakes already under way keep the key they resolved.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub const WILDCARD_PREFIX: &str = "_wildcard.";
pub const DEFAULT_NAME: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{name}: {reason}")]
    Pem { name: String, reason: String },
    #[error("{dir}: cannot read the certificate directory: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// One `*.pem` file of a certificate directory, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemFile {
    /// The file name without `.pem`, as found (not lowercased).
    pub stem: String,
    pub path: PathBuf,
    /// Modification time when listed (the epoch if unknown).
    pub modified: SystemTime,
    /// Size in bytes when listed.
    pub len: u64,
}

/// The `*.pem` files of `dir`, sorted by path, with modification time and
/// size (metadata follows symlinks). A name that is not UTF-8 is skipped:
/// no certificate can be served under it. The one listing the store, the
/// certificate watcher and the admin API share.
pub fn pem_files(dir: &Path) -> std::io::Result<Vec<PemFile>> {
    let mut out: Vec<PemFile> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .filter_map(|path| {
            let stem = path.file_stem()?.to_str()?.to_string();
            let meta = std::fs::metadata(&path).ok();
            Some(PemFile {
                stem,
                modified: meta
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                len: meta.map_or(0, |m| m.len()),
                path,
            })
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Certificates by the name they serve (lowercase; wildcards as `*.suffix`).
#[derive(Default, Debug)]
pub struct CertStore {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// The files this store was built from, as listed before they were read
    /// (change detection: a file changed after the listing shows up as a
    /// difference on the next scan).
    pub fingerprint: Vec<PemFile>,
}

impl CertStore {
    /// Load every `*.pem` of `dir`. A file that does not parse is an error
    /// (the previous store keeps serving).
    pub fn load(dir: &Path, provider: &CryptoProvider) -> Result<CertStore, StoreError> {
        let mut store = CertStore::default();
        let files = pem_files(dir).map_err(|source| StoreError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
        for file in files {
            let key = load_certified_key(&file.path, provider)?;
            store.insert(&file.stem, key);
            store.fingerprint.push(file);
        }
        Ok(store)
    }

    /// [`CertStore::load`] again, re-reading only the files whose size or
    /// modification time changed since this store's listing; the others
    /// keep their parsed key. A thousand certificates and one renewal
    /// cost one parse, not a thousand.
    pub fn refresh(&self, dir: &Path, provider: &CryptoProvider) -> Result<CertStore, StoreError> {
        let mut store = CertStore::default();
        let files = pem_files(dir).map_err(|source| StoreError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
        for file in files {
            let unchanged = self
                .fingerprint
                .binary_search_by(|f| f.path.cmp(&file.path));
            let key = match unchanged
                .ok()
                .filter(|&i| self.fingerprint[i] == file)
                .and_then(|_| self.by_stem(&file.stem))
            {
                Some(key) => key,
                None => load_certified_key(&file.path, provider)?,
            };
            store.insert(&file.stem, key);
            store.fingerprint.push(file);
        }
        Ok(store)
    }

    fn by_stem(&self, stem: &str) -> Option<Arc<CertifiedKey>> {
        let stem = stem.to_ascii_lowercase();
        if stem == DEFAULT_NAME {
            return self.default.clone();
        }
        match stem.strip_prefix(WILDCARD_PREFIX) {
            Some(suffix) => self.by_name.get(&format!("*.{suffix}")).cloned(),
            None => self.by_name.get(&stem).cloned(),
        }
    }

    /// Build a store from PEMs in memory, `(file stem, chain + key)` (e.g.
    /// certificates that arrive from elsewhere than the directory): same
    /// naming and checks as [`CertStore::load`]; `fingerprint` stays empty.
    pub fn from_pems<'a>(
        pems: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        provider: &CryptoProvider,
    ) -> Result<CertStore, StoreError> {
        let mut store = CertStore::default();
        for (stem, pem) in pems {
            let key = certified_key(pem, provider).map_err(|reason| StoreError::Pem {
                name: stem.to_string(),
                reason,
            })?;
            store.insert(stem, key);
        }
        Ok(store)
    }

    /// File stem → the name it serves: `default`, `_wildcard.x` → `*.x`.
    fn insert(&mut self, stem: &str, key: Arc<CertifiedKey>) {
        let stem = stem.to_ascii_lowercase();
        if stem == DEFAULT_NAME {
            self.default = Some(key);
        } else if let Some(suffix) = stem.strip_prefix(WILDCARD_PREFIX) {
            self.by_name.insert(format!("*.{suffix}"), key);
        } else {
            self.by_name.insert(stem, key);
        }
    }

    pub fn len(&self) -> usize {
        self.by_name.len() + usize::from(self.default.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Exact name, else the wildcard one label up, else the default.
    pub fn lookup(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = server_name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(k) = self.by_name.get(&name) {
                return Some(k.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(k) = self.by_name.get(&format!("*.{parent}"))
            {
                return Some(k.clone());
            }
        }
        self.default.clone()
    }
}

fn load_certified_key(
    path: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, StoreError> {
    let err = |reason: String| StoreError::File {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    certified_key(&pem, provider).map_err(err)
}

/// A certificate chain and its private key from one PEM: the chain parses
/// and is not empty, the key loads with `provider` and matches the first
/// (leaf) certificate. The error is a reason for the operator.
pub fn certified_key(pem: &[u8], provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the file".into());
    }
    let key =
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no usable private key: {e}"))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("unsupported private key: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("key does not match the certificate: {e}"))?;
    Ok(Arc::new(certified))
}

/// rustls' SNI hook over the current store.
#[derive(Debug)]
pub struct SniResolver {
    pub store: ArcSwap<CertStore>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.store.load().lookup(hello.server_name())
    }
}
