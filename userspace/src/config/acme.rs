//! `[acme]`: automatic certificates (SPEC §5). The section's presence turns
//! ACME on; without it nothing is ordered and nothing changes.
//!
//! Only the shape is checked here; files named here (EAB key, CA roots) are
//! read when the ACME service starts, so `portier check` works anywhere.

use std::path::PathBuf;

use serde::Deserialize;

pub use super::acme_dns::DnsSettings;

/// Let's Encrypt production, the default directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt staging (`directory = "letsencrypt-staging"`).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeSettings {
    /// Directory URL of any RFC 8555 CA; `letsencrypt` and
    /// `letsencrypt-staging` are accepted as names.
    pub directory: String,
    /// Account contacts (`mailto:ops@example.com`).
    pub contact: Vec<String>,
    /// Extra PEM roots trusted for the CA's own HTTPS (a private CA, Pebble);
    /// the system roots are trusted as well.
    pub ca_roots: Option<PathBuf>,
    /// External account binding: key id, and a file holding the base64url
    /// HMAC key (not readable by group or others).
    pub eab_kid: Option<String>,
    pub eab_hmac_file: Option<PathBuf>,
    /// Certificate profile; sent only when the directory lists it.
    pub profile: Option<String>,
    /// Account key, per-name state and backoff (created 0700).
    pub state_dir: PathBuf,
    /// Names never ordered: exact names (`*.x.test` is the wildcard name
    /// only), or `.suffix` for every name under `suffix`, wildcards included.
    pub exclude: Vec<String>,
    /// Orders running at once.
    pub concurrency: usize,
    /// New orders per rolling hour, over all names (a restart loop or a
    /// thousand new domains never hammer the CA).
    pub max_orders_per_hour: u32,
    /// Delay before retry n (1-based) after n failures in a row; the last
    /// entry repeats. Default 1 min, 10 min, 100 min, then daily.
    pub backoff_secs: Vec<u64>,
    /// How often the renewal information (ARI) is fetched again when the CA
    /// gave no Retry-After (about twice a day).
    pub ari_interval_secs: u64,
    /// Give up on one order after this long (challenge validation, polling).
    pub order_timeout_secs: u64,
    /// Called on `action_required` and on repeated failures, with the event
    /// in the environment (`PORTIER_ACME_EVENT`, `PORTIER_ACME_NAME`, ...).
    pub notify_command: Option<PathBuf>,
    /// Failures in a row after which `notify_command` is called again.
    pub notify_after_failures: u32,
    /// DNS-01 for wildcards.
    pub dns: DnsSettings,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        AcmeSettings {
            directory: LETS_ENCRYPT.into(),
            contact: Vec::new(),
            ca_roots: None,
            eab_kid: None,
            eab_hmac_file: None,
            profile: None,
            state_dir: PathBuf::from("/var/lib/portier/acme"),
            exclude: Vec::new(),
            concurrency: 4,
            max_orders_per_hour: 300,
            backoff_secs: vec![60, 600, 6_000, 86_400],
            ari_interval_secs: 12 * 3600,
            order_timeout_secs: 600,
            notify_command: None,
            notify_after_failures: 3,
            dns: DnsSettings::default(),
        }
    }
}

impl AcmeSettings {
    /// The directory URL, names resolved.
    pub fn directory_url(&self) -> &str {
        match self.directory.as_str() {
            "letsencrypt" => LETS_ENCRYPT,
            "letsencrypt-staging" => LETS_ENCRYPT_STAGING,
            url => url,
        }
    }

    /// Is `name` (lowercase; `*.x` for a wildcard) excluded from ordering?
    pub fn excluded(&self, name: &str) -> bool {
        self.exclude.iter().any(|pattern| {
            name == pattern || pattern.starts_with('.') && name.ends_with(pattern.as_str())
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        let url = self.directory_url();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!(
                "acme.directory: `{}` is not an http(s) URL (or letsencrypt, letsencrypt-staging)",
                self.directory
            ));
        }
        for c in &self.contact {
            if !c.starts_with("mailto:") {
                return Err(format!("acme.contact: `{c}` must start with mailto:"));
            }
        }
        if self.eab_kid.is_some() != self.eab_hmac_file.is_some() {
            return Err("acme: eab_kid and eab_hmac_file go together".into());
        }
        if self.state_dir.as_os_str().is_empty() {
            return Err("acme.state_dir: empty".into());
        }
        if self.concurrency == 0 {
            return Err("acme.concurrency: at least 1".into());
        }
        if self.max_orders_per_hour == 0 {
            return Err("acme.max_orders_per_hour: at least 1".into());
        }
        if self.backoff_secs.is_empty() || self.backoff_secs.contains(&0) {
            return Err("acme.backoff_secs: one or more delays, each at least 1 s".into());
        }
        if self.ari_interval_secs == 0 || self.order_timeout_secs == 0 {
            return Err("acme: ari_interval_secs and order_timeout_secs are at least 1".into());
        }
        for pattern in &self.exclude {
            let host = pattern
                .strip_prefix("*.")
                .or_else(|| pattern.strip_prefix('.'))
                .unwrap_or(pattern);
            if host.is_empty() || host.contains('*') || host != host.to_ascii_lowercase() {
                return Err(format!(
                    "acme.exclude: `{pattern}` is not a lowercase name, *.suffix or .suffix"
                ));
            }
        }
        self.dns.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_lets_encrypt_and_valid() {
        let s = AcmeSettings::default();
        assert_eq!(s.directory_url(), LETS_ENCRYPT);
        s.validate().expect("defaults are valid");
        let staging = AcmeSettings {
            directory: "letsencrypt-staging".into(),
            ..Default::default()
        };
        assert_eq!(staging.directory_url(), LETS_ENCRYPT_STAGING);
    }

    #[test]
    fn refuses_what_cannot_work() {
        let bad = |f: &dyn Fn(&mut AcmeSettings)| {
            let mut s = AcmeSettings::default();
            f(&mut s);
            s.validate().expect_err("refused")
        };
        assert!(bad(&|s| s.directory = "ftp://x".into()).contains("acme.directory"));
        assert!(bad(&|s| s.contact = vec!["ops@x.test".into()]).contains("mailto:"));
        assert!(bad(&|s| s.eab_kid = Some("k".into())).contains("eab_hmac_file"));
        assert!(bad(&|s| s.backoff_secs.clear()).contains("backoff_secs"));
        assert!(bad(&|s| s.concurrency = 0).contains("concurrency"));
        assert!(bad(&|s| s.exclude = vec!["*.*.x".into()]).contains("exclude"));
    }

    #[test]
    fn exclusion_by_name_and_suffix() {
        let s = AcmeSettings {
            exclude: vec![
                "localhost".into(),
                ".internal.test".into(),
                "*.shop.test".into(),
            ],
            ..Default::default()
        };
        assert!(s.excluded("*.shop.test"), "the wildcard name");
        assert!(!s.excluded("www.shop.test"), "not the names under it");
        assert!(s.excluded("localhost"));
        assert!(!s.excluded("a.localhost"));
        assert!(s.excluded("a.internal.test"));
        assert!(s.excluded("*.internal.test"));
        assert!(s.excluded("b.a.internal.test"));
        assert!(!s.excluded("xinternal.test"));
        assert!(!s.excluded("internal.test"));
    }
}
