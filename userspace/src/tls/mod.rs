//! TLS termination: the rustls server configuration (ring provider, TLS 1.2
//! and 1.3 with forward-secret AEAD suites only, the server's suite order
//! over the client's, ALPN, session resumption) and the certificate store
//! behind SNI.
//!
//! The reactor owns each session (`session.rs`: rustls' unbuffered
//! `ServerConnection`) and drives it without blocking; this module only
//! builds the shared, immutable configuration.

pub mod hello;
pub mod install;
pub mod session;
pub mod store;

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring as ring_provider;

pub use store::{CertStore, PemFile, SniResolver, StoreError, pem_files};

/// The provider: ring, restricted to forward-secret AEAD suites (which is
/// what rustls implements at all: no CBC, no RSA key exchange, no TLS < 1.2).
pub fn provider() -> CryptoProvider {
    let mut p = ring_provider::default_provider();
    p.cipher_suites = vec![
        ring_provider::cipher_suite::TLS13_AES_128_GCM_SHA256,
        ring_provider::cipher_suite::TLS13_AES_256_GCM_SHA384,
        ring_provider::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ring_provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ring_provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ring_provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ring_provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ring_provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ring_provider::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    p
}

/// Restrict the provider and protocol to what `[tls]` allows; an unknown
/// name is an error naming it.
pub fn tuned(
    settings: &crate::config::TlsSettings,
) -> Result<
    (
        CryptoProvider,
        Vec<&'static rustls::SupportedProtocolVersion>,
    ),
    String,
> {
    let mut p = provider();
    if !settings.cipher_suites.is_empty() {
        let mut chosen = Vec::new();
        for name in &settings.cipher_suites {
            let suite = p
                .cipher_suites
                .iter()
                .find(|s| s.suite().as_str() == Some(name.as_str()))
                .ok_or_else(|| format!("tls.cipher_suites: unknown or not allowed suite {name}"))?;
            chosen.push(*suite);
        }
        p.cipher_suites = chosen;
    }
    if !settings.groups.is_empty() {
        let mut chosen = Vec::new();
        for name in &settings.groups {
            let group = p
                .kx_groups
                .iter()
                .find(|g| format!("{:?}", g.name()).eq_ignore_ascii_case(name))
                .ok_or_else(|| format!("tls.groups: unknown group {name}"))?;
            chosen.push(*group);
        }
        p.kx_groups = chosen;
    }
    let mut versions = Vec::new();
    for v in &settings.versions {
        match v.as_str() {
            "1.2" => versions.push(&rustls::version::TLS12),
            "1.3" => versions.push(&rustls::version::TLS13),
            other => return Err(format!("tls.versions: {other} (only 1.2 and 1.3)")),
        }
    }
    if versions.is_empty() {
        return Err("tls.versions: at least one of 1.2, 1.3".into());
    }
    Ok((p, versions))
}

/// Everything the reactors need for TLS, built once and shared.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub resolver: Arc<SniResolver>,
}

impl Tls {
    /// `alpn`: protocols offered, most preferred first.
    pub fn new(store: CertStore, alpn: &[&[u8]]) -> Result<Tls, rustls::Error> {
        Tls::with(
            store,
            alpn,
            provider(),
            &[&rustls::version::TLS13, &rustls::version::TLS12],
            true,
        )
    }

    pub fn with(
        store: CertStore,
        alpn: &[&[u8]],
        provider: CryptoProvider,
        versions: &[&'static rustls::SupportedProtocolVersion],
        resumption: bool,
    ) -> Result<Tls, rustls::Error> {
        let resolver = Arc::new(SniResolver {
            store: ArcSwap::from_pointee(store),
        });
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // Server preference (RFC 8446 §4.1.1, RFC 5246 §7.4.1.3: the server
        // selects): the suite is the first of `provider.cipher_suites` the
        // client offers, whatever order the client lists them in, so a
        // client cannot steer a handshake onto the suite we rank lowest.
        config.ignore_client_order = true;
        if resumption {
            // Stateless tickets (TLS 1.3 and 1.2) and a session-id cache.
            config.ticketer = ring_provider::Ticketer::new()?;
            config.session_storage = rustls::server::ServerSessionMemoryCache::new(64 * 1024);
            config.send_tls13_tickets = 2;
        } else {
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        Ok(Tls {
            config: Arc::new(config),
            resolver,
        })
    }

    /// Swap in a new certificate store; handshakes from now on use it.
    pub fn swap_store(&self, store: CertStore) {
        self.resolver.store.store(Arc::new(store));
    }
}

/// Longest validity, in days, of a certificate from [`self_signed_pem_at`]:
/// a test or demo certificate that leaks must not stay usable for years
/// (the CA/Browser Forum is heading to 47 days; 90 is Let's Encrypt's).
pub const SELF_SIGNED_MAX_DAYS: u32 = 90;

/// A self-signed certificate + key for `names` as one PEM (`portier
/// self-signed`, the demo, tests), valid from `now` − 1 h (clock skew
/// between machines) until `now` + `days` days; `days` is capped at
/// [`SELF_SIGNED_MAX_DAYS`] (and at least 1).
pub fn self_signed_pem_at(
    names: &[String],
    now: std::time::SystemTime,
    days: u32,
) -> Result<String, rcgen::Error> {
    use std::time::{Duration, UNIX_EPOCH};
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.as_str());
    }
    // Whole seconds: X.509 times have no fractions.
    let since_epoch =
        Duration::from_secs(now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs());
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let days = u64::from(days.clamp(1, SELF_SIGNED_MAX_DAYS));
    params.not_before = epoch + since_epoch.saturating_sub(Duration::from_secs(3600));
    params.not_after = epoch + since_epoch + Duration::from_secs(days * 86_400);
    let cert = params.self_signed(&key)?;
    Ok(format!("{}{}", cert.pem(), key.serialize_pem()))
}

/// [`self_signed_pem_at`] from the wall clock, for the longest validity:
/// the convenience of the CLI and tests (never called on the data path).
pub fn self_signed_pem(names: &[String]) -> Result<String, rcgen::Error> {
    self_signed_pem_at(names, std::time::SystemTime::now(), SELF_SIGNED_MAX_DAYS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::sign::CertifiedKey;

    fn store_with(files: &[(&str, &[&str])]) -> (tempdir::Dir, CertStore) {
        let dir = tempdir::Dir::new();
        for (file, names) in files {
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            let pem = self_signed_pem(&names).expect("rcgen");
            std::fs::write(dir.0.join(format!("{file}.pem")), pem).expect("write");
        }
        let store = CertStore::load(&dir.0, &provider()).expect("load");
        (dir, store)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p =
                    std::env::temp_dir().join(format!("portier-tls-{}-{n}", std::process::id()));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).expect("mkdir");
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn same(a: &Option<Arc<CertifiedKey>>, b: &Option<Arc<CertifiedKey>>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    #[test]
    fn sni_prefers_exact_then_one_label_wildcard_then_default() {
        let (_d, s) = store_with(&[
            ("default", &["default.localhost"]),
            ("www.example.com", &["www.example.com"]),
            ("_wildcard.example.com", &["*.example.com"]),
        ]);
        let exact = s.lookup(Some("www.example.com"));
        let wild = s.lookup(Some("api.example.com"));
        let default = s.lookup(None);
        assert!(exact.is_some() && wild.is_some() && default.is_some());
        assert!(!same(&exact, &wild) && !same(&wild, &default));
        assert!(same(&s.lookup(Some("WWW.Example.COM.")), &exact));
        // A wildcard covers exactly one label.
        assert!(same(&s.lookup(Some("a.b.example.com")), &default));
        assert!(same(&s.lookup(Some("example.com")), &default));
        assert!(same(&s.lookup(Some("unknown.test")), &default));
    }

    #[test]
    fn pem_files_lists_only_pem_files_sorted_with_their_size() {
        let dir = tempdir::Dir::new();
        std::fs::write(dir.0.join("b.test.pem"), "bb").expect("write");
        std::fs::write(dir.0.join("a.test.pem"), "a").expect("write");
        std::fs::write(dir.0.join("notes.txt"), "x").expect("write");
        std::fs::write(dir.0.join(".c.test.pem.tmp-1-0"), "x").expect("write");
        let files = pem_files(&dir.0).expect("list");
        let got: Vec<(&str, u64)> = files.iter().map(|f| (f.stem.as_str(), f.len)).collect();
        assert_eq!(got, [("a.test", 1), ("b.test", 2)]);
        assert_eq!(files[0].path, dir.0.join("a.test.pem"));
        assert!(pem_files(&dir.0.join("missing")).is_err());
    }

    #[test]
    fn refresh_parses_only_what_changed() {
        let (dir, s) = store_with(&[("a.test", &["a.test"]), ("b.test", &["b.test"])]);
        let renewed =
            self_signed_pem(&["b.test".into(), "longer-name.b.test".into()]).expect("pem");
        std::fs::write(dir.0.join("b.test.pem"), renewed).expect("write");
        std::fs::write(
            dir.0.join("c.test.pem"),
            self_signed_pem(&["c.test".into()]).expect("pem"),
        )
        .expect("write");
        let next = s.refresh(&dir.0, &provider()).expect("refresh");
        assert!(
            same(&next.lookup(Some("a.test")), &s.lookup(Some("a.test"))),
            "kept"
        );
        assert!(
            !same(&next.lookup(Some("b.test")), &s.lookup(Some("b.test"))),
            "re-read"
        );
        assert!(next.lookup(Some("c.test")).is_some(), "new file");
        std::fs::remove_file(dir.0.join("a.test.pem")).expect("rm");
        let after = next.refresh(&dir.0, &provider()).expect("refresh");
        assert!(after.lookup(Some("a.test")).is_none(), "removed file gone");
        assert_eq!(after.len(), 2);
    }

    #[test]
    fn store_from_pems_resolves_like_a_directory() {
        let a = self_signed_pem(&["a.test".into()]).expect("rcgen");
        let wild = self_signed_pem(&["*.x.test".into()]).expect("rcgen");
        let store = CertStore::from_pems(
            [
                ("a.test", a.as_bytes()),
                ("_wildcard.x.test", wild.as_bytes()),
            ],
            &provider(),
        )
        .expect("store");
        assert_eq!(store.len(), 2);
        assert!(store.lookup(Some("a.test")).is_some());
        assert!(store.lookup(Some("b.x.test")).is_some());
        assert!(store.lookup(Some("other.test")).is_none());
        let err =
            CertStore::from_pems([("bad.test", &b"nope"[..])], &provider()).expect_err("refused");
        assert!(err.to_string().starts_with("bad.test: "), "{err}");
    }

    #[test]
    fn a_broken_file_is_refused_with_its_path() {
        let dir = tempdir::Dir::new();
        std::fs::write(dir.0.join("bad.pem"), "not a pem").expect("write");
        let err = CertStore::load(&dir.0, &provider())
            .expect_err("refused")
            .to_string();
        assert!(err.contains("bad.pem"), "{err}");
    }

    #[test]
    fn self_signed_certificates_last_at_most_90_days_from_an_hour_ago() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let validity = |days| {
            let pem = self_signed_pem_at(&["v.test".into()], now, days).expect("pem");
            let der = rustls_pemfile_first_cert(&pem);
            let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
            (
                cert.validity().not_before.timestamp(),
                cert.validity().not_after.timestamp(),
            )
        };
        assert_eq!(
            validity(90),
            (1_800_000_000 - 3600, 1_800_000_000 + 90 * 86_400)
        );
        assert_eq!(validity(7).1, 1_800_000_000 + 7 * 86_400);
        assert_eq!(validity(4000).1, 1_800_000_000 + 90 * 86_400, "capped");
        assert_eq!(validity(0).1, 1_800_000_000 + 86_400, "at least a day");
    }

    fn rustls_pemfile_first_cert(pem: &str) -> Vec<u8> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .expect("a certificate")
            .expect("valid pem")
            .to_vec()
    }

    #[test]
    fn tls_settings_restrict_suites_groups_and_versions() {
        let mut t = crate::config::TlsSettings {
            cipher_suites: vec!["TLS13_AES_128_GCM_SHA256".into()],
            groups: vec!["x25519".into()],
            versions: vec!["1.3".into()],
            ..Default::default()
        };
        let (p, v) = tuned(&t).expect("valid");
        assert_eq!(p.cipher_suites.len(), 1);
        assert_eq!(p.kx_groups.len(), 1);
        assert_eq!(v.len(), 1);
        t.cipher_suites = vec!["TLS_RSA_WITH_RC4_128_SHA".into()];
        assert!(tuned(&t).unwrap_err().contains("TLS_RSA_WITH_RC4_128_SHA"));
        t.cipher_suites.clear();
        t.versions = vec!["1.1".into()];
        assert!(tuned(&t).unwrap_err().contains("1.1"));
    }

    #[test]
    fn config_builds_with_alpn() {
        let (_d, s) = store_with(&[("default", &["localhost"])]);
        let tls = Tls::new(s, &[b"h2", b"http/1.1"]).expect("config");
        assert_eq!(
            tls.config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
