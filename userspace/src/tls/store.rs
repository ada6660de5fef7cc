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
    #[error("{dir}: cannot read the certificate directory: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Certificates by the name they serve (lowercase; wildcards as `*.suffix`).
#[derive(Default, Debug)]
pub struct CertStore {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// Files and modification times this store was built from (change detection).
    pub fingerprint: Vec<(PathBuf, std::time::SystemTime, u64)>,
}

impl CertStore {
    /// Load every `*.pem` of `dir`. A file that does not parse is an error
    /// (the previous store keeps serving).
    pub fn load(dir: &Path, provider: &CryptoProvider) -> Result<CertStore, StoreError> {
        let mut store = CertStore::default();
        let entries = std::fs::read_dir(dir).map_err(|source| StoreError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "pem"))
            .collect();
        files.sort();
        for path in files {
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let key = load_certified_key(&path, provider)?;
            let meta = std::fs::metadata(&path).ok();
            store.fingerprint.push((
                path.clone(),
                meta.as_ref()
                    .and_then(|m| m.modified().ok())
                    .unwrap_or(std::time::UNIX_EPOCH),
                meta.map_or(0, |m| m.len()),
            ));
            let stem = stem.to_ascii_lowercase();
            if stem == DEFAULT_NAME {
                store.default = Some(key);
            } else if let Some(suffix) = stem.strip_prefix(WILDCARD_PREFIX) {
                store.by_name.insert(format!("*.{suffix}"), key);
            } else {
                store.by_name.insert(stem, key);
            }
        }
        Ok(store)
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
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("bad certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| err(format!("no usable private key: {e}")))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| err(format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| err(format!("key does not match the certificate: {e}")))?;
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
