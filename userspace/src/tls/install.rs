//! Installing one certificate into the certificate directory: the one
//! validated, atomic path a certificate takes into `[tls] cert_dir`
//! (the admin API's `PUT /certificates/{name}` today; ACME and region sync
//! are meant to reuse it).
//!
//! Owns: the file naming rules (`<host>.pem`, `_wildcard.<suffix>.pem` for
//! `*.<suffix>`, `default.pem`: [`valid_name`], [`serves`], [`covers`]),
//! reading names and expiry out of a PEM's first certificate
//! ([`inspect`], x509-parser), and [`install`]: the chain parses, the key
//! loads and matches the leaf (with the TLS store's own loader,
//! [`certified_key`], so what passes here loads there), the leaf covers the
//! name, then the file is written to a temporary file in the same directory
//! (mode 0600, fsync), renamed into place (atomic on one filesystem) and
//! the directory fsynced.
//! Must not: leave a half-written, unvalidated or temporary `*.pem` where
//! the certificate watcher (`mgmt/certs.rs`) looks, let a name escape the
//! directory, or touch the running TLS configuration (the watcher picks
//! the new file up).

use super::provider;
use super::store::{DEFAULT_NAME, WILDCARD_PREFIX, certified_key};
use std::path::{Path, PathBuf};

/// Names and expiry of a PEM's first certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// `notBefore` and `notAfter`, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// DNS names of the subjectAltName (else the common names), lowercase.
    pub names: Vec<String>,
}

/// Names and expiry of the first certificate in `pem` (the leaf).
pub fn inspect(pem: &[u8]) -> Result<CertInfo, String> {
    for item in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let item = item.map_err(|e| format!("bad PEM: {e}"))?;
        if item.label != "CERTIFICATE" {
            continue;
        }
        let cert = item
            .parse_x509()
            .map_err(|e| format!("bad certificate: {e}"))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                    names.push(d.to_ascii_lowercase());
                }
            }
        }
        if names.is_empty() {
            names.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok())
                    .map(str::to_ascii_lowercase),
            );
        }
        return Ok(CertInfo {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            names,
        });
    }
    Err("no certificate in the PEM".into())
}

/// What a file stem serves: `_wildcard.x.y` → `*.x.y`.
pub fn serves(stem: &str) -> String {
    match stem.strip_prefix(WILDCARD_PREFIX) {
        Some(suffix) => format!("*.{suffix}"),
        None => stem.to_string(),
    }
}

/// A file stem the store understands and that stays inside the directory.
pub fn valid_name(name: &str) -> bool {
    let host = name.strip_prefix(WILDCARD_PREFIX).unwrap_or(name);
    !host.is_empty()
        && name.len() <= 253
        && !host.starts_with('.')
        && !host.ends_with('.')
        && !host.contains("..")
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Does a certificate naming `names` cover what the file `stem` serves?
/// `default` takes any certificate; a wildcard file needs the same
/// wildcard; a host is covered by its name or a wildcard one label up.
pub fn covers(names: &[String], stem: &str) -> bool {
    if stem == DEFAULT_NAME {
        return true;
    }
    let wanted = serves(stem);
    names.iter().any(|n| {
        *n == wanted
            || (!wanted.starts_with("*.")
                && n.strip_prefix("*.").is_some_and(|suffix| {
                    wanted
                        .split_once('.')
                        .is_some_and(|(_, parent)| parent == suffix)
                }))
    })
}

/// Why a certificate was not installed. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Not a file stem the store understands (or it would leave the directory).
    #[error(
        "`{0}` is not a certificate name: use the host name (www.example.com), _wildcard.<suffix> for *.<suffix>, or default"
    )]
    BadName(String),
    /// The PEM does not parse, the key does not match, or the certificate
    /// does not cover the name.
    #[error("{0}")]
    BadCertificate(String),
    #[error("{} is not a directory", .0.display())]
    NoDir(PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

/// A certificate now in place.
#[derive(Debug)]
pub struct Installed {
    /// The file stem (lowercase).
    pub name: String,
    pub path: PathBuf,
    pub info: CertInfo,
}

/// Validate `pem` (chain + private key) for `name` and install it as
/// `dir/<name>.pem`, replacing any previous file atomically.
pub fn install(dir: &Path, name: &str, pem: &[u8]) -> Result<Installed, InstallError> {
    let name = name.to_ascii_lowercase();
    if !valid_name(&name) {
        return Err(InstallError::BadName(name));
    }
    let info = inspect(pem).map_err(InstallError::BadCertificate)?;
    if !covers(&info.names, &name) {
        return Err(InstallError::BadCertificate(format!(
            "the certificate does not cover {} (it names: {})",
            serves(&name),
            info.names.join(", ")
        )));
    }
    if !dir.is_dir() {
        return Err(InstallError::NoDir(dir.to_path_buf()));
    }
    // The watcher loads with `provider()` too: what passes here loads there.
    certified_key(pem, &provider()).map_err(InstallError::BadCertificate)?;
    let path = dir.join(format!("{name}.pem"));
    write_private(&path, pem)?;
    Ok(Installed { name, path, info })
}

/// [`crate::fsutil::write_private`], with the error an install reports.
fn write_private(path: &Path, pem: &[u8]) -> Result<(), InstallError> {
    crate::fsutil::write_private(path, pem).map_err(|source| InstallError::Io {
        what: "writing the certificate",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::self_signed_pem;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Dir(PathBuf);
    impl Dir {
        fn new() -> Dir {
            static N: AtomicU64 = AtomicU64::new(0);
            let p = std::env::temp_dir().join(format!(
                "portier-install-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("mkdir");
            Dir(p)
        }
        fn files(&self) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(&self.0)
                .expect("ls")
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pem(names: &[&str]) -> String {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        self_signed_pem(&names).expect("rcgen")
    }

    /// The certificate of `a` with the key of `b`.
    fn mismatched(a: &str, b: &str) -> String {
        let cert = a.split("-----BEGIN PRIVATE KEY-----").next().unwrap_or("");
        let key = b
            .find("-----BEGIN PRIVATE KEY-----")
            .map_or("", |i| &b[i..]);
        format!("{cert}{key}")
    }

    #[test]
    fn installs_private_and_loadable_with_the_expiry() {
        let d = Dir::new();
        let p = pem(&["a.test"]);
        let done = install(&d.0, "A.Test", p.as_bytes()).expect("installed");
        assert_eq!(done.name, "a.test");
        assert_eq!(done.path, d.0.join("a.test.pem"));
        assert_eq!(done.info.names, ["a.test"]);
        assert!(done.info.not_after > 1_700_000_000);
        assert_eq!(std::fs::read_to_string(&done.path).expect("read"), p);
        let mode = std::fs::metadata(&done.path)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(d.files(), ["a.test.pem"], "no temporary file left");
        let store = crate::tls::CertStore::load(&d.0, &provider()).expect("loads");
        assert!(store.lookup(Some("a.test")).is_some());
        // A second install replaces the file.
        let renewed = pem(&["a.test", "b.test"]);
        install(&d.0, "a.test", renewed.as_bytes()).expect("replaced");
        assert_eq!(std::fs::read_to_string(&done.path).expect("read"), renewed);
        assert_eq!(d.files(), ["a.test.pem"]);
    }

    #[test]
    fn wildcard_and_default_names() {
        let d = Dir::new();
        let wild = pem(&["*.x.test"]);
        install(&d.0, "_wildcard.x.test", wild.as_bytes()).expect("wildcard");
        install(&d.0, "default", pem(&["anything.test"]).as_bytes()).expect("default");
        let err = install(&d.0, "_wildcard.y.test", wild.as_bytes()).expect_err("other suffix");
        assert!(err.to_string().contains("does not cover *.y.test"), "{err}");
        assert_eq!(d.files(), ["_wildcard.x.test.pem", "default.pem"]);
    }

    #[test]
    fn refusals_write_nothing() {
        let d = Dir::new();
        let good = pem(&["a.test"]);
        let other = pem(&["a.test"]);
        let err = install(&d.0, "a.test", mismatched(&good, &other).as_bytes())
            .expect_err("key of another certificate");
        assert!(matches!(err, InstallError::BadCertificate(_)), "{err:?}");
        assert!(err.to_string().contains("does not match"), "{err}");
        let err = install(&d.0, "b.test", good.as_bytes()).expect_err("wrong name");
        assert!(
            err.to_string()
                .contains("does not cover b.test (it names: a.test)"),
            "{err}"
        );
        let cert_only = good
            .split("-----BEGIN PRIVATE KEY-----")
            .next()
            .unwrap_or("");
        let err = install(&d.0, "a.test", cert_only.as_bytes()).expect_err("no key");
        assert!(err.to_string().contains("private key"), "{err}");
        assert!(matches!(
            install(&d.0, "a.test", b"not a pem"),
            Err(InstallError::BadCertificate(_))
        ));
        for bad in ["../a.test", "a/b", ".a.test", "a..test", ""] {
            assert!(
                matches!(
                    install(&d.0, bad, good.as_bytes()),
                    Err(InstallError::BadName(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            install(&d.0.join("missing"), "a.test", good.as_bytes()),
            Err(InstallError::NoDir(_))
        ));
        assert!(d.files().is_empty(), "{:?}", d.files());
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let d = Dir::new();
        // The target is a non-empty directory: the rename fails.
        std::fs::create_dir_all(d.0.join("a.test.pem").join("x")).expect("mkdir");
        let err = install(&d.0, "a.test", pem(&["a.test"]).as_bytes()).expect_err("rename");
        assert!(matches!(err, InstallError::Io { .. }), "{err:?}");
        assert_eq!(d.files(), ["a.test.pem"], "temporary file removed");
    }

    #[test]
    fn names_stay_in_the_directory() {
        assert!(valid_name("www.example.com"));
        assert!(valid_name("_wildcard.example.com"));
        assert!(valid_name("default"));
        for bad in ["", "../x", "a/b", ".hidden", "a..b", "x y", "_wildcard."] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn coverage() {
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(covers(&n(&["a.test"]), "a.test"));
        assert!(covers(&n(&["*.x.test"]), "a.x.test"));
        assert!(covers(&n(&["*.x.test"]), "_wildcard.x.test"));
        assert!(!covers(&n(&["a.x.test"]), "_wildcard.x.test"));
        assert!(!covers(&n(&["b.test"]), "a.test"));
        assert!(covers(&n(&["b.test"]), "default"));
    }

    #[test]
    fn inspects_a_generated_certificate() {
        let pem = self_signed_pem(&["a.test".into(), "*.b.test".into()]).expect("pem");
        let info = inspect(pem.as_bytes()).expect("parse");
        assert_eq!(info.names, ["a.test", "*.b.test"]);
        assert!(info.not_after > 1_700_000_000);
        assert!(inspect(b"nope").is_err());
    }
}
